//! Storage on two backends with one text per query. A service opens a [`Database`] from one URL
//! (`postgres://…` or `sqlite://…`), and writes each query once inside [`on_backend!`], which
//! compiles the body for both concrete sqlx drivers. PostgreSQL keeps its native types (uuid,
//! timestamptz, boolean, bigint); SQLite stores uuids as 16-byte blobs and times as fixed-width
//! UTC text so that they sort. See docs/adr/0001-one-query-text-two-backends.md.
//!
//! Writes on SQLite queue in this process: SQLite has one write lock per file, and writers that
//! race for it spin in its busy handler (sleeps of up to 100 ms). So every write transaction on
//! a SQLite [`Database`] first takes the file's write turn, one queue per file per process,
//! shared by every `Database` opened on that file; migrations take it too. Writers that queue
//! together share one `BEGIN IMMEDIATE` … `COMMIT`, each in its own savepoint, so that one fsync
//! makes all of them durable ([`group_commit`]). Readers never queue (WAL lets them read beside
//! the writer). SQLite's busy timeout is left for writers in other processes.
//!
//! On PostgreSQL a commit that recorded outbox events is followed by a notification on
//! [`OUTBOX_CHANNEL`], so that the relay of another replica wakes at once. It is sent after the
//! commit, apart from the writer and coalesced ([`CommitNotifier`]), not inside the transaction:
//! PostgreSQL serializes the commits of notifying transactions on one lock held across their
//! WAL flush, so writers that notify no longer share fsyncs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, PoisonError, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::Notify;

use crate::error::Error;
use crate::outbox::NewEvent;
use crate::pagination::{Direction, Page, PageRequest};

pub use self::group_commit::WriteQueueStats;
use self::group_commit::{FileWrites, Member, WriteQueue};

mod group_commit;

/// Chassis tables every service database has: the outbox (event log) and the consumer inbox.
static CHASSIS_POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
static CHASSIS_SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a PostgreSQL connection may sit idle in the pool before it is pinged when acquired:
/// one used this recently is taken as alive, which saves a round trip per call. One that died
/// within it (a server restart) fails its next statement once, and is then dropped.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The most each SQLite connection keeps in its page cache, in KiB (16 MiB: an embedded
/// deployment's hot tables and indexes).
const SQLITE_CACHE_KIB: u32 = 16 * 1024;

/// How long a query waits for a pooled connection, or on SQLite for the write lock, before it
/// fails.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// The PostgreSQL notification channel on which a commit that recorded outbox events wakes the
/// relays listening to it. PostgreSQL scopes channels to a database, and each service owns its
/// database, so services sharing a server never wake each other.
pub const OUTBOX_CHANNEL: &str = "emporium_outbox";

/// The smallest PostgreSQL pool whose relay listens on [`OUTBOX_CHANNEL`]: the listener holds
/// one of the pool's connections and the relay another while it publishes, so a smaller pool
/// would leave none for calls. A smaller pool's relay only polls.
pub const MIN_LISTENING_POOL: u32 = 3;

/// Every SQLite file's write queue in this process, by canonical path: all the `Database`s
/// opened on one file share one, so that they queue for its write lock here. An entry lives as
/// long as some `Database` on the file does.
static SQLITE_WRITE_QUEUES: std::sync::Mutex<BTreeMap<PathBuf, Weak<FileWrites>>> =
    std::sync::Mutex::new(BTreeMap::new());

/// A service's schema, once per backend (DDL is the one place the dialects differ).
#[derive(Clone, Copy, Debug)]
pub struct Migrations {
    pub postgres: &'static Migrator,
    pub sqlite: &'static Migrator,
}

/// Which SQL engine a [`Database`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The backend's `db.system.name`, as OpenTelemetry's conventions spell it.
    pub fn system_name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// A connection pool to a service's own database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Database {
    pool: Pool,
    /// Woken when a transaction that wrote outbox events commits, so the relay publishes at once
    /// instead of at its next poll.
    outbox_signal: Arc<Notify>,
    /// On PostgreSQL, wakes other processes' relays after such a commit.
    commit_notifier: Option<CommitNotifier>,
    /// How long a write waits for its turn before it fails, like the pool's acquire timeout.
    write_wait: Duration,
    /// What it exports at `/metrics`, once named by its service ([`Database::named`]).
    metrics: Option<Arc<DatabaseMetrics>>,
}

/// A named database's series, registered once: how long each begin waited for its connection
/// (and on SQLite its write turn), begins that failed, and how long write transactions took.
#[derive(Debug)]
struct DatabaseMetrics {
    acquire_write: ::metrics::Histogram,
    acquire_read: ::metrics::Histogram,
    acquire_failures: ::metrics::Counter,
    committed: ::metrics::Histogram,
    rolled_back: ::metrics::Histogram,
}

#[derive(Clone, Debug)]
enum Pool {
    Postgres(PgPool),
    /// With the file's write queue in this process, whose turn every write transaction and
    /// migration takes (see the module docs).
    Sqlite(SqlitePool, WriteQueue),
}

/// A database transaction on either backend, or the connection of a [`Database::single_read`].
/// Dropping it without [`Transaction::commit`] rolls back.
#[derive(Debug)]
pub struct Transaction {
    /// `None` only once [`Transaction::commit`] or [`Transaction::rollback`] took it.
    connection: Option<TransactionConnection>,
    wrote_events: bool,
    outbox_signal: Arc<Notify>,
    /// On PostgreSQL, tells other processes' relays of a commit that recorded events.
    commit_notifier: Option<CommitNotifier>,
    /// A write transaction of a named database: when it began, timed at commit or rollback.
    timed: Option<(Arc<DatabaseMetrics>, Instant)>,
    /// A write transaction's `transaction` span, from `begin` until it commits, rolls back or is
    /// dropped; the outbox's `record` span is its child. None for reads, and for writes made
    /// outside any span (background upkeep), which would each start a trace of their own.
    span: tracing::Span,
}

/// Tells the relays of other processes that a transaction which recorded outbox events has
/// committed: `NOTIFY` on [`OUTBOX_CHANNEL`], sent after the commit on a pooled connection of its
/// own, so the writer does not wait for it. Coalesced: at most one notification is in flight per
/// database in this process, and the commits made while it is sent are covered by one more
/// after it (sent after they committed, so a relay woken by it sees them).
///
/// Not inside the writer's transaction, where it would be delivered exactly at commit:
/// PostgreSQL takes one lock for the commits of notifying transactions and holds it across
/// their WAL flush, so concurrent writers would each wait for their own fsync in turn instead of
/// sharing one (durable creates measured at a tenth of pgbench's insert rate that way).
#[derive(Clone, Debug)]
struct CommitNotifier {
    pool: PgPool,
    state: Arc<std::sync::Mutex<NotifierState>>,
}

#[derive(Debug, Default)]
struct NotifierState {
    /// A task is sending notifications.
    sending: bool,
    /// A commit came after the notification being sent was begun: the task sends one more.
    pending: bool,
}

