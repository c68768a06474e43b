//! Group commit for SQLite: the writers of one file in this process share one write transaction,
//! so that one fsync makes many of them durable.
//!
//! SQLite commits one transaction at a time per file, and with `synchronous = FULL` every commit
//! waits for an fsync of the write-ahead log (about a millisecond on this project's machines): a
//! file takes about a thousand commits a second, however many writers queue. PostgreSQL flushes
//! the commits of many transactions with one fsync; this does the same for SQLite.
//!
//! Writers take turns, first come first served (the file's [`WriteQueue`]). The first of a group
//! opens it: a pool connection and `BEGIN IMMEDIATE`. Each writer runs its statements inside its
//! own `SAVEPOINT`, released when it commits and rolled back when it rolls back, so one writer's
//! failure never touches another's work. When the group's first writer ends, a committer queues
//! for the turn behind the writers already waiting, who join the group meanwhile; the committer
//! then commits the group and tells every writer in it. A writer's `commit` returns only once that
//! `COMMIT` has returned, with its result: a commit the caller saw is on disk, as with a
//! transaction of its own. If the group's `COMMIT` fails, it fails for every writer in the group.
//!
//! Writers of a group see the work of the writers before them in it; that work commits or fails
//! with theirs, so nobody acts on a change that does not commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

/// One SQLite file's writers in this process, shared by every `Database` open on the file.
pub(super) type WriteQueue = Arc<FileWrites>;

/// The queue of one file's writers: whoever holds the turn runs statements on the file's write
/// transaction. Migrations hold it too (see [`exclusive`]).
#[derive(Debug, Default)]
pub(super) struct FileWrites {
    turn: Arc<Mutex<WriteTurn>>,
    writers_waiting: AtomicUsize,
    group_commits: AtomicU64,
    writes_committed: AtomicU64,
}

/// What a file's write queue has done so far in this process, and who waits in it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteQueueStats {
    /// Writers waiting for their turn right now.
    pub writers_waiting: usize,
    /// `COMMIT`s that succeeded: one per group, so one fsync each.
    pub group_commits: u64,
    /// Write transactions those commits made durable.
    pub writes_committed: u64,
}

/// What the holder of the turn may use: the open group, if any.
#[derive(Debug, Default)]
pub(super) struct WriteTurn {
    group: Option<Group>,
    next_group_id: u64,
}

/// A writer's part in the open group. It holds the turn from its `SAVEPOINT` until it releases
/// or rolls back to it.
#[derive(Debug)]
pub(super) struct Member {
    /// Invariant: `turn.group` is `Some` for as long as the member lives.
    turn: OwnedMutexGuard<WriteTurn>,
    queue: WriteQueue,
    /// Whether the writer released or rolled back its savepoint.
    ended: bool,
}

/// One write transaction shared by the writers who joined it.
#[derive(Debug)]
struct Group {
    id: u64,
    /// Inside `BEGIN IMMEDIATE` until [`close`].
    connection: PoolConnection<Sqlite>,
    /// Whether the committer is on its way: it is sent when the first writer ends.
    committer_queued: bool,
    /// Writers that released their savepoint: what the group's `COMMIT` makes durable.
    n_released: u64,
    /// A writer could not release or roll back its savepoint, so the transaction's state is
    /// unknown (SQLite may have rolled it all back after an I/O error): the group rolls back and
    /// fails for every writer in it.
    broken: bool,
    outcome: watch::Sender<Option<Outcome>>,
}

/// How a group ended: committed, or the reason it did not.
type Outcome = Result<(), Arc<str>>;

const SAVEPOINT: &str = "SAVEPOINT emporium_writer";
const RELEASE: &str = "RELEASE emporium_writer";
const ROLLBACK_TO: &str = "ROLLBACK TO emporium_writer";

// === impl Member ===

