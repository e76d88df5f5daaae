-- Only final answers are kept under a key (ADR 0048): 2xx, and 4xx that a
-- retry would get again. Earlier versions also stored transient answers
-- below 500 (408, 425, 429, and 409 version-conflict from contention), so
-- that a client retrying with the same key got the same refusal until the
-- key expired. Forget those; a retry then runs again under the same
-- derived command id, which the command handlers apply at most once.
-- (Answers that carried Retry-After cannot be told apart here: that header
-- was never stored.)
DELETE FROM idempotency_keys
WHERE state = 'done'
  AND (status < 200
       OR status BETWEEN 300 AND 399
       OR status >= 500
       OR status IN (408, 425, 429)
       OR (status = 409 AND position('/version-conflict"'::bytea IN body) > 0));
