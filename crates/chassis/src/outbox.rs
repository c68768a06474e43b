//! The transactional outbox. A service records its event in the same transaction as the change;
//! the event log stays in the service's database as its audit history; the [`Relay`] publishes
//! unpublished events in order, marks them, and resumes after a crash. Publishing is
//! de-duplicated by event id, so a crash between publish and mark never yields a second delivery.
//! An event the bus refuses for good (too large) is parked with its reason instead of blocking
//! every later event; a stream deleted under the relay is created again.
//!
//! The relay wakes when a transaction that recorded events commits: in this process through the
//! database's signal, and on PostgreSQL from any replica through `LISTEN` on
//! [`OUTBOX_CHANNEL`](crate::storage::OUTBOX_CHANNEL). It also polls, so a lost listener (or a
//! replica that stopped holding the relay lock) delays events by at most the poll interval.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgListener;
use sqlx::query::Query;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{Bus, BusError, OutgoingMessage, StreamSpec};
use emporium_proto::EventType;

use crate::cloudevents::{self, CloudEvent};
use crate::error::Error;
use crate::event_data;
use crate::on_backend;
use crate::storage::{
    self, Backend, BackendConnection, ConstraintViolation, Database, Table, Timestamp, Transaction,
    Value, constraint_violation,
};

/// How long the bus remembers a message id to drop a republish, and consumers keep the event ids
/// they handled (the inbox): far longer than any relay restart, so a crash between publish and
/// mark is always caught as a duplicate.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// An event to record with a change.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// e.g. `product`.
    pub aggregate_type: &'static str,
    pub aggregate_id: Uuid,
    /// The aggregate's version after the change (for an audit event, the version it saw).
    pub aggregate_version: i64,
    /// Full CloudEvents type, e.g. `emporium.catalog.product.created`.
    pub event_type: &'static str,
    pub kind: EventKind,
    pub data: serde_json::Value,
    /// Who made the change. Services set it from the verified [`Caller`](crate::auth::Caller)
    /// of the call; their use cases take an [`Actor`] so that no change can forget it.
    pub actor: Option<Actor>,
}

impl NewEvent {
    /// The event `event_type` about the record `aggregate_id` at `aggregate_version`, carrying
    /// `data` (its proto3 JSON mapping). The type is a constant generated from the contract, so
    /// only a declared event, with its declared message, can be recorded; whether it is a change
    /// or an audit record and the aggregate's name come from the type
    /// (`emporium.<service>[.audit].<aggregate>.<action>`). The actor is set by the caller.
    pub fn new<M: prost::Message + prost::Name>(
        event_type: EventType<M>,
        aggregate_id: Uuid,
        aggregate_version: i64,
        data: &M,
    ) -> NewEvent {
        let data = event_data::to_json(data);
        NewEvent::with_json(event_type.name(), aggregate_id, aggregate_version, data)
    }

    /// The change event `event_type` carrying `record`, the resource's state after the change,
    /// about the record and at the version the message names (its `id` and `version`).
    pub fn change<M: prost::Message + prost::Name>(
        event_type: EventType<M>,
        record: &M,
    ) -> NewEvent {
        let data = event_data::to_json(record);
        let (id, version) = record_key(&data);
        NewEvent::with_json(event_type.name(), id, version, data)
    }

    /// The deletion event `event_type` carrying `record`, the resource as it was: a deletion is
    /// one more version of the record, so the event and its data are at the version after the
    /// one `record` names.
    pub fn deletion<M: prost::Message + prost::Name>(
        event_type: EventType<M>,
        record: &M,
    ) -> NewEvent {
        let mut data = event_data::to_json(record);
        let (id, version) = record_key(&data);
        data["version"] = serde_json::Value::String((version + 1).to_string());
        NewEvent::with_json(event_type.name(), id, version + 1, data)
    }

    fn with_json(
        event_type: &'static str,
        aggregate_id: Uuid,
        aggregate_version: i64,
        data: serde_json::Value,
    ) -> NewEvent {
        let parts = contract::events::parse_event_type(event_type)
            .expect("generated event types are well formed: build.rs parsed them");
        NewEvent {
            aggregate_type: parts.aggregate,
            aggregate_id,
            aggregate_version,
            event_type,
            kind: if parts.audit {
                EventKind::Audit
            } else {
                EventKind::Change
            },
            data,
            actor: None,
        }
    }
}

/// The `id` and `version` of a resource message's JSON mapping. Every resource message has a
/// `string id` and an `int64 version` (the contract lint's `resource-standard-fields` and
/// `name_field: "id"`), a string in the mapping; the id is a UUID, formatted from the record's
/// own, so a message without both is a bug.
fn record_key(data: &serde_json::Value) -> (Uuid, i64) {
    let id = data["id"].as_str().and_then(|id| Uuid::parse_str(id).ok());
    let version = data["version"]
        .as_str()
        .and_then(|version| version.parse().ok());
    id.zip(version)
        .expect("a resource message has a UUID `id` and an int64 `version`")
}

