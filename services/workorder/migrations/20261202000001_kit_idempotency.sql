-- Adding lines and retrying reservations use the kit's idempotency table (kit::idempotency)
-- instead of the service's own keys: keys of the last 24 hours move there (without a
-- fingerprint: a repeat of such a key answers the order, as before), the lines' key columns
-- stay as history without their constraints, and reservation_retries goes.
INSERT INTO idempotency (key, operation, fingerprint, result, created_at, expires_at)
SELECT idempotency_key, 'workorder.add-part-line', NULL, to_jsonb(id::text), created_at,
       created_at + interval '24 hours'
FROM part_lines WHERE idempotency_key IS NOT NULL AND created_at > now() - interval '24 hours'
ON CONFLICT (key) DO NOTHING;

INSERT INTO idempotency (key, operation, fingerprint, result, created_at, expires_at)
SELECT idempotency_key, 'workorder.add-labor-line', NULL, to_jsonb(id::text), created_at,
       created_at + interval '24 hours'
FROM labor_lines WHERE idempotency_key IS NOT NULL AND created_at > now() - interval '24 hours'
ON CONFLICT (key) DO NOTHING;

INSERT INTO idempotency (key, operation, fingerprint, result, created_at, expires_at)
SELECT idempotency_key, 'workorder.retry-reservation', NULL, to_jsonb(work_order_id::text), at,
       at + interval '24 hours'
FROM reservation_retries WHERE at > now() - interval '24 hours'
ON CONFLICT (key) DO NOTHING;

ALTER TABLE part_lines DROP CONSTRAINT part_lines_idempotency_key;
ALTER TABLE labor_lines DROP CONSTRAINT labor_lines_idempotency_key;
DROP TABLE reservation_retries;
