//! The embedded bus: a durable, single-machine event log in one SQLite file, with the semantics of
//! NATS JetStream (streams, publishes de-duplicated by id, durable pull consumers with explicit
//! ack, redelivery after the ack wait or a nak). `emporium up` uses it instead of a NATS server.
//!
//! Layout: `streams` holds each stream's subject filters, duplicate window and last sequence;
//! `messages` is the log, unique per `(stream, msg_id)`; `consumers` holds each durable consumer's filter, ack wait and `delivered_seq` cursor;
//! `pending` holds every delivery not yet acked or termed, with its delivery count and the
//! wall-clock time (ms since the Unix epoch) after which it is due for redelivery.
//!
//! Waking: every commit that can make a delivery available (a publish, a nak) bumps a
//! [`tokio::sync::watch`] counter; a waiting fetch also sleeps until the earliest redelivery
//! deadline of its consumer, and re-checks at least every [`FALLBACK_POLL`] for writers outside
//! this process.
//!
//! De-duplication: a publish is a duplicate when a message with its id was stored within the
//! stream's duplicate window, as on JetStream. An id older than that is forgotten: the old message
//! (if still retained) gives its id up, and the publish is stored as a new message.
//!
//! Retention: a background task (every [`PRUNE_INTERVAL`], see [`EmbeddedBus::prune`]) deletes
//! the messages older than [`RETENTION`] that every durable consumer of their stream has
//! acknowledged, in batches of [`PRUNE_BATCH`] so it never holds the write lock for long. A
//! message is acknowledged by a consumer when its cursor is past it and no delivery of it is
//! pending. A stream with no consumer keeps everything: a consumer may attach later, and the
//! dead-letter stream is read by the tools, never consumed.
//!
//! Restarts: deadlines are wall-clock times stored with the delivery, so a message delivered but
//! not acked before the process stopped is redelivered once its ack wait has passed, as if the
//! process had kept running.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};
use tokio::sync::{Mutex, MutexGuard, watch};
use tokio::time::Instant;

use super::{
    BusError, ConsumerPosition, ConsumerSpec, OutgoingMessage, PublishAck, StoredMessage,
    StreamSpec, subject_matches,
};

/// The longest a waiting fetch goes without looking at the database. Writers in this process wake
/// fetchers at once; this only bounds the latency for writers in another process (or another
/// `EmbeddedBus` opened on the same file).
const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// How many messages a fetch reads per query while skipping subjects its filter does not match.
const SCAN_CHUNK: i64 = 256;

/// The largest message (payload plus headers) the bus stores: a NATS server's default
/// `max_payload`, so that what the embedded bus takes, JetStream takes too.
pub const MAX_MESSAGE_SIZE: usize = 1024 * 1024;

/// How long an acknowledged message is kept: long enough to inspect recent traffic or re-read it
/// (`read_stream`) after an incident, short enough that the log stays small.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How often the background task prunes (the first run is one interval after opening).
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// The most messages one pruning transaction deletes; the write lock is released between
/// batches, so publishes and fetches wait at most one batch.
const PRUNE_BATCH: i64 = 500;

/// Prefix of the id a message gets when its own id is past the duplicate window and a new
/// message takes it; followed by the message's sequence, so it is unique in the stream. The NUL
/// byte keeps it apart from every id a publisher sends (a `Nats-Msg-Id` is a header value).
const FORGOTTEN_ID_PREFIX: &str = "\u{0}forgotten:";

/// The schema, one statement each (created if absent; there are no migrations yet).
const SCHEMA: [&str; 5] = [
    "CREATE TABLE IF NOT EXISTS streams (
        name TEXT PRIMARY KEY NOT NULL,
        subjects TEXT NOT NULL,
        duplicate_window_ms INTEGER NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0
    ) STRICT",
    "CREATE TABLE IF NOT EXISTS messages (
        stream TEXT NOT NULL,
        seq INTEGER NOT NULL,
        subject TEXT NOT NULL,
        msg_id TEXT NOT NULL,
        headers TEXT NOT NULL,
        payload BLOB NOT NULL,
        stored_at_ms INTEGER NOT NULL,
        PRIMARY KEY (stream, seq),
        UNIQUE (stream, msg_id)
    ) STRICT",
    "CREATE TABLE IF NOT EXISTS consumers (
        stream TEXT NOT NULL,
        name TEXT NOT NULL,
        filter_subject TEXT NOT NULL,
        ack_wait_ms INTEGER NOT NULL,
        delivered_seq INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (stream, name)
    ) STRICT",
    "CREATE TABLE IF NOT EXISTS pending (
        stream TEXT NOT NULL,
        consumer TEXT NOT NULL,
        seq INTEGER NOT NULL,
        delivery_count INTEGER NOT NULL,
        redeliver_at_ms INTEGER NOT NULL,
        PRIMARY KEY (stream, consumer, seq)
    ) STRICT",
    "CREATE INDEX IF NOT EXISTS pending_by_deadline
        ON pending (stream, consumer, redeliver_at_ms)",
];

/// The embedded bus. Cheap to clone; every clone shares one pool and one wake-up signal.
#[derive(Clone, Debug)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

/// A bound durable consumer of the embedded bus.
#[derive(Debug)]
pub struct EmbeddedConsumer {
    bus: EmbeddedBus,
    stream: String,
    name: String,
    /// Changes since this consumer last looked at the database.
    changes: watch::Receiver<u64>,
}

/// A live tail of one stream of the embedded bus: what was stored after it began.
#[derive(Debug)]
pub struct EmbeddedTail {
    bus: EmbeddedBus,
    stream: String,
    filter_subject: String,
    /// The last sequence looked at.
    cursor: i64,
    /// Read, matching, not handed out yet.
    ready: VecDeque<StoredMessage>,
    changes: watch::Receiver<u64>,
}

/// A `messages` row as [`EmbeddedBus::scan`] reads it: sequence, subject, headers (JSON),
/// payload, stored at (ms since the Unix epoch).
type MessageRow = (i64, String, String, Vec<u8>, i64);

/// Settles one delivery of the embedded bus.
#[derive(Debug)]
pub struct EmbeddedAcker {
    bus: EmbeddedBus,
    stream: String,
    consumer: String,
    sequence: i64,
    /// Identifies this delivery among the message's deliveries: a nak applies only while the
    /// delivery is still the current one.
    delivery_count: i64,
}

#[derive(Debug)]
struct Inner {
    pool: SqlitePool,
    /// Serialises this process's write transactions, so that they queue here instead of spinning
    /// in SQLite's busy handler. Every write transaction also starts with `BEGIN IMMEDIATE`.
    write_lock: Mutex<()>,
    /// Bumped after every commit that can make a delivery available (publish, nak).
    changes: watch::Sender<u64>,
}

/// A stream as publishes see it.
#[derive(Debug)]
struct StoredStream {
    name: String,
    subjects: Vec<String>,
    duplicate_window_ms: i64,
}

/// What one look at the database gave a fetch.
#[derive(Debug)]
struct Claim {
    deliveries: Vec<super::Delivery>,
    /// Earliest redelivery deadline (ms since the Unix epoch) of the consumer's pending
    /// deliveries; only computed when `deliveries` is empty.
    next_redelivery_ms: Option<i64>,
}