/// Whether an event is a change of its record or only an audit record (e.g. a read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// One version of its record: at most one change event per record and version, which
    /// [`record`] enforces (a write path that did not lock the record's row fails there).
    Change,
    /// Not a change: carries the version it saw, which other audit events may share.
    Audit,
}

/// Who made a change: the subject of the verified token of the call and the OAuth client the
/// token was issued to. Built from a [`Caller`](crate::auth::Caller) with [`Actor::from`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The account id, or the client id for a client-credentials token.
    pub subject: String,
    /// The OAuth client the token was issued to.
    pub client_id: String,
}

/// One row of the event log.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct EventRecord {
    pub sequence: i64,
    pub id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
    pub event_type: String,
    pub data: String,
    pub traceparent: Option<String>,
    /// Token subject of who made the change.
    pub actor: Option<String>,
    /// OAuth client of who made the change (`None` for events recorded before it was kept).
    pub actor_client_id: Option<String>,
    pub occurred_at: Timestamp,
    pub published_at: Option<Timestamp>,
    /// When the relay gave up on the event because the bus refuses it for good (it is then never
    /// published). Queries that do not select it read `None`.
    #[sqlx(default)]
    pub parked_at: Option<Timestamp>,
    /// Why the bus refuses the event, e.g. that it exceeds the bus's maximum message size.
    #[sqlx(default)]
    pub park_reason: Option<String>,
}

/// Where a service's events go on the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRoute {
    /// The service name, e.g. `catalog`: CloudEvents `source` is `/emporium/catalog`.
    pub service: &'static str,
    /// First token of bus subjects and prefix of stream names; `emporium` unless isolated (tests
    /// give each run its own namespace on a shared NATS server).
    pub namespace: String,
}

/// How often the relay looks at the outbox when nothing woke it.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Publishes the outbox to the bus until cancelled.
#[derive(Debug)]
pub struct Relay {
    database: Database,
    bus: Bus,
    route: EventRoute,
    batch_size: i64,
    poll_interval: Duration,
    publish_timeout: Duration,
}

/// How long the relay waits for the bus to acknowledge one batch before it gives up and retries
/// the batch. It bounds how long the PostgreSQL relay holds its transaction (and advisory lock)
/// open across the bus round trip.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// What became of one batch: the events the bus stored and those it refuses for good.
#[derive(Debug, Default)]
struct BatchOutcome {
    published: Vec<Uuid>,
    parked: Vec<(Uuid, String)>,
}

impl BatchOutcome {
    fn merge(&mut self, other: BatchOutcome) {
        self.published.extend(other.published);
        self.parked.extend(other.parked);
    }
}

/// What one turn of the relay did: how many events it settled, and whether it stopped with more
/// perhaps left (a full batch last), so that the relay looks again at once.
#[derive(Debug, Default)]
struct Drained {
    n_settled: usize,
    more_left: bool,
}

/// How many batches the PostgreSQL relay publishes and marks in one transaction, each taken by
/// the bus while the one before is marked: the pipeline's depth in time, bounding how long one
/// relay holds the lock.
pub const BATCHES_PER_TRANSACTION: usize = 8;

/// Why a publish failed: the bus refuses the message for good, or it may work on a retry.
#[derive(Debug)]
enum PublishFailure {
    /// Permanent (e.g. larger than the bus's maximum message size): retrying cannot help.
    Refused(String),
    /// Transient (bus down, stream missing, timeout): the batch is retried as it is.
    Failed(anyhow::Error),
}

/// The outbox's columns that a recorded event sets, in [`OutboxRow::bind`]'s order: a literal, for
/// `concat!`.
macro_rules! outbox_columns {
    () => {
        "id, aggregate_type, aggregate_id, aggregate_version, event_type, kind, data, \
         traceparent, actor, actor_client_id, occurred_at"
    };
}
const N_OUTBOX_COLUMNS: usize = 11;

/// Records `event` in `tx`: it becomes visible (to the relay and the audit history) exactly when
/// the change commits, and never if it rolls back. Returns the event id. A second change event
/// for one record at one version is refused: two writers changed the record without locking its
/// row, and one of them must fail rather than publish a version twice.
///
/// It runs in a `record` span (kind producer, `messaging.operation.type` `create`), a child of
/// the transaction's span; the event carries that span's context as its `traceparent`, so
/// consumers continue the trace from here.
pub async fn record(tx: &mut Transaction, event: NewEvent) -> Result<Uuid, Error> {
    let event_id = Uuid::now_v7();
    let span = record_span(tx, event_id, &event);
    tracing::Instrument::instrument(insert_event(tx, event_id, event), span).await
}

/// [`record`]'s span, a child of the transaction's.
fn record_span(tx: &Transaction, event_id: Uuid, event: &NewEvent) -> tracing::Span {
    let parent = tx.span().clone();
    tracing::info_span!(
        parent: parent.id().or_else(|| tracing::Span::current().id()),
        "record",
        otel.kind = "producer",
        messaging.operation.type = "create",
        messaging.message.id = %event_id,
        cloudevents.event_id = %event_id,
        cloudevents.event_type = event.event_type,
        cloudevents.event_subject = %event.aggregate_id,
        aggregate_version = event.aggregate_version,
    )
}

