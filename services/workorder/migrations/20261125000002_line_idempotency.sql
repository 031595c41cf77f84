-- Retried "add line" calls carry the client's idempotency key: a key repeated for the same
-- work order adds no second line. NULL (no key) never conflicts.
ALTER TABLE part_lines ADD COLUMN idempotency_key TEXT;
ALTER TABLE part_lines
    ADD CONSTRAINT part_lines_idempotency_key UNIQUE (work_order_id, idempotency_key);

ALTER TABLE labor_lines ADD COLUMN idempotency_key TEXT;
ALTER TABLE labor_lines
    ADD CONSTRAINT labor_lines_idempotency_key UNIQUE (work_order_id, idempotency_key);
