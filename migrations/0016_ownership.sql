-- Operations that survive crashes and a second process (issue 16). Portable
-- SQL, as 0001_initial.sql.
--
-- owner / lease_until: the process instance that runs (or waits for) an
-- operation, and until when its lease holds; the owner renews it, and only an
-- expired lease is taken over by another process.
-- revision / dirty: every change to what an operation's message shows bumps
-- revision and sets dirty; whoever publishes the message clears dirty for the
-- revision it showed, so another replica's changes reach the owner's message.
-- queued_at: an approved operation waiting for its environment (on_busy =
-- "queue"), in order.
ALTER TABLE operations ADD COLUMN owner TEXT;
ALTER TABLE operations ADD COLUMN lease_until TEXT;
ALTER TABLE operations ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
ALTER TABLE operations ADD COLUMN dirty BIGINT NOT NULL DEFAULT 0;
ALTER TABLE operations ADD COLUMN queued_at TEXT;
CREATE INDEX operations_by_owner ON operations (owner, state);
CREATE INDEX operations_dirty ON operations (dirty);

-- A delivery is claimed while it is handled and marked done in the same
-- transaction as its effect; a failed handling releases the claim, so the
-- platform's retry is handled, and a claim whose handler died lapses.
ALTER TABLE deliveries ADD COLUMN state TEXT NOT NULL DEFAULT 'done';
ALTER TABLE deliveries ADD COLUMN claimed_until TEXT;
CREATE INDEX deliveries_by_time ON deliveries (seen_at);
