-- Jobs and estimates (docs/estimates.md). A job groups a work order's lines under one concern
-- and carries the customer's decision on it; only APPROVED jobs reserve parts and are invoiced.
CREATE TABLE jobs (
    id               UUID PRIMARY KEY,
    work_order_id    UUID        NOT NULL REFERENCES work_orders (id),
    title            TEXT        NOT NULL,
    state            TEXT        NOT NULL CHECK (state IN ('PROPOSED', 'APPROVED', 'DECLINED', 'DEFERRED')),
    -- The job the order was opened for, authorised at intake.
    intake           BOOLEAN     NOT NULL DEFAULT false,
    decided_by       TEXT        NOT NULL DEFAULT '',
    decided_via      TEXT        NOT NULL DEFAULT ''
                         CHECK (decided_via IN ('', 'IN_PERSON', 'PHONE', 'EMAIL', 'LINK', 'INTAKE')),
    decided_at       TIMESTAMPTZ,
    decision_reason  TEXT        NOT NULL DEFAULT '',
    remind_after     DATE,
    estimate_version INTEGER     NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((state = 'PROPOSED') = (decided_at IS NULL)),
    CHECK ((state = 'DEFERRED') = (remind_after IS NOT NULL))
);

CREATE INDEX jobs_work_order ON jobs (work_order_id, created_at, id);
CREATE UNIQUE INDEX jobs_one_intake ON jobs (work_order_id) WHERE intake;

-- Orders opened before jobs existed: their lines form the intake job, authorised at intake.
INSERT INTO jobs (id, work_order_id, title, state, intake, decided_by, decided_via, decided_at, created_at)
SELECT gen_random_uuid(), id, left(complaint, 200), 'APPROVED', true, 'system', 'INTAKE', created_at, created_at
FROM work_orders;

ALTER TABLE part_lines ADD COLUMN job_id UUID REFERENCES jobs (id);
UPDATE part_lines SET job_id = jobs.id FROM jobs WHERE jobs.work_order_id = part_lines.work_order_id AND jobs.intake;
ALTER TABLE part_lines ALTER COLUMN job_id SET NOT NULL;
CREATE INDEX part_lines_job ON part_lines (job_id);

ALTER TABLE labor_lines ADD COLUMN job_id UUID REFERENCES jobs (id);
UPDATE labor_lines SET job_id = jobs.id FROM jobs WHERE jobs.work_order_id = labor_lines.work_order_id AND jobs.intake;
ALTER TABLE labor_lines ALTER COLUMN job_id SET NOT NULL;
CREATE INDEX labor_lines_job ON labor_lines (job_id);

-- A part line of a job not approved is QUOTED: priced for the estimate, not reserved.
ALTER TABLE part_lines DROP CONSTRAINT part_lines_reservation_state_check;
ALTER TABLE part_lines ADD CONSTRAINT part_lines_reservation_state_check
    CHECK (reservation_state IN ('QUOTED', 'PENDING', 'RESERVED', 'FAILED'));

ALTER TABLE work_orders DROP CONSTRAINT work_orders_status_check;
ALTER TABLE work_orders ADD CONSTRAINT work_orders_status_check CHECK (status IN
    ('OPEN', 'ESTIMATE', 'IN_PROGRESS', 'AWAITING_PARTS', 'COMPLETED', 'INVOICED', 'CANCELLED'));

-- Every estimate sent, as sent: what the customer was asked to agree to is never overwritten.
-- The approval link's token is kept as its SHA-256 only.
CREATE TABLE estimates (
    id                UUID PRIMARY KEY,
    work_order_id     UUID        NOT NULL REFERENCES work_orders (id),
    version           INTEGER     NOT NULL CHECK (version > 0),
    sent_by           TEXT        NOT NULL,
    sent_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    content           JSONB       NOT NULL,
    total_minor       BIGINT      NOT NULL,
    link_token_sha256 BYTEA       NOT NULL CONSTRAINT estimates_link_token UNIQUE,
    link_expires_at   TIMESTAMPTZ NOT NULL,
    -- Set when a job or line changes after sending, or a newer version is sent.
    outdated_at       TIMESTAMPTZ,
    CONSTRAINT estimates_version UNIQUE (work_order_id, version)
);
