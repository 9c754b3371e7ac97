//! The SQLite store: one writer thread (group commit, `synchronous=FULL`) and
//! an r2d2 pool of read-only connections, both over `state_dir/latch.db` in
//! WAL mode. Callers hand closures to `write` and `read`; neither blocks the
//! async runtime.

pub mod archive_layout;
pub mod backup;
mod changes;
mod damage;
mod file;
pub mod fold;
pub(crate) mod migrations;
pub mod offline;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

pub use backup::BackupError;
pub use changes::{Listener, RowAction, RowChange};
pub use damage::{DamageWatch, is_damage, is_damaged, way_out};
pub use file::{DatabaseFile, FileReader};
pub use migrations::MigrationError;
pub use writer::{BetweenBatches, Checkpointed, last_commit_unix_ms, truncate_checkpoint};

/// How long a caller waits for a pooled read connection or the busy lock.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_QUEUE: usize = 4096;
/// How long a close waits for the store's other holders to let go.
const OTHERS_LET_GO: Duration = Duration::from_secs(2);
/// Prepared statements kept per connection: queries use `prepare_cached`,
/// and the hot paths touch a few dozen distinct statements.
const STATEMENT_CACHE: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("commit failed: {0}")]
    Commit(Arc<rusqlite::Error>),
    #[error("read pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("the writer has stopped")]
    WriterGone,
    #[error("a write closure panicked")]
    Panicked,
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Migration(#[from] MigrationError),
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// A write closure refused to go on; the writer rolled its changes
    /// back. The caller downcasts the reason to its own error.
    #[error("{0}")]
    Refused(Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// True when the database cannot take writes right now (disk full,
    /// read-only file, lock held elsewhere): a 503, not a 500.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode::*;
        let code = match self {
            StoreError::Sqlite(e) => e.sqlite_error_code(),
            StoreError::Commit(e) => e.sqlite_error_code(),
            StoreError::WriterGone | StoreError::Pool(_) => return true,
            _ => None,
        };
        matches!(
            code,
            Some(DiskFull | ReadOnly | DatabaseBusy | DatabaseLocked | CannotOpen | SystemIoFailure)
        )
    }
}

/// `Connection::execute` through the statement cache: hot-path writes run
/// the same few statements thousands of times a second, and preparing one
/// costs more than running it.
pub fn exec(c: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize, StoreError> {
    Ok(c.prepare_cached(sql)?.execute(params)?)
}

/// `Connection::query_row` through the statement cache (see `exec`).
pub fn row<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.prepare_cached(sql)?.query_row(params, f)
}

type Readers = r2d2::Pool<SqliteConnectionManager>;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: mpsc::Sender<writer::Msg>,
    readers: Readers,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    feed: Arc<changes::Feed>,
    damage: damage::DamageWatch,
    /// Last: closed after the connections (see `file.rs`).
    file: DatabaseFile,
}

/// Where the store lives and where a pre-migration backup goes.
pub struct StoreOptions<'a> {
    pub path: &'a Path,
    pub backup_dir: &'a Path,
    /// Bench-only: `synchronous=OFF` to measure the cost of fsync.
    pub unsafe_no_fsync: bool,
}

