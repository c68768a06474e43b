-- An event the bus refuses for good (e.g. larger than its maximum message size) is parked: the
-- relay sets parked_at and park_reason, stops trying to publish it, and publishes the events after
-- it. It stays in the event log (and ListEvents); published_at stays NULL.
ALTER TABLE outbox_events ADD COLUMN parked_at TIMESTAMPTZ;
ALTER TABLE outbox_events ADD COLUMN park_reason TEXT;
-- The relay reads events neither published nor parked.
DROP INDEX outbox_events_unpublished;
CREATE INDEX outbox_events_unpublished ON outbox_events (sequence)
    WHERE published_at IS NULL AND parked_at IS NULL;
