-- Chassis tables, present in every service database (SQLite dialect: uuids are 16-byte blobs,
-- times fixed-width UTC text; see docs/adr/0001).

CREATE TABLE outbox_events (
    sequence          INTEGER PRIMARY KEY AUTOINCREMENT,
    id                BLOB    NOT NULL UNIQUE,
    aggregate_type    TEXT    NOT NULL,
    aggregate_id      BLOB    NOT NULL,
    aggregate_version INTEGER NOT NULL CHECK (aggregate_version > 0),
    event_type        TEXT    NOT NULL,
    data              TEXT    NOT NULL,
    traceparent       TEXT,
    actor             TEXT,
    occurred_at       TEXT    NOT NULL,
    published_at      TEXT
);
CREATE INDEX outbox_events_unpublished ON outbox_events (sequence) WHERE published_at IS NULL;
CREATE INDEX outbox_events_by_aggregate ON outbox_events (aggregate_id, sequence);

CREATE TABLE inbox_events (
    consumer     TEXT NOT NULL,
    event_id     BLOB NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE consumer_aggregate_versions (
    consumer     TEXT    NOT NULL,
    aggregate_id BLOB    NOT NULL,
    version      INTEGER NOT NULL,
    PRIMARY KEY (consumer, aggregate_id)
);