/// The concrete transaction, or for [`Database::single_read`] a pooled connection in autocommit
/// mode; not for direct use.
#[derive(Debug)]
enum TransactionConnection {
    Postgres(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    /// A SQLite write transaction: a savepoint in its file's group commit.
    SqliteWrite(Member),
    PostgresAutocommit(PoolConnection<Postgres>),
    SqliteAutocommit(PoolConnection<Sqlite>),
}

/// The connection a query body runs on, matched by [`on_backend!`]; not for direct use.
#[doc(hidden)]
#[derive(Debug)]
pub enum BackendConnection<'c> {
    Postgres(&'c mut PgConnection),
    Sqlite(&'c mut SqliteConnection),
}

/// Runs one query body against whichever backend `tx` (a `&mut Transaction`) is on. Inside the
/// body, `conn` is a `&mut PgConnection` or `&mut SqliteConnection`; write the body once, using
/// `$1…$N` placeholders and types both drivers encode (see the ADR).
///
/// ```no_run
/// # async fn count_products(tx: &mut chassis::storage::Transaction) -> Result<i64, sqlx::Error> {
/// let n_products: i64 = chassis::on_backend!(tx, conn => {
///     sqlx::query_scalar("SELECT count(*) FROM products").fetch_one(conn).await
/// })?;
/// # Ok(n_products)
/// # }
/// ```
#[macro_export]
macro_rules! on_backend {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx.connection_mut() {
            $crate::storage::BackendConnection::Postgres($conn) => $body,
            $crate::storage::BackendConnection::Sqlite($conn) => $body,
        }
    };
}

/// Declares a row struct whose fields are a table's columns, with `COLUMNS`, their names in
/// the fields' order for a `SELECT` or `RETURNING` list, and a `sqlx::FromRow` that reads the
/// fields by position. sqlx's derive looks each column up by name, a hash-map probe per column
/// per row (4 % of a SQLite list page's instructions). The row must come from a statement that
/// lists `COLUMNS` (and only them) in that order, which holds when the statement is written
/// with `COLUMNS`; a field whose type does not match its column's is still a decode error.
///
/// ```
/// chassis::table_row! {
///     struct ThingRow {
///         id: uuid::Uuid,
///         name: String,
///     }
/// }
/// assert_eq!(ThingRow::COLUMNS, "id, name");
/// ```
#[macro_export]
macro_rules! table_row {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident { $($(#[$field_meta:meta])* $field:ident: $type:ty),+ $(,)? }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$field_meta])* $field: $type),+
        }

        impl $name {
            /// The row's columns, in its fields' order.
            #[allow(dead_code)]
            $vis const COLUMNS: &'static str = $crate::table_row!(@names $($field),+);
        }

        impl<'r, R> ::sqlx::FromRow<'r, R> for $name
        where
            R: ::sqlx::Row,
            usize: ::sqlx::ColumnIndex<R>,
            $($type: ::sqlx::Decode<'r, R::Database> + ::sqlx::Type<R::Database>,)+
        {
            fn from_row(row: &'r R) -> Result<Self, ::sqlx::Error> {
                let mut position = 0_usize..;
                Ok($name {
                    $($field: row.try_get(position.next().unwrap_or_default())?,)+
                })
            }
        }
    };
    (@names $first:ident $(, $rest:ident)*) => {
        concat!(stringify!($first) $(, ", ", stringify!($rest))*)
    };
}

/// A service's pool size unless `EMPORIUM_DATABASE_MAX_CONNECTIONS` says otherwise. PostgreSQL:
/// 5, so six services with three replicas each open at most 6 × 3 × 5 = 90 connections, within a
/// server's default `max_connections = 100` less its 3 superuser slots, with 7 to spare for a
/// migration job and an operator. SQLite: 8 (one writer at a time anyway; readers in parallel).
pub fn default_max_connections(backend: Backend) -> u32 {
    match backend {
        Backend::Postgres => 5,
        Backend::Sqlite => 8,
    }
}

// === impl Database ===

impl Database {
    /// Opens a pool from `url` and runs the chassis' and the service's migrations.
    pub async fn connect(url: &str, migrations: Migrations) -> anyhow::Result<Database> {
        Database::connect_with(url, None, migrations).await
    }

    /// [`Database::connect`] with a pool of at most `max_connections` (`None`: the backend's
    /// [`default_max_connections`]).
    pub async fn connect_with(
        url: &str,
        max_connections: Option<u32>,
        migrations: Migrations,
    ) -> anyhow::Result<Database> {
        let database = Database::open_with(url, max_connections).await?;
        database.migrate(migrations).await?;
        Ok(database)
    }

    /// Opens a pool of the backend's default size without migrating.
    pub async fn open(url: &str) -> anyhow::Result<Database> {
        Database::open_pool(url, None, DEFAULT_WAIT).await
    }

    /// Opens a pool without migrating, whose waits for a connection (and on SQLite for the
    /// write lock) give up after `wait` with an error instead of [`DEFAULT_WAIT`]. Tests of
    /// database outages use a short one, so an outage shows as errors within the test's time.
    pub async fn open_with_timeout(url: &str, wait: Duration) -> anyhow::Result<Database> {
        Database::open_pool(url, None, wait).await
    }

    /// Opens a pool of at most `max_connections` (`None`: the backend's default) without
    /// migrating.
    pub async fn open_with(url: &str, max_connections: Option<u32>) -> anyhow::Result<Database> {
        Database::open_pool(url, max_connections, DEFAULT_WAIT).await
    }

    /// Opens a pool without migrating whose SQLite connections fail at once with SQLITE_BUSY,
    /// instead of waiting in SQLite's busy handler, whenever they meet the write lock taken.
    /// Writers in this process never meet it (they queue for their write turn first), so
    /// nothing should fail; tests use it to show that no write spins in the busy handler.
    pub async fn open_without_busy_wait(url: &str) -> anyhow::Result<Database> {
        Database::open_pool_with_busy_timeout(url, None, DEFAULT_WAIT, Duration::ZERO).await
    }

    async fn open_pool(
        url: &str,
        max_connections: Option<u32>,
        wait: Duration,
    ) -> anyhow::Result<Database> {
        Database::open_pool_with_busy_timeout(url, max_connections, wait, wait).await
    }

    async fn open_pool_with_busy_timeout(
        url: &str,
        max_connections: Option<u32>,
        wait: Duration,
        busy_timeout: Duration,
    ) -> anyhow::Result<Database> {
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).context("Invalid PostgreSQL URL")?;
            let pool = PgPoolOptions::new()
                .max_connections(
                    max_connections.unwrap_or(default_max_connections(Backend::Postgres)),
                )
                .acquire_timeout(wait)
                // sqlx pings a connection on every acquire by default, a round trip more per
                // call (it also pings on every release, which drops a connection a failure broke).
                // Only one idle long enough to have died unseen is pinged here, as connection
                // pools commonly do (HikariCP's alive-bypass window).
                .test_before_acquire(false)
                .before_acquire(|connection, metadata| {
                    Box::pin(async move {
                        if metadata.idle_for >= PING_IDLE_AFTER {
                            sqlx::Connection::ping(connection).await?;
                        }
                        Ok(true)
                    })
                })
                .connect_with(options)
                .await
                .context("Failed to connect to PostgreSQL")?;
            Pool::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .context("Invalid SQLite URL")?
                .create_if_missing(true)
                .foreign_keys(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit the caller saw is on disk, events included.
                .synchronous(SqliteSynchronous::Full)
                // Only writers in other processes make a connection wait here: this process's
                // writers queue for their write turn first.
                .busy_timeout(busy_timeout)
                // Each connection's page cache (2 MiB by default: a table past it was read again
                // with a syscall per page missed, so lists slowed as the table grew). Allocated
                // as pages are read. Not mmap: an I/O error there is a SIGBUS, not an error.
                .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"));
            let path = options.get_filename().to_owned();
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("Failed to create {}", parent.display()))?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(
                    max_connections.unwrap_or(default_max_connections(Backend::Sqlite)),
                )
                .acquire_timeout(wait)
                // No ping on acquire, which is a hop to the connection's worker thread and back
                // per call: an open file does not go away while idle (and sqlx pings on release,
                // which drops a connection a failure broke).
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .context("Failed to open SQLite database")?;
            Pool::Sqlite(pool, sqlite_write_queue(&path))
        } else {
            anyhow::bail!("database URL must start with postgres:// or sqlite: (got {url:?})");
        };
        let commit_notifier = match &pool {
            Pool::Postgres(pool) => Some(CommitNotifier::new(pool.clone())),
            Pool::Sqlite(..) => None,
        };
        Ok(Database {
            pool,
            outbox_signal: Arc::new(Notify::new()),
            commit_notifier,
            write_wait: wait,
            metrics: None,
        })
    }

    /// Exports the pool's waits and the write transactions' latency at `/metrics`, labelled
    /// `service`: `emporium_db_acquire_seconds{kind}`, `emporium_db_acquire_failures_total` and
    /// `emporium_db_transaction_seconds{outcome}`.
    pub fn named(mut self, service: &'static str) -> Database {
        crate::metrics::handle();
        let acquire = |kind: &'static str| ::metrics::histogram!("emporium_db_acquire_seconds", "service" => service, "kind" => kind);
        let transaction = |outcome: &'static str| ::metrics::histogram!("emporium_db_transaction_seconds", "service" => service, "outcome" => outcome);
        self.metrics = Some(Arc::new(DatabaseMetrics {
            acquire_write: acquire("write"),
            acquire_read: acquire("read"),
            acquire_failures: ::metrics::counter!("emporium_db_acquire_failures_total", "service" => service),
            committed: transaction("commit"),
            rolled_back: transaction("rollback"),
        }));
        self
    }

    /// Runs pending migrations: the chassis tables first, then the service's.
    pub async fn migrate(&self, migrations: Migrations) -> anyhow::Result<()> {
        // Two migrators share one history table, so each must ignore the other's versions.
        // Chassis versions are small integers; services use timestamps.
        let (chassis, service) = match self.backend() {
            Backend::Postgres => (&CHASSIS_POSTGRES, migrations.postgres),
            Backend::Sqlite => (&CHASSIS_SQLITE, migrations.sqlite),
        };
        // Migrations write outside `begin`: they queue for the write turn like any writer, and
        // hold it alone.
        let _write_turn = match &self.pool {
            Pool::Sqlite(_, write_queue) => Some(
                group_commit::exclusive(write_queue, self.write_wait)
                    .await
                    .context("Failed to run database migrations")?,
            ),
            Pool::Postgres(_) => None,
        };
        for migrator in [chassis, service] {
            let mut migrator = Migrator {
                migrations: migrator.migrations.clone(),
                ..Migrator::DEFAULT
            };
            migrator.set_ignore_missing(true);
            match &self.pool {
                Pool::Postgres(pool) => migrator.run(pool).await,
                Pool::Sqlite(pool, _) => migrator.run(pool).await,
            }
            .context("Failed to run database migrations")?;
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(..) => Backend::Sqlite,
        }
    }

    /// The most connections the pool opens.
    pub fn max_connections(&self) -> u32 {
        match &self.pool {
            Pool::Postgres(pool) => pool.options().get_max_connections(),
            Pool::Sqlite(pool, _) => pool.options().get_max_connections(),
        }
    }

    /// Begins a read-write transaction. On SQLite it first waits for its turn in the file's write
    /// queue in this process (failing after the pool's wait), then joins the file's open group
    /// commit or opens one, taking SQLite's write lock up front (`BEGIN IMMEDIATE`), so
    /// concurrent writers queue in order instead of backing off in SQLite's busy handler or
    /// failing on lock upgrade, and share their commit's fsync.
    ///
    /// Inside a span (a call, a consumer's handling) the transaction gets a `transaction` span
    /// of its own, from here until it ends (`db.system.name`: `postgresql` or `sqlite`).
    pub async fn begin(&self) -> Result<Transaction, sqlx::Error> {
        let span = self.write_span();
        let mut transaction = self.begin_untraced().await?;
        transaction.span = span;
        Ok(transaction)
    }

    /// A write's `transaction` span, inside a span only (see [`Database::begin`]).
    fn write_span(&self) -> tracing::Span {
        if tracing::Span::current().is_none() {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "transaction",
                otel.kind = "client",
                db.system.name = self.backend().system_name(),
            )
        }
    }