async fn insert_event(
    tx: &mut Transaction,
    event_id: Uuid,
    event: NewEvent,
) -> Result<Uuid, Error> {
    let row = OutboxRow::new(event_id, &event);
    const INSERT: &str = concat!(
        "INSERT INTO outbox_events (",
        outbox_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    );
    on_backend!(tx, conn => row.bind(sqlx::query(INSERT)).execute(conn).await.map(drop))
        .map_err(|error| event_error(error, &event))?;
    tx.mark_events_written();
    Ok(event_id)
}

/// Records `event` in the one statement that inserts its record on PostgreSQL: `insert` (into
/// `table`, its values `row`) and the outbox row in one `WITH`, run on `tx`'s connection in
/// autocommit mode ([`Database::insert_with`]), in [`record`]'s span.
pub(crate) async fn record_with_insert(
    tx: &mut Transaction,
    table: &Table,
    insert: &str,
    row: &[Value<'_>],
    event: NewEvent,
) -> Result<(), Error> {
    let event_id = Uuid::now_v7();
    let span = record_span(tx, event_id, &event);
    let write = async {
        let outbox_row = OutboxRow::new(event_id, &event);
        let sql = format!(
            "WITH inserted AS ({insert}) INSERT INTO outbox_events ({}) VALUES ({})",
            outbox_columns!(),
            storage::placeholders(row.len() + 1, N_OUTBOX_COLUMNS)
        );
        let BackendConnection::Postgres(conn) = tx.connection_mut() else {
            return Err(Error::Unexpected(anyhow::anyhow!(
                "SQLite has no INSERT inside WITH: its inserts record their event in a transaction"
            )));
        };
        let query = storage::bind_values(sqlx::query(AssertSqlSafe(sql)), row);
        outbox_row
            .bind(query)
            .execute(conn)
            .await
            .map_err(|error| {
                let on_outbox = error
                    .as_database_error()
                    .and_then(|error| error.constraint())
                    .is_some_and(|constraint| constraint.starts_with("outbox_events"));
                if on_outbox {
                    event_error(error, &event)
                } else {
                    table.error(error)
                }
            })?;
        tx.mark_events_written();
        Ok(())
    };
    tracing::Instrument::instrument(write, span).await
}

/// An event's outbox row, made inside its `record` span, whose context it carries.
struct OutboxRow<'e> {
    id: Uuid,
    event: &'e NewEvent,
    data: String,
    traceparent: Option<String>,
    occurred_at: Timestamp,
}

impl<'e> OutboxRow<'e> {
    fn new(id: Uuid, event: &'e NewEvent) -> OutboxRow<'e> {
        OutboxRow {
            id,
            event,
            data: event.data.to_string(),
            traceparent: crate::telemetry::current_traceparent(),
            occurred_at: Timestamp::now(),
        }
    }

    /// Binds the row's values, in `outbox_columns!`' order, after what `query` has bound.
    fn bind<'q, DB>(
        &self,
        query: Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    ) -> Query<'q, DB, <DB as sqlx::Database>::Arguments>
    where
        DB: sqlx::Database,
        for<'v> &'v str: sqlx::Encode<'v, DB> + sqlx::Type<DB>,
        for<'v> Option<&'v str>: sqlx::Encode<'v, DB> + sqlx::Type<DB>,
        for<'v> i64: sqlx::Encode<'v, DB> + sqlx::Type<DB>,
        for<'v> Timestamp: sqlx::Encode<'v, DB> + sqlx::Type<DB>,
        for<'v> Uuid: sqlx::Encode<'v, DB> + sqlx::Type<DB>,
    {
        let event = self.event;
        let actor = event.actor.as_ref();
        query
            .bind(self.id)
            .bind(event.aggregate_type)
            .bind(event.aggregate_id)
            .bind(event.aggregate_version)
            .bind(event.event_type)
            .bind(event.kind.as_str())
            .bind(self.data.as_str())
            .bind(self.traceparent.as_deref())
            .bind(actor.map(|actor| actor.subject.as_str()))
            .bind(actor.map(|actor| actor.client_id.as_str()))
            .bind(self.occurred_at)
    }
}

/// The error of a failed outbox insert of `event`.
fn event_error(error: sqlx::Error, event: &NewEvent) -> Error {
    // The event id is a fresh UUID v7, so the one unique key it can break is the version's.
    if constraint_violation(&error) == Some(ConstraintViolation::Unique) {
        Error::Unexpected(anyhow::Error::from(error).context(format!(
            "A change event for {} {} at version {} is already recorded: the write path must \
             lock the record's row",
            event.aggregate_type, event.aggregate_id, event.aggregate_version
        )))
    } else {
        Error::from(error)
    }
}

// === impl EventKind ===

impl EventKind {
    /// The `kind` column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Change => "change",
            EventKind::Audit => "audit",
        }
    }
}