type WriteTransaction = sqlx::Transaction<'static, Sqlite>;

// === impl EmbeddedBus ===

impl EmbeddedBus {
    /// Opens the bus at `path`, creating the directory, the file and the tables if absent.
    #[tracing::instrument(level = "debug", skip_all, fields(path = %path.display()))]
    pub async fn open(path: &Path) -> Result<EmbeddedBus, BusError> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            tokio::fs::create_dir_all(parent)
                .await
                .with_context(|| format!("Failed to create {}", parent.display()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a publish the caller saw acknowledged is on disk.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            // No ping on acquire, a hop to the connection's worker thread and back (as for the
            // services' SQLite databases, `storage`).
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(database_error("Failed to open the embedded bus"))?;
        for statement in SCHEMA {
            sqlx::query(statement)
                .execute(&pool)
                .await
                .map_err(database_error("Failed to create the embedded bus tables"))?;
        }
        let (changes, _) = watch::channel(0);
        let bus = EmbeddedBus {
            inner: Arc::new(Inner {
                pool,
                write_lock: Mutex::new(()),
                changes,
            }),
        };
        tokio::spawn(prune_periodically(Arc::downgrade(&bus.inner)));
        Ok(bus)
    }

    /// Creates the stream, or updates its subjects and duplicate window if it exists.
    #[tracing::instrument(level = "debug", skip_all, fields(stream = %spec.name))]
    pub async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), BusError> {
        let subjects =
            serde_json::to_string(&spec.subjects).context("Failed to encode stream subjects")?;
        let (_write_guard, mut transaction) = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO streams (name, subjects, duplicate_window_ms) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
             SET subjects = excluded.subjects, duplicate_window_ms = excluded.duplicate_window_ms",
        )
        .bind(&spec.name)
        .bind(subjects)
        .bind(duration_ms(spec.duplicate_window))
        .execute(&mut *transaction)
        .await
        .map_err(database_error("Failed to store the stream"))?;
        transaction
            .commit()
            .await
            .map_err(database_error("Failed to commit the stream"))
    }

    /// Stores the messages in order, in one transaction, and returns once it is committed. The
    /// batch is all or nothing: a message no stream holds fails the whole batch.
    #[tracing::instrument(level = "debug", skip_all, fields(n_messages = messages.len()))]
    pub async fn publish_batch(
        &self,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<PublishAck>, BusError> {
        self.publish_batch_at(messages, now_ms()).await
    }

    /// [`EmbeddedBus::publish_batch`] as if the clock read `stored_at_ms`.
    async fn publish_batch_at(
        &self,
        messages: Vec<OutgoingMessage>,
        stored_at_ms: i64,
    ) -> Result<Vec<PublishAck>, BusError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let (_write_guard, mut transaction) = self.begin_write().await?;
        let streams = load_streams(&mut transaction).await?;
        let mut acks = Vec::with_capacity(messages.len());
        let mut n_stored = 0_usize;
        for message in messages {
            // Streams are read in name order, so if subjects overlap the first name wins.
            let stream = streams
                .iter()
                .find(|stream| {
                    stream
                        .subjects
                        .iter()
                        .any(|filter| subject_matches(filter, &message.subject))
                })
                .ok_or_else(|| BusError::NoStream(message.subject.clone()))?;
            let existing: Option<(i64, i64)> = sqlx::query_as(
                "SELECT seq, stored_at_ms FROM messages WHERE stream = $1 AND msg_id = $2",
            )
            .bind(&stream.name)
            .bind(&message.id)
            .fetch_optional(&mut *transaction)
            .await
            .map_err(database_error("Failed to look up a message id"))?;
            if let Some((seq, seen_at_ms)) = existing {
                if stored_at_ms.saturating_sub(seen_at_ms) < stream.duplicate_window_ms {
                    acks.push(PublishAck {
                        sequence: sequence_from_db(seq)?,
                        duplicate: true,
                    });
                    continue;
                }
                // Past the window: the id is forgotten, and the old message gives it up.
                sqlx::query("UPDATE messages SET msg_id = $3 WHERE stream = $1 AND seq = $2")
                    .bind(&stream.name)
                    .bind(seq)
                    .bind(format!("{FORGOTTEN_ID_PREFIX}{seq}"))
                    .execute(&mut *transaction)
                    .await
                    .map_err(database_error("Failed to forget a message id"))?;
            }
            let seq: i64 = sqlx::query_scalar(
                "UPDATE streams SET last_seq = last_seq + 1 WHERE name = $1 RETURNING last_seq",
            )
            .bind(&stream.name)
            .fetch_one(&mut *transaction)
            .await
            .map_err(database_error("Failed to assign a sequence"))?;
            let headers = serde_json::to_string(&message.headers)
                .context("Failed to encode message headers")?;
            let size = message.payload.len()
                + message
                    .headers
                    .iter()
                    .map(|(name, value)| name.len() + value.len())
                    .sum::<usize>();
            if size > MAX_MESSAGE_SIZE {
                return Err(BusError::TooLarge {
                    subject: message.subject,
                    size,
                    max: MAX_MESSAGE_SIZE,
                });
            }
            sqlx::query(
                "INSERT INTO messages (stream, seq, subject, msg_id, headers, payload, stored_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&stream.name)
            .bind(seq)
            .bind(&message.subject)
            .bind(&message.id)
            .bind(headers)
            .bind(message.payload.to_vec())
            .bind(stored_at_ms)
            .execute(&mut *transaction)
            .await
            .map_err(database_error("Failed to store a message"))?;
            acks.push(PublishAck {
                sequence: sequence_from_db(seq)?,
                duplicate: false,
            });
            n_stored += 1;
        }
        transaction
            .commit()
            .await
            .map_err(database_error("Failed to commit published messages"))?;
        if n_stored > 0 {
            self.signal_change();
        }
        Ok(acks)
    }

    /// Creates the durable consumer (delivering from the start of the stream) or binds to the
    /// existing one, updating its filter subject and ack wait.
    #[tracing::instrument(level = "debug", skip_all, fields(stream = %spec.stream, consumer = %spec.durable_name))]
    pub async fn consumer(&self, spec: &ConsumerSpec) -> Result<EmbeddedConsumer, BusError> {
        let (_write_guard, mut transaction) = self.begin_write().await?;
        let stream_exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM streams WHERE name = $1")
                .bind(&spec.stream)
                .fetch_optional(&mut *transaction)
                .await
                .map_err(database_error("Failed to look up the stream"))?;
        if stream_exists.is_none() {
            return Err(BusError::Unexpected(anyhow::anyhow!(
                "no stream named {} for consumer {}",
                spec.stream,
                spec.durable_name
            )));
        }
        sqlx::query(
            "INSERT INTO consumers (stream, name, filter_subject, ack_wait_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (stream, name) DO UPDATE
             SET filter_subject = excluded.filter_subject, ack_wait_ms = excluded.ack_wait_ms",
        )
        .bind(&spec.stream)
        .bind(&spec.durable_name)
        .bind(&spec.filter_subject)
        .bind(duration_ms(spec.ack_wait))
        .execute(&mut *transaction)
        .await
        .map_err(database_error("Failed to store the consumer"))?;
        transaction
            .commit()
            .await
            .map_err(database_error("Failed to commit the consumer"))?;
        Ok(EmbeddedConsumer {
            bus: self.clone(),
            stream: spec.stream.clone(),
            name: spec.durable_name.clone(),
            changes: self.inner.changes.subscribe(),
        })
    }

    /// Reads stored messages without delivering them; see [`super::Bus::read_stream`].
    pub async fn read_stream(
        &self,
        stream: &str,
        filter_subject: &str,
        from_sequence: u64,
        max: usize,
    ) -> Result<Vec<StoredMessage>, BusError> {
        let mut messages = Vec::new();
        let mut cursor = i64::try_from(from_sequence.saturating_sub(1)).unwrap_or(i64::MAX);
        while messages.len() < max {
            let chunk = self.scan(stream, cursor).await?;
            let chunk_is_last = i64::try_from(chunk.len()).unwrap_or(i64::MAX) < SCAN_CHUNK;
            for row in chunk {
                cursor = row.0;
                if messages.len() < max && subject_matches(filter_subject, &row.1) {
                    messages.push(stored_message(row)?);
                }
            }
            if chunk_is_last {
                break;
            }
        }
        Ok(messages)
    }

    /// Up to [`SCAN_CHUNK`] messages of `stream` after sequence `cursor`, oldest first, whatever
    /// their subject.
    async fn scan(&self, stream: &str, cursor: i64) -> Result<Vec<MessageRow>, BusError> {
        sqlx::query_as(
            "SELECT seq, subject, headers, payload, stored_at_ms FROM messages
             WHERE stream = $1 AND seq > $2
             ORDER BY seq
             LIMIT $3",
        )
        .bind(stream)
        .bind(cursor)
        .bind(SCAN_CHUNK)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(database_error("Failed to read stored messages"))
    }

    /// Follows `stream` from its last stored message on; see [`super::Bus::tail`].
    pub async fn tail(&self, stream: &str, filter_subject: &str) -> Result<EmbeddedTail, BusError> {
        // Subscribed before the last sequence is read, so a publish in between still wakes us.
        let changes = self.inner.changes.subscribe();
        let last_seq: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM streams WHERE name = $1")
                .bind(stream)
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(database_error("Failed to look up the stream"))?;
        let Some(cursor) = last_seq else {
            return Err(BusError::Unexpected(anyhow::anyhow!(
                "no stream named {stream} to follow"
            )));
        };
        Ok(EmbeddedTail {
            bus: self.clone(),
            stream: stream.to_owned(),
            filter_subject: filter_subject.to_owned(),
            cursor,
            ready: VecDeque::new(),
            changes,
        })
    }

    /// Where a durable consumer stands; see [`super::Bus::consumer_position`]. Reads the
    /// subjects after its cursor (only those: a consumer that keeps up has none to read).
    pub async fn consumer_position(
        &self,
        stream: &str,
        durable_name: &str,
    ) -> Result<Option<ConsumerPosition>, BusError> {
        // One read transaction, so the cursor and what lies past it agree.
        let mut transaction = self
            .inner
            .pool
            .begin()
            .await
            .map_err(database_error("Failed to begin a bus read"))?;
        let consumer: Option<(String, i64)> = sqlx::query_as(
            "SELECT filter_subject, delivered_seq FROM consumers WHERE stream = $1 AND name = $2",
        )
        .bind(stream)
        .bind(durable_name)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(database_error("Failed to read the consumer"))?;
        let Some((filter_subject, delivered_seq)) = consumer else {
            return Ok(None);
        };
        let subjects: Vec<String> =
            sqlx::query_scalar("SELECT subject FROM messages WHERE stream = $1 AND seq > $2")
                .bind(stream)
                .bind(delivered_seq)
                .fetch_all(&mut *transaction)
                .await
                .map_err(database_error("Failed to read the consumer's backlog"))?;
        let ack_pending: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM pending WHERE stream = $1 AND consumer = $2")
                .bind(stream)
                .bind(durable_name)
                .fetch_one(&mut *transaction)
                .await
                .map_err(database_error(
                    "Failed to count the consumer's pending deliveries",
                ))?;
        let pending = subjects
            .iter()
            .filter(|subject| subject_matches(&filter_subject, subject))
            .count();
        Ok(Some(ConsumerPosition {
            pending: u64::try_from(pending).unwrap_or(u64::MAX),
            ack_pending: sequence_from_db(ack_pending)?,
        }))
    }

    /// Messages per subject; see [`super::Bus::count_by_subject`].
    pub async fn count_by_subject(
        &self,
        stream: &str,
        filter_subject: &str,
    ) -> Result<BTreeMap<String, u64>, BusError> {
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT subject, COUNT(*) FROM messages WHERE stream = $1 GROUP BY subject",
        )
        .bind(stream)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(database_error("Failed to count the stream's messages"))?;
        counts
            .into_iter()
            .filter(|(subject, _)| subject_matches(filter_subject, subject))
            .map(|(subject, count)| Ok((subject, sequence_from_db(count)?)))
            .collect()
    }

    /// Deletes one message and every consumer's pending delivery of it.
    pub async fn delete_message(&self, stream: &str, sequence: u64) -> Result<bool, BusError> {
        let sequence = i64::try_from(sequence).unwrap_or(i64::MAX);
        let (_write_guard, mut transaction) = self.begin_write().await?;
        sqlx::query("DELETE FROM pending WHERE stream = $1 AND seq = $2")
            .bind(stream)
            .bind(sequence)
            .execute(&mut *transaction)
            .await
            .map_err(database_error("Failed to forget deliveries of a message"))?;
        let n_deleted = sqlx::query("DELETE FROM messages WHERE stream = $1 AND seq = $2")
            .bind(stream)
            .bind(sequence)
            .execute(&mut *transaction)
            .await
            .map_err(database_error("Failed to delete a message"))?
            .rows_affected();
        transaction
            .commit()
            .await
            .map_err(database_error("Failed to commit a deletion"))?;
        Ok(n_deleted > 0)
    }

    /// Deletes, in batches, every message stored before `now - RETENTION` that all durable
    /// consumers of its stream have acknowledged (see the module docs); returns how many. A stream
    /// without consumers keeps its messages.
    pub async fn prune(&self, now: SystemTime) -> Result<u64, BusError> {
        let now_ms = now.duration_since(UNIX_EPOCH).map_or(0, duration_ms);
        let cutoff_ms = now_ms.saturating_sub(duration_ms(RETENTION));
        let streams: Vec<String> = sqlx::query_scalar("SELECT name FROM streams ORDER BY name")
            .fetch_all(&self.inner.pool)
            .await
            .map_err(database_error("Failed to read streams"))?;
        let mut n_deleted = 0_u64;
        for stream in streams {
            loop {
                let n_batch = self.prune_batch(&stream, cutoff_ms).await?;
                n_deleted = n_deleted.saturating_add(n_batch);
                if n_batch < u64::try_from(PRUNE_BATCH).unwrap_or(u64::MAX) {
                    break;
                }
            }
        }
        Ok(n_deleted)
    }

    /// One pruning transaction on one stream: at most [`PRUNE_BATCH`] messages at or below the
    /// ack floor (the lowest sequence some consumer still needs, less one) and stored before
    /// `cutoff_ms`.
    async fn prune_batch(&self, stream: &str, cutoff_ms: i64) -> Result<u64, BusError> {
        let (_write_guard, mut transaction) = self.begin_write().await?;
        // Per consumer: its cursor, or just below its lowest pending delivery. NULL: no consumer.
        let ack_floor: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(MIN(consumers.delivered_seq, COALESCE(
                        (SELECT MIN(pending.seq) - 1 FROM pending
                         WHERE pending.stream = consumers.stream
                           AND pending.consumer = consumers.name),
                        consumers.delivered_seq)))
             FROM consumers WHERE consumers.stream = $1",
        )
        .bind(stream)
        .fetch_one(&mut *transaction)
        .await
        .map_err(database_error("Failed to read the ack floor"))?;
        let Some(ack_floor) = ack_floor else {
            return Ok(0);
        };
        let n_deleted = sqlx::query(
            "DELETE FROM messages WHERE stream = $1 AND seq IN (
                 SELECT seq FROM messages
                 WHERE stream = $1 AND seq <= $2 AND stored_at_ms < $3
                 ORDER BY seq
                 LIMIT $4)",
        )
        .bind(stream)
        .bind(ack_floor)
        .bind(cutoff_ms)
        .bind(PRUNE_BATCH)
        .execute(&mut *transaction)
        .await
        .map_err(database_error("Failed to prune messages"))?
        .rows_affected();
        transaction
            .commit()
            .await
            .map_err(database_error("Failed to commit pruning"))?;
        Ok(n_deleted)
    }

    /// Takes this process's write lock, then SQLite's (`BEGIN IMMEDIATE`), so the transaction
    /// never fails upgrading a read lock.
    async fn begin_write(&self) -> Result<(MutexGuard<'_, ()>, WriteTransaction), BusError> {
        let write_guard = self.inner.write_lock.lock().await;
        let transaction = self
            .inner
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(database_error("Failed to begin a bus transaction"))?;
        Ok((write_guard, transaction))
    }

    /// Wakes every waiting fetch so that it looks again.
    fn signal_change(&self) {
        self.inner
            .changes
            .send_modify(|n_changes| *n_changes = n_changes.wrapping_add(1));
    }
}