impl Member {
    /// Waits (at most `wait`) for the turn, opens a group on a connection of `pool` unless one is
    /// open, and starts this writer's savepoint in it.
    pub(super) async fn join(
        queue: &WriteQueue,
        pool: &SqlitePool,
        wait: Duration,
    ) -> Result<Member, sqlx::Error> {
        let mut turn = take_turn(queue, wait).await?;
        if turn.group.as_ref().is_some_and(|group| group.broken) {
            close(queue, &mut turn).await;
        }
        if turn.group.is_none() {
            let mut connection = pool.acquire().await?;
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *connection)
                .await?;
            let id = turn.next_group_id;
            turn.next_group_id += 1;
            turn.group = Some(Group {
                id,
                connection,
                committer_queued: false,
                n_released: 0,
                broken: false,
                outcome: watch::Sender::new(None),
            });
        }
        let mut member = Member {
            turn,
            queue: Arc::clone(queue),
            ended: false,
        };
        if let Err(error) = sqlx::query(SAVEPOINT).execute(member.connection()).await {
            member.end(false);
            return Err(error);
        }
        Ok(member)
    }

    /// The group's connection, for this writer's statements.
    pub(super) fn connection(&mut self) -> &mut SqliteConnection {
        &mut self.group().connection
    }

    /// Releases this writer's savepoint, gives the turn to the next writer, and waits until the
    /// group has committed.
    pub(super) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let released = sqlx::query(RELEASE).execute(self.connection()).await;
        if released.is_ok() {
            self.group().n_released += 1;
        }
        let mut outcome = self.end(released.is_ok());
        drop(self);
        released?;
        let ended = outcome
            .wait_for(Option::is_some)
            .await
            .map(|outcome| outcome.clone());
        match ended {
            Ok(Some(Ok(()))) => Ok(()),
            Ok(Some(Err(reason))) => Err(group_failed(&reason)),
            Ok(None) | Err(_) => Err(group_failed("its committer stopped before it ended")),
        }
    }

    /// Undoes this writer's statements and gives the turn to the next writer; the rest of the
    /// group carries on.
    pub(super) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        let rolled_back = async {
            sqlx::query(ROLLBACK_TO).execute(self.connection()).await?;
            sqlx::query(RELEASE).execute(self.connection()).await
        }
        .await;
        self.end(rolled_back.is_ok());
        rolled_back.map(|_| ())
    }

    /// Marks this writer's end in the group (`intact`: its savepoint ended cleanly), sends the
    /// group's committer if none is on its way yet, and returns where the outcome will appear.
    fn end(&mut self, intact: bool) -> watch::Receiver<Option<Outcome>> {
        self.ended = true;
        let queue = Arc::clone(&self.queue);
        let group = self.group();
        group.broken |= !intact;
        if !group.committer_queued
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            group.committer_queued = true;
            runtime.spawn(commit_when_turn_comes(queue, group.id));
        }
        group.outcome.subscribe()
    }

    fn group(&mut self) -> &mut Group {
        self.turn
            .group
            .as_mut()
            .expect("a member's group stays open while the member holds the turn")
    }
}

impl Drop for Member {
    /// A writer that neither committed nor rolled back (its future was dropped mid-statement and
    /// nobody rolled it back) leaves work of unknown extent in the group: the group must not
    /// commit it, so it breaks, and its writers fail.
    fn drop(&mut self) {
        if !self.ended {
            self.end(false);
        }
    }
}

// === impl FileWrites ===

impl FileWrites {
    pub(super) fn stats(&self) -> WriteQueueStats {
        WriteQueueStats {
            writers_waiting: self.writers_waiting.load(Ordering::Relaxed),
            group_commits: self.group_commits.load(Ordering::Relaxed),
            writes_committed: self.writes_committed.load(Ordering::Relaxed),
        }
    }
}

// === the turn ===

/// Takes the turn for work outside any group (migrations): commits the open group first, so that
/// SQLite's write lock is free for other connections.
pub(super) async fn exclusive(
    queue: &WriteQueue,
    wait: Duration,
) -> Result<OwnedMutexGuard<WriteTurn>, sqlx::Error> {
    let mut turn = take_turn(queue, wait).await?;
    close(queue, &mut turn).await;
    Ok(turn)
}

async fn take_turn(
    queue: &WriteQueue,
    wait: Duration,
) -> Result<OwnedMutexGuard<WriteTurn>, sqlx::Error> {
    /// Counts the waiter in `writers_waiting` for as long as it waits, cancelled or not.
    struct Waiting<'q>(&'q AtomicUsize);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    queue.writers_waiting.fetch_add(1, Ordering::Relaxed);
    let _waiting = Waiting(&queue.writers_waiting);
    tokio::time::timeout(wait, Arc::clone(&queue.turn).lock_owned())
        .await
        .map_err(|_| {
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("timed out after {wait:?} waiting for the SQLite write lock"),
            ))
        })
}

/// The committer: queues for the turn behind the writers already waiting (they join the group),
/// then ends the group, unless something else (a migration) ended it first.
async fn commit_when_turn_comes(queue: WriteQueue, group_id: u64) {
    let mut turn = Arc::clone(&queue.turn).lock_owned().await;
    if turn
        .group
        .as_ref()
        .is_some_and(|group| group.id == group_id)
    {
        close(&queue, &mut turn).await;
    }
}

/// Ends the open group, if any: commits it (rolls a broken one back) and tells its writers.
async fn close(queue: &FileWrites, turn: &mut WriteTurn) {
    let Some(mut group) = turn.group.take() else {
        return;
    };
    let outcome = if group.broken {
        Err(Arc::from(
            "a write in the same group commit could not end its savepoint",
        ))
    } else {
        sqlx::query("COMMIT")
            .execute(&mut *group.connection)
            .await
            .map(|_| ())
            .map_err(|error| Arc::from(error.to_string()))
    };
    if outcome.is_err() {
        // Whatever is left of the transaction goes; a connection that cannot even roll back is
        // closed rather than given back to the pool mid-transaction.
        if sqlx::query("ROLLBACK")
            .execute(&mut *group.connection)
            .await
            .is_err()
        {
            let _ = group.connection.close().await;
        }
    }
    match &outcome {
        Ok(()) => {
            queue.group_commits.fetch_add(1, Ordering::Relaxed);
            queue
                .writes_committed
                .fetch_add(group.n_released, Ordering::Relaxed);
        }
        Err(reason) => tracing::error!(error.message = %reason, "A SQLite group commit failed"),
    }
    group.outcome.send_replace(Some(outcome));
}

fn group_failed(reason: &str) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(format!(
        "the SQLite group commit this write joined failed: {reason}"
    )))
}