/// The event history of one aggregate, oldest first: at most `limit` events after `after_sequence`.
pub async fn list_events(
    database: &Database,
    aggregate_id: Uuid,
    after_sequence: i64,
    limit: i64,
) -> Result<Vec<EventRecord>, sqlx::Error> {
    let mut tx = database.begin_read().await?;
    let events = on_backend!(tx, conn => {
        sqlx::query_as::<_, EventRecord>(
            "SELECT sequence, id, aggregate_type, aggregate_id, aggregate_version, event_type, data, \
             traceparent, actor, actor_client_id, occurred_at, published_at, parked_at, park_reason \
             FROM outbox_events WHERE aggregate_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
        )
        .bind(aggregate_id)
        .bind(after_sequence)
        .bind(limit)
        .fetch_all(conn)
        .await
    })?;
    tx.commit().await?;
    Ok(events)
}

/// Number of recorded events not yet published and not parked: the outbox lag.
pub async fn unpublished_count(database: &Database) -> Result<i64, sqlx::Error> {
    count_events(database, UNPUBLISHED_COUNT).await
}

/// Number of events the relay parked because the bus refuses them for good.
pub async fn parked_count(database: &Database) -> Result<i64, sqlx::Error> {
    count_events(database, PARKED_COUNT).await
}

/// The outbox's backlog, read in one snapshot: what [`unpublished_count`] and [`parked_count`]
/// count, and when the oldest unpublished event was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backlog {
    pub unpublished: i64,
    pub parked: i64,
    pub oldest_unpublished: Option<Timestamp>,
}

/// The outbox's [`Backlog`], in one read transaction.
pub async fn backlog(database: &Database) -> Result<Backlog, sqlx::Error> {
    let mut tx = database.begin_read().await?;
    let backlog = on_backend!(tx, conn => {
        let unpublished = sqlx::query_scalar::<_, i64>(UNPUBLISHED_COUNT)
            .fetch_one(&mut *conn)
            .await?;
        let parked = sqlx::query_scalar::<_, i64>(PARKED_COUNT)
            .fetch_one(&mut *conn)
            .await?;
        let oldest_unpublished = sqlx::query_scalar::<_, Timestamp>(OLDEST_UNPUBLISHED)
            .fetch_optional(&mut *conn)
            .await?;
        Ok::<_, sqlx::Error>(Backlog { unpublished, parked, oldest_unpublished })
    })?;
    tx.commit().await?;
    Ok(backlog)
}

/// When the oldest event not yet published (and not parked) was recorded; `None` when there is
/// none. Unlike [`unpublished_count`], whose count visits every unpublished row (and, on
/// PostgreSQL, the dead versions of those published since the last vacuum), it reads the first
/// entry of the relay's index: a cheap look at whether the relay has caught up.
pub async fn oldest_unpublished(database: &Database) -> Result<Option<Timestamp>, sqlx::Error> {
    let mut tx = database.begin_read().await?;
    let oldest = on_backend!(tx, conn => {
        sqlx::query_scalar::<_, Timestamp>(OLDEST_UNPUBLISHED)
            .fetch_optional(conn)
            .await
    })?;
    tx.commit().await?;
    Ok(oldest)
}

const OLDEST_UNPUBLISHED: &str = "SELECT occurred_at FROM outbox_events \
     WHERE published_at IS NULL AND parked_at IS NULL ORDER BY sequence LIMIT 1";
const UNPUBLISHED_COUNT: &str =
    "SELECT count(*) FROM outbox_events WHERE published_at IS NULL AND parked_at IS NULL";
const PARKED_COUNT: &str = "SELECT count(*) FROM outbox_events WHERE parked_at IS NOT NULL";

async fn count_events(database: &Database, sql: &'static str) -> Result<i64, sqlx::Error> {
    let mut tx = database.begin_read().await?;
    let n_events = on_backend!(tx, conn => {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(conn).await
    })?;
    tx.commit().await?;
    Ok(n_events)
}

// === impl EventRoute ===

impl EventRoute {
    pub fn new(service: &'static str, namespace: &str) -> EventRoute {
        EventRoute {
            service,
            namespace: namespace.to_owned(),
        }
    }

    /// The service's stream: every subject under `<namespace>.<service>.>`.
    pub fn stream(&self) -> StreamSpec {
        StreamSpec {
            name: stream_name(&self.namespace, self.service),
            subjects: vec![format!("{}.{}.>", self.namespace, self.service)],
            duplicate_window: DUPLICATE_WINDOW,
        }
    }

    /// The bus message for a recorded event: its CloudEvent, de-duplicated by the event id.
    pub fn message(&self, event: &EventRecord) -> anyhow::Result<OutgoingMessage> {
        let envelope = self.envelope(event)?;
        let mut headers = BTreeMap::new();
        headers.insert(
            "Content-Type".to_owned(),
            cloudevents::CONTENT_TYPE.to_owned(),
        );
        // Where the event was recorded, as the CloudEvent's `traceparent` says too: consumers
        // read it from here without decoding the payload.
        if let Some(traceparent) = &event.traceparent {
            headers.insert("traceparent".to_owned(), traceparent.clone());
        }
        Ok(OutgoingMessage {
            subject: self.subject(&event.event_type),
            id: event.id.to_string(),
            headers,
            payload: Bytes::from(serde_json::to_vec(&envelope)?),
        })
    }