// === impl EmbeddedTail ===

impl EmbeddedTail {
    /// The next message matching the filter; waits until one is stored.
    pub async fn next(&mut self) -> Result<StoredMessage, BusError> {
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Ok(message);
            }
            // Mark what we have seen before looking, so a commit after the look still wakes us.
            self.changes.borrow_and_update();
            let chunk = self.bus.scan(&self.stream, self.cursor).await?;
            let chunk_is_full = i64::try_from(chunk.len()).unwrap_or(i64::MAX) >= SCAN_CHUNK;
            for row in chunk {
                self.cursor = row.0;
                if subject_matches(&self.filter_subject, &row.1) {
                    self.ready.push_back(stored_message(row)?);
                }
            }
            if self.ready.is_empty() && !chunk_is_full {
                tokio::select! {
                    changed = self.changes.changed() => changed.map_err(|_| BusError::Closed)?,
                    () = tokio::time::sleep(FALLBACK_POLL) => {}
                }
            }
        }
    }
}

// === impl EmbeddedConsumer ===

impl EmbeddedConsumer {
    /// Returns at most `max` deliveries: first redeliveries that are due (by sequence), then new
    /// messages matching the filter. Waits up to `wait` for at least one; empty on timeout.
    pub async fn fetch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<super::Delivery>, BusError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        // `None`: a wait too long to represent, i.e. forever.
        let deadline = Instant::now().checked_add(wait);
        loop {
            // Mark what we have seen before looking, so a commit after the look still wakes us.
            self.changes.borrow_and_update();
            let claim = self.claim(max).await?;
            if !claim.deliveries.is_empty() {
                return Ok(claim.deliveries);
            }
            let now = Instant::now();
            if deadline.is_some_and(|deadline| deadline <= now) {
                return Ok(Vec::new());
            }
            let mut wake_at = now + FALLBACK_POLL;
            if let Some(deadline) = deadline {
                wake_at = wake_at.min(deadline);
            }
            if let Some(redeliver_at_ms) = claim.next_redelivery_ms {
                let until_due =
                    u64::try_from(redeliver_at_ms.saturating_sub(now_ms())).unwrap_or(0);
                wake_at = wake_at.min(now + Duration::from_millis(until_due));
            }
            tokio::select! {
                changed = self.changes.changed() => changed.map_err(|_| BusError::Closed)?,
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    /// One transaction: marks due redeliveries and new matching messages as delivered now.
    async fn claim(&self, max: usize) -> Result<Claim, BusError> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let (_write_guard, mut transaction) = self.bus.begin_write().await?;
        let consumer: Option<(String, i64, i64)> = sqlx::query_as(
            "SELECT filter_subject, ack_wait_ms, delivered_seq FROM consumers
             WHERE stream = $1 AND name = $2",
        )
        .bind(&self.stream)
        .bind(&self.name)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(database_error("Failed to read the consumer"))?;
        let Some((filter_subject, ack_wait_ms, delivered_seq)) = consumer else {
            return Err(BusError::Unexpected(anyhow::anyhow!(
                "consumer {} on stream {} does not exist",
                self.name,
                self.stream
            )));
        };
        let now = now_ms();
        let redeliver_at_ms = now.saturating_add(ack_wait_ms);
        let mut deliveries = Vec::new();

        let due: Vec<(i64, i64, String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT pending.seq, pending.delivery_count, messages.subject, messages.headers,
                    messages.payload
             FROM pending
             JOIN messages ON messages.stream = pending.stream AND messages.seq = pending.seq
             WHERE pending.stream = $1 AND pending.consumer = $2 AND pending.redeliver_at_ms <= $3
             ORDER BY pending.seq
             LIMIT $4",
        )
        .bind(&self.stream)
        .bind(&self.name)
        .bind(now)
        .bind(max)
        .fetch_all(&mut *transaction)
        .await
        .map_err(database_error("Failed to read due redeliveries"))?;
        for (seq, previous_count, subject, headers, payload) in due {
            let delivery_count = previous_count.saturating_add(1);
            sqlx::query(
                "UPDATE pending SET delivery_count = $4, redeliver_at_ms = $5
                 WHERE stream = $1 AND consumer = $2 AND seq = $3",
            )
            .bind(&self.stream)
            .bind(&self.name)
            .bind(seq)
            .bind(delivery_count)
            .bind(redeliver_at_ms)
            .execute(&mut *transaction)
            .await
            .map_err(database_error("Failed to record a redelivery"))?;
            deliveries.push(self.delivery(seq, delivery_count, subject, &headers, payload)?);
        }

        let mut cursor = delivered_seq;
        'scan: while i64::try_from(deliveries.len()).unwrap_or(i64::MAX) < max {
            let chunk: Vec<(i64, String, String, Vec<u8>)> = sqlx::query_as(
                "SELECT seq, subject, headers, payload FROM messages
                 WHERE stream = $1 AND seq > $2
                 ORDER BY seq
                 LIMIT $3",
            )
            .bind(&self.stream)
            .bind(cursor)
            .bind(SCAN_CHUNK)
            .fetch_all(&mut *transaction)
            .await
            .map_err(database_error("Failed to read new messages"))?;
            let chunk_is_last = i64::try_from(chunk.len()).unwrap_or(i64::MAX) < SCAN_CHUNK;
            for (seq, subject, headers, payload) in chunk {
                if i64::try_from(deliveries.len()).unwrap_or(i64::MAX) >= max {
                    break 'scan;
                }
                cursor = seq;
                if !subject_matches(&filter_subject, &subject) {
                    continue;
                }
                sqlx::query(
                    "INSERT INTO pending (stream, consumer, seq, delivery_count, redeliver_at_ms)
                     VALUES ($1, $2, $3, 1, $4)",
                )
                .bind(&self.stream)
                .bind(&self.name)
                .bind(seq)
                .bind(redeliver_at_ms)
                .execute(&mut *transaction)
                .await
                .map_err(database_error("Failed to record a delivery"))?;
                deliveries.push(self.delivery(seq, 1, subject, &headers, payload)?);
            }
            if chunk_is_last {
                break;
            }
        }
        if cursor != delivered_seq {
            sqlx::query("UPDATE consumers SET delivered_seq = $3 WHERE stream = $1 AND name = $2")
                .bind(&self.stream)
                .bind(&self.name)
                .bind(cursor)
                .execute(&mut *transaction)
                .await
                .map_err(database_error("Failed to advance the consumer"))?;
        }

        let next_redelivery_ms = if deliveries.is_empty() {
            sqlx::query_scalar(
                "SELECT MIN(redeliver_at_ms) FROM pending WHERE stream = $1 AND consumer = $2",
            )
            .bind(&self.stream)
            .bind(&self.name)
            .fetch_one(&mut *transaction)
            .await
            .map_err(database_error("Failed to read the next redelivery"))?
        } else {
            None
        };
        transaction
            .commit()
            .await
            .map_err(database_error("Failed to commit deliveries"))?;
        Ok(Claim {
            deliveries,
            next_redelivery_ms,
        })
    }

