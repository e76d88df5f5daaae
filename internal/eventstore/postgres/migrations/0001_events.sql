-- The event store: one row per event, keyed by its place in the global order.
CREATE TABLE IF NOT EXISTS es_events (
    position       bigint      PRIMARY KEY,
    event_id       uuid        NOT NULL,
    stream         text        NOT NULL,
    version        bigint      NOT NULL,
    type           text        NOT NULL,
    schema_version integer     NOT NULL,
    data           bytea       NOT NULL,
    metadata       bytea       NOT NULL,
    recorded_at    timestamptz NOT NULL,
    CONSTRAINT es_events_stream_version UNIQUE (stream, version),
    CONSTRAINT es_events_event_id UNIQUE (event_id),
    CONSTRAINT es_events_position_positive CHECK (position > 0),
    CONSTRAINT es_events_version_positive CHECK (version > 0)
);
