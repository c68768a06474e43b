//! The consumer helper: a durable bus consumer that applies each event inside a database
//! transaction and acknowledges only after that transaction commits. It de-duplicates by event id
//! (inbox table) and orders each record's versions by the consumer's [`VersionOrdering`]
//! (latest-version-wins by default; strict sequence on request).
//!
//! Failures come in two kinds, and only one of them can dead-letter a message:
//!
//! - **Handler failures** (the handler refused the event): retried with exponential backoff and
//!   counted per message; the `max_deliver`-th failure parks the message on the dead-letter
//!   subject. So are messages that are not CloudEvents (at once) and, in strict mode, a version
//!   whose predecessor has not arrived within `gap_timeout`.
//! - **Infrastructure failures** (the consumer's database or the bus is unavailable, see
//!   [`is_infrastructure_error`]): the delivery is handed back to the bus for a retry after a
//!   backoff that grows while the outage lasts and resets after the next success. They count
//!   toward nothing, however long they last, so an outage never dead-letters anything.
//!
//! The count of handler failures is kept by the consumer itself, in memory, per message (stream
//! sequence), not taken from the bus's delivery count: that count also grows with every
//! redelivery an outage causes. The cost of keeping it in memory: a restart, or another replica
//! receiving the message, starts the count again, so a message may be tried `max_deliver` times
//! per process before it is parked. That errs on the side of retrying, never of parking early.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{Bus, ConsumerSpec, Delivery, OutgoingMessage, StreamSpec};
use crate::cloudevents::CloudEvent;
use crate::on_backend;
use crate::storage::{Database, Timestamp, Transaction};

/// Applies one event. Runs inside the consumer's transaction: whatever it writes commits together
/// with the inbox record and the aggregate's new version, or not at all.
///
/// Returning an error refuses the event: it is retried with backoff and dead-lettered after
/// `max_deliver` failures. An error caused by the database being unavailable is not the
/// handler's fault, though, and never dead-letters: when the error's cause chain holds a sqlx
/// error that [`is_infrastructure_error`] calls an outage (I/O, protocol, TLS, pool timed out or
/// closed, a lost or refused connection, a PostgreSQL shutdown or resource shortage, a
/// serialization failure or deadlock, a busy, locked, read-only or full SQLite file), the event
/// is retried for as long as the outage lasts and nothing is counted. So keep sqlx errors in the
/// chain (`?` or `.context(…)`, never `anyhow!("{error}")`); any other error (a constraint
/// violation, bad data, a bug) counts as the handler's.
pub trait EventHandler: Send + Sync + 'static {
    fn handle(
        &self,
        tx: &mut Transaction,
        event: &CloudEvent,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// How a consumer orders the versions of one record (`aggregateversion`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VersionOrdering {
    /// For events that carry the record's full state (every Emporium event so far): an event is
    /// applied when its version is newer than the last one applied for its record, and
    /// acknowledged and skipped otherwise. Versions may be missing: a consumer that starts late,
    /// or after history was trimmed, applies the first version it sees, whatever its number.
    #[default]
    LatestVersionWins,
    /// For delta events, which only make sense on top of their predecessor: versions are applied
    /// one after another from 1. A version whose predecessor has not been applied waits (is
    /// redelivered) up to `gap_timeout`, then is dead-lettered with the missing version named.
    StrictSequence { gap_timeout: Duration },
}

#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// Durable name, unique per consuming service and purpose, e.g. `invoicing-product-replica`.
    pub name: String,
    /// The stream to consume, e.g. `EMPORIUM_CATALOG`.
    pub stream: String,
    /// Which subjects, e.g. `emporium.catalog.product.>`. Under strict ordering it must cover
    /// every event of the aggregates it follows, or versions would wait for ones never received.
    pub filter_subject: String,
    /// The bus namespace; dead letters go to `<namespace>.deadletter.<name>`.
    pub namespace: String,
    pub ack_wait: Duration,
    /// Handler failures before a message is dead-lettered. Infrastructure failures never count.
    pub max_deliver: u64,
    /// First retry delay; doubles per failure up to `max_backoff`. The same schedule paces
    /// retries during an outage, counted by consecutive infrastructure failures.
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub batch_size: usize,
    /// Latest-version-wins (the default) or strict sequence.
    pub ordering: VersionOrdering,
}

