-- Where a relay starts looking, in each JetStream stream, for the messages it
-- published beyond its checkpoint (see docs/adr/0054-exact-resume.md):
-- {"position": p, "streams": {"EVENTS": {"seq": n, "created": t}, ...}}, true
-- for checkpoint p only. It is written together with the position; when an
-- operator changes the position by hand the two disagree and the relay
-- searches the whole stream instead.
ALTER TABLE relay_checkpoints ADD COLUMN IF NOT EXISTS resume jsonb;