    /// Inserts `row`, the values of `table`'s columns in their order, and records `event`, the
    /// new record's event: both or neither, in the fewest round trips the backend allows.
    ///
    /// - On PostgreSQL, one statement in autocommit mode: the row and its outbox row in one
    ///   `WITH`, which commits as a whole. One round trip, where a transaction takes four
    ///   (`BEGIN`, the row, the event, `COMMIT`), each waking a backend.
    /// - On SQLite, which has no `INSERT` inside `WITH`, a write transaction of the two in the
    ///   file's group commit ([`Database::begin`]), which costs no round trip.
    ///
    /// For a record whose every column the caller knows before writing it (its id, version 1,
    /// its times), which is what lets its event be built before the insert. A constraint the row
    /// breaks is the table's error ([`Table::error`]). Traced and timed as [`Database::begin`]
    /// and [`Transaction::commit_with`] are: a `transaction` span with the event's `record`
    /// span inside.
    pub async fn insert_with(
        &self,
        table: &Table,
        row: &[Value<'_>],
        event: NewEvent,
    ) -> Result<(), Error> {
        let Pool::Postgres(pool) = &self.pool else {
            let mut tx = self.begin().await?;
            tx.insert(table, row).await?;
            return tx.commit_with(event).await;
        };
        let span = self.write_span();
        let asked = Instant::now();
        let connection = pool
            .acquire()
            .await
            .map(TransactionConnection::PostgresAutocommit);
        let mut tx = self.transaction(self.timed_acquire(asked, true, connection)?);
        tx.timed = self
            .metrics
            .as_ref()
            .map(|metrics| (Arc::clone(metrics), Instant::now()));
        tx.span = span;
        let insert = table.insert_sql(row.len())?;
        crate::outbox::record_with_insert(&mut tx, table, &insert, row, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Database::begin`] without a span: for the relay, whose look at the outbox every poll
    /// interval is no one's request. Timed like every write ([`Database::named`]).
    pub(crate) async fn begin_untraced(&self) -> Result<Transaction, sqlx::Error> {
        let asked = Instant::now();
        let connection = match &self.pool {
            Pool::Postgres(pool) => pool.begin().await.map(TransactionConnection::Postgres),
            Pool::Sqlite(pool, write_queue) => Member::join(write_queue, pool, self.write_wait)
                .await
                .map(TransactionConnection::SqliteWrite),
        };
        let connection = self.timed_acquire(asked, true, connection)?;
        let mut transaction = self.transaction(connection);
        transaction.timed = self
            .metrics
            .as_ref()
            .map(|metrics| (Arc::clone(metrics), Instant::now()));
        Ok(transaction)
    }

    /// Begins a transaction for reads only: a consistent snapshot (e.g. a page and its total)
    /// that never blocks writers.
    pub async fn begin_read(&self) -> Result<Transaction, sqlx::Error> {
        let asked = Instant::now();
        let connection = match &self.pool {
            Pool::Postgres(pool) => pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await
                .map(TransactionConnection::Postgres),
            Pool::Sqlite(pool, _) => pool.begin().await.map(TransactionConnection::Sqlite),
        };
        Ok(self.transaction(self.timed_acquire(asked, false, connection)?))
    }

    /// A connection for one read statement, in autocommit mode: no `BEGIN` and `COMMIT` around
    /// it, so on PostgreSQL one round trip instead of three. A single statement sees one
    /// snapshot by itself; a read of several statements that must agree (a page and its total)
    /// takes [`Database::begin_read`]. [`Transaction::commit`] gives the connection back.
    pub async fn single_read(&self) -> Result<Transaction, sqlx::Error> {
        let asked = Instant::now();
        let connection = match &self.pool {
            Pool::Postgres(pool) => pool
                .acquire()
                .await
                .map(TransactionConnection::PostgresAutocommit),
            Pool::Sqlite(pool, _) => pool
                .acquire()
                .await
                .map(TransactionConnection::SqliteAutocommit),
        };
        Ok(self.transaction(self.timed_acquire(asked, false, connection)?))
    }

    /// Records how long a begin asked at `asked` waited, or that it failed.
    fn timed_acquire(
        &self,
        asked: Instant,
        write: bool,
        connection: Result<TransactionConnection, sqlx::Error>,
    ) -> Result<TransactionConnection, sqlx::Error> {
        if let Some(metrics) = &self.metrics {
            match &connection {
                Ok(_) if write => metrics.acquire_write.record(asked.elapsed()),
                Ok(_) => metrics.acquire_read.record(asked.elapsed()),
                Err(_) => metrics.acquire_failures.increment(1),
            }
        }
        connection
    }

    /// For one page of a list: a later page is one statement, its total carried in the page
    /// token ([`crate::pagination::total_size`]), so [`Database::single_read`]; a first page may
    /// count its matches too, in the same snapshot as its rows, so [`Database::begin_read`].
    pub async fn begin_page_read(&self, first_page: bool) -> Result<Transaction, sqlx::Error> {
        if first_page {
            self.begin_read().await
        } else {
            self.single_read().await
        }
    }

    /// Runs `read`, one read statement, on a [`Database::single_read`] connection, and gives the
    /// connection back.
    pub async fn read<T>(
        &self,
        read: impl AsyncFnOnce(&mut Transaction) -> Result<T, Error>,
    ) -> Result<T, Error> {
        run_and_commit(self.single_read().await?, read).await
    }

    /// Runs `read`, reads that must agree (a record and its grants), in one
    /// [`Database::begin_read`] snapshot.
    pub async fn read_snapshot<T>(
        &self,
        read: impl AsyncFnOnce(&mut Transaction) -> Result<T, Error>,
    ) -> Result<T, Error> {
        run_and_commit(self.begin_read().await?, read).await
    }

    /// Runs `read`, the reads of one page of a list, in [`Database::begin_page_read`]: a
    /// snapshot for a first page (its rows and its count), one statement for a later one.
    pub async fn read_page<T>(
        &self,
        page: &PageRequest,
        read: impl AsyncFnOnce(&mut Transaction) -> Result<T, Error>,
    ) -> Result<T, Error> {
        run_and_commit(self.begin_page_read(page.is_first()).await?, read).await
    }

    /// Waits until a transaction that recorded events commits (or returns at once if one did
    /// since the last call).
    pub async fn outbox_written(&self) {
        self.outbox_signal.notified().await;
    }

    /// On PostgreSQL, a listener on [`OUTBOX_CHANNEL`]: it receives a notification whenever a
    /// transaction that recorded events commits, in any process. It holds one of the pool's
    /// connections until dropped, and gives it back when the pool closes (its next receive
    /// fails). `None` on SQLite, whose writers are all in this process, and for a pool smaller
    /// than [`MIN_LISTENING_POOL`].
    pub async fn listen_for_outbox_commits(&self) -> Result<Option<PgListener>, sqlx::Error> {
        match &self.pool {
            Pool::Postgres(pool) if self.max_connections() >= MIN_LISTENING_POOL => {
                let mut listener = PgListener::connect_with(pool).await?;
                listener.listen(OUTBOX_CHANNEL).await?;
                Ok(Some(listener))
            }
            Pool::Postgres(_) | Pool::Sqlite(..) => Ok(None),
        }
    }

    /// Resolves once [`Database::close`] has been called: whoever holds a connection for long
    /// (the relay's listener) lets it go then, or `close` would wait for it forever.
    pub async fn closed(&self) {
        match &self.pool {
            Pool::Postgres(pool) => pool.close_event().await,
            Pool::Sqlite(pool, _) => pool.close_event().await,
        }
    }

    /// Connections the pool holds now, and how many of them are idle.
    pub fn pool_connections(&self) -> (u32, u32) {
        let (size, idle) = match &self.pool {
            Pool::Postgres(pool) => (pool.size(), pool.num_idle()),
            Pool::Sqlite(pool, _) => (pool.size(), pool.num_idle()),
        };
        (size, u32::try_from(idle).unwrap_or(size).min(size))
    }

    /// SQLite: what the file's write queue in this process has done (group commits, the writes
    /// they made durable) and how many writers wait in it now; `None` on PostgreSQL.
    pub fn write_queue_stats(&self) -> Option<WriteQueueStats> {
        match &self.pool {
            Pool::Postgres(_) => None,
            Pool::Sqlite(_, write_queue) => Some(write_queue.stats()),
        }
    }

    /// Whether [`Database::close`] has been called.
    pub fn is_closed(&self) -> bool {
        match &self.pool {
            Pool::Postgres(pool) => pool.is_closed(),
            Pool::Sqlite(pool, _) => pool.is_closed(),
        }
    }

    /// Closes every connection; pending acquires fail.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(pool) => pool.close().await,
            Pool::Sqlite(pool, _) => pool.close().await,
        }
    }

    fn transaction(&self, connection: TransactionConnection) -> Transaction {
        Transaction {
            connection: Some(connection),
            wrote_events: false,
            outbox_signal: Arc::clone(&self.outbox_signal),
            commit_notifier: self.commit_notifier.clone(),
            timed: None,
            span: tracing::Span::none(),
        }
    }
}

/// Runs `read` in `tx` and commits it (for a read, gives the connection back).
async fn run_and_commit<T>(
    mut tx: Transaction,
    read: impl AsyncFnOnce(&mut Transaction) -> Result<T, Error>,
) -> Result<T, Error> {
    let value = read(&mut tx).await?;
    tx.commit().await?;
    Ok(value)
}

/// The write queue of the SQLite file at `path`, shared with every other `Database` open on it
/// in this process. A file that cannot be resolved (an in-memory database) gets its own.
fn sqlite_write_queue(path: &Path) -> WriteQueue {
    let Ok(path) = path.canonicalize() else {
        return WriteQueue::default();
    };
    // The map stays consistent whatever panicked while holding it: every entry is whole.
    let mut queues = SQLITE_WRITE_QUEUES
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    queues.retain(|_, queue| queue.strong_count() > 0);
    if let Some(queue) = queues.get(&path).and_then(Weak::upgrade) {
        return queue;
    }
    let queue = WriteQueue::default();
    queues.insert(path, Arc::downgrade(&queue));
    queue
}

// === impl CommitNotifier ===

impl CommitNotifier {
    fn new(pool: PgPool) -> CommitNotifier {
        CommitNotifier {
            pool,
            state: Arc::default(),
        }
    }

    /// A transaction that recorded events has committed: make sure a notification is sent after
    /// it. Returns at once.
    fn committed(&self) {
        {
            // The state is two flags, whole whatever panicked while holding the lock.
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.sending {
                state.pending = true;
                return;
            }
            state.sending = true;
        }
        // Short-lived: it ends once no commit is waiting for a notification, or at the first
        // failure after the pool closed (every statement then fails at once).
        tokio::spawn(self.clone().send_until_caught_up());
    }

    async fn send_until_caught_up(self) {
        loop {
            let sent = sqlx::query("SELECT pg_notify($1, '')")
                .bind(OUTBOX_CHANNEL)
                .execute(&self.pool)
                .await;
            if let Err(error) = sent {
                // The relays also poll: a lost notification delays a publish, never loses it.
                tracing::debug!(
                    error.message = %error,
                    "Failed to notify other relays of an outbox commit"
                );
                if self.pool.is_closed() {
                    self.state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .sending = false;
                    return;
                }
            }
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.pending {
                state.pending = false;
            } else {
                state.sending = false;
                return;
            }
        }
    }
}

// === impl Transaction ===

impl Transaction {
    /// Commits. A transaction that recorded events wakes the relay: in this process through the
    /// database's signal, and on PostgreSQL every replica's relay through a notification on
    /// [`OUTBOX_CHANNEL`] sent after the commit ([`CommitNotifier`]).
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        match self.connection.take() {
            Some(TransactionConnection::Postgres(transaction)) => transaction.commit().await?,
            Some(TransactionConnection::Sqlite(transaction)) => transaction.commit().await?,
            Some(TransactionConnection::SqliteWrite(member)) => member.commit().await?,
            Some(
                TransactionConnection::PostgresAutocommit(_)
                | TransactionConnection::SqliteAutocommit(_),
            )
            | None => {}
        }
        if let Some((metrics, began)) = self.timed.take() {
            metrics.committed.record(began.elapsed());
        }
        if self.wrote_events {
            self.outbox_signal.notify_one();
            if let Some(notifier) = &self.commit_notifier {
                notifier.committed();
            }
        }
        Ok(())
    }

    /// Records `event`, the change's event, and commits: the change and its event commit
    /// together or not at all.
    pub async fn commit_with(mut self, event: NewEvent) -> Result<(), Error> {
        crate::outbox::record(&mut self, event).await?;
        self.commit().await?;
        Ok(())
    }

    /// Inserts `row`, the values of `table`'s columns in their order. A constraint it breaks is
    /// the table's error ([`Table::error`]).
    pub async fn insert(&mut self, table: &Table, row: &[Value<'_>]) -> Result<(), Error> {
        let insert = table.insert_sql(row.len())?;
        on_backend!(self, conn => {
            bind_values(sqlx::query(sqlx::AssertSqlSafe(insert)), row)
                .execute(conn)
                .await
                .map(drop)
        })
        .map_err(|error| table.error(error))?;
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.record_rollback();
        match self.connection.take() {
            Some(TransactionConnection::Postgres(transaction)) => transaction.rollback().await,
            Some(TransactionConnection::Sqlite(transaction)) => transaction.rollback().await,
            Some(TransactionConnection::SqliteWrite(member)) => member.rollback().await,
            Some(
                TransactionConnection::PostgresAutocommit(_)
                | TransactionConnection::SqliteAutocommit(_),
            )
            | None => Ok(()),
        }
    }

    /// A timed write transaction ends without its commit.
    fn record_rollback(&mut self) {
        if let Some((metrics, began)) = self.timed.take() {
            metrics.rolled_back.record(began.elapsed());
        }
    }

    pub fn backend(&self) -> Backend {
        match self.connection {
            Some(
                TransactionConnection::Postgres(_) | TransactionConnection::PostgresAutocommit(_),
            ) => Backend::Postgres,
            // `None` is never seen: only `commit` and `rollback` take it, consuming `self`.
            Some(
                TransactionConnection::Sqlite(_)
                | TransactionConnection::SqliteWrite(_)
                | TransactionConnection::SqliteAutocommit(_),
            )
            | None => Backend::Sqlite,
        }
    }

    #[doc(hidden)]
    pub fn connection_mut(&mut self) -> BackendConnection<'_> {
        // Only `commit` and `rollback` take the connection, and they consume the transaction.
        match self
            .connection
            .as_mut()
            .expect("a live transaction has its connection")
        {
            TransactionConnection::Postgres(transaction) => {
                BackendConnection::Postgres(transaction)
            }
            TransactionConnection::Sqlite(transaction) => BackendConnection::Sqlite(transaction),
            TransactionConnection::SqliteWrite(member) => {
                BackendConnection::Sqlite(member.connection())
            }
            TransactionConnection::PostgresAutocommit(connection) => {
                BackendConnection::Postgres(connection)
            }
            TransactionConnection::SqliteAutocommit(connection) => {
                BackendConnection::Sqlite(connection)
            }
        }
    }

    pub(crate) fn mark_events_written(&mut self) {
        self.wrote_events = true;
    }

    /// The transaction's span (none for reads and untraced writes).
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }
}

impl Drop for Transaction {
    /// A SQLite write dropped unfinished (an error, a cancelled call) keeps its turn until its
    /// savepoint is rolled back, so its group commits only what the other writers finished, and
    /// the next writer finds the group as it was. Without a runtime (the process is ending) the
    /// group is left to fail.
    fn drop(&mut self) {
        // Unfinished, or its commit failed: either way it did not commit.
        self.record_rollback();
        let Some(TransactionConnection::SqliteWrite(member)) = self.connection.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = member.rollback().await;
            });
        }
    }
}

// === constraint helpers ===

/// Which kind of constraint a failed statement broke, if any. Services map these to field
/// errors; they know which unique column a statement can collide on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstraintViolation {
    Unique,
    ForeignKey,
    Check,
    NotNull,
}

/// Classifies a sqlx error as a constraint violation, on either backend.
pub fn constraint_violation(error: &sqlx::Error) -> Option<ConstraintViolation> {
    let database_error = error.as_database_error()?;
    match database_error.kind() {
        sqlx::error::ErrorKind::UniqueViolation => Some(ConstraintViolation::Unique),
        sqlx::error::ErrorKind::ForeignKeyViolation => Some(ConstraintViolation::ForeignKey),
        sqlx::error::ErrorKind::CheckViolation => Some(ConstraintViolation::Check),
        sqlx::error::ErrorKind::NotNullViolation => Some(ConstraintViolation::NotNull),
        _ => None,
    }
}

/// Whether the constraint `error` broke concerns `column` of `table`. PostgreSQL names the
/// constraint, and both its default names and this codebase's are `<table>_<column>_<kind>`
/// (`products_price_minor_check`, `accounts_email_unique`), except for NOT NULL, whose message
/// names `column "<column>" of relation "<table>"`; SQLite's message names `<table>.<column>`
/// (UNIQUE, NOT NULL) or quotes the CHECK's expression (`CHECK constraint failed: length(name)
/// BETWEEN 1 AND 200`), where the column is one of the identifiers, or the name of the column's
/// constraint (`oauth_clients_client_id_unique`, when a named UNIQUE precedes the CHECK).
pub fn constraint_concerns(error: &sqlx::Error, table: &str, column: &str) -> bool {
    let Some(database_error) = error.as_database_error() else {
        return false;
    };
    if let Some(constraint) = database_error.constraint() {
        return constraint_name_names(constraint, table, column);
    }
    let message = database_error.message();
    // SQLite's UNIQUE and NOT NULL; PostgreSQL's NOT NULL, which names no constraint.
    if message.contains(&format!("{table}.{column}"))
        || message.contains(&format!("column \"{column}\" of relation \"{table}\""))
    {
        return true;
    }
    // A named CHECK (or a CHECK on a column whose other constraint is named) gives the name.
    message
        .strip_prefix("CHECK constraint failed: ")
        .is_some_and(|expression| {
            constraint_name_names(expression, table, column)
                || expression
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .any(|identifier| identifier == column)
        })
}

/// Whether `constraint` is named `<table>_<column>_<kind>`.
fn constraint_name_names(constraint: &str, table: &str, column: &str) -> bool {
    constraint
        .strip_prefix(table)
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|rest| rest.strip_prefix(column))
        .is_some_and(|rest| rest.starts_with('_'))
}

/// The field error for a CHECK or NOT NULL violation on one of `columns` (`(column, field)`
/// pairs) of `table`: a value the domain let through but the schema refuses is still the
/// caller's bad input (INVALID_ARGUMENT naming the field), never an opaque internal error.
/// `None` when the violation is of another kind or concerns none of `columns`.
pub fn invalid_field(
    error: &sqlx::Error,
    table: &str,
    columns: &[(&str, &str)],
) -> Option<crate::error::Error> {
    let reason = match constraint_violation(error)? {
        ConstraintViolation::Check => "is outside what the store accepts",
        ConstraintViolation::NotNull => "is required",
        ConstraintViolation::Unique | ConstraintViolation::ForeignKey => return None,
    };
    columns
        .iter()
        .find(|(column, _)| constraint_concerns(error, table, column))
        .map(|(_, field)| crate::error::Error::invalid(*field, reason))
}

/// What the chassis knows of one of a service's tables: the columns a row of it reads, for the
/// list queries it writes ([`Table::keyset_sql`]), and how the constraint violations of its
/// writes read to the caller ([`Table::error`]): a unique column's is ALREADY_EXISTS on its
/// field, a foreign key's the field's INVALID_ARGUMENT with its reason, a CHECK or NOT NULL on a
/// column a caller's value reaches that field's INVALID_ARGUMENT ([`invalid_field`]); any other
/// is INTERNAL, as the bug it is.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    pub name: &'static str,
    /// The columns a query returns for a row, in the row type's order.
    pub columns: &'static str,
    /// The resource a unique collision names, e.g. `category`.
    pub resource: &'static str,
    /// The unique columns, each named as its request field. A collision that names none of them
    /// (SQLite names an expression index by its name only) is on the first.
    pub unique: &'static [&'static str],
    /// The foreign keys a caller's value reaches: the column, named as its request field, and
    /// why a value is refused. A violation that names none of them (SQLite names no column) is
    /// on the first.
    pub foreign_keys: &'static [(&'static str, &'static str)],
    /// The columns a caller's value reaches, `(column, request field)`.
    pub fields: &'static [(&'static str, &'static str)],
}

impl Table {
    /// The error a failed write of the table returns.
    pub fn error(&self, error: sqlx::Error) -> Error {
        let concerns = |column: &str| constraint_concerns(&error, self.name, column);
        match constraint_violation(&error) {
            Some(ConstraintViolation::Unique) if !self.unique.is_empty() => Error::AlreadyExists {
                resource: self.resource,
                field: self
                    .unique
                    .iter()
                    .find(|column| concerns(column))
                    .unwrap_or(&self.unique[0]),
            },
            Some(ConstraintViolation::ForeignKey) if !self.foreign_keys.is_empty() => {
                let (field, reason) = self
                    .foreign_keys
                    .iter()
                    .find(|(column, _)| concerns(column))
                    .unwrap_or(&self.foreign_keys[0]);
                Error::invalid(*field, *reason)
            }
            _ => {
                invalid_field(&error, self.name, self.fields).unwrap_or_else(|| Error::from(error))
            }
        }
    }