/// What happened to one delivery; returned for tests and counted in [`ConsumerCounts`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Seen before (same event id): acknowledged, nothing applied.
    Duplicate,
    /// The same or a newer version of the aggregate was already applied: acknowledged, skipped.
    Stale,
    /// Strict ordering only: a version is missing before this one; asked for redelivery.
    Gap,
    /// The handler failed: asked for redelivery after a backoff.
    Retry,
    /// Sent to the dead-letter subject and terminated.
    DeadLettered,
    /// The database or the bus failed: handed back for a later retry, counted toward nothing.
    Unavailable,
}

impl Outcome {
    /// Every outcome, in the order of [`Outcome::label`]'s table.
    pub const ALL: [Outcome; 7] = [
        Outcome::Applied,
        Outcome::Duplicate,
        Outcome::Stale,
        Outcome::Gap,
        Outcome::Retry,
        Outcome::DeadLettered,
        Outcome::Unavailable,
    ];

    /// The outcome as `/metrics` labels it.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
            Outcome::Gap => "gap",
            Outcome::Retry => "retried",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Unavailable => "unavailable",
        }
    }

    fn index(&self) -> usize {
        match self {
            Outcome::Applied => 0,
            Outcome::Duplicate => 1,
            Outcome::Stale => 2,
            Outcome::Gap => 3,
            Outcome::Retry => 4,
            Outcome::DeadLettered => 5,
            Outcome::Unavailable => 6,
        }
    }
}

/// How many deliveries ended each way since the consumer was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerCounts {
    pub applied: u64,
    pub duplicates: u64,
    pub stale: u64,
    pub gaps: u64,
    pub handler_failures: u64,
    pub dead_lettered: u64,
    pub infrastructure_failures: u64,
}

/// Live counters of a [`Consumer`], readable while it runs (see [`Consumer::stats`]), and the
/// same counts at `/metrics` as `emporium_consumer_deliveries_total{consumer, outcome}`.
#[derive(Debug)]
pub struct ConsumerStats {
    applied: AtomicU64,
    duplicates: AtomicU64,
    stale: AtomicU64,
    gaps: AtomicU64,
    handler_failures: AtomicU64,
    dead_lettered: AtomicU64,
    infrastructure_failures: AtomicU64,
    /// One registered counter per outcome, in [`Outcome::ALL`]'s order, so counting a
    /// delivery looks nothing up.
    exported: Vec<::metrics::Counter>,
}

/// Runs a consumer until cancelled.
#[derive(Debug)]
pub struct Consumer<H> {
    database: Database,
    bus: Bus,
    options: ConsumerOptions,
    handler: H,
    stats: Arc<ConsumerStats>,
    /// Per message (stream sequence): what this process has seen go wrong with it so far.
    attempts: Mutex<HashMap<u64, Attempts>>,
    /// Infrastructure failures since the last delivery that reached the handler or was settled;
    /// paces retries during an outage and resets after it.
    consecutive_infrastructure_failures: AtomicU32,
}

/// The dead-letter headers, read back by [`crate::deadletter`].
pub mod headers {
    /// The subject the message was consumed from; a redrive publishes there again.
    pub const ORIGINAL_SUBJECT: &str = "Emporium-Original-Subject";
    /// Why the message was parked.
    pub const ERROR: &str = "Emporium-Error";
    /// The bus's delivery count when it was parked (outage redeliveries included).
    pub const DELIVERY_COUNT: &str = "Emporium-Delivery-Count";
    /// How many times the handler refused it (absent for messages parked without running it).
    pub const HANDLER_FAILURES: &str = "Emporium-Handler-Failures";
    /// The consumer's durable name.
    pub const CONSUMER: &str = "Emporium-Consumer";
    /// The CloudEvent id, when the message was one.
    pub const EVENT_ID: &str = "Emporium-Event-Id";
    /// The message's sequence in the stream it was consumed from.
    pub const STREAM_SEQUENCE: &str = "Emporium-Stream-Sequence";
}

/// What the consumer remembers about one message between its deliveries.
#[derive(Debug)]
struct Attempts {
    handler_failures: u64,
    /// Strict ordering: when this process first found the message waiting on a gap.
    gap_since: Option<Instant>,
    n_gap_waits: u64,
    last_seen: Instant,
}

/// How [`Consumer::apply`] ended when it did not fail.
#[derive(Debug)]
enum ApplyOutcome {
    Applied,
    Duplicate,
    Stale,
    /// Strict ordering: the aggregate's last applied version (0: none yet).
    Gap {
        applied_version: i64,
    },
}

/// How a delivery is to be settled.
#[derive(Debug)]
enum Settlement {
    Ack(Outcome),
    Nak(Duration, Outcome),
    DeadLetter {
        /// Boxed: an envelope is large and most settlements carry none.
        event: Option<Box<CloudEvent>>,
        reason: String,
        handler_failures: Option<u64>,
    },
}

