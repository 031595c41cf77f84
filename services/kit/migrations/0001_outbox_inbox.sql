-- Events waiting to be published: written in the transaction of the change they describe.
CREATE TABLE outbox (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             UUID        NOT NULL UNIQUE,
    topic          TEXT        NOT NULL,
    aggregate_id   TEXT        NOT NULL,
    data           JSONB       NOT NULL,
    correlation_id TEXT        NOT NULL,
    traceparent    TEXT        NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at   TIMESTAMPTZ,
    attempts       INTEGER     NOT NULL DEFAULT 0,
    last_error     TEXT
);

-- The relay reads only what is still to be published, oldest first.
CREATE INDEX outbox_pending ON outbox (seq) WHERE published_at IS NULL;

-- Events already handled by this service: a redelivered event finds its id here.
CREATE TABLE inbox (
    event_id   UUID        PRIMARY KEY,
    topic      TEXT        NOT NULL,
    handled_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