    /// After a conditional write of the record `id` (`… WHERE id = $1 AND version = $2`)
    /// matched no row: the record is gone (`current_version` is `None`) or moved past
    /// `expected_version` ([`Error::missing_or_stale`] for the table's resource).
    pub fn missing_or_stale(
        &self,
        current_version: Option<i64>,
        id: impl std::fmt::Display,
        expected_version: i64,
    ) -> Error {
        Error::missing_or_stale(current_version, self.resource, id, expected_version)
    }

    /// The `INSERT` of one row into the table: its `columns`, with `n_values` placeholders
    /// `$1…$n`. A count that is not the columns' is the caller's bug, an internal error.
    pub fn insert_sql(&self, n_values: usize) -> Result<String, Error> {
        let n_columns = self.columns.split(',').count();
        if n_values != n_columns {
            return Err(Error::Unexpected(anyhow::anyhow!(
                "an insert into {} has {n_values} values for its {n_columns} columns",
                self.name
            )));
        }
        Ok(format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.name,
            self.columns,
            placeholders(1, n_values)
        ))
    }

    /// The page query and the count query of `page` of a list of the table's rows matching
    /// `filter` (its conditions on `$1..=$n`, its values), sorted by `column` (from a fixed
    /// list, never from the caller) in `direction`, then by id. The page query's limit is
    /// `$n+1` and the cursor's key and id follow, all bound by [`fetch_page`].
    pub fn keyset_sql(
        &self,
        filter: &Filter<'_>,
        column: &str,
        direction: Direction,
        page: &PageRequest,
    ) -> (String, String) {
        let (comparison, order) = match direction {
            Direction::Ascending => (">", "ASC"),
            Direction::Descending => ("<", "DESC"),
        };
        let limit_param = filter.values.len() + 1;
        let filter = filter.sql();
        let cursor = if page.is_first() {
            String::new()
        } else {
            format!(
                " AND ({column}, id) {comparison} (${}, ${})",
                limit_param + 1,
                limit_param + 2
            )
        };
        let (table, columns) = (self.name, self.columns);
        let select = format!(
            "SELECT {columns} FROM {table} WHERE {filter}{cursor} ORDER BY {column} {order}, id {order} LIMIT ${limit_param}"
        );
        let count = format!("SELECT count(*) FROM {table} WHERE {filter}");
        (select, count)
    }
}

