-- Snapshots as bytea, stored out of line uncompressed: a hot stock's
-- snapshot is about a megabyte of packed ids, which as jsonb PostgreSQL
-- rendered as text at every read (and Go then decoded from base64), and
-- which no compression shrinks (ids are random) but pglz still tried at
-- every write. Codecs write what they like; JSON for most states
-- (docs/adr/0158-snapshots-as-bytea.md). The rows are converted, not
-- dropped: a JSON snapshot stays readable, and a codec whose form changed
-- raised its schema. Every statement is idempotent: the migrations run at
-- every start, and only a jsonb column (or one not yet EXTERNAL) is
-- altered, so later starts take no lock on the table.
DO $$
BEGIN
    IF (SELECT atttypid FROM pg_attribute
        WHERE attrelid = 'es_snapshots'::regclass AND attname = 'data') = 'jsonb'::regtype THEN
        ALTER TABLE es_snapshots ALTER COLUMN data TYPE bytea USING convert_to(data::text, 'UTF8');
    END IF;
    IF (SELECT attstorage FROM pg_attribute
        WHERE attrelid = 'es_snapshots'::regclass AND attname = 'data') <> 'e' THEN
        ALTER TABLE es_snapshots ALTER COLUMN data SET STORAGE EXTERNAL;
    END IF;
END
$$;