/// The first reconnect delay after the bus or the consumer set-up failed; doubles up to
/// [`MAX_RECONNECT_DELAY`] and returns to this after a successful fetch.
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(200);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(10);

/// Infrastructure failures in a row after which the consumer stops working through its batch:
/// one failure may be one unlucky delivery, two in a row are an outage.
const OUTAGE_AFTER: u32 = 2;

/// How often a running consumer prunes its inbox (see [`prune_inbox`]).
const INBOX_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// The most inbox rows one pruning transaction deletes, so it never holds a lock for long.
const INBOX_PRUNE_BATCH: i64 = 500;

// === impl ConsumerOptions ===

impl ConsumerOptions {
    pub fn new(name: &str, stream: &str, filter_subject: &str, namespace: &str) -> ConsumerOptions {
        ConsumerOptions {
            name: name.to_owned(),
            stream: stream.to_owned(),
            filter_subject: filter_subject.to_owned(),
            namespace: namespace.to_owned(),
            ack_wait: Duration::from_secs(30),
            max_deliver: 10,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            batch_size: 64,
            ordering: VersionOrdering::LatestVersionWins,
        }
    }

    fn dead_letter_subject(&self) -> String {
        dead_letter_subject(&self.namespace, &self.name)
    }

    /// The delay after the `n_failures`-th failure (1-based).
    fn backoff_for(&self, n_failures: u64) -> Duration {
        let exponent = u32::try_from(n_failures.saturating_sub(1).min(16)).unwrap_or(16);
        self.backoff
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.max_backoff)
    }

    /// How long the consumer may forget a message it has not seen again: longer than any
    /// redelivery delay it asks for, so a count is only lost to a message that went elsewhere.
    fn forget_after(&self) -> Duration {
        let gap_timeout = match self.ordering {
            VersionOrdering::LatestVersionWins => Duration::ZERO,
            VersionOrdering::StrictSequence { gap_timeout } => gap_timeout,
        };
        self.ack_wait
            .saturating_add(self.max_backoff.saturating_mul(2))
            .saturating_add(gap_timeout)
    }
}

/// Where the consumer `consumer` of `namespace` parks its dead letters.
pub fn dead_letter_subject(namespace: &str, consumer: &str) -> String {
    format!("{namespace}.deadletter.{consumer}")
}

/// The dead-letter stream of a namespace: `<NAMESPACE>_DEADLETTER` over `<namespace>.deadletter.>`.
pub fn dead_letter_stream(namespace: &str) -> StreamSpec {
    StreamSpec {
        name: crate::outbox::stream_name(namespace, "deadletter"),
        subjects: vec![format!("{namespace}.deadletter.>")],
        duplicate_window: crate::outbox::DUPLICATE_WINDOW,
    }
}

/// Deletes, in batches, `consumer`'s inbox rows processed before `now` less the bus's duplicate
/// window ([`crate::outbox::DUPLICATE_WINDOW`]): the bus drops a republished id within that
/// window, so an older row can never meet its event again as a duplicate (a redrive uses a fresh
/// id). Returns how many rows went. A running [`Consumer`] calls it every minute.
pub async fn prune_inbox(
    database: &Database,
    consumer: &str,
    now: Timestamp,
) -> Result<u64, sqlx::Error> {
    let cutoff = Timestamp::from(now.into_inner() - crate::outbox::DUPLICATE_WINDOW);
    let mut n_deleted = 0_u64;
    loop {
        let mut tx = database.begin().await?;
        let n_batch = on_backend!(tx, conn => {
            sqlx::query(
                "DELETE FROM inbox_events WHERE consumer = $1 AND event_id IN ( \
                     SELECT event_id FROM inbox_events \
                     WHERE consumer = $1 AND processed_at < $2 \
                     LIMIT $3)",
            )
            .bind(consumer)
            .bind(cutoff)
            .bind(INBOX_PRUNE_BATCH)
            .execute(conn)
            .await
            .map(|result| result.rows_affected())
        })?;
        tx.commit().await?;
        n_deleted = n_deleted.saturating_add(n_batch);
        if n_batch < u64::try_from(INBOX_PRUNE_BATCH).unwrap_or(u64::MAX) {
            return Ok(n_deleted);
        }
    }
}

