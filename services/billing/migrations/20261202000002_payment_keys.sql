-- Payments use the kit's idempotency table (kit::idempotency) instead of their own unique
-- key column: keys of the last 24 hours move there (without a fingerprint: a repeat of such a
-- key replays the payment, as before), and the column stays as the record of which key
-- recorded a payment, no longer unique (an expired key may name a new payment).
INSERT INTO idempotency (key, operation, fingerprint, result, created_at, expires_at)
SELECT idempotency_key, 'billing.record-payment', NULL, to_jsonb(id::text), created_at,
       created_at + interval '24 hours'
FROM payments
WHERE idempotency_key IS NOT NULL AND created_at > now() - interval '24 hours'
ON CONFLICT (key) DO NOTHING;

ALTER TABLE payments DROP CONSTRAINT payments_idempotency_key;
CREATE INDEX payments_idempotency_key ON payments (idempotency_key) WHERE idempotency_key IS NOT NULL;
