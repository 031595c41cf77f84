-- Canned jobs (docs/canned-jobs.md): a garage's named service packages, added to a work order
-- as a PROPOSED job in one action. Parts are referenced by id and priced when added.
CREATE TABLE canned_jobs (
    id         UUID PRIMARY KEY,
    name       TEXT        NOT NULL,
    -- [{"partId": "...", "quantity": 1}, ...]
    parts      JSONB       NOT NULL,
    -- [{"description": "Oil change", "minutes": 30}, ...]
    labor      JSONB       NOT NULL,
    updated_by TEXT        NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX canned_jobs_name ON canned_jobs (lower(name));
