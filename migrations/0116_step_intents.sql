-- The intent journal of steps that change a target: before each stage of a
-- change (stopping a container, renaming it, setting a password, swapping a
-- database...) the step writes what it is about to do and what is needed to
-- finish or undo it, so recovery can settle an interrupted operation whatever
-- the stage. One row per operation, step and sub-step (one container of a
-- replacement, say); it is updated as the sub-step advances and deleted once
-- it is settled. `data` is JSON without secrets; `sealed` holds the secrets
-- recovery needs (a rotation's passwords), encrypted with DECKHAND_STATE_KEY,
-- never plaintext. Portable SQL, as 0001_initial.sql.

CREATE TABLE step_intents (
    op_id BIGINT NOT NULL,
    step_idx BIGINT NOT NULL,
    sub_step TEXT NOT NULL,
    kind TEXT NOT NULL,
    stage TEXT NOT NULL,
    data TEXT NOT NULL,
    sealed TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (op_id, step_idx, sub_step)
);
