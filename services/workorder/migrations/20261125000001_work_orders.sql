-- The last work order number handed out per year: numbers are allocated in the creating
-- transaction (the row lock serialises creators), so they are gap-free and never repeat.
CREATE TABLE work_order_counters (
    year        INTEGER PRIMARY KEY,
    last_number BIGINT NOT NULL CHECK (last_number > 0)
);

CREATE TABLE work_orders (
    id                  UUID PRIMARY KEY,
    number              TEXT        NOT NULL CONSTRAINT work_orders_number_unique UNIQUE,
    customer_id         UUID        NOT NULL,
    vehicle_id          UUID        NOT NULL,
    complaint           TEXT        NOT NULL,
    odometer_km         BIGINT      NOT NULL CHECK (odometer_km >= 0),
    notes               TEXT        NOT NULL DEFAULT '',
    status              TEXT        NOT NULL CHECK (status IN
                            ('OPEN', 'IN_PROGRESS', 'AWAITING_PARTS', 'COMPLETED', 'INVOICED', 'CANCELLED')),
    -- The tenant's currency when the order was opened; every amount of the order is in it.
    currency            TEXT        NOT NULL,
    started_at          TIMESTAMPTZ,
    completed_at        TIMESTAMPTZ,
    invoiced_at         TIMESTAMPTZ,
    cancelled_at        TIMESTAMPTZ,
    cancellation_reason TEXT        NOT NULL DEFAULT '',
    invoice_id          UUID,
    idempotency_key     TEXT        CONSTRAINT work_orders_idempotency_key UNIQUE,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    version             BIGINT      NOT NULL DEFAULT 1
);

CREATE INDEX work_orders_customer ON work_orders (customer_id, id);
CREATE INDEX work_orders_vehicle ON work_orders (vehicle_id, id);
CREATE INDEX work_orders_status ON work_orders (status, id);

-- Line totals and order totals are not stored: they are computed from these rows in one place
-- (domain::totals), so they cannot drift from the lines.
CREATE TABLE part_lines (
    id                UUID PRIMARY KEY,
    work_order_id     UUID        NOT NULL REFERENCES work_orders (id),
    part_id           UUID        NOT NULL,
    quantity          INTEGER     NOT NULL CHECK (quantity > 0),
    reservation_state TEXT        NOT NULL CHECK (reservation_state IN ('PENDING', 'RESERVED', 'FAILED')),
    failure_reason    TEXT        NOT NULL DEFAULT '',
    sku               TEXT        NOT NULL DEFAULT '',
    name              TEXT        NOT NULL DEFAULT '',
    unit_price_minor  BIGINT      CHECK (unit_price_minor >= 0),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX part_lines_work_order ON part_lines (work_order_id, id);

CREATE TABLE labor_lines (
    id                UUID PRIMARY KEY,
    work_order_id     UUID        NOT NULL REFERENCES work_orders (id),
    description       TEXT        NOT NULL,
    technician        TEXT        NOT NULL DEFAULT '',
    minutes           INTEGER     NOT NULL CHECK (minutes > 0),
    hourly_rate_minor BIGINT      NOT NULL CHECK (hourly_rate_minor >= 0),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX labor_lines_work_order ON labor_lines (work_order_id, id);
