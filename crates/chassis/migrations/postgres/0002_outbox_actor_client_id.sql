-- Every event names the OAuth client of the call that made the change, next to its token subject
-- (`actor`). Nullable: events recorded before this column have none.
ALTER TABLE outbox_events ADD COLUMN actor_client_id TEXT;