    /// Bus subject for a CloudEvents type: `emporium.catalog.product.created` is published on
    /// `<namespace>.catalog.product.created`.
    pub fn subject(&self, event_type: &str) -> String {
        let rest = event_type.strip_prefix("emporium.").unwrap_or(event_type);
        format!("{}.{rest}", self.namespace)
    }

    /// The CloudEvent for a recorded event.
    pub fn envelope(&self, event: &EventRecord) -> anyhow::Result<CloudEvent> {
        Ok(CloudEvent {
            specversion: "1.0".to_owned(),
            id: event.id.to_string(),
            source: format!("/emporium/{}", self.service),
            event_type: event.event_type.clone(),
            subject: event.aggregate_id.to_string(),
            time: event.occurred_at.to_rfc3339(),
            datacontenttype: "application/json".to_owned(),
            dataschema: event_data::schema_of(&event.event_type).map(str::to_owned),
            data: serde_json::from_str(&event.data).context("Outbox event data is not JSON")?,
            aggregateversion: event.aggregate_version,
            aggregatetype: event.aggregate_type.clone(),
            traceparent: event.traceparent.clone(),
            actor: event.actor.clone(),
            actorclientid: event.actor_client_id.clone(),
        })
    }
}

/// Stream name for a service: `EMPORIUM_CATALOG`.
pub fn stream_name(namespace: &str, service: &str) -> String {
    format!("{namespace}_{service}")
        .to_uppercase()
        .replace(['.', '-', '*', '>'], "_")
}

// === impl Relay ===

impl Relay {
    pub fn new(database: Database, bus: Bus, route: EventRoute) -> Relay {
        Relay {
            database,
            bus,
            route,
            batch_size: 256,
            poll_interval: POLL_INTERVAL,
            publish_timeout: PUBLISH_TIMEOUT,
        }
    }

    /// Looks at the outbox every `poll_interval` when nothing woke it, instead of
    /// [`POLL_INTERVAL`].
    pub fn with_poll_interval(mut self, poll_interval: Duration) -> Relay {
        self.poll_interval = poll_interval;
        self
    }

