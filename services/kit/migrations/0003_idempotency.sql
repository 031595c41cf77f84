-- One idempotency mechanism for every service (kit::idempotency): a client's key, the
-- fingerprint of the request it was first used with, what that request produced, and when the
-- key may be used again. A key names one request: repeated with the same request it answers
-- the stored result; with a different one it is refused.
CREATE TABLE idempotency (
    key         TEXT        PRIMARY KEY,
    -- The operation, e.g. `billing.record-payment`, and a SHA-256 of the request's fields;
    -- NULL fingerprint: a key carried over from a service's own table, before this one.
    operation   TEXT        NOT NULL,
    fingerprint TEXT,
    result      JSONB,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);

CREATE INDEX idempotency_expiry ON idempotency (expires_at);
-- The pruner deletes published outbox rows and old inbox rows by age.
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX inbox_handled ON inbox (handled_at);
