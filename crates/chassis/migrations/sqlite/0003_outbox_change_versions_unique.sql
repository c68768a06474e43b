-- A change event is one version of its record: two change events for one record at one version
-- mean a write path did not lock the record's row, and must fail rather than be recorded. Audit
-- events (reads) are not changes: they carry the version the reader saw and may repeat it.
ALTER TABLE outbox_events ADD COLUMN kind TEXT NOT NULL DEFAULT 'change'
    CHECK (kind IN ('change', 'audit'));
-- Audit events so far are those published under a service's audit subject tree.
UPDATE outbox_events SET kind = 'audit' WHERE event_type LIKE 'emporium.%.audit.%';
CREATE UNIQUE INDEX outbox_events_change_version
    ON outbox_events (aggregate_id, aggregate_version) WHERE kind = 'change';
