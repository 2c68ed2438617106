-- Deckhand's store. Portable SQL: it runs unchanged on SQLite and PostgreSQL
-- (through sqlx's Any driver), so there is no AUTOINCREMENT/SERIAL — ids
-- come from the counters table — and times are RFC 3339 UTC text.

CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('operation', 0);
INSERT INTO counters (name, value) VALUES ('release', 0);

-- One row per accepted request. command_line is the canonical request,
-- parsed again when the operation is loaded, so stored operations are
-- re-validated against the current catalog.
CREATE TABLE operations (
    id BIGINT PRIMARY KEY,
    command TEXT NOT NULL,
    env TEXT,
    command_line TEXT NOT NULL,
    params_hash TEXT NOT NULL,
    plan TEXT NOT NULL,
    requester TEXT NOT NULL,
    platform TEXT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    approvals_needed BIGINT NOT NULL,
    approver_roles TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    started_at TEXT,
    finished_at TEXT,
    outcome TEXT
);
CREATE INDEX operations_by_state ON operations (state);
CREATE INDEX operations_by_env ON operations (env, id);

-- The step journal: a step is written before it runs, so an interrupted
-- operation shows where it stopped.
CREATE TABLE operation_steps (
    op_id BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    detail TEXT NOT NULL,
    PRIMARY KEY (op_id, idx)
);

-- The chat message that shows an operation, per platform, so it can be
-- edited and so reactions on it can be recognised.
CREATE TABLE operation_messages (
    op_id BIGINT NOT NULL,
    platform TEXT NOT NULL,
    channel TEXT NOT NULL,
    message_ref TEXT NOT NULL,
    PRIMARY KEY (op_id, platform)
);
CREATE INDEX operation_messages_by_ref ON operation_messages (platform, channel, message_ref);

CREATE TABLE approvals (
    op_id BIGINT NOT NULL,
    approver TEXT NOT NULL,
    params_hash TEXT NOT NULL,
    platform TEXT NOT NULL,
    created_at TEXT NOT NULL,
    withdrawn_at TEXT,
    PRIMARY KEY (op_id, approver)
);

-- What each deploy or rollback changed, so a rollback knows where to go.
CREATE TABLE releases (
    id BIGINT PRIMARY KEY,
    env TEXT NOT NULL,
    service TEXT NOT NULL,
    op_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    git_ref TEXT,
    image_before TEXT,
    digest_before TEXT,
    image_after TEXT NOT NULL,
    digest_after TEXT,
    actor TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX releases_by_service ON releases (env, service, id);

-- One running mutating operation per environment: the primary key is the lock.
CREATE TABLE environment_locks (
    env TEXT PRIMARY KEY,
    op_id BIGINT NOT NULL,
    command TEXT NOT NULL,
    holder TEXT NOT NULL,
    acquired_at TEXT NOT NULL
);

-- A person's /lock, or the hold a rollback leaves.
CREATE TABLE environment_holds (
    env TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    holder TEXT NOT NULL,
    reason TEXT NOT NULL,
    op_id BIGINT,
    created_at TEXT NOT NULL,
    expires_at TEXT
);

-- Deliveries already handled (Slack retries, gateway replays, webhooks).
CREATE TABLE deliveries (
    delivery_key TEXT PRIMARY KEY,
    seen_at TEXT NOT NULL
);

-- The append-only, hash-chained audit log. Each entry's hash covers its
-- contents and the previous entry's hash; audit_head holds the newest, so
-- deleting the last entry is detected too.
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    platform TEXT NOT NULL,
    channel TEXT NOT NULL,
    command TEXT NOT NULL,
    env TEXT NOT NULL,
    op_id BIGINT NOT NULL,
    event TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_by_env ON audit_log (env, seq);

CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    last_hash TEXT NOT NULL
);
INSERT INTO audit_head (id, last_seq, last_hash) VALUES (1, 0, 'genesis');
