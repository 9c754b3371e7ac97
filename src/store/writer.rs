//! The single writer. SQLite allows one writer at a time, so one thread owns
//! the only read-write connection and runs every write closure in turn.
//!
//! Group commit: the thread takes every job already queued (up to
//! `MAX_BATCH`), runs each inside its own SAVEPOINT within one `BEGIN
//! IMMEDIATE` transaction, commits once (one fsync for the batch), and only
//! then answers each caller. A failing job rolls back to its savepoint without
//! touching its neighbours; a failed commit fails every job of the batch.
//!
//! Between batches, with no transaction open, the thread runs the installed
//! `BetweenBatches` hooks: the one moment something may checkpoint or copy
//! the WAL without racing a commit (WAL archiving needs exactly that).
//!
//! After each batch, before its callers are answered, the change feed
//! tells in-memory views which watched rows the batch touched (`changes`).
//!
//! Company: a job may say how long its commit can wait for another job to
//! share it (`company_wait`). A batch of that one job alone waits up to then
//! for the next message; any job arriving ends the wait. Logins (and a
//! failed login's audit row) and registrations use it while other hashes
//! are under way: their writes come a few milliseconds apart, never queued
//! together, and each commit's fsync is CPU on a virtual disk (the
//! doorbells are VM exits). Every other write commits at once.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::changes::Feed;

/// Upper bound on jobs committed together; keeps one batch's latency short.
const MAX_BATCH: usize = 256;

/// What runs after the batch's commit: delivers the job's result, or the
/// commit's failure.
type Completion = Box<dyn FnOnce(Option<&Arc<rusqlite::Error>>) + Send>;

pub(super) trait WriteJob: Send {
    /// Runs the job's closure inside the open batch transaction.
    fn run(self: Box<Self>, conn: &Connection) -> Completion;
    /// Answers without running (the batch could not start).
    fn abort(self: Box<Self>, err: StoreError);
    /// How long this job's commit may wait for another job to share it.
    fn company_wait(&self) -> Duration;
}

/// Runs on the writer thread after each batch's commit, outside any
/// transaction, with the only read-write connection.
pub type BetweenBatches = Box<dyn FnMut(&Connection) + Send>;

/// What the writer thread receives.
pub(super) enum Msg {
    Job(Box<dyn WriteJob>),
    Hook(BetweenBatches),
    /// Run the hooks without a batch: lets a hook that failed (a full
    /// archive disk) try again while no writes come.
    Tick,
}

/// When the last batch committed (Unix milliseconds): the commit time a
/// hook archiving the WAL labels the batch's frames with.
static LAST_COMMIT_MS: AtomicI64 = AtomicI64::new(0);

pub fn last_commit_unix_ms() -> i64 {
    LAST_COMMIT_MS.load(Ordering::Acquire)
}

pub(super) struct Job<F, T> {
    pub f: F,
    pub reply: oneshot::Sender<Result<T, StoreError>>,
    pub company_wait: Duration,
}

impl<F, T> WriteJob for Job<F, T>
where
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Completion {
        let Job { f, reply, .. } = *self;
        let outcome = in_savepoint(conn, f);
        Box::new(move |commit_failure| {
            let result = match commit_failure {
                Some(e) => Err(StoreError::Commit(Arc::clone(e))),
                None => outcome,
            };
            // The caller may have gone away (request cancelled); nothing to do.
            let _ = reply.send(result);
        })
    }

    fn abort(self: Box<Self>, err: StoreError) {
        let _ = self.reply.send(Err(err));
    }

    fn company_wait(&self) -> Duration {
        self.company_wait
    }
}

/// Runs one fixed statement through the connection's statement cache; the
/// writer runs these for every job, and preparing them each time would
/// cost more than running them.
fn exec(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    exec(conn, "SAVEPOINT job")?;
    let outcome = match catch_unwind(AssertUnwindSafe(|| f(conn))) {
        Ok(result) => result,
        Err(_) => Err(StoreError::Panicked),
    };
    if outcome.is_err() {
        exec(conn, "ROLLBACK TO job")?;
    }
    exec(conn, "RELEASE job")?;
    outcome
}

/// The writer thread's loop; returns when every sender is gone.
pub(super) fn run(conn: Connection, mut rx: mpsc::Receiver<Msg>, feed: Arc<Feed>) {
    let mut hooks: Vec<BetweenBatches> = Vec::new();
    let timer = company_timer();
    while let Some(first) = rx.blocking_recv() {
        let gathered = gather(&mut rx, first, &mut hooks, timer.as_ref());
        let had_jobs = !gathered.batch.is_empty();
        if had_jobs {
            commit_batch(&conn, gathered.batch, &feed);
        }
        if had_jobs || gathered.ticked {
            for hook in &mut hooks {
                hook(&conn);
            }
        }
    }
    fold_log_at_stop(&conn);
}

/// How long the stop's checkpoint waits for outside readers: the daemon's
/// own are done by then.
const STOP_CHECKPOINT_WAIT: Duration = Duration::from_millis(500);