    fn delivery(
        &self,
        seq: i64,
        delivery_count: i64,
        subject: String,
        headers: &str,
        payload: Vec<u8>,
    ) -> Result<super::Delivery, BusError> {
        let headers: BTreeMap<String, String> =
            serde_json::from_str(headers).context("Failed to decode stored message headers")?;
        Ok(super::Delivery {
            subject,
            headers,
            payload: Bytes::from(payload),
            delivery_count: sequence_from_db(delivery_count)?,
            stream_sequence: sequence_from_db(seq)?,
            acker: super::Acker::Embedded(EmbeddedAcker {
                bus: self.bus.clone(),
                stream: self.stream.clone(),
                consumer: self.name.clone(),
                sequence: seq,
                delivery_count,
            }),
        })
    }
}

// === impl EmbeddedAcker ===

impl EmbeddedAcker {
    /// The message is handled: it is never delivered to this consumer again, even if it was
    /// redelivered to another fetch meanwhile.
    pub(super) async fn ack(self) -> Result<(), BusError> {
        self.forget().await
    }

    /// Redelivers the message after `delay`, unless it has been redelivered already.
    pub(super) async fn nak(self, delay: Duration) -> Result<(), BusError> {
        let redeliver_at_ms = now_ms().saturating_add(duration_ms(delay));
        {
            let _write_guard = self.bus.inner.write_lock.lock().await;
            sqlx::query(
                "UPDATE pending SET redeliver_at_ms = $5
                 WHERE stream = $1 AND consumer = $2 AND seq = $3 AND delivery_count = $4",
            )
            .bind(&self.stream)
            .bind(&self.consumer)
            .bind(self.sequence)
            .bind(self.delivery_count)
            .bind(redeliver_at_ms)
            .execute(&self.bus.inner.pool)
            .await
            .map_err(database_error("Failed to nak a delivery"))?;
        }
        // Waiting fetches recompute their earliest deadline.
        self.bus.signal_change();
        Ok(())
    }

