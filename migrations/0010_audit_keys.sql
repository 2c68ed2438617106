-- The keyed audit chain (issue 10). Each entry records how its MAC was made,
-- so a verifier knows which entries a key protects: mac_alg is 'sha256' (the
-- plain hash chain of 0001, for entries written without a key; every entry
-- before this migration) or 'hmac-sha256'; key_id names the HMAC key (the
-- first 8 hex digits of the key's SHA-256), empty for unkeyed entries. Both
-- are covered by the keyed MAC, so relabelling an entry breaks it.
-- Portable SQL, as 0001_initial.sql.

ALTER TABLE audit_log ADD COLUMN mac_alg TEXT NOT NULL DEFAULT 'sha256';
ALTER TABLE audit_log ADD COLUMN key_id TEXT NOT NULL DEFAULT '';

-- `deckhand audit export --since` reads entries by time.
CREATE INDEX audit_log_by_time ON audit_log (at, seq);