/// A list's filter: the conditions the caller asked for, each on one value, joined by `AND`.
///
/// A condition not asked for is left out of the statement, not written as `($n IS NULL OR …)`.
/// PostgreSQL then keeps one generic plan for each set of filters that lists use. It cannot for
/// `$n IS NULL OR …`, whose generic plan does not know which side holds (for a list, a scan and
/// a sort of every row past the cursor), so it planned every call anew.
#[derive(Clone, Debug, Default)]
pub struct Filter<'v> {
    conditions: Vec<String>,
    values: Vec<Value<'v>>,
}

impl<'v> Filter<'v> {
    /// No condition: every row.
    pub fn new() -> Filter<'v> {
        Filter::default()
    }

    /// Adds `condition` if there is a `value`; each `$` in it stands for the value's
    /// placeholder, e.g. `"sku = $"`. (The conditions are the service's text, never the
    /// caller's.)
    pub fn and(mut self, condition: &str, value: Option<Value<'v>>) -> Filter<'v> {
        if let Some(value) = value {
            self.values.push(value);
            let placeholder = format!("${}", self.values.len());
            self.conditions
                .push(format!("({})", condition.replace('$', &placeholder)));
        }
        self
    }

    /// The conditions as SQL, `TRUE` for none.
    fn sql(&self) -> String {
        if self.conditions.is_empty() {
            "TRUE".to_owned()
        } else {
            self.conditions.join(" AND ")
        }
    }
}

