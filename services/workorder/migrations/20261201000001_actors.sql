-- Who moved a work order to its status and who last wrote its notes: the caller's user (or
-- API token) id from the access token, or 'system' for the saga. '' before sign-in existed.
ALTER TABLE work_orders ADD COLUMN status_changed_by TEXT NOT NULL DEFAULT '';
ALTER TABLE work_orders ADD COLUMN notes_updated_by TEXT NOT NULL DEFAULT '';