/// Is this failure the infrastructure's (the database or the bus unavailable) rather than the
/// handler's? True when a cause in the chain is a [`crate::bus::BusError`] or a sqlx error of an
/// outage: I/O, TLS, protocol, pool timed out or closed, worker crashed; on PostgreSQL SQLSTATE
/// class 08 (connection exception), 53 (insufficient resources), 57P01–57P03 (shutting down,
/// cannot connect now), 58 (system error), 40001/40P01 (serialization failure, deadlock) and
/// 25006 (read-only transaction, e.g. a standby); on SQLite BUSY, LOCKED, READONLY, IOERR, FULL
/// and CANTOPEN.
pub fn is_infrastructure_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if cause.is::<crate::bus::BusError>() {
            return true;
        }
        cause.downcast_ref::<sqlx::Error>().is_some_and(is_outage)
    })
}

fn is_outage(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database_error) => {
            let Some(code) = database_error.code() else {
                return false;
            };
            match database_error.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                Some(_) => {
                    code.starts_with("08")
                        || code.starts_with("53")
                        || code.starts_with("58")
                        || matches!(
                            &*code,
                            "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "25006"
                        )
                }
                // SQLite reports the extended result code; the primary code is its low byte.
                None => code.parse::<i64>().is_ok_and(|extended| {
                    // BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN.
                    matches!(extended & 0xff, 5 | 6 | 8 | 10 | 13 | 14)
                }),
            }
        }
        _ => false,
    }
}

// === impl ConsumerStats ===

impl ConsumerStats {
    /// Counters for the consumer `name`, registered at `/metrics` at once (at zero), so a
    /// consumer with nothing to do yet shows as such.
    pub fn new(name: &str) -> ConsumerStats {
        // Registered handles only count once the recorder is installed.
        crate::metrics::handle();
        let exported = Outcome::ALL
            .iter()
            .map(|outcome| {
                ::metrics::counter!(
                    "emporium_consumer_deliveries_total",
                    "consumer" => name.to_owned(),
                    "outcome" => outcome.label(),
                )
            })
            .collect();
        ConsumerStats {
            applied: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            handler_failures: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            infrastructure_failures: AtomicU64::new(0),
            exported,
        }
    }

    pub fn counts(&self) -> ConsumerCounts {
        ConsumerCounts {
            applied: self.applied.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            gaps: self.gaps.load(Ordering::Relaxed),
            handler_failures: self.handler_failures.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            infrastructure_failures: self.infrastructure_failures.load(Ordering::Relaxed),
        }
    }

    fn count(&self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Applied => &self.applied,
            Outcome::Duplicate => &self.duplicates,
            Outcome::Stale => &self.stale,
            Outcome::Gap => &self.gaps,
            Outcome::Retry => &self.handler_failures,
            Outcome::DeadLettered => &self.dead_lettered,
            Outcome::Unavailable => &self.infrastructure_failures,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.exported[outcome.index()].increment(1);
    }
}

// === impl Consumer ===

impl<H: EventHandler> Consumer<H> {
    pub fn new(database: Database, bus: Bus, options: ConsumerOptions, handler: H) -> Consumer<H> {
        let stats = Arc::new(ConsumerStats::new(&options.name));
        Consumer {
            database,
            bus,
            options,
            handler,
            stats,
            attempts: Mutex::new(HashMap::new()),
            consecutive_infrastructure_failures: AtomicU32::new(0),
        }
    }

    /// What it consumes, and how.
    pub fn options(&self) -> &ConsumerOptions {
        &self.options
    }

