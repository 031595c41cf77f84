-- Parts and their quantities. The quantities are a cache of the ledger (`movements`): every
-- change of either writes a movement row in the same transaction, and `Reconcile` proves
-- the two agree. The checks make overselling impossible even for a buggy writer.
CREATE TABLE parts (
    id                 UUID PRIMARY KEY,
    sku                TEXT        NOT NULL CONSTRAINT parts_sku_unique UNIQUE,
    name               TEXT        NOT NULL,
    description        TEXT        NOT NULL DEFAULT '',
    category           TEXT        NOT NULL DEFAULT '',
    unit_cost_minor    BIGINT      NOT NULL CHECK (unit_cost_minor >= 0),
    unit_price_minor   BIGINT      NOT NULL CHECK (unit_price_minor >= 0),
    currency           TEXT        NOT NULL,
    location           TEXT        NOT NULL DEFAULT '',
    reorder_point      INTEGER     NOT NULL CHECK (reorder_point >= 0),
    reorder_quantity   INTEGER     NOT NULL CHECK (reorder_quantity >= 0),
    active             BOOLEAN     NOT NULL DEFAULT true,
    quantity_on_hand   INTEGER     NOT NULL DEFAULT 0 CHECK (quantity_on_hand >= 0),
    quantity_reserved  INTEGER     NOT NULL DEFAULT 0 CHECK (quantity_reserved >= 0),
    -- Low stock has been raised for the current dip below the reorder point; cleared when
    -- the available quantity rises above it again, so the event fires once per crossing.
    low_stock_raised   BOOLEAN     NOT NULL DEFAULT false,
    idempotency_key    TEXT        CONSTRAINT parts_idempotency_key UNIQUE,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    version            BIGINT      NOT NULL DEFAULT 1,
    CONSTRAINT parts_reserved_within_on_hand CHECK (quantity_reserved <= quantity_on_hand)
);

CREATE INDEX parts_category ON parts (lower(category), sku);

-- The stock ledger: one row per change of quantity on hand or reserved, never updated.
CREATE TABLE movements (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              UUID        NOT NULL UNIQUE,
    part_id         UUID        NOT NULL REFERENCES parts (id),
    kind            TEXT        NOT NULL
        CHECK (kind IN ('receipt', 'adjustment', 'reservation', 'release', 'consumption')),
    on_hand_delta   INTEGER     NOT NULL,
    reserved_delta  INTEGER     NOT NULL,
    work_order_id   UUID,
    line_id         UUID,
    reason          TEXT        NOT NULL DEFAULT '',
    actor           TEXT        NOT NULL DEFAULT '',
    idempotency_key TEXT        CONSTRAINT movements_idempotency_key UNIQUE,
    at              TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX movements_part ON movements (part_id, seq);

-- What is reserved for which work order line. A line is reserved at most once; its row
-- moves from `reserved` to `released` (cancelled) or `consumed` (completed), never back.
CREATE TABLE reservations (
    work_order_id    UUID        NOT NULL,
    line_id          UUID        NOT NULL,
    part_id          UUID        NOT NULL REFERENCES parts (id),
    quantity         INTEGER     NOT NULL CHECK (quantity > 0),
    status           TEXT        NOT NULL CHECK (status IN ('reserved', 'released', 'consumed')),
    -- Snapshots at reservation time: the price the work order charges.
    sku              TEXT        NOT NULL,
    name             TEXT        NOT NULL,
    unit_price_minor BIGINT      NOT NULL,
    currency         TEXT        NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (work_order_id, line_id)
);

CREATE INDEX reservations_part ON reservations (part_id) WHERE status = 'reserved';

-- Work orders that were completed or cancelled: a reservation request arriving after them
-- (a late or redelivered event) must not lock stock forever.
CREATE TABLE closed_work_orders (
    work_order_id UUID        PRIMARY KEY,
    outcome       TEXT        NOT NULL CHECK (outcome IN ('completed', 'cancelled')),
    closed_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Reservation requests already answered, by event id: the same event handled twice
-- answers once, while a request announced again under a new event id is tried again.
CREATE TABLE reservation_requests (
    event_id      UUID        PRIMARY KEY,
    work_order_id UUID        NOT NULL,
    succeeded     BOOLEAN     NOT NULL,
    handled_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