impl Store {
    /// Opens (creating if needed) the database, applies pending migrations
    /// (after a backup when the database already had a schema), and starts
    /// the writer thread.
    pub fn open(opts: &StoreOptions<'_>) -> Result<Store, StoreError> {
        let mut conn = Connection::open(opts.path)?;
        let file = DatabaseFile::open(opts.path)
            .map_err(|source| BackupError::Io { path: opts.path.display().to_string(), source })?;
        let sync = if opts.unsafe_no_fsync { "OFF" } else { "FULL" };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;"
        ))?;
        conn.busy_timeout(ACQUIRE_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        fold::install(&conn)?;
        migrations::apply(&mut conn, opts.backup_dir)?;

        let manager = SqliteConnectionManager::file(opts.path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|c| {
                c.busy_timeout(ACQUIRE_TIMEOUT)?;
                c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                fold::install(c)?;
                c.execute_batch("PRAGMA foreign_keys=ON;")
            });
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
        let readers = r2d2::Pool::builder()
            .max_size((cores * 2).max(4))
            .min_idle(Some(1))
            // r2d2 would run `SELECT 1;` (parsed anew) at every checkout to
            // test the connection: a local file's connection does not go
            // stale as a socket does, and every read paid for the parse.
            .test_on_check_out(false)
            .connection_timeout(ACQUIRE_TIMEOUT)
            .build(manager)?;

        let feed = Arc::new(changes::Feed::default());
        feed.attach(&conn)?;
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer_feed = Arc::clone(&feed);
        let thread = std::thread::Builder::new()
            .name("latch-writer".into())
            .spawn(move || writer::run(conn, rx, writer_feed))
            .map_err(|e| StoreError::Migration(MigrationError::Io(e)))?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: opts.path.to_path_buf(),
                writer: tx,
                readers,
                writer_thread: Mutex::new(Some(thread)),
                feed,
                damage: damage::DamageWatch::new(opts.path),
                file,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// What tells of damage in the database file and knows whether any has
    /// been met since it opened, for work that reads the file by itself.
    pub fn damage_watch(&self) -> DamageWatch {
        self.inner.damage.clone()
    }

    /// The database file, to read as bytes: never open and close it
    /// directly while the store is open (`file.rs` says why).
    pub fn file(&self) -> DatabaseFile {
        self.inner.file.clone()
    }

    /// Runs `f` on the writer inside a transaction; resolves after commit.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.write_with_company(Duration::ZERO, f).await
    }

    /// `write`, whose commit may wait up to `wait` for another job to share
    /// it when this one would commit alone: for a caller that expects
    /// another write within that time and can spare it (see `writer`).
    pub async fn write_with_company<T, F>(&self, wait: Duration, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn writer::WriteJob> = Box::new(writer::Job { f, reply, company_wait: wait });
        self.inner.writer.send(writer::Msg::Job(job)).await.map_err(|_| StoreError::WriterGone)?;
        let out = answer.await.unwrap_or(Err(StoreError::WriterGone));
        self.inner.damage.notice(&out);
        out
    }

    /// Runs `f` on a pooled read-only connection, in one read transaction so
    /// every statement sees the same snapshot.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_now(f)).await?
    }

    /// `read` on the calling thread, which it blocks: for work already on a
    /// thread of its own (a hashing job), never for an async task.
    pub fn read_now<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let started = Instant::now();
        let conn = self.inner.readers.get()?;
        // One snapshot for all of `f`'s statements. BEGIN and ROLLBACK
        // through the statement cache: rusqlite's `transaction()`
        // prepares both anew each time, which perf showed in every read.
        if !conn.is_autocommit() {
            conn.execute_batch("ROLLBACK")?; // left open by a failed end
        }
        conn.prepare_cached("BEGIN")?.execute([])?;
        let out = f(&conn);
        // What `f` read or failed with is the answer either way; a
        // snapshot that would not end is ended at the next checkout.
        if let Err(e) = conn.prepare_cached("ROLLBACK").and_then(|mut end| end.execute([])) {
            tracing::warn!(error = %e, "a read snapshot did not end");
        }
        metrics::histogram!("latch_db_query_duration_seconds", "op" => "read")
            .record(started.elapsed().as_secs_f64());
        self.inner.damage.notice(&out);
        out
    }

    /// Empties the database page caches. Each connection keeps up to 2 MiB
    /// of pages and a busy spell fills them; the operating system's page
    /// cache still holds the file, so the next reads cost a `pread` each.
    /// The bundled SQLite is built with `SQLITE_ENABLE_MEMORY_MANAGEMENT`,
    /// which keeps every connection's pages in one group: one shrink on the
    /// writer frees the unpinned pages of the readers too. For when the
    /// daemon has gone idle, just before freed memory is handed back
    /// (`telemetry::memory`).
    pub async fn release_caches(&self) {
        let shrunk = self.write(|c| Ok(c.execute_batch("PRAGMA shrink_memory")?)).await;
        if let Err(e) = shrunk {
            tracing::debug!(error = %e, "the page caches were kept");
        }
    }

    /// True when a read answers; used by `/ready` and the watchdog.
    pub async fn ping(&self) -> bool {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?)).await.is_ok()
    }

    /// The writer's heartbeat: true when an empty write job gets through
    /// the queue, takes the write lock and commits within `within`. False
    /// when the writer thread is stuck, the queue is jammed, or the lock is
    /// held elsewhere — states in which reads still answer, so the watchdog
    /// needs this too. (An empty transaction writes no WAL frame: no fsync.)
    pub async fn writer_alive(&self, within: Duration) -> bool {
        matches!(tokio::time::timeout(within, self.write(|_| Ok(()))).await, Ok(Ok(())))
    }

    /// Installs `hook` to run on the writer thread after every batch's
    /// commit, outside any transaction (see `writer`).
    pub async fn between_batches(&self, hook: BetweenBatches) -> Result<(), StoreError> {
        self.inner.writer.send(writer::Msg::Hook(hook)).await.map_err(|_| StoreError::WriterGone)
    }

    /// Tells `listener` which rows of `tables` each later batch touched,
    /// before the batch's callers are answered (see `changes`). Refuses a
    /// table the update hook cannot see (missing, or WITHOUT ROWID).
    pub async fn watch(&self, tables: &'static [&'static str], listener: Listener) -> Result<(), StoreError> {
        let seen = self
            .read(move |c| {
                Ok(tables.iter().map(|t| changes::has_rowids(c, t)).collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?;
        if let Some((table, _)) = tables.iter().zip(seen).find(|(_, ok)| !ok) {
            let why = format!("cannot watch table {table}: missing or WITHOUT ROWID");
            return Err(StoreError::Refused(why.into()));
        }
        self.inner.feed.add(tables, listener);
        Ok(())
    }

    /// Runs the between-batches hooks now, without a batch: a hook that
    /// could not finish (a full archive disk) tries again while idle.
    pub async fn run_hooks(&self) -> Result<(), StoreError> {
        self.inner.writer.send(writer::Msg::Tick).await.map_err(|_| StoreError::WriterGone)
    }

    /// A verified, compressed online backup (one read snapshot) in `dir`,
    /// named `prefix` plus the time (see `backup`).
    pub async fn backup(&self, dir: PathBuf, prefix: &'static str) -> Result<backup::Taken, StoreError> {
        self.read(move |c| Ok(backup::take(c, &dir, prefix)?)).await
    }

    /// Stops the writer after the queued jobs ran, checkpoints the WAL and
    /// joins the thread, within `deadline`. Other clones must be dropped
    /// for the queue to close: the HTTP workers drop theirs (in the apps
    /// they served) a moment after their servers have stopped, so this
    /// waits up to `OTHERS_LET_GO` for them; after that it gives up, with
    /// a warning. (It looked only once, and a stop under load now and then
    /// skipped its final checkpoint.)
    pub fn close(self, deadline: Duration) {
        let start = Instant::now();
        let mut shared = self.inner;
        let inner = loop {
            match Arc::try_unwrap(shared) {
                Ok(inner) => break inner,
                Err(still) if start.elapsed() < OTHERS_LET_GO.min(deadline) => {
                    shared = still;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => {
                    tracing::warn!("store still in use at shutdown; skipping final checkpoint");
                    return;
                }
            }
        };
        let handle = inner.writer_thread.lock().ok().and_then(|mut h| h.take());
        drop(inner.writer);
        drop(inner.readers);
        if let Some(handle) = handle {
            let start = Instant::now();
            while !handle.is_finished() && start.elapsed() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn open(dir: &Path) -> Store {
        let path = dir.join("t.db");
        Store::open(&StoreOptions { path: &path, backup_dir: dir, unsafe_no_fsync: false }).unwrap()
    }

    #[tokio::test]
    async fn hooks_run_between_batches_outside_any_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (ran, inside) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (r, i) = (Arc::clone(&ran), Arc::clone(&inside));
        store
            .between_batches(Box::new(move |c| {
                r.fetch_add(1, Ordering::SeqCst);
                if !c.is_autocommit() {
                    i.fetch_add(1, Ordering::SeqCst);
                }
            }))
            .await
            .unwrap();
        for n in 0..3 {
            store
                .write(move |c| Ok(c.execute("INSERT INTO meta VALUES (?1, 'v')", [n.to_string()])?))
                .await
                .unwrap();
        }
        assert!(ran.load(Ordering::SeqCst) >= 1, "a hook runs after a batch");
        assert_eq!(inside.load(Ordering::SeqCst), 0, "never inside a transaction");
        assert!(store.writer_alive(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_lone_job_may_wait_for_another_to_share_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        // The feed speaks once a batch, before its callers hear: the rows
        // each commit inserted.
        let commits: Arc<Mutex<Vec<usize>>> = Arc::default();
        let ear = Arc::clone(&commits);
        let listener: Listener = Arc::new(move |changes| ear.lock().unwrap().push(changes.len()));
        store.watch(&["meta"], listener).await.unwrap();
        let insert =
            |k: &'static str| move |c: &Connection| Ok(c.execute("INSERT INTO meta VALUES (?1, 'v')", [k])?);
        let waiting = store.clone();
        let first =
            tokio::spawn(
                async move { waiting.write_with_company(Duration::from_secs(60), insert("a")).await },
            );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!first.is_finished(), "still waiting for company");
        store.write(insert("b")).await.unwrap();
        let answered = tokio::time::timeout(Duration::from_secs(10), first).await;
        answered.expect("the second job ended the wait").unwrap().unwrap();
        assert_eq!(*commits.lock().unwrap(), [2], "both rows in one commit");
        // With no company coming, it commits alone once its wait is over.
        store.write_with_company(Duration::from_millis(50), insert("c")).await.unwrap();
        assert_eq!(*commits.lock().unwrap(), [2, 1]);
    }

    #[tokio::test]
    async fn watchers_hear_every_row_a_write_touched_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let heard: Arc<Mutex<Vec<RowChange>>> = Arc::default();
        let ear = Arc::clone(&heard);
        let listener: Listener = Arc::new(move |changes| ear.lock().unwrap().extend_from_slice(changes));
        store.watch(&["users", "sessions"], listener).await.unwrap();
        let take = || std::mem::take(&mut *heard.lock().unwrap());
        let (user, session) = store
            .write(|c| {
                c.execute(
                    "INSERT INTO users (id, email, email_norm, password_hash, created_at, updated_at) \
                     VALUES ('u', 'u@x', 'u@x', 'h', 0, 0)",
                    [],
                )?;
                c.execute(
                    "INSERT INTO sessions (id, user_id, amr, created_at, last_seen_at, expires_at) \
                     VALUES ('s', 'u', 'pwd', 0, 0, 9)",
                    [],
                )?;
                // Not watched: never reported.
                c.execute("INSERT INTO meta VALUES ('k', 'v')", [])?;
                let rowid =
                    |t: &str| c.query_row(&format!("SELECT rowid FROM {t}"), [], |r| r.get::<_, i64>(0));
                Ok((rowid("users")?, rowid("sessions")?))
            })
            .await
            .unwrap();
        let change = |table, action, rowid| RowChange { table, action, rowid };
        assert_eq!(
            take(),
            [change("users", RowAction::Insert, user), change("sessions", RowAction::Insert, session)]
        );
        store.write(|c| Ok(c.execute("UPDATE sessions SET revoked_at = 1", [])?)).await.unwrap();
        assert_eq!(take(), [change("sessions", RowAction::Update, session)]);
        // Deleting the user deletes its session by cascade: both are told.
        store.write(|c| Ok(c.execute("DELETE FROM users", [])?)).await.unwrap();
        let mut heard = take();
        heard.sort_by_key(|c| c.table);
        assert_eq!(
            heard,
            [change("sessions", RowAction::Delete, session), change("users", RowAction::Delete, user)]
        );
        // A table the hook cannot see is refused, not silently missed.
        let refused = store.watch(&["recovery_codes"], Arc::new(|_| {})).await;
        assert!(refused.is_err(), "recovery_codes is WITHOUT ROWID");
    }

    /// Bytes of page cache connection `c` holds.
    fn cache_used(c: &Connection) -> i64 {
        let (mut current, mut highest) = (0, 0);
        // SAFETY: a status query on a live connection's own handle, into
        // two local integers.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_db_status(
                c.handle(),
                rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
                &mut current,
                &mut highest,
                0,
            )
        };
        assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
        i64::from(current)
    }

    #[tokio::test]
    async fn an_idle_reader_gives_back_the_pages_it_cached() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store
            .write(|c| {
                let mut insert = c.prepare("INSERT INTO meta VALUES (?1, printf('%.900c', 'x'))")?;
                for n in 0..2000 {
                    insert.execute([format!("k{n}")])?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let scan =
            |c: &Connection| c.query_row("SELECT sum(length(value)) FROM meta", [], |r| r.get::<_, i64>(0));
        store.read(move |c| Ok(scan(c)?)).await.unwrap();
        // The most any idle reader holds (the pool may have opened another).
        let most_cached = |store: &Store| {
            let pool = store.inner.readers.clone();
            let held: Vec<_> = (0..pool.state().idle_connections).map_while(|_| pool.try_get()).collect();
            held.iter().map(|c| cache_used(c)).max().unwrap_or(0)
        };
        let filled = most_cached(&store);
        assert!(filled > 1 << 20, "a scan of ~2 MB fills a reader's cache: {filled}");
        store.release_caches().await;
        let after = most_cached(&store);
        assert!(after < 256 << 10, "released: {after} bytes left of {filled}");
    }

    #[tokio::test]
    async fn the_heartbeat_fails_while_another_process_holds_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let other = Connection::open(dir.path().join("t.db")).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert!(!store.writer_alive(Duration::from_millis(300)).await, "the lock is held elsewhere");
        other.execute_batch("ROLLBACK").unwrap();
        assert!(store.writer_alive(Duration::from_secs(10)).await, "alive again once it is released");
    }
}
