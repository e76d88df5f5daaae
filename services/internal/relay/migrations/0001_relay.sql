-- Where each relay of this database has published up to: every event at or
-- below position has been acknowledged by JetStream (or parked).
CREATE TABLE IF NOT EXISTS relay_checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Events a relay could never publish (no subject, not encodable, larger
-- than the server accepts). They are skipped so that the events after them
-- flow; an operator looks here.
CREATE TABLE IF NOT EXISTS relay_parked (
    name      text        NOT NULL,
    position  bigint      NOT NULL,
    event_id  text        NOT NULL,
    stream    text        NOT NULL,
    type      text        NOT NULL,
    error     text        NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, position)
);