/// `$first, $first+1, …` for `count` parameters, e.g. for an `IN (…)` list whose values are bound
/// ([`bind_all`]). For no parameters, `NULL`: `IN (NULL)` matches no row, where `IN ()` is not
/// PostgreSQL.
pub fn placeholders(first: usize, count: usize) -> String {
    if count == 0 {
        return "NULL".to_owned();
    }
    (first..first + count)
        .map(|index| format!("${index}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value bound as both drivers encode it (see [`Timestamp`] for times): a column of a row that
/// [`Database::insert_with`] writes, or a [`Filter`]'s.
#[derive(Clone, Copy, Debug)]
pub enum Value<'v> {
    Uuid(uuid::Uuid),
    Text(&'v str),
    Integer(i64),
    Time(Timestamp),
}

/// Binds each of the [`Value`]s `values` after what `query` (a `Query`, `QueryAs` or
/// `QueryScalar`) has bound.
macro_rules! bind_each {
    ($query:expr, $values:expr) => {
        $values.iter().fold($query, |query, value| match *value {
            Value::Uuid(id) => query.bind(id),
            Value::Text(text) => query.bind(text),
            Value::Integer(integer) => query.bind(integer),
            Value::Time(time) => query.bind(time),
        })
    };
}

/// Binds each of `values` in order, after what `query` has bound.
pub fn bind_values<'q, DB>(
    query: Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    values: &[Value<'_>],
) -> Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    for<'v> &'v str: sqlx::Encode<'v, DB> + sqlx::Type<DB>,
    for<'v> i64: sqlx::Encode<'v, DB> + sqlx::Type<DB>,
    for<'v> Timestamp: sqlx::Encode<'v, DB> + sqlx::Type<DB>,
    for<'v> uuid::Uuid: sqlx::Encode<'v, DB> + sqlx::Type<DB>,
{
    bind_each!(query, values)
}

/// Binds each of `values` in order, e.g. the ids of an `IN (…)` list of [`placeholders`].
pub fn bind_all<'q, DB, O, T>(
    query: QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments>,
    values: impl IntoIterator<Item = T>,
) -> QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    T: 'q + sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    values
        .into_iter()
        .fold(query, |query, value| query.bind(value))
}

/// Fetches one page of a [`Table::keyset_sql`] list on `conn`: `select` with `filter`'s values,
/// the page's limit (one row more than its size) and its cursor bound, then `count` with
/// `filter`'s values only when [`total_size`](crate::pagination::total_size) needs it.
pub async fn fetch_page<'q, DB, C, R>(
    conn: &mut C,
    select: QueryAs<'q, DB, R, <DB as sqlx::Database>::Arguments>,
    count: QueryScalar<'q, DB, i64, <DB as sqlx::Database>::Arguments>,
    filter: &Filter<'_>,
    page: &'q PageRequest,
) -> Result<Page<R>, Error>
where
    DB: sqlx::Database,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    C: sqlx::Connection<Database = DB>,
    for<'e> &'e mut C: sqlx::Executor<'e, Database = DB>,
    R: Send + Unpin + for<'r> sqlx::FromRow<'r, DB::Row>,
    (i64,): Send + Unpin + for<'r> sqlx::FromRow<'r, DB::Row>,
    for<'v> &'v str: sqlx::Encode<'v, DB> + sqlx::Type<DB>,
    for<'v> i64: sqlx::Encode<'v, DB> + sqlx::Type<DB>,
    for<'v> Timestamp: sqlx::Encode<'v, DB> + sqlx::Type<DB>,
    for<'v> uuid::Uuid: sqlx::Encode<'v, DB> + sqlx::Type<DB>,
{
    let select = bind_each!(select, filter.values);
    let select = bind_cursor(select.bind(page.size + 1), page)?;
    let rows = select.fetch_all(&mut *conn).await?;
    let count = bind_each!(count, filter.values).fetch_one(&mut *conn);
    let total =
        crate::pagination::total_size(page.after.as_ref(), rows.len(), page.size, count).await?;
    Ok(Page::from_rows(rows, page.size, total))
}

