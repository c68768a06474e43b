-- Pruning deletes a consumer's inbox rows older than the duplicate window, in batches; without
-- this index every batch scans all of that consumer's rows.
CREATE INDEX inbox_events_consumer_processed_at ON inbox_events (consumer, processed_at);