    /// Creates the service's stream, then publishes until `shutdown` is cancelled. Errors (bus or
    /// database down) are logged and retried with backoff; nothing is lost while they last. When
    /// the bus says no stream holds the subject (an operator deleted it), the stream is created
    /// again before the retry.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut stream_ready = false;
        // Listening before the first look at the outbox, so that no commit falls in between.
        let mut commits = CommitListener::new(self.database.clone());
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = commits.connect() => {}
        }
        loop {
            // A closed pool is the service stopping: nothing can be published any more, and the
            // listener (dropped with `commits`) must give its connection back for `close` to end.
            if shutdown.is_cancelled() || self.database.is_closed() {
                return;
            }
            // Whether to look at the outbox again at once: after a full batch, which may have
            // left more behind, and once the stream is ready. After a smaller batch, whatever
            // committed since the read has signalled, which ends the wait at once.
            let result = if stream_ready {
                self.publish_some().await.map(|drained| drained.more_left)
            } else {
                self.bus
                    .ensure_stream(&self.route.stream())
                    .await
                    .map_err(anyhow::Error::from)
                    .map(|()| {
                        stream_ready = true;
                        true
                    })
            };
            match result {
                Ok(look_again) => {
                    backoff = Duration::from_millis(100);
                    if look_again {
                        continue;
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = self.database.outbox_written() => {}
                        () = commits.next_commit() => {}
                        () = tokio::time::sleep(self.poll_interval) => {}
                    }
                }
                Err(error) => {
                    if is_missing_stream(&error) {
                        // Deleted under us: create it again, then retry the batch.
                        stream_ready = false;
                    }
                    tracing::warn!(
                        service = self.route.service,
                        error.cause_chain = ?error,
                        error.message = %error,
                        retry_in_ms = backoff.as_millis() as u64,
                        "Outbox relay failed; retrying"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = self.database.closed() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Publishes pending events in sequence order and marks them; parks those the bus refuses
    /// for good. Returns how many events it settled: on PostgreSQL up to
    /// [`BATCHES_PER_TRANSACTION`] batches, on SQLite one.
    pub async fn publish_pending(&self) -> anyhow::Result<usize> {
        self.publish_some().await.map(|drained| drained.n_settled)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(service = self.route.service))]
    async fn publish_some(&self) -> anyhow::Result<Drained> {
        match self.database.backend() {
            Backend::Postgres => self.publish_pipelined().await,
            // One process owns a SQLite file and runs one relay per service. Reading outside the
            // write lock keeps writers unblocked while the bus is slow.
            Backend::Sqlite => {
                let mut read = self.database.begin_read().await?;
                let events = self.fetch_unpublished(&mut read, 0).await?;
                read.commit().await?;
                if events.is_empty() {
                    return Ok(Drained::default());
                }
                let outcome = self.publish(&events).await?;
                let mut tx = self.database.begin_untraced().await?;
                settle(&mut tx, &outcome).await?;
                tx.commit()
                    .await
                    .context("Failed to commit published marks")?;
                self.count_settled(&outcome);
                Ok(Drained {
                    n_settled: events.len(),
                    more_left: events.len() as i64 >= self.batch_size,
                })
            }
        }
    }

    /// The PostgreSQL relay's turn: up to [`BATCHES_PER_TRANSACTION`] batches in one
    /// transaction, the bus taking each batch while the database marks the one before and reads
    /// the one after.
    ///
    /// Replicas share the database: a transaction-scoped advisory lock lets one relay at a time
    /// read, publish and mark, which keeps the stream in outbox order. The transaction stays open
    /// across the bus round trips, each bounded by the publish timeout; it holds no row locks but
    /// the marked events' (the reads take none, and only relays mark), so writers are never
    /// blocked by it. A batch goes to the bus only once the one before is acknowledged whole, so
    /// the pipeline changes no order. When the bus fails a batch, the marks of those before it
    /// are committed and the failure returned: only that batch and what follows are published
    /// again, as before.
    async fn publish_pipelined(&self) -> anyhow::Result<Drained> {
        let mut tx = self.database.begin_untraced().await?;
        let lock_key = relay_lock_key(self.route.service);
        let locked: bool = on_backend!(tx, conn => {
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(lock_key)
                .fetch_one(conn)
                .await
        })?;
        if !locked {
            tx.rollback().await?;
            return Ok(Drained::default());
        }
        let mut batch = self.fetch_unpublished(&mut tx, 0).await?;
        let mut more_left = false;
        // Published, not yet marked.
        let mut unmarked: Option<BatchOutcome> = None;
        let mut settled = BatchOutcome::default();
        let mut n_batches = 0;
        let mut failure = None;
        while !batch.is_empty() {
            n_batches += 1;
            let full = batch.len() as i64 >= self.batch_size;
            let read_next = full && n_batches < BATCHES_PER_TRANSACTION;
            let after = batch.last().map_or(0, |event| event.sequence);
            let previous = unmarked.take();
            let database_side = async {
                if let Some(outcome) = &previous {
                    settle(&mut tx, outcome).await?;
                }
                if read_next {
                    self.fetch_unpublished(&mut tx, after).await
                } else {
                    Ok(Vec::new())
                }
            };
            let (published, next) = tokio::join!(self.publish(&batch), database_side);
            // A failed mark or read leaves the transaction unusable: what it marked is published
            // again, and dropped as a duplicate by the bus.
            let next = next?;
            if let Some(outcome) = previous {
                settled.merge(outcome);
            }
            match published {
                Ok(outcome) => {
                    more_left = full;
                    unmarked = Some(outcome);
                    batch = next;
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if let Some(outcome) = unmarked {
            settle(&mut tx, &outcome).await?;
            settled.merge(outcome);
        }
        tx.commit()
            .await
            .context("Failed to commit published marks")?;
        self.count_settled(&settled);
        match failure {
            Some(error) => Err(error),
            None => Ok(Drained {
                n_settled: settled.published.len() + settled.parked.len(),
                more_left,
            }),
        }
    }

    /// Counts a committed batch at `/metrics`.
    fn count_settled(&self, outcome: &BatchOutcome) {
        let service = self.route.service;
        ::metrics::counter!("emporium_outbox_published_total", "service" => service)
            .increment(outcome.published.len() as u64);
        if !outcome.parked.is_empty() {
            ::metrics::counter!("emporium_outbox_parked_total", "service" => service)
                .increment(outcome.parked.len() as u64);
        }
    }

    /// The next batch of unpublished events after sequence number `after`, in sequence order.
    async fn fetch_unpublished(
        &self,
        tx: &mut Transaction,
        after: i64,
    ) -> anyhow::Result<Vec<EventRecord>> {
        let events = on_backend!(tx, conn => {
            sqlx::query_as::<_, EventRecord>(
                "SELECT sequence, id, aggregate_type, aggregate_id, aggregate_version, event_type, \
                 data, traceparent, actor, actor_client_id, occurred_at, published_at \
                 FROM outbox_events WHERE published_at IS NULL AND parked_at IS NULL \
                 AND sequence > $2 ORDER BY sequence LIMIT $1",
            )
            .bind(self.batch_size)
            .bind(after)
            .fetch_all(conn)
            .await
        })
        .context("Failed to read the outbox")?;
        Ok(events)
    }

    /// Publishes `events` in order within the publish timeout. When the bus refuses the batch
    /// for good, publishes the events one at a time, still in order, to find which ones it
    /// refuses: those are parked, the others published.
    ///
    /// The batch is published in a `publish <subject>` span (kind producer; the subject's name
    /// when the whole batch goes to one, else `publish`), which starts a trace of its own linked
    /// to every event's `traceparent`: the relay works for many requests at once, each event's
    /// consumers continue its request's trace, not the relay's.
    async fn publish(&self, events: &[EventRecord]) -> anyhow::Result<BatchOutcome> {
        if events.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let span = self.publish_span(events);
        tracing::Instrument::instrument(self.publish_in_span(events), span).await
    }

    fn publish_span(&self, events: &[EventRecord]) -> tracing::Span {
        let first_subject = self.route.subject(&events[0].event_type);
        let one_subject = events
            .iter()
            .all(|event| self.route.subject(&event.event_type) == first_subject);
        let destination = one_subject.then_some(first_subject);
        let name = match &destination {
            Some(subject) => format!("publish {subject}"),
            None => "publish".to_owned(),
        };
        let span = tracing::info_span!(
            parent: None,
            "publish",
            otel.name = %name,
            otel.kind = "producer",
            messaging.system = self.bus.messaging_system(),
            messaging.operation.type = "send",
            messaging.operation.name = "publish",
            messaging.destination.name = destination.as_deref(),
            // An integer attribute (tracing-opentelemetry writes unsigned ones as text).
            messaging.batch.message_count = events.len() as i64,
            service = self.route.service,
        );
        crate::telemetry::set_parent_from(&span, None);
        for event in events {
            crate::telemetry::add_link_to(&span, event.traceparent.as_deref());
        }
        span
    }

    async fn publish_in_span(&self, events: &[EventRecord]) -> anyhow::Result<BatchOutcome> {
        let mut outcome = BatchOutcome::default();
        let publishing = async {
            let mut messages = Vec::with_capacity(events.len());
            let mut sendable = Vec::with_capacity(events.len());
            for event in events {
                match self.route.message(event) {
                    Ok(message) => {
                        messages.push(message);
                        sendable.push(event);
                    }
                    Err(error) => outcome.parked.push((event.id, format!("{error:#}"))),
                }
            }
            match self.publish_messages(messages).await {
                Ok(()) => {
                    outcome
                        .published
                        .extend(sendable.iter().map(|event| event.id));
                }
                Err(PublishFailure::Failed(error)) => return Err(error),
                Err(PublishFailure::Refused(_)) => {
                    for event in sendable {
                        let message = self.route.message(event)?;
                        match self.publish_messages(vec![message]).await {
                            Ok(()) => outcome.published.push(event.id),
                            Err(PublishFailure::Refused(reason)) => {
                                outcome.parked.push((event.id, reason));
                            }
                            Err(PublishFailure::Failed(error)) => return Err(error),
                        }
                    }
                }
            }
            Ok(())
        };
        tokio::time::timeout(self.publish_timeout, publishing)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "The bus did not acknowledge the batch within {:?}",
                    self.publish_timeout
                )
            })??;
        for (event_id, reason) in &outcome.parked {
            let event = events
                .iter()
                .find(|event| event.id == *event_id)
                .expect("a parked event is one of the batch");
            tracing::error!(
                event.id = %event.id,
                event.event_type = %event.event_type,
                aggregate_id = %event.aggregate_id,
                aggregate_version = event.aggregate_version,
                park_reason = %reason,
                "The bus refuses an outbox event for good; parked it, later events are published"
            );
        }
        tracing::debug!(
            n_published = outcome.published.len(),
            n_parked = outcome.parked.len(),
            "Published outbox events"
        );
        Ok(outcome)
    }

    async fn publish_messages(&self, messages: Vec<OutgoingMessage>) -> Result<(), PublishFailure> {
        if messages.is_empty() {
            return Ok(());
        }
        let acks = match self.bus.publish_batch(messages).await {
            Ok(acks) => acks,
            Err(error @ BusError::TooLarge { .. }) => {
                return Err(PublishFailure::Refused(error.to_string()));
            }
            Err(error) => return Err(PublishFailure::Failed(error.into())),
        };
        let n_duplicates = acks.iter().filter(|ack| ack.duplicate).count();
        if n_duplicates > 0 {
            tracing::info!(
                n_duplicates,
                "Bus dropped re-published events as duplicates"
            );
        }
        Ok(())
    }
}

/// Commits of outbox events in other processes, heard through PostgreSQL's `LISTEN`. The
/// listener is connected when the relay starts and again after it is lost, with a backoff;
/// while it is missing the relay only polls, it never stalls.
struct CommitListener {
    database: Database,
    listener: Option<PgListener>,
    /// No listener on this database (SQLite, or a pool too small to spare a connection).
    unavailable: bool,
    /// When to try connecting the listener again after a failure.
    retry_at: Instant,
    backoff: Duration,
}

// === impl CommitListener ===

impl CommitListener {
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    const MAX_BACKOFF: Duration = Duration::from_secs(30);

    fn new(database: Database) -> CommitListener {
        CommitListener {
            database,
            listener: None,
            unavailable: false,
            retry_at: Instant::now(),
            backoff: CommitListener::FIRST_BACKOFF,
        }
    }

    /// Returns when a commit may have recorded events the relay has not seen: a notification,
    /// a listener (re)connected (commits before it were not heard), or one lost. Never returns
    /// while there is no listener; the relay's poll covers that time. Cancel-safe: dropped
    /// part-way, the next call carries on.
    async fn next_commit(&mut self) {
        if self.unavailable {
            return std::future::pending().await;
        }
        let Some(listener) = &mut self.listener else {
            tokio::time::sleep_until(self.retry_at).await;
            if self.connect().await {
                return;
            }
            return std::future::pending().await;
        };
        let received = tokio::select! {
            received = listener.try_recv() => received,
            () = self.database.closed() => {
                // The pool is closing: give its connection back, and listen no more.
                self.listener = None;
                self.unavailable = true;
                return std::future::pending().await;
            }
        };
        match received {
            Ok(Some(_)) => {
                // One look at the outbox covers every commit heard so far.
                while listener.next_buffered().is_some() {}
            }
            // The connection was lost and made again: commits in between went unheard.
            Ok(None) => {}
            Err(error) => {
                self.listener = None;
                self.retry_later(&error);
            }
        }
    }

    /// Connects the listener; whether it now listens.
    async fn connect(&mut self) -> bool {
        match self.database.listen_for_outbox_commits().await {
            Ok(Some(listener)) => {
                self.listener = Some(listener);
                self.backoff = CommitListener::FIRST_BACKOFF;
                true
            }
            Ok(None) => {
                self.unavailable = true;
                false
            }
            Err(error) => {
                self.retry_later(&error);
                false
            }
        }
    }

    fn retry_later(&mut self, error: &sqlx::Error) {
        tracing::warn!(
            error.message = %error,
            retry_in_ms = self.backoff.as_millis() as u64,
            "The relay cannot listen for commits; polling until it can"
        );
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(CommitListener::MAX_BACKOFF);
    }
}

/// Marks the batch's published events published and its refused events parked.
async fn settle(tx: &mut Transaction, outcome: &BatchOutcome) -> anyhow::Result<()> {
    mark_published(tx, &outcome.published).await?;
    let parked_at = Timestamp::now();
    for (event_id, reason) in &outcome.parked {
        on_backend!(tx, conn => {
            sqlx::query(
                "UPDATE outbox_events SET parked_at = $1, park_reason = $2 WHERE id = $3",
            )
            .bind(parked_at)
            .bind(reason)
            .bind(event_id)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
        })
        .context("Failed to park an event")?;
    }
    Ok(())
}

/// Did the publish fail because no stream holds the subject (the stream was deleted)?
fn is_missing_stream(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<BusError>(),
            Some(BusError::NoStream(_))
        )
    })
}

