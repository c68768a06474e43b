-- Chassis tables, present in every service database.

-- The transactional outbox, kept forever: it is also the service's audit history.
CREATE TABLE outbox_events (
    sequence          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                UUID        NOT NULL UNIQUE,
    aggregate_type    TEXT        NOT NULL,
    aggregate_id      UUID        NOT NULL,
    aggregate_version BIGINT      NOT NULL CHECK (aggregate_version > 0),
    event_type        TEXT        NOT NULL,
    data              TEXT        NOT NULL,
    traceparent       TEXT,
    actor             TEXT,
    occurred_at       TIMESTAMPTZ NOT NULL,
    published_at      TIMESTAMPTZ
);
CREATE INDEX outbox_events_unpublished ON outbox_events (sequence) WHERE published_at IS NULL;
CREATE INDEX outbox_events_by_aggregate ON outbox_events (aggregate_id, sequence);

-- Events a consumer has handled, for de-duplication by event id.
CREATE TABLE inbox_events (
    consumer     TEXT        NOT NULL,
    event_id     UUID        NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

-- The last aggregate version each consumer applied, for per-aggregate ordering.
CREATE TABLE consumer_aggregate_versions (
    consumer     TEXT   NOT NULL,
    aggregate_id UUID   NOT NULL,
    version      BIGINT NOT NULL,
    PRIMARY KEY (consumer, aggregate_id)
);
