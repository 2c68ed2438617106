-- Broken on purpose (image variant migrate-fails): there is no users table.
ALTER TABLE tasks ADD COLUMN assignee_id integer REFERENCES users (id);
