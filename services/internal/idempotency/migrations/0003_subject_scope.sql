-- Keys are scoped by the caller's subject as well as method and path
-- (ADR 0121): behind the gateway two customers may pick the same key for
-- the same path, and each must get its own command. Requests that reach a
-- service directly carry no subject; they, and every row stored before
-- this migration, have the empty subject, so those rows keep answering
-- the same requests as before.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS subject text NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys DROP CONSTRAINT IF EXISTS idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (scope, key, subject);