/// Binds a keyset page's start (the cursor's sort key, then its id) after a
/// [`Table::keyset_sql`] page query's other parameters; nothing on a first page. A time key that
/// does not parse was not made by the list: INVALID_ARGUMENT on `page_token`.
pub fn bind_cursor<'q, DB, O>(
    query: sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments>,
    page: &'q crate::pagination::PageRequest,
) -> Result<sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments>, crate::error::Error>
where
    DB: sqlx::Database,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Timestamp: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    uuid::Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    use crate::pagination::{Continuation, SortKey};
    let Some(Continuation { cursor, .. }) = &page.after else {
        return Ok(query);
    };
    let query = match &cursor.key {
        SortKey::Text(text) => query.bind(text.as_str()),
        SortKey::Integer(value) => query.bind(*value),
        SortKey::Time(text) => query.bind(SortKey::parse_time(text)?),
    };
    Ok(query.bind(cursor.id))
}

pub use timestamp::Timestamp;

mod timestamp {
    //! A UTC instant with microsecond precision that both backends store natively enough to
    //! compare and sort: `timestamptz` on PostgreSQL, fixed-width RFC 3339 text on SQLite.

    use sqlx::encode::IsNull;
    use sqlx::error::BoxDynError;
    use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
    use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
    use sqlx::{Decode, Encode, Postgres, Sqlite, Type};
    use time::format_description::BorrowedFormatItem;
    use time::macros::format_description;
    use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

    /// Always UTC and truncated to whole microseconds, PostgreSQL's precision, so a value reads
    /// back equal to what was written on both backends.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub struct Timestamp(OffsetDateTime);

    const SQLITE_FORMAT: &[BorrowedFormatItem<'static>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

    impl Timestamp {
        pub fn now() -> Timestamp {
            Timestamp::from(OffsetDateTime::now_utc())
        }

        pub fn into_inner(self) -> OffsetDateTime {
            self.0
        }

        pub fn unix_timestamp(self) -> i64 {
            self.0.unix_timestamp()
        }

        /// Nanoseconds within the second (a multiple of 1000).
        pub fn nanosecond(self) -> u32 {
            self.0.nanosecond()
        }

        /// RFC 3339 in UTC with microseconds, e.g. `2026-11-23T11:34:42.123456Z`.
        pub fn to_rfc3339(self) -> String {
            // Formatting a UTC value with a fixed description cannot fail.
            self.0.format(SQLITE_FORMAT).unwrap_or_default()
        }

        pub fn parse_rfc3339(text: &str) -> Result<Timestamp, time::error::Parse> {
            let parsed =
                OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)?;
            Ok(Timestamp::from(parsed))
        }
    }

