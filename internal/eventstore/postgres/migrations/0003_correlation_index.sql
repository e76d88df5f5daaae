-- Finding one correlation's events (the operator console's journey of an
-- order) without reading the whole table. The metadata column is JSON in
-- bytea, and an index expression must be immutable: convert_from is only
-- stable (it depends on the database's encoding, which never changes for
-- a database), so the extraction is wrapped in a function declared
-- immutable. Every statement is idempotent: the migrations run at every
-- start (see Migrate).
CREATE OR REPLACE FUNCTION es_correlation_id(metadata bytea) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT lower(convert_from(metadata, 'UTF8')::jsonb ->> 'correlation_id') $$;

CREATE INDEX IF NOT EXISTS es_events_correlation ON es_events (es_correlation_id(metadata));