    /// The consumer's counters; keep the handle to watch them after [`Consumer::run`] took it.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        Arc::clone(&self.stats)
    }

    /// Consumes until `shutdown` is cancelled. A delivery in progress finishes first. When the
    /// bus cannot be reached the consumer reconnects with a backoff that returns to its first
    /// step after a successful fetch.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut reconnect_delay = FIRST_RECONNECT_DELAY;
        loop {
            let result = self.run_once(&shutdown, &mut reconnect_delay).await;
            if shutdown.is_cancelled() {
                return;
            }
            if let Err(error) = result {
                tracing::warn!(
                    consumer = %self.options.name,
                    error.cause_chain = ?error,
                    error.message = %error,
                    retry_in = ?reconnect_delay,
                    "Consumer failed; reconnecting"
                );
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(reconnect_delay) => {}
            }
            reconnect_delay = (reconnect_delay * 2).min(MAX_RECONNECT_DELAY);
        }
    }

    async fn run_once(
        &self,
        shutdown: &CancellationToken,
        reconnect_delay: &mut Duration,
    ) -> anyhow::Result<()> {
        self.bus
            .ensure_stream(&dead_letter_stream(&self.options.namespace))
            .await?;
        let mut consumer = self
            .bus
            .consumer(&ConsumerSpec {
                stream: self.options.stream.clone(),
                durable_name: self.options.name.clone(),
                filter_subject: self.options.filter_subject.clone(),
                ack_wait: self.options.ack_wait,
            })
            .await?;
        let mut inbox_pruned_at: Option<Instant> = None;
        loop {
            if inbox_pruned_at.is_none_or(|at| at.elapsed() >= INBOX_PRUNE_INTERVAL) {
                inbox_pruned_at = Some(Instant::now());
                match prune_inbox(&self.database, &self.options.name, Timestamp::now()).await {
                    Ok(0) => {}
                    Ok(n_deleted) => {
                        tracing::debug!(consumer = %self.options.name, n_deleted, "Pruned the inbox")
                    }
                    // Harmless: the rows stay until the next try.
                    Err(error) => {
                        tracing::warn!(consumer = %self.options.name, error.message = %error, "Failed to prune the inbox")
                    }
                }
            }
            let deliveries = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                deliveries = consumer.fetch(self.options.batch_size, Duration::from_secs(5)) => deliveries?,
            };
            // The bus works again: a later failure starts the reconnect backoff from the start.
            *reconnect_delay = FIRST_RECONNECT_DELAY;
            self.forget_old_attempts();
            let mut deliveries = deliveries.into_iter();
            // Every delivery is settled on its own: one that fails is handed back and the next
            // is tried, so the rest of the batch never waits out an ack wait behind it.
            while let Some(delivery) = deliveries.next() {
                self.process(delivery).await;
                if self
                    .consecutive_infrastructure_failures
                    .load(Ordering::Relaxed)
                    >= OUTAGE_AFTER
                {
                    // An outage rather than one unlucky delivery: hand the rest back for the
                    // same delay and wait it out before fetching again.
                    let delay = self.infrastructure_delay();
                    for delivery in deliveries.by_ref() {
                        self.stats.count(&Outcome::Unavailable);
                        if let Err(error) = delivery.nak(delay).await {
                            tracing::warn!(consumer = %self.options.name, error.message = %error, "Failed to hand back a delivery; it returns after its ack wait");
                        }
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Handles one delivery and settles it; whatever fails is logged and reflected in the
    /// outcome (the handler's failures as [`Outcome::Retry`], the database's or the bus's as
    /// [`Outcome::Unavailable`]).
    ///
    /// It runs in a `process <subject>` span (kind consumer), a child of the event's
    /// `traceparent` (the bus message's header, else the CloudEvent's), so the handling, its
    /// transaction and whatever the handler calls continue the trace of the request that
    /// recorded the event.
    pub async fn process(&self, delivery: Delivery) -> Outcome {
        let span = tracing::info_span!(
            "process",
            otel.name = %format_args!("process {}", delivery.subject),
            otel.kind = "consumer",
            otel.status_code = tracing::field::Empty,
            messaging.system = self.bus.messaging_system(),
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.destination.name = %delivery.subject,
            messaging.consumer.group.name = %self.options.name,
            messaging.message.id = tracing::field::Empty,
            consumer = %self.options.name,
            subject = %delivery.subject,
            stream_sequence = delivery.stream_sequence,
            delivery_count = delivery.delivery_count,
            outcome = tracing::field::Empty,
        );
        crate::telemetry::set_parent_from(&span, event_traceparent(&delivery).as_deref());
        let outcome =
            tracing::Instrument::instrument(self.process_in_span(delivery), span.clone()).await;
        span.record("outcome", tracing::field::debug(&outcome));
        if matches!(outcome, Outcome::Retry | Outcome::DeadLettered) {
            span.record("otel.status_code", "error");
        }
        outcome
    }

    async fn process_in_span(&self, delivery: Delivery) -> Outcome {
        let settlement = self.decide(&delivery).await;
        let stream_sequence = delivery.stream_sequence;
        let outcome = match settlement {
            Settlement::Ack(outcome) => match delivery.ack().await {
                Ok(()) => outcome,
                Err(error) => {
                    // What was applied is committed; the redelivery will be a duplicate.
                    tracing::warn!(error.cause_chain = ?error, error.message = %error, "Failed to acknowledge a delivery");
                    Outcome::Unavailable
                }
            },
            Settlement::Nak(delay, outcome) => match delivery.nak(delay).await {
                Ok(()) => outcome,
                Err(error) => {
                    tracing::warn!(error.cause_chain = ?error, error.message = %error, ?outcome, "Failed to ask for a redelivery; it returns after its ack wait");
                    Outcome::Unavailable
                }
            },
            Settlement::DeadLetter {
                event,
                reason,
                handler_failures,
            } => {
                self.dead_letter(delivery, event.as_deref(), &reason, handler_failures)
                    .await
            }
        };
        match outcome {
            Outcome::Unavailable => {
                self.consecutive_infrastructure_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
            _ => self
                .consecutive_infrastructure_failures
                .store(0, Ordering::Relaxed),
        }
        if matches!(
            outcome,
            Outcome::Applied | Outcome::Duplicate | Outcome::Stale | Outcome::DeadLettered
        ) {
            self.lock_attempts().remove(&stream_sequence);
        }
        self.stats.count(&outcome);
        tracing::debug!(?outcome, "Delivery processed");
        outcome
    }

    /// Applies the delivery if it can be and says how to settle it.
    async fn decide(&self, delivery: &Delivery) -> Settlement {
        let event: CloudEvent = match serde_json::from_slice(&delivery.payload) {
            Ok(event) => event,
            Err(error) => {
                return Settlement::DeadLetter {
                    event: None,
                    reason: format!("not a CloudEvents JSON envelope: {error}"),
                    handler_failures: None,
                };
            }
        };
        let Ok(event_id) = Uuid::parse_str(&event.id) else {
            return Settlement::DeadLetter {
                event: Some(Box::new(event)),
                reason: "event id is not a UUID".to_owned(),
                handler_failures: None,
            };
        };
        let Ok(aggregate_id) = Uuid::parse_str(&event.subject) else {
            return Settlement::DeadLetter {
                event: Some(Box::new(event)),
                reason: "subject is not a UUID".to_owned(),
                handler_failures: None,
            };
        };
        tracing::Span::current().record("messaging.message.id", event.id.as_str());
        // The handling is a child of the event's trace context (or starts a trace): the
        // handler's log lines, the events it records and the calls it makes carry it. The
        // `process` span is that child; without a subscriber, the task-local carries it.
        let applied = if crate::telemetry::exports_spans() {
            self.apply(&event, event_id, aggregate_id).await
        } else {
            let traceparent = crate::telemetry::continue_trace(event.traceparent.as_deref());
            crate::telemetry::attach_trace_context(&tracing::Span::current(), traceparent.clone());
            crate::telemetry::with_traceparent(
                traceparent,
                self.apply(&event, event_id, aggregate_id),
            )
            .await
        };
        match applied {
            Ok(ApplyOutcome::Applied) => Settlement::Ack(Outcome::Applied),
            Ok(ApplyOutcome::Duplicate) => Settlement::Ack(Outcome::Duplicate),
            Ok(ApplyOutcome::Stale) => Settlement::Ack(Outcome::Stale),
            Ok(ApplyOutcome::Gap { applied_version }) => {
                self.wait_on_gap(delivery, event, applied_version)
            }
            Err(error) if is_infrastructure_error(&error) => {
                let delay = self.infrastructure_delay();
                tracing::warn!(error.cause_chain = ?error, error.message = %error, retry_in = ?delay, "Database unavailable; will retry without counting a failure");
                Settlement::Nak(delay, Outcome::Unavailable)
            }
            Err(error) => {
                let handler_failures = {
                    let mut attempts = self.lock_attempts();
                    let entry = attempts_of(&mut attempts, delivery.stream_sequence);
                    entry.handler_failures += 1;
                    entry.handler_failures
                };
                if handler_failures >= self.options.max_deliver {
                    return Settlement::DeadLetter {
                        event: Some(Box::new(event)),
                        reason: format!("{error:#}"),
                        handler_failures: Some(handler_failures),
                    };
                }
                let delay = self.options.backoff_for(handler_failures);
                tracing::warn!(error.cause_chain = ?error, error.message = %error, handler_failures, retry_in = ?delay, "Event handler failed; will retry");
                Settlement::Nak(delay, Outcome::Retry)
            }
        }
    }

    /// Strict ordering: redeliver a version whose predecessor is missing until `gap_timeout`
    /// has passed since this process first saw it waiting, then dead-letter it.
    fn wait_on_gap(
        &self,
        delivery: &Delivery,
        event: CloudEvent,
        applied_version: i64,
    ) -> Settlement {
        let VersionOrdering::StrictSequence { gap_timeout } = self.options.ordering else {
            // apply() reports gaps only under strict ordering.
            return Settlement::Nak(self.options.backoff, Outcome::Gap);
        };
        let (waited, n_gap_waits) = {
            let mut attempts = self.lock_attempts();
            let entry = attempts_of(&mut attempts, delivery.stream_sequence);
            let since = *entry.gap_since.get_or_insert_with(Instant::now);
            entry.n_gap_waits += 1;
            (since.elapsed(), entry.n_gap_waits)
        };
        if waited >= gap_timeout {
            let reason = format!(
                "version {} of {} {} waited {gap_timeout:?} for version {}, which never arrived \
                 (last applied version: {applied_version}; strict sequence ordering)",
                event.aggregateversion,
                event.aggregatetype,
                event.subject,
                applied_version + 1,
            );
            return Settlement::DeadLetter {
                event: Some(Box::new(event)),
                reason,
                handler_failures: None,
            };
        }
        let delay = self
            .options
            .backoff_for(n_gap_waits)
            .min(gap_timeout.saturating_sub(waited))
            .max(Duration::from_millis(1));
        Settlement::Nak(delay, Outcome::Gap)
    }

    async fn apply(
        &self,
        event: &CloudEvent,
        event_id: Uuid,
        aggregate_id: Uuid,
    ) -> anyhow::Result<ApplyOutcome> {
        let consumer = self.options.name.as_str();
        let mut tx = self.database.begin().await.context("Failed to begin")?;
        let n_inserted = on_backend!(tx, conn => {
            sqlx::query(
                "INSERT INTO inbox_events (consumer, event_id, processed_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(consumer)
            .bind(event_id)
            .bind(Timestamp::now())
            .execute(conn)
            .await
            .map(|result| result.rows_affected())
        })
        .context("Failed to record the event in the inbox")?;
        if n_inserted == 0 {
            tx.rollback().await.context("Failed to roll back")?;
            return Ok(ApplyOutcome::Duplicate);
        }
        let applied_version: Option<i64> = on_backend!(tx, conn => {
            sqlx::query_scalar(
                "SELECT version FROM consumer_aggregate_versions WHERE consumer = $1 AND aggregate_id = $2",
            )
            .bind(consumer)
            .bind(aggregate_id)
            .fetch_optional(conn)
            .await
        })
        .context("Failed to read the applied version")?;
        let applied_version = applied_version.unwrap_or(0);
        if event.aggregateversion <= applied_version {
            // Keep the inbox record: this event id is settled for good.
            tx.commit()
                .await
                .context("Failed to commit a skipped event")?;
            return Ok(ApplyOutcome::Stale);
        }
        if matches!(
            self.options.ordering,
            VersionOrdering::StrictSequence { .. }
        ) && event.aggregateversion > applied_version + 1
        {
            tx.rollback().await.context("Failed to roll back")?;
            return Ok(ApplyOutcome::Gap { applied_version });
        }
        self.handler.handle(&mut tx, event).await?;
        on_backend!(tx, conn => {
            sqlx::query(
                "INSERT INTO consumer_aggregate_versions (consumer, aggregate_id, version) VALUES ($1, $2, $3) \
                 ON CONFLICT (consumer, aggregate_id) DO UPDATE SET version = excluded.version",
            )
            .bind(consumer)
            .bind(aggregate_id)
            .bind(event.aggregateversion)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
        })
        .context("Failed to record the applied version")?;
        tx.commit()
            .await
            .context("Failed to commit the handled event")?;
        Ok(ApplyOutcome::Applied)
    }

    /// Publishes the message to the dead-letter subject, then terminates the delivery. When the
    /// publish fails the delivery is handed back: the next attempt parks it again (the dead
    /// letter's id is stable per message, so the bus keeps one copy).
    async fn dead_letter(
        &self,
        delivery: Delivery,
        event: Option<&CloudEvent>,
        reason: &str,
        handler_failures: Option<u64>,
    ) -> Outcome {
        tracing::error!(reason, "Dead-lettering a message");
        let mut message_headers = BTreeMap::new();
        message_headers.insert(
            headers::ORIGINAL_SUBJECT.to_owned(),
            delivery.subject.clone(),
        );
        message_headers.insert(
            headers::ERROR.to_owned(),
            reason.chars().take(512).collect(),
        );
        message_headers.insert(
            headers::DELIVERY_COUNT.to_owned(),
            delivery.delivery_count.to_string(),
        );
        if let Some(handler_failures) = handler_failures {
            message_headers.insert(
                headers::HANDLER_FAILURES.to_owned(),
                handler_failures.to_string(),
            );
        }
        message_headers.insert(headers::CONSUMER.to_owned(), self.options.name.clone());
        message_headers.insert(
            headers::STREAM_SEQUENCE.to_owned(),
            delivery.stream_sequence.to_string(),
        );
        if let Some(event) = event {
            message_headers.insert(headers::EVENT_ID.to_owned(), event.id.clone());
        }
        if let Some(content_type) = delivery.headers.get("Content-Type") {
            message_headers.insert("Content-Type".to_owned(), content_type.clone());
        }
        // Per message, not per event: a re-driven copy (a new message) can be parked again.
        let id = match event {
            Some(event) => format!(
                "{}:{}:{}",
                self.options.name, event.id, delivery.stream_sequence
            ),
            None => format!("{}:seq:{}", self.options.name, delivery.stream_sequence),
        };
        let published = self
            .bus
            .publish(OutgoingMessage {
                subject: self.options.dead_letter_subject(),
                id,
                headers: message_headers,
                payload: delivery.payload.clone(),
            })
            .await;
        if let Err(error) = published {
            let delay = self.infrastructure_delay();
            tracing::warn!(error.cause_chain = ?error, error.message = %error, retry_in = ?delay, "Failed to publish a dead letter; will retry");
            if let Err(error) = delivery.nak(delay).await {
                tracing::warn!(error.message = %error, "Failed to ask for a redelivery; it returns after its ack wait");
            }
            return Outcome::Unavailable;
        }
        if let Err(error) = delivery.term().await {
            // The dead letter is stored; the redelivery parks it again as the same message id.
            tracing::warn!(error.cause_chain = ?error, error.message = %error, "Failed to terminate a dead-lettered delivery");
            return Outcome::Unavailable;
        }
        Outcome::DeadLettered
    }

    /// The delay before retrying after the current run of infrastructure failures (including
    /// the one being handled).
    fn infrastructure_delay(&self) -> Duration {
        let n_failures = self
            .consecutive_infrastructure_failures
            .load(Ordering::Relaxed);
        self.options.backoff_for(u64::from(n_failures) + 1)
    }

    fn forget_old_attempts(&self) {
        let forget_after = self.options.forget_after();
        self.lock_attempts()
            .retain(|_, attempts| attempts.last_seen.elapsed() < forget_after);
    }

    fn lock_attempts(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Attempts>> {
        // A panic while holding the lock leaves counts that are still valid numbers.
        self.attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// === helpers ===

fn attempts_of(attempts: &mut HashMap<u64, Attempts>, stream_sequence: u64) -> &mut Attempts {
    let entry = attempts.entry(stream_sequence).or_insert_with(|| Attempts {
        handler_failures: 0,
        gap_since: None,
        n_gap_waits: 0,
        last_seen: Instant::now(),
    });
    entry.last_seen = Instant::now();
    entry
}

/// The trace context an event was recorded in: its bus message's `traceparent` header, or (for a
/// message published without one) its CloudEvent's.
fn event_traceparent(delivery: &Delivery) -> Option<String> {
    if let Some(traceparent) = delivery.headers.get("traceparent") {
        return Some(traceparent.clone());
    }
    #[derive(serde::Deserialize)]
    struct TraceExtension {
        traceparent: Option<String>,
    }
    serde_json::from_slice::<TraceExtension>(&delivery.payload)
        .ok()
        .and_then(|extension| extension.traceparent)
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::is_infrastructure_error;
    use crate::bus::BusError;

    #[test]
    fn outages_anywhere_in_the_chain_are_the_infrastructures() {
        let timed_out = anyhow::Error::new(sqlx::Error::PoolTimedOut).context("Failed to begin");
        let io = anyhow::Error::new(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )))
        .context("Failed to upsert the projection")
        .context("the handler failed");
        let closed: anyhow::Result<()> = Err(sqlx::Error::PoolClosed).context("Failed to begin");
        let bus = anyhow::Error::new(BusError::Closed).context("Failed to ack");

        assert!(is_infrastructure_error(&timed_out));
        assert!(is_infrastructure_error(&io));
        assert!(is_infrastructure_error(&closed.unwrap_err()));
        assert!(is_infrastructure_error(&bus));
    }

    #[test]
    fn a_handlers_own_errors_are_not() {
        let refused = anyhow::anyhow!("the price is negative");
        let not_found = anyhow::Error::new(sqlx::Error::RowNotFound).context("no such product");
        // Flattened into text, the outage can no longer be recognised: handlers keep the chain.
        let flattened = anyhow::anyhow!("{}", sqlx::Error::PoolTimedOut);

        assert!(!is_infrastructure_error(&refused));
        assert!(!is_infrastructure_error(&not_found));
        assert!(!is_infrastructure_error(&flattened));
    }
}