    /// Gives up on the message: it is never delivered to this consumer again.
    pub(super) async fn term(self) -> Result<(), BusError> {
        self.forget().await
    }

    /// Deletes the pending entry; the consumer's cursor is already past the message.
    async fn forget(self) -> Result<(), BusError> {
        let _write_guard = self.bus.inner.write_lock.lock().await;
        sqlx::query("DELETE FROM pending WHERE stream = $1 AND consumer = $2 AND seq = $3")
            .bind(&self.stream)
            .bind(&self.consumer)
            .bind(self.sequence)
            .execute(&self.bus.inner.pool)
            .await
            .map_err(database_error("Failed to settle a delivery"))?;
        Ok(())
    }
}

// === helpers ===

async fn load_streams(transaction: &mut WriteTransaction) -> Result<Vec<StoredStream>, BusError> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT name, subjects, duplicate_window_ms FROM streams ORDER BY name")
            .fetch_all(&mut **transaction)
            .await
            .map_err(database_error("Failed to read streams"))?;
    rows.into_iter()
        .map(|(name, subjects, duplicate_window_ms)| {
            let subjects: Vec<String> = serde_json::from_str(&subjects)
                .with_context(|| format!("Failed to decode the subjects of stream {name}"))?;
            Ok(StoredStream {
                name,
                subjects,
                duplicate_window_ms,
            })
        })
        .collect()
}

/// The bus's background task: prunes every [`PRUNE_INTERVAL`] until the bus is dropped (it holds
/// only a weak reference, so it never keeps the bus open).
async fn prune_periodically(inner: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(PRUNE_INTERVAL).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let bus = EmbeddedBus { inner };
        match bus.prune(SystemTime::now()).await {
            Ok(0) => {}
            Ok(n_deleted) => tracing::debug!(n_deleted, "Pruned acknowledged messages"),
            Err(BusError::Closed) => return,
            Err(error) => {
                tracing::warn!(error.message = %error, "Failed to prune the embedded bus");
            }
        }
    }
}

/// Maps a sqlx error: a closed pool means the bus is shut down; anything else is unexpected.
fn database_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> BusError {
    move |error| match error {
        sqlx::Error::PoolClosed => BusError::Closed,
        error => BusError::Unexpected(anyhow::Error::from(error).context(context)),
    }
}

fn stored_message(
    (seq, subject, headers, payload, stored_at_ms): MessageRow,
) -> Result<StoredMessage, BusError> {
    let headers: BTreeMap<String, String> =
        serde_json::from_str(&headers).context("Failed to decode stored message headers")?;
    let stored_at_ms = u64::try_from(stored_at_ms).unwrap_or(0);
    Ok(StoredMessage {
        sequence: sequence_from_db(seq)?,
        subject,
        headers,
        payload: Bytes::from(payload),
        stored_at: UNIX_EPOCH + Duration::from_millis(stored_at_ms),
    })
}

