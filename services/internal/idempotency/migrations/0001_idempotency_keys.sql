-- Answers to requests sent with an Idempotency-Key, kept for the key's
-- lifetime. A row is first a claim (state in_flight, held until
-- locked_until) and becomes the stored answer (state done) when the request
-- finishes with a status below 500.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope        text        NOT NULL,  -- "<METHOD> <path>"
    key          text        NOT NULL,
    fingerprint  bytea       NOT NULL,  -- sha256 of the request body
    state        text        NOT NULL CHECK (state IN ('in_flight', 'done')),
    claim_token  uuid,                  -- the claimant's token while in_flight
    locked_until timestamptz,           -- in_flight claims expire (crashed holder)
    status       integer,
    headers      jsonb,
    body         bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at ON idempotency_keys (expires_at);