/// Folds the WAL back into the main file, so that a copy of `latch.db`
/// alone is complete after a clean stop. An outside reader with a
/// transaction open keeps the newest commits in the log: then say so
/// (they are safe there, and the next start folds them in), rather than
/// wait out the busy timeout and let a copy of the file alone lack them.
fn fold_log_at_stop(conn: &Connection) {
    match truncate_checkpoint(conn, STOP_CHECKPOINT_WAIT) {
        Ok(done) if done.folded_frames < done.log_frames => tracing::warn!(
            "a reader outside latchd (a sqlite3 session?) has a transaction open: latch.db alone lacks \
             the last commits; they are in latch.db-wal beside it, which the next start folds in \
             (copy both, or stop that reader and start and stop latchd again)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "final checkpoint failed"),
    }
    if let Err(e) = conn.execute_batch("PRAGMA optimize;") {
        tracing::warn!(error = %e, "PRAGMA optimize failed");
    }
}

/// What a checkpoint did, as SQLite reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpointed {
    /// A reader kept it from finishing: the log was not emptied.
    pub busy: bool,
    /// Frames in the log, and how many of them the database file now holds
    /// (fewer: the file alone lacks the newest commits). -1 when unknown.
    pub log_frames: i64,
    pub folded_frames: i64,
}

/// A TRUNCATE checkpoint that waits at most `wait` for readers (then
/// restores the connection's busy timeout).
pub fn truncate_checkpoint(conn: &Connection, wait: Duration) -> rusqlite::Result<Checkpointed> {
    let usual: i64 = conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?;
    conn.busy_timeout(wait)?;
    let done = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok(Checkpointed { busy: r.get::<_, i64>(0)? != 0, log_frames: r.get(1)?, folded_frames: r.get(2)? })
    });
    conn.busy_timeout(Duration::from_millis(u64::try_from(usual).unwrap_or(0)))?;
    done
}

/// What one turn of the loop collected.
#[derive(Default)]
struct Gathered {
    batch: Vec<Box<dyn WriteJob>>,
    ticked: bool,
}

/// Takes `first` and every message already queued (up to `MAX_BATCH`
/// jobs), installing hooks as they come; a lone job that may wait for
/// company waits for the next message, then takes what queued meanwhile.
fn gather(
    rx: &mut mpsc::Receiver<Msg>,
    first: Msg,
    hooks: &mut Vec<BetweenBatches>,
    timer: Option<&tokio::runtime::Runtime>,
) -> Gathered {
    let (mut gathered, mut next, mut until) = (Gathered::default(), Some(first), None);
    loop {
        while let Some(msg) = next.take() {
            match msg {
                Msg::Job(job) => gathered.batch.push(job),
                Msg::Hook(hook) => hooks.push(hook),
                Msg::Tick => gathered.ticked = true,
            }
            if gathered.batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let [lone] = gathered.batch.as_slice() else { return gathered };
        let wait = lone.company_wait();
        if wait.is_zero() {
            return gathered;
        }
        let deadline = *until.get_or_insert_with(|| Instant::now() + wait);
        next = next_before(rx, deadline, timer);
        if next.is_none() {
            return gathered;
        }
    }
}

/// The next message if one comes before `deadline`; `None` once it passed,
/// or without a timer.
fn next_before(
    rx: &mut mpsc::Receiver<Msg>,
    deadline: Instant,
    timer: Option<&tokio::runtime::Runtime>,
) -> Option<Msg> {
    let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
    timer?.block_on(async { tokio::time::timeout(left, rx.recv()).await }).ok().flatten()
}

/// A clock for waiting on the channel with a timeout (tokio's receiver has
/// no blocking variant with one). Without it, jobs never wait for company.
fn company_timer() -> Option<tokio::runtime::Runtime> {
    let built = tokio::runtime::Builder::new_current_thread().enable_time().build();
    built.inspect_err(|e| tracing::warn!(error = %e, "writes will not wait to share a commit")).ok()
}

fn commit_batch(conn: &Connection, batch: Vec<Box<dyn WriteJob>>, feed: &Feed) {
    metrics::histogram!("latch_db_commit_batch_size").record(batch.len() as f64);
    let started = std::time::Instant::now();
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let e = Arc::new(e);
        for job in batch {
            job.abort(StoreError::Commit(Arc::clone(&e)));
        }
        return;
    }
    let completions: Vec<Completion> = batch.into_iter().map(|job| job.run(conn)).collect();
    let commit = exec(conn, "COMMIT").err().map(Arc::new);
    if commit.is_none() {
        LAST_COMMIT_MS.store(crate::clock::now_unix_ms(), Ordering::Release);
    }
    if let Some(e) = &commit {
        tracing::error!(error = %e, jobs = completions.len(), "commit failed; batch rolled back");
        if !conn.is_autocommit() {
            let _ = exec(conn, "ROLLBACK");
        }
    }
    metrics::histogram!("latch_db_query_duration_seconds", "op" => "commit")
        .record(started.elapsed().as_secs_f64());
    // Views forget what the batch changed before anyone hears it is done.
    feed.deliver();
    for complete in completions {
        complete(commit.as_ref());
    }
}
