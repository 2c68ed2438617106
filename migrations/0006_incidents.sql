-- PagerDuty incidents Deckhand answered: each maps to the diagnose operation
-- whose message shows the report, so acknowledging or resolving the incident
-- edits that message's header. Portable SQL, as 0001_initial.sql. Numbered
-- after the issue that added it, so parallel branches do not collide.

CREATE TABLE incidents (
    incident_id TEXT PRIMARY KEY,
    op_id BIGINT NOT NULL,
    env TEXT NOT NULL,
    service_id TEXT NOT NULL,
    number BIGINT,
    title TEXT NOT NULL,
    html_url TEXT NOT NULL,
    status TEXT NOT NULL,
    status_by TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX incidents_by_operation ON incidents (op_id);
