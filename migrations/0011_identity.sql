-- One person, one identity: the platform account behind each request and
-- approval, so roles that come from platform groups can be looked up again
-- when an approval is counted and when the operation starts, and the
-- operating-system user behind a console request, so every audit entry the
-- requester acts in names it. Rows written before this migration keep NULL
-- and are judged by the person's name, as they were.
ALTER TABLE operations ADD COLUMN requester_id TEXT;
ALTER TABLE operations ADD COLUMN requester_os TEXT;
ALTER TABLE approvals ADD COLUMN approver_id TEXT;