async fn mark_published(tx: &mut Transaction, event_ids: &[Uuid]) -> anyhow::Result<()> {
    if event_ids.is_empty() {
        return Ok(());
    }
    let published_at = Timestamp::now();
    // One statement per batch: on PostgreSQL with the ids as one array, one prepared statement
    // whatever the batch's size; on SQLite, which has no arrays, a list of placeholders (built
    // from placeholders only; the ids are bound).
    match tx.connection_mut() {
        BackendConnection::Postgres(conn) => {
            sqlx::query("UPDATE outbox_events SET published_at = $1 WHERE id = ANY($2)")
                .bind(published_at)
                .bind(event_ids)
                .execute(conn)
                .await
                .map(drop)
        }
        BackendConnection::Sqlite(conn) => {
            let placeholders = crate::storage::placeholders(2, event_ids.len());
            let sql =
                format!("UPDATE outbox_events SET published_at = $1 WHERE id IN ({placeholders})");
            event_ids
                .iter()
                .fold(
                    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(published_at),
                    |query, event_id| query.bind(event_id),
                )
                .execute(conn)
                .await
                .map(drop)
        }
    }
    .context("Failed to mark events published")?;
    Ok(())
}

/// A stable 64-bit key per service for the relay's advisory lock (FNV-1a of the name).
fn relay_lock_key(service: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"emporium.outbox.relay.".iter().chain(service.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

#[cfg(test)]
mod tests {
    use emporium_proto::catalog::v1::{self as catalog, events};

    use super::*;

    #[test]
    fn a_change_event_is_about_the_record_its_message_names_and_a_deletion_one_version_on() {
        let category = catalog::Category {
            id: "0194f3c2-0000-7000-8000-000000000001".to_owned(),
            name: "Tea".to_owned(),
            version: 3,
            ..Default::default()
        };

        let updated = NewEvent::change(events::CATEGORY_UPDATED, &category);
        let deleted = NewEvent::deletion(events::CATEGORY_DELETED, &category);

        assert_eq!(updated.aggregate_id.to_string(), category.id);
        assert_eq!(
            (updated.aggregate_version, updated.kind),
            (3, EventKind::Change)
        );
        assert_eq!(updated.aggregate_type, "category");
        assert_eq!(updated.data["version"], "3");
        assert_eq!(deleted.aggregate_id, updated.aggregate_id);
        assert_eq!(deleted.aggregate_version, 4);
        assert_eq!(deleted.data["version"], "4");
        assert_eq!(deleted.data["name"], "Tea");
    }
}
