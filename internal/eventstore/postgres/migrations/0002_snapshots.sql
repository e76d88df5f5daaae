-- Snapshots of aggregate states, an optimisation of loading long streams:
-- the state of stream after its event at version, encoded by the codec
-- whose version is schema. One row per stream and schema; deleting rows
-- only makes loading slower (docs/adr/0150-snapshots-of-long-streams.md).
CREATE TABLE IF NOT EXISTS es_snapshots (
    stream   text        NOT NULL,
    schema   integer     NOT NULL,
    version  bigint      NOT NULL,
    data     jsonb       NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, schema),
    CONSTRAINT es_snapshots_version_positive CHECK (version > 0)
);
