-- The tenant settings the event handler needs (tax rate, payment terms, time zone). The
-- service writes them from its configuration at start, so that a handler running inside a
-- caller's transaction reads the same values the API uses. Exactly one row.
CREATE TABLE billing_settings (
    singleton          BOOLEAN     PRIMARY KEY DEFAULT true CHECK (singleton),
    currency           TEXT        NOT NULL,
    tax_rate_bp        INTEGER     NOT NULL CHECK (tax_rate_bp BETWEEN 0 AND 10000),
    payment_terms_days INTEGER     NOT NULL CHECK (payment_terms_days >= 0),
    timezone           TEXT        NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The last invoice number given out per year. It is incremented in the transaction that
-- creates the invoice: the row lock serialises numbering, and a rolled-back invoice gives
-- its number back, so numbers are gap-free within a year.
CREATE TABLE invoice_counters (
    year        INTEGER PRIMARY KEY,
    last_number INTEGER NOT NULL CHECK (last_number > 0)
);

CREATE TABLE invoices (
    id                UUID PRIMARY KEY,
    number            TEXT        NOT NULL CONSTRAINT invoices_number_unique UNIQUE,
    -- One invoice per work order, whatever happens to the event that announces it.
    work_order_id     UUID        NOT NULL CONSTRAINT invoices_work_order_unique UNIQUE,
    work_order_number TEXT        NOT NULL DEFAULT '',
    customer_id       UUID        NOT NULL,
    vehicle_id        UUID        NOT NULL,
    currency          TEXT        NOT NULL,
    tax_rate_bp       INTEGER     NOT NULL CHECK (tax_rate_bp BETWEEN 0 AND 10000),
    subtotal_minor    BIGINT      NOT NULL CHECK (subtotal_minor >= 0),
    tax_minor         BIGINT      NOT NULL CHECK (tax_minor >= 0),
    total_minor       BIGINT      NOT NULL,
    paid_minor        BIGINT      NOT NULL DEFAULT 0,
    issue_date        DATE        NOT NULL,
    due_date          DATE        NOT NULL,
    status            TEXT        NOT NULL
                      CHECK (status IN ('ISSUED', 'PARTIALLY_PAID', 'PAID', 'VOID')),
    void_reason       TEXT        NOT NULL DEFAULT '',
    voided_at         TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    version           BIGINT      NOT NULL DEFAULT 1,
    -- Last line of defence for the money rules the code enforces.
    CONSTRAINT invoices_total_is_sum CHECK (total_minor = subtotal_minor + tax_minor),
    CONSTRAINT invoices_paid_within_total CHECK (paid_minor >= 0 AND paid_minor <= total_minor),
    CONSTRAINT invoices_due_after_issue CHECK (due_date >= issue_date)
);

CREATE INDEX invoices_customer ON invoices (customer_id, id);
CREATE INDEX invoices_issue_date ON invoices (issue_date);
CREATE INDEX invoices_open_due ON invoices (due_date) WHERE status IN ('ISSUED', 'PARTIALLY_PAID');

CREATE TABLE invoice_lines (
    invoice_id       UUID    NOT NULL REFERENCES invoices (id),
    position         INTEGER NOT NULL,
    kind             TEXT    NOT NULL CHECK (kind IN ('PART', 'LABOR')),
    -- The work order line it was copied from.
    source_line_id   UUID    NOT NULL,
    part_id          UUID,
    description      TEXT    NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT  NOT NULL CHECK (unit_price_minor >= 0),
    line_total_minor BIGINT  NOT NULL CHECK (line_total_minor >= 0),
    tax_minor        BIGINT  NOT NULL CHECK (tax_minor >= 0),
    PRIMARY KEY (invoice_id, position)
);

CREATE TABLE payments (
    id              UUID PRIMARY KEY,
    invoice_id      UUID        NOT NULL REFERENCES invoices (id),
    amount_minor    BIGINT      NOT NULL CHECK (amount_minor > 0),
    currency        TEXT        NOT NULL,
    method          TEXT        NOT NULL CHECK (method IN ('CASH', 'CARD', 'BANK_TRANSFER', 'OTHER')),
    reference       TEXT        NOT NULL DEFAULT '',
    received_at     TIMESTAMPTZ NOT NULL,
    idempotency_key TEXT        CONSTRAINT payments_idempotency_key UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX payments_invoice ON payments (invoice_id, received_at, id);