    impl From<OffsetDateTime> for Timestamp {
        fn from(value: OffsetDateTime) -> Timestamp {
            let utc = value.to_offset(UtcOffset::UTC);
            let micros = utc.nanosecond() / 1_000 * 1_000;
            // A nanosecond value truncated to micros stays within 0..1e9, so this cannot fail.
            Timestamp(utc.replace_nanosecond(micros).unwrap_or(utc))
        }
    }

    impl Type<Postgres> for Timestamp {
        fn type_info() -> PgTypeInfo {
            <OffsetDateTime as Type<Postgres>>::type_info()
        }
    }

    impl Encode<'_, Postgres> for Timestamp {
        fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
            <OffsetDateTime as Encode<Postgres>>::encode_by_ref(&self.0, buf)
        }
    }

    impl<'r> Decode<'r, Postgres> for Timestamp {
        fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
            Ok(Timestamp::from(
                <OffsetDateTime as Decode<Postgres>>::decode(value)?,
            ))
        }
    }

    impl Type<Sqlite> for Timestamp {
        fn type_info() -> SqliteTypeInfo {
            <String as Type<Sqlite>>::type_info()
        }

        fn compatible(ty: &SqliteTypeInfo) -> bool {
            <String as Type<Sqlite>>::compatible(ty)
                || <OffsetDateTime as Type<Sqlite>>::compatible(ty)
        }
    }

    impl Encode<'_, Sqlite> for Timestamp {
        fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
            Encode::<Sqlite>::encode(self.0.format(SQLITE_FORMAT)?, buf)
        }
    }

    impl<'r> Decode<'r, Sqlite> for Timestamp {
        fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
            let text = <&str as Decode<Sqlite>>::decode(value)?;
            Timestamp::parse_sqlite(text)
        }
    }

    impl Timestamp {
        /// Reads the fixed-width text [`SQLITE_FORMAT`] writes. Every row of a list holds two,
        /// so this reads the digits at their fixed places rather than walking a format
        /// description (which cost a few per cent of a page's CPU); anything else is an error.
        fn parse_sqlite(text: &str) -> Result<Timestamp, BoxDynError> {
            let bytes = text.as_bytes();
            let shape_ok = bytes.len() == 27
                && [
                    (4, b'-'),
                    (7, b'-'),
                    (10, b'T'),
                    (13, b':'),
                    (16, b':'),
                    (19, b'.'),
                ]
                .iter()
                .all(|&(at, separator)| bytes[at] == separator)
                && bytes[26] == b'Z';
            let digits = |from: usize, to: usize| -> Option<u32> {
                bytes[from..to].iter().try_fold(0u32, |number, &byte| {
                    byte.is_ascii_digit()
                        .then(|| number * 10 + u32::from(byte - b'0'))
                })
            };
            let malformed = || format!("not a timestamp in the stored form: {text:?}");
            if !shape_ok {
                return Err(malformed().into());
            }
            let field = |from, to| digits(from, to).ok_or_else(malformed);
            let (year, month, day) = (field(0, 4)?, field(5, 7)?, field(8, 10)?);
            let (hour, minute, second) = (field(11, 13)?, field(14, 16)?, field(17, 19)?);
            let micros = field(20, 26)?;
            // Four digits and two digits: each fits its type.
            let date = Date::from_calendar_date(
                i32::try_from(year)?,
                Month::try_from(u8::try_from(month)?)?,
                u8::try_from(day)?,
            )?;
            let time = Time::from_hms_micro(
                u8::try_from(hour)?,
                u8::try_from(minute)?,
                u8::try_from(second)?,
                micros,
            )?;
            Ok(Timestamp(PrimitiveDateTime::new(date, time).assume_utc()))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::Timestamp;

        #[test]
        fn text_form_is_fixed_width_so_it_sorts() {
            let whole_second = Timestamp::parse_rfc3339("2026-11-23T11:34:42Z").unwrap();
            let later = Timestamp::parse_rfc3339("2026-11-23T11:34:42.5Z").unwrap();
            assert_eq!(whole_second.to_rfc3339(), "2026-11-23T11:34:42.000000Z");
            assert_eq!(later.to_rfc3339(), "2026-11-23T11:34:42.500000Z");
            assert!(whole_second.to_rfc3339() < later.to_rfc3339());
        }

        #[test]
        fn the_stored_form_reads_back_and_nothing_else_does() {
            let written = Timestamp::parse_rfc3339("2026-02-28T23:59:07.000042Z").unwrap();
            let read = Timestamp::parse_sqlite(&written.to_rfc3339()).unwrap();
            assert_eq!(read, written);
            for malformed in [
                "",
                "2026-02-28T23:59:07Z",
                "2026-02-28T23:59:07.000042+00:00",
                "2026-02-28 23:59:07.000042Z",
                "2026-02-30T23:59:07.000042Z",
                "2026-13-28T23:59:07.000042Z",
                "2026-02-28T24:59:07.000042Z",
                "2026-02-28T23:59:07.0000-2Z",
                "+026-02-28T23:59:07.000042Z",
            ] {
                assert!(
                    Timestamp::parse_sqlite(malformed).is_err(),
                    "{malformed:?} was read"
                );
            }
        }

        #[test]
        fn precision_is_microseconds_in_utc() {
            let parsed = Timestamp::parse_rfc3339("2026-11-23T12:34:42.123456789+01:00").unwrap();
            assert_eq!(parsed.to_rfc3339(), "2026-11-23T11:34:42.123456Z");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pagination::{Cursor, SortKey};

    const THINGS: Table = Table {
        name: "things",
        columns: "id, name",
        resource: "thing",
        unique: &["name"],
        foreign_keys: &[],
        fields: &[],
    };

    #[test]
    fn keyset_queries_number_the_limit_and_the_cursor_after_the_filter() {
        let filter = Filter::new()
            .and("colour = $", None)
            .and("name = $ OR nickname = $", Some(Value::Text("tea")))
            .and("size > $", Some(Value::Integer(3)));
        let first = PageRequest::parse("things", &(), 2, "").unwrap();
        let (select, count) = THINGS.keyset_sql(&filter, "name", Direction::Descending, &first);
        assert_eq!(
            select,
            "SELECT id, name FROM things WHERE (name = $1 OR nickname = $1) AND (size > $2) \
             ORDER BY name DESC, id DESC LIMIT $3"
        );
        assert_eq!(
            count,
            "SELECT count(*) FROM things WHERE (name = $1 OR nickname = $1) AND (size > $2)"
        );

        let served = Page {
            items: vec!["a", "b"],
            has_more: true,
            total: 3,
        };
        let token = first.next_page_token(&served, |_| {
            Cursor::new(SortKey::Text("b".to_owned()), uuid::Uuid::nil())
        });
        let later = PageRequest::parse("things", &(), 2, &token).unwrap();
        let (select, _) = THINGS.keyset_sql(&Filter::new(), "name", Direction::Ascending, &later);
        assert_eq!(
            select,
            "SELECT id, name FROM things WHERE TRUE AND (name, id) > ($2, $3) \
             ORDER BY name ASC, id ASC LIMIT $1"
        );
    }

    #[test]
    fn an_empty_in_list_is_null_and_matches_nothing() {
        assert_eq!(placeholders(1, 0), "NULL");
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
    }
}