/// Sequences and delivery counts are stored as SQLite integers (i64) and are never negative.
fn sequence_from_db(value: i64) -> Result<u64, BusError> {
    u64::try_from(value)
        .with_context(|| format!("Negative sequence {value} in the embedded bus"))
        .map_err(BusError::Unexpected)
}

/// Milliseconds, saturating at `i64::MAX` (about 292 million years).
fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Wall-clock milliseconds since the Unix epoch: deadlines must survive a restart, which rules
/// out a monotonic clock. A clock before 1970 counts as the epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, duration_ms)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;

    use super::{EmbeddedBus, RETENTION};
    use crate::bus::{BusError, ConsumerSpec, Delivery, OutgoingMessage, StreamSpec};

    /// Long enough never to expire in a test unless the test means it to.
    const LONG_ACK_WAIT: Duration = Duration::from_secs(60);
    /// How long a test waits for something that should happen soon; a fetch returns earlier.
    const PATIENCE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_published_message_is_delivered_once_and_not_redelivered_after_ack() {
        // Arrange
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;
        let mut consumer = bus
            .consumer(&consumer_spec(
                "billing",
                "orders.>",
                Duration::from_millis(100),
            ))
            .await
            .unwrap();
        let mut headers = BTreeMap::new();
        headers.insert("ce-type".to_owned(), "order.placed".to_owned());
        let message = OutgoingMessage {
            headers: headers.clone(),
            ..message("orders.placed", "event-1")
        };

        // Act
        let acks = bus.publish_batch(vec![message]).await.unwrap();
        let mut deliveries = consumer.fetch(10, PATIENCE).await.unwrap();

        // Assert
        assert_eq!(acks.len(), 1);
        assert_eq!((acks[0].sequence, acks[0].duplicate), (1, false));
        assert_eq!(deliveries.len(), 1);
        let delivery = deliveries.remove(0);
        assert_eq!(delivery.subject, "orders.placed");
        assert_eq!(delivery.headers, headers);
        assert_eq!(delivery.payload, Bytes::from_static(b"event-1"));
        assert_eq!((delivery.stream_sequence, delivery.delivery_count), (1, 1));
        delivery.ack().await.unwrap();
        // Three ack waits: an unacked delivery would be back by now.
        let after_ack = consumer
            .fetch(10, Duration::from_millis(300))
            .await
            .unwrap();
        assert!(after_ack.is_empty());
    }

    #[tokio::test]
    async fn a_second_publish_with_the_same_id_is_a_duplicate_and_delivered_once() {
        // Arrange
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;
        let mut consumer = bus
            .consumer(&consumer_spec("billing", "orders.>", LONG_ACK_WAIT))
            .await
            .unwrap();

        // Act
        let first = bus
            .publish_batch(vec![message("orders.placed", "event-1")])
            .await
            .unwrap();
        let again = bus
            .publish_batch(vec![
                message("orders.placed", "event-2"),
                message("orders.placed", "event-1"),
                message("orders.placed", "event-2"),
            ])
            .await
            .unwrap();
        let deliveries = consumer.fetch(10, PATIENCE).await.unwrap();

        // Assert
        assert_eq!((first[0].sequence, first[0].duplicate), (1, false));
        let again: Vec<(u64, bool)> = again
            .iter()
            .map(|ack| (ack.sequence, ack.duplicate))
            .collect();
        assert_eq!(again, vec![(2, false), (1, true), (2, true)]);
        assert_eq!(sequences(&deliveries), vec![1, 2]);
    }

    #[tokio::test]
    async fn a_nak_redelivers_after_its_delay_with_delivery_count_two() {
        // Arrange
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;
        let mut consumer = bus
            .consumer(&consumer_spec("billing", "orders.>", LONG_ACK_WAIT))
            .await
            .unwrap();
        bus.publish_batch(vec![message("orders.placed", "event-1")])
            .await
            .unwrap();
        let mut first = consumer.fetch(10, PATIENCE).await.unwrap();
        assert_eq!(first.len(), 1);

        // Act
        first
            .remove(0)
            .nak(Duration::from_millis(100))
            .await
            .unwrap();
        let redelivered = consumer.fetch(10, PATIENCE).await.unwrap();

        // Assert
        assert_eq!(redelivered.len(), 1);
        assert_eq!(redelivered[0].stream_sequence, 1);
        assert_eq!(redelivered[0].delivery_count, 2);
    }

    #[tokio::test]
    async fn a_delivery_not_acked_within_the_ack_wait_is_redelivered() {
        // Arrange
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;
        let mut consumer = bus
            .consumer(&consumer_spec(
                "billing",
                "orders.>",
                Duration::from_millis(100),
            ))
            .await
            .unwrap();
        bus.publish_batch(vec![message("orders.placed", "event-1")])
            .await
            .unwrap();

        // Act
        let first = consumer.fetch(10, PATIENCE).await.unwrap();
        let redelivered = consumer.fetch(10, PATIENCE).await.unwrap();

        // Assert
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].delivery_count, 1);
        assert_eq!(redelivered.len(), 1);
        assert_eq!(redelivered[0].stream_sequence, 1);
        assert_eq!(redelivered[0].delivery_count, 2);
    }

    #[tokio::test]
    async fn a_consumer_receives_only_subjects_matching_its_filter() {
        // Arrange
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;
        let mut consumer = bus
            .consumer(&consumer_spec("shipping", "orders.paid.*", LONG_ACK_WAIT))
            .await
            .unwrap();

        // Act
        bus.publish_batch(vec![
            message("orders.paid.card", "event-1"),
            message("orders.placed", "event-2"),
            message("orders.paid.invoice", "event-3"),
            message("orders.cancelled", "event-4"),
        ])
        .await
        .unwrap();
        let deliveries = consumer.fetch(10, PATIENCE).await.unwrap();
        let later = consumer
            .fetch(10, Duration::from_millis(100))
            .await
            .unwrap();

        // Assert
        let subjects: Vec<&str> = deliveries
            .iter()
            .map(|delivery| delivery.subject.as_str())
            .collect();
        assert_eq!(subjects, vec!["orders.paid.card", "orders.paid.invoice"]);
        assert_eq!(sequences(&deliveries), vec![1, 3]);
        assert!(later.is_empty());
    }

    #[tokio::test]
    async fn a_tail_sees_only_what_is_stored_after_it_began_matching_its_filter_in_order() {
        // Arrange
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;
        bus.publish_batch(vec![message("orders.paid.card", "before")])
            .await
            .unwrap();
        let mut tail = bus.tail("ORDERS", "orders.paid.*").await.unwrap();

        // Act: more than one scan's worth, so the tail reads on past a full chunk.
        let n_after = usize::try_from(super::SCAN_CHUNK).unwrap() + 2;
        let published: Vec<OutgoingMessage> = (0..n_after)
            .flat_map(|n| {
                [
                    message("orders.placed", &format!("placed-{n}")),
                    message("orders.paid.card", &format!("paid-{n}")),
                ]
            })
            .collect();
        let waiting = tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < n_after {
                let next = tokio::time::timeout(PATIENCE, tail.next()).await;
                seen.push(next.expect("a tailed message in time").unwrap());
            }
            seen
        });
        bus.publish_batch(published).await.unwrap();
        let seen = waiting.await.unwrap();

        // Assert
        let payloads: Vec<String> = seen
            .iter()
            .map(|message| String::from_utf8(message.payload.to_vec()).unwrap())
            .collect();
        let expected: Vec<String> = (0..n_after).map(|n| format!("paid-{n}")).collect();
        assert_eq!(payloads, expected);
        assert!(
            seen.windows(2)
                .all(|pair| pair[0].sequence < pair[1].sequence)
        );
    }

    #[tokio::test]
    async fn two_durable_consumers_each_receive_every_message() {
        // Arrange
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;
        let mut billing = bus
            .consumer(&consumer_spec("billing", "orders.>", LONG_ACK_WAIT))
            .await
            .unwrap();
        let mut shipping = bus
            .consumer(&consumer_spec("shipping", "orders.>", LONG_ACK_WAIT))
            .await
            .unwrap();

        // Act
        bus.publish_batch(vec![
            message("orders.placed", "event-1"),
            message("orders.paid", "event-2"),
        ])
        .await
        .unwrap();
        let billed = billing.fetch(10, PATIENCE).await.unwrap();
        let shipped = shipping.fetch(10, PATIENCE).await.unwrap();

        // Assert
        assert_eq!(sequences(&billed), vec![1, 2]);
        assert_eq!(sequences(&shipped), vec![1, 2]);
    }

    #[tokio::test]
    async fn fetchers_sharing_a_durable_consumer_never_hold_the_same_message() {
        // Arrange
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;
        let spec = consumer_spec("billing", "orders.>", LONG_ACK_WAIT);
        let mut first_fetcher = bus.consumer(&spec).await.unwrap();
        let mut second_fetcher = bus.consumer(&spec).await.unwrap();
        let messages = (1..=20)
            .map(|n| message("orders.placed", &format!("event-{n}")))
            .collect();
        bus.publish_batch(messages).await.unwrap();

        // Act
        let (first, second) = tokio::join!(
            first_fetcher.fetch(7, PATIENCE),
            second_fetcher.fetch(7, PATIENCE)
        );
        let rest = first_fetcher.fetch(100, PATIENCE).await.unwrap();

        // Assert
        let mut all = sequences(&first.unwrap());
        all.extend(sequences(&second.unwrap()));
        all.extend(sequences(&rest));
        all.sort_unstable();
        assert_eq!(all, (1..=20).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn undelivered_and_unacked_messages_survive_reopening_the_bus() {
        // Arrange
        let directory = TestDirectory::new();
        let spec = consumer_spec("billing", "orders.>", Duration::from_millis(200));
        {
            let bus = open_with_stream(&directory).await;
            let mut consumer = bus.consumer(&spec).await.unwrap();
            bus.publish_batch(vec![
                message("orders.placed", "event-1"),
                message("orders.paid", "event-2"),
            ])
            .await
            .unwrap();
            let unacked = consumer.fetch(1, PATIENCE).await.unwrap();
            assert_eq!(sequences(&unacked), vec![1]);
        }

        // Act
        let bus = EmbeddedBus::open(&directory.bus_path()).await.unwrap();
        let mut consumer = bus.consumer(&spec).await.unwrap();
        let mut deliveries = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while deliveries.len() < 2 && tokio::time::Instant::now() < deadline {
            deliveries.extend(consumer.fetch(10, PATIENCE).await.unwrap());
        }

        // Assert
        deliveries.sort_by_key(|delivery| delivery.stream_sequence);
        let seen: Vec<(u64, u64)> = deliveries
            .iter()
            .map(|delivery| (delivery.stream_sequence, delivery.delivery_count))
            .collect();
        assert_eq!(seen, vec![(1, 2), (2, 1)]);
        let ack = bus
            .publish_batch(vec![message("orders.placed", "event-1")])
            .await
            .unwrap();
        assert!(
            ack[0].duplicate,
            "message ids are remembered across restarts"
        );
    }

    #[tokio::test]
    async fn fetch_returns_nothing_once_its_wait_is_over() {
        // Arrange
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;
        let mut consumer = bus
            .consumer(&consumer_spec("billing", "orders.>", LONG_ACK_WAIT))
            .await
            .unwrap();
        let started = tokio::time::Instant::now();

        // Act
        let deliveries = consumer
            .fetch(10, Duration::from_millis(100))
            .await
            .unwrap();

        // Assert
        assert!(deliveries.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_waiting_fetch_wakes_up_on_publish() {
        // Arrange
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;
        let mut consumer = bus
            .consumer(&consumer_spec("billing", "orders.>", LONG_ACK_WAIT))
            .await
            .unwrap();
        let waiting = tokio::spawn(async move { consumer.fetch(10, PATIENCE).await });

        // Act
        bus.publish_batch(vec![message("orders.placed", "event-1")])
            .await
            .unwrap();

        // Assert
        let deliveries = waiting.await.unwrap().unwrap();
        assert_eq!(sequences(&deliveries), vec![1]);
    }

    #[tokio::test]
    async fn a_subject_no_stream_holds_is_rejected() {
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;

        let result = bus
            .publish_batch(vec![message("payments.received", "event-1")])
            .await;

        assert!(
            matches!(result, Err(BusError::NoStream(subject)) if subject == "payments.received")
        );
    }

    #[tokio::test]
    async fn read_stream_returns_matching_messages_without_delivering_them() {
        // Arrange
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;
        bus.publish_batch(vec![
            message("orders.placed", "event-1"),
            message("orders.paid", "event-2"),
            message("orders.placed", "event-3"),
        ])
        .await
        .unwrap();

        // Act
        let placed = bus
            .read_stream("ORDERS", "orders.placed", 1, 10)
            .await
            .unwrap();
        let from_two = bus.read_stream("ORDERS", "orders.>", 2, 1).await.unwrap();

        // Assert
        let placed: Vec<(u64, Bytes)> = placed
            .into_iter()
            .map(|message| (message.sequence, message.payload))
            .collect();
        assert_eq!(
            placed,
            vec![
                (1, Bytes::from_static(b"event-1")),
                (3, Bytes::from_static(b"event-3"))
            ]
        );
        assert_eq!(from_two.len(), 1);
        assert_eq!(from_two[0].sequence, 2);
        let mut consumer = bus
            .consumer(&consumer_spec("billing", "orders.>", LONG_ACK_WAIT))
            .await
            .unwrap();
        let deliveries = consumer.fetch(10, PATIENCE).await.unwrap();
        assert_eq!(
            sequences(&deliveries),
            vec![1, 2, 3],
            "reading delivered nothing"
        );
    }

    #[tokio::test]
    async fn a_deleted_message_is_neither_read_nor_redelivered() {
        // Arrange: message 1 delivered but not acked.
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;
        let mut consumer = bus
            .consumer(&consumer_spec(
                "billing",
                "orders.>",
                Duration::from_millis(100),
            ))
            .await
            .unwrap();
        bus.publish_batch(vec![
            message("orders.placed", "event-1"),
            message("orders.placed", "event-2"),
        ])
        .await
        .unwrap();
        let first = consumer.fetch(1, PATIENCE).await.unwrap();
        assert_eq!(sequences(&first), vec![1]);

        // Act
        let deleted = bus.delete_message("ORDERS", 1).await.unwrap();
        let deleted_again = bus.delete_message("ORDERS", 1).await.unwrap();

        // Assert
        assert!(deleted);
        assert!(!deleted_again);
        let stored = bus.read_stream("ORDERS", "orders.>", 1, 10).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].sequence, 2);
        // Past message 1's ack wait: only message 2 comes.
        let next = consumer.fetch(10, PATIENCE).await.unwrap();
        assert_eq!(sequences(&next), vec![2]);
        for delivery in next {
            delivery.ack().await.unwrap();
        }
        let later = consumer
            .fetch(10, Duration::from_millis(300))
            .await
            .unwrap();
        assert!(later.is_empty());
    }

    #[tokio::test]
    async fn a_message_over_the_maximum_size_is_refused() {
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;
        let oversize = OutgoingMessage {
            payload: vec![0; super::MAX_MESSAGE_SIZE + 1].into(),
            ..message("orders.placed", "event-1")
        };

        let result = bus.publish_batch(vec![oversize]).await;

        assert!(
            matches!(result, Err(BusError::TooLarge { size, .. }) if size == super::MAX_MESSAGE_SIZE + 1),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn retention_deletes_old_acknowledged_messages_and_keeps_unacknowledged_ones_across_a_restart()
     {
        // Arrange: billing acks 1..=4; shipping acks 1, 2 and 4 and still holds 3.
        let directory = TestDirectory::new();
        let published_at = SystemTime::now();
        {
            let bus = open_with_stream(&directory).await;
            let mut billing = bus
                .consumer(&consumer_spec("billing", "orders.>", LONG_ACK_WAIT))
                .await
                .unwrap();
            let mut shipping = bus
                .consumer(&consumer_spec("shipping", "orders.>", LONG_ACK_WAIT))
                .await
                .unwrap();
            let messages = (1..=4)
                .map(|n| message("orders.placed", &format!("event-{n}")))
                .collect();
            bus.publish_batch(messages).await.unwrap();
            for delivery in billing.fetch(10, PATIENCE).await.unwrap() {
                delivery.ack().await.unwrap();
            }
            let shipped = shipping.fetch(10, PATIENCE).await.unwrap();
            assert_eq!(sequences(&shipped), vec![1, 2, 3, 4]);
            for delivery in shipped {
                if delivery.stream_sequence != 3 {
                    delivery.ack().await.unwrap();
                }
            }
        }
        let bus = EmbeddedBus::open(&directory.bus_path()).await.unwrap();

        // Act
        let n_young = bus.prune(published_at).await.unwrap();
        let past_retention = published_at + RETENTION + Duration::from_secs(60);
        let n_old = bus.prune(past_retention).await.unwrap();

        // Assert
        assert_eq!(n_young, 0, "nothing is younger than the retention");
        assert_eq!(n_old, 2, "message 3 is pending, 4 lies above the ack floor");
        drop(bus);
        let bus = EmbeddedBus::open(&directory.bus_path()).await.unwrap();
        let kept = bus.read_stream("ORDERS", "orders.>", 1, 10).await.unwrap();
        let kept: Vec<u64> = kept.iter().map(|message| message.sequence).collect();
        assert_eq!(kept, vec![3, 4]);
        assert_eq!(bus.prune(past_retention).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn retention_keeps_every_message_of_a_stream_without_consumers() {
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;
        bus.publish_batch(vec![message("orders.placed", "event-1")])
            .await
            .unwrap();

        let far_future = SystemTime::now() + RETENTION * 10;
        let n_deleted = bus.prune(far_future).await.unwrap();

        assert_eq!(n_deleted, 0);
        let kept = bus.read_stream("ORDERS", "orders.>", 1, 10).await.unwrap();
        assert_eq!(kept.len(), 1);
    }

    #[tokio::test]
    async fn an_id_is_a_duplicate_within_the_window_and_forgotten_after_it() {
        // Arrange: the test stream's window is 120 s.
        let directory = TestDirectory::new();
        let bus = open_with_stream(&directory).await;
        let window_ms = 120_000;
        let start_ms = super::now_ms();
        let publish_at = |offset_ms: i64| {
            let bus = bus.clone();
            async move {
                let acks = bus
                    .publish_batch_at(
                        vec![message("orders.placed", "event-1")],
                        start_ms + offset_ms,
                    )
                    .await
                    .unwrap();
                (acks[0].sequence, acks[0].duplicate)
            }
        };

        // Act
        let first = publish_at(0).await;
        let within_window = publish_at(window_ms - 1).await;
        let past_window = publish_at(window_ms).await;
        let after_the_new_one = publish_at(window_ms + 1).await;

        // Assert
        assert_eq!(first, (1, false));
        assert_eq!(within_window, (1, true));
        assert_eq!(past_window, (2, false), "the id was forgotten");
        assert_eq!(after_the_new_one, (2, true), "the new message holds the id");
        let stored = bus.read_stream("ORDERS", "orders.>", 1, 10).await.unwrap();
        assert_eq!(stored.len(), 2, "the old message stays until retention");
    }

    // === helpers ===

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TestDirectory {
        path: PathBuf,
    }

    impl TestDirectory {
        fn new() -> TestDirectory {
            let path = std::env::temp_dir().join(format!("emporium-bus-{}", uuid::Uuid::new_v4()));
            TestDirectory { path }
        }

        /// In a subdirectory that does not exist yet, so opening must create it.
        fn bus_path(&self) -> PathBuf {
            self.path.join("data").join("bus.db")
        }
    }

    impl Drop for TestDirectory {
        fn drop(&mut self) {
            // Best effort: a leftover temp directory is harmless.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }

    async fn open_with_stream(directory: &TestDirectory) -> EmbeddedBus {
        let bus = EmbeddedBus::open(&directory.bus_path()).await.unwrap();
        let spec = StreamSpec {
            name: "ORDERS".to_owned(),
            subjects: vec!["orders.>".to_owned()],
            duplicate_window: Duration::from_secs(120),
        };
        bus.ensure_stream(&spec).await.unwrap();
        // Idempotent.
        bus.ensure_stream(&spec).await.unwrap();
        bus
    }

    fn consumer_spec(name: &str, filter_subject: &str, ack_wait: Duration) -> ConsumerSpec {
        ConsumerSpec {
            stream: "ORDERS".to_owned(),
            durable_name: name.to_owned(),
            filter_subject: filter_subject.to_owned(),
            ack_wait,
        }
    }

    fn message(subject: &str, id: &str) -> OutgoingMessage {
        OutgoingMessage {
            subject: subject.to_owned(),
            id: id.to_owned(),
            headers: BTreeMap::new(),
            payload: Bytes::copy_from_slice(id.as_bytes()),
        }
    }

    fn sequences(deliveries: &[Delivery]) -> Vec<u64> {
        deliveries
            .iter()
            .map(|delivery| delivery.stream_sequence)
            .collect()
    }
}
