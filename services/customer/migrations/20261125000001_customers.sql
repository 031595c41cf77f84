CREATE TABLE customers (
    id                  UUID PRIMARY KEY,
    name                TEXT        NOT NULL,
    email               TEXT        NOT NULL DEFAULT '',
    phone               TEXT        NOT NULL DEFAULT '',
    address_line1       TEXT        NOT NULL DEFAULT '',
    address_line2       TEXT        NOT NULL DEFAULT '',
    address_postal_code TEXT        NOT NULL DEFAULT '',
    address_city        TEXT        NOT NULL DEFAULT '',
    address_country     TEXT        NOT NULL DEFAULT '',
    notes               TEXT        NOT NULL DEFAULT '',
    archived            BOOLEAN     NOT NULL DEFAULT false,
    idempotency_key     TEXT        CONSTRAINT customers_idempotency_key UNIQUE,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    version             BIGINT      NOT NULL DEFAULT 1
);

CREATE TABLE vehicles (
    id              UUID PRIMARY KEY,
    customer_id     UUID        NOT NULL REFERENCES customers (id),
    vin             TEXT        NOT NULL CONSTRAINT vehicles_vin_unique UNIQUE,
    make            TEXT        NOT NULL,
    model           TEXT        NOT NULL,
    year            INTEGER     NOT NULL,
    license_plate   TEXT        NOT NULL DEFAULT '',
    mileage         BIGINT      NOT NULL DEFAULT 0 CHECK (mileage >= 0),
    idempotency_key TEXT        CONSTRAINT vehicles_idempotency_key UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    version         BIGINT      NOT NULL DEFAULT 1
);

CREATE INDEX vehicles_customer ON vehicles (customer_id, id);
