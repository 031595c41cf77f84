-- A retried "retry reservation" call carries the client's idempotency key: the key seen
-- again for the same work order answers with the order as it is, announcing nothing anew.
CREATE TABLE reservation_retries (
    work_order_id   UUID        NOT NULL REFERENCES work_orders (id),
    idempotency_key TEXT        NOT NULL,
    at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (work_order_id, idempotency_key)
);
