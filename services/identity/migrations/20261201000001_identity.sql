-- The tenant's people, their sessions and refresh tokens, integrations' API tokens, the
-- sign-in throttle and the audit trail of every service.

CREATE TABLE users (
    id                   UUID PRIMARY KEY,
    -- Stored as given; unique case-insensitively (users_email_unique below).
    email                TEXT        NOT NULL,
    display_name         TEXT        NOT NULL,
    role                 TEXT        NOT NULL
        CHECK (role IN ('OWNER', 'SERVICE_ADVISOR', 'TECHNICIAN', 'PARTS_MANAGER', 'ACCOUNTANT')),
    active               BOOLEAN     NOT NULL DEFAULT true,
    -- Argon2id PHC string.
    password_hash        TEXT        NOT NULL,
    must_change_password BOOLEAN     NOT NULL DEFAULT true,
    idempotency_key      TEXT        CONSTRAINT users_idempotency_key UNIQUE,
    last_sign_in_at      TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    version              BIGINT      NOT NULL DEFAULT 1
);

CREATE UNIQUE INDEX users_email_unique ON users (lower(email));

CREATE TABLE sessions (
    id             UUID PRIMARY KEY,
    user_id        UUID        NOT NULL REFERENCES users (id),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    client_address TEXT        NOT NULL DEFAULT '',
    revoked_at     TIMESTAMPTZ,
    revoke_reason  TEXT
);

CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;

-- Only the SHA-256 of a refresh token is kept: the database never holds one that works.
CREATE TABLE refresh_tokens (
    hash       BYTEA PRIMARY KEY,
    session_id UUID        NOT NULL REFERENCES sessions (id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);

CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE api_tokens (
    id           UUID PRIMARY KEY,
    name         TEXT        NOT NULL,
    role         TEXT        NOT NULL
        CHECK (role IN ('OWNER', 'SERVICE_ADVISOR', 'TECHNICIAN', 'PARTS_MANAGER', 'ACCOUNTANT')),
    -- SHA-256 of the secret part of `cet_<id>_<secret>`.
    secret_hash  BYTEA       NOT NULL,
    created_by   UUID        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);

-- Failed sign-ins per key (`account:<lower(email)>`, `address:<client address>`), in the
-- database so that every replica refuses the same attempts.
CREATE TABLE sign_in_throttle (
    key             TEXT PRIMARY KEY,
    failures        INTEGER     NOT NULL,
    last_failure_at TIMESTAMPTZ NOT NULL,
    locked_until    TIMESTAMPTZ NOT NULL
);

CREATE TABLE audit_log (
    id             UUID PRIMARY KEY,
    at             TIMESTAMPTZ NOT NULL,
    -- A user or API token id, `system`, or empty (a failed sign-in of an unknown email).
    actor_id       TEXT        NOT NULL,
    action         TEXT        NOT NULL,
    target         TEXT        NOT NULL,
    service        TEXT        NOT NULL,
    details        JSONB       NOT NULL DEFAULT '{}',
    client_address TEXT        NOT NULL DEFAULT ''
);

CREATE INDEX audit_log_newest ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_actor ON audit_log (actor_id, at DESC, id DESC);
CREATE INDEX audit_log_action ON audit_log (action, at DESC, id DESC);
