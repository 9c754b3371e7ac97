//! Continuous WAL archiving (`[backup].wal_archive`), in-process: latch owns
//! the only writer, so after every batch — on the writer thread, with no
//! transaction open — this hook reads the WAL frames committed since its
//! last call (from the page cache: microseconds) and hands them to the
//! archive thread, which writes them as a checksummed, fsynced segment
//! named by its sequence and commit time; batches that arrive within
//! 100 ms of the last segment go into the next one together (only the last
//! version of each page: replaying it ends the same), so the writer never
//! waits for the archive disk and the archive adds few fsyncs.
//! SQLite's own autocheckpoint is off on the writer while archiving: the
//! hook checkpoints after it has copied the frames out, so no frame is
//! ever overwritten before the archive has it (in memory at once, durable
//! within the recovery point the `archive` bench measures). As in Litestream,
//! the archive is cut into generations: each starts with a snapshot of the
//! database file taken right after a full checkpoint (so the file alone is
//! the whole database) and holds every frame written after it; a restore
//! replays one generation's frames onto its snapshot (`replay.rs`). A new
//! generation starts every `[backup].interval`; `keep` of them are kept.
//! Its times (generation names, commit times) never go back, whatever the
//! clock does, so that their order is the order things happened in.
//! The archive thread's side is `archive_thread.rs`.

use std::fs::File;
use std::io::Seek;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rusqlite::Connection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::archive_thread::{Chunk, Progress, Snapshot, Work, write_segments};
use super::wal::{self, HEADER, WalHeader};
use crate::config::Config;
use crate::store::archive_layout::GENERATION_PREFIX;
use crate::store::backup::{self as copies, BackupError};
use crate::store::{DamageWatch, DatabaseFile, Store, StoreError, last_commit_unix_ms, truncate_checkpoint};

/// Bytes into the current pass through the log after which every batch
/// checkpoints (PASSIVE) until a complete one lets the next write start
/// the log over: SQLite's own autocheckpoint threshold (1,000 pages).
const CHECKPOINT_AFTER: u64 = 4 << 20;
/// How often the hooks run while no writes come, so a failed copy is
/// retried and the lag gauge stays true.
pub(super) const TICK: Duration = Duration::from_secs(1);
/// After a generation failed to start or broke (a failed snapshot, frames
/// given up), the next is tried no sooner than this: a failing archive
/// disk is not retried at every batch, each try a full checkpoint that
/// holds up the writer and a warning in the log. A generation that was
/// going on goes on meanwhile; a broken one leaves the log unarchived
/// meanwhile, and the lag gauge counts it.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);
/// Each failure in a row doubles the wait, up to this: every try of a
/// failing snapshot reads the whole database, which on a disk full for
/// hours is that much I/O for nothing. A reload tries again at once (the
/// operator who made room says so), and the lag gauge and its alert go on
/// counting meanwhile.
const RETRY_AT_MOST: Duration = Duration::from_secs(300);
/// How long a new generation's TRUNCATE checkpoint waits for readers: the
/// daemon's own finish within milliseconds.
const TRUNCATE_WAIT: Duration = Duration::from_millis(200);

struct Archiver {
    config: Arc<ArcSwap<Config>>,
    db: PathBuf,
    /// The database file, read through the store's own descriptor.
    file: DatabaseFile,
    wal: PathBuf,
    /// The current generation's folder.
    generation: Option<PathBuf>,
    /// When the next generation is due (at once while there is none, unless
    /// a failure put it off).
    next_generation: Instant,
    /// The pass through the log being read, and where its unread part begins.
    pass: Option<WalHeader>,
    offset: u64,
    /// The log, open, and the buffer its new frames are read into.
    log: Option<File>,
    scratch: Vec<u8>,
    archiving: Option<bool>,
    to_thread: mpsc::Sender<Work>,
    progress: Arc<Progress>,
    /// Generations that failed in a row since the last healthy one.
    failures: u32,
    /// The config of the last run: another one means a reload.
    config_seen: Option<Arc<Config>>,
    /// The newest time given to a generation or a commit (Unix ms): the
    /// archive's times never go back, see `stamp`.
    newest_stamp_ms: i64,
    /// Damage met in the database: see `hold_generation`.
    damage: DamageWatch,
    damage_told: bool,
}

/// Held by the daemon's stop, which calls it last before closing the store:
/// without it the frames of the last moments before a clean stop would
/// stay in memory, and the checkpoint at close would take them from the log.
pub struct Finisher {
    to_thread: mpsc::Sender<Work>,
}

impl Finisher {
    /// Hands the archive thread the frames committed since the last batch
    /// and waits (up to `within`) until it has written all it holds.
    pub async fn finish(self, store: &Store, within: Duration) {
        if let Err(e) = store.run_hooks().await {
            tracing::warn!(error = %e, "WAL archive: could not collect the last frames");
        }
        let (done, finished) = tokio::sync::oneshot::channel();
        if self.to_thread.send(Work::Finish(done)).is_err() {
            return;
        }
        if tokio::time::timeout(within, finished).await.is_err() {
            tracing::warn!("WAL archive: the last segments were not written before the stop");
        }
    }
}

/// Installs the archive hook on the writer, the archive thread, and the
/// idle tick; the stop's `Finisher`.
pub async fn install(
    store: &Store,
    config: Arc<ArcSwap<Config>>,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> Result<Finisher, StoreError> {
    let db = store.path().to_path_buf();
    let (to_thread, chunks) = mpsc::channel();
    let progress = Arc::new(Progress::default());
    let shared = Arc::clone(&progress);
    std::thread::Builder::new()
        .name("latch-archive".into())
        .spawn(move || write_segments(&chunks, &shared))
        .map_err(|e| StoreError::Backup(BackupError::Io { path: "archive thread".into(), source: e }))?;
    let finisher = Finisher { to_thread: to_thread.clone() };
    let mut archiver = Archiver {
        config,
        wal: PathBuf::from(format!("{}-wal", db.display())),
        db,
        file: store.file(),
        generation: None,
        next_generation: Instant::now(),
        pass: None,
        offset: HEADER,
        log: None,
        scratch: Vec::new(),
        archiving: None,
        to_thread,
        progress,
        failures: 0,
        config_seen: None,
        newest_stamp_ms: 0,
        damage: store.damage_watch(),
        damage_told: false,
    };
    store.between_batches(Box::new(move |c| archiver.run(c))).await?;
    let store = store.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => { let _ = store.run_hooks().await; }
            }
        }
    });
    Ok(finisher)
}

impl Archiver {
    fn run(&mut self, conn: &Connection) {
        let cfg = self.config.load_full();
        self.after_reload(&cfg);
        self.set_archiving(conn, cfg.backup.wal_archive);
        if !cfg.backup.wal_archive {
            return;
        }
        if self.progress.broken.swap(false, Ordering::AcqRel) {
            self.generation = None;
            let wait = self.retry_later();
            tracing::info!(
                retry_in_s = wait.as_secs_f64(),
                "WAL archive: a new generation follows the broken one"
            );
        }
        let snapshotting = self.progress.snapshotting.load(Ordering::Acquire);
        if self.generation.is_some() && !snapshotting && self.progress.owes_nothing() {
            self.failures = 0;
        }
        let due = Instant::now() >= self.next_generation;
        if due && !snapshotting && !self.hold_generation(&cfg) {
            // The old generation takes its last frames before the new one starts.
            self.collect();
            if let Err(e) = self.start_generation(conn, &cfg) {
                // One going on goes on: its frames still replay onto its snapshot.
                let wait = self.retry_later();
                let retry_in_s = wait.as_secs_f64();
                tracing::warn!(error = %e, retry_in_s, "WAL archive: could not start a generation");
            }
        }
        self.collect();
        // As SQLite's autocheckpoint would after every commit, but only now
        // that this pass's frames are copied out: a checkpoint never
        // discards a frame, the log is overwritten only by the next write
        // after a complete one, and that write comes after this hook.
        if self.offset > CHECKPOINT_AFTER {
            checkpoint(conn, "PASSIVE");
        }
    }

    /// Whether to go on in the current generation instead of beginning
    /// one on a database known to be damaged: its snapshot would copy the
    /// damage, and each new one prunes the oldest, until no generation
    /// whole from before the damage would be left to restore from. The
    /// current one's segments replay every later commit onto its
    /// snapshot, which came before the damage was met unless its own check
    /// met it (then it pruned none). Without a current one (a start on the
    /// damaged file) one begins, and none is pruned.
    fn hold_generation(&mut self, cfg: &Config) -> bool {
        if !self.damage.is_seen() || self.generation.is_none() {
            return false;
        }
        if !std::mem::replace(&mut self.damage_told, true) {
            tracing::warn!(
                "WAL archive: the database is damaged; no new generation begins on it, and the older ones \
                 are kept for a restore to reach back before the damage"
            );
        }
        self.next_generation = Instant::now() + cfg.backup.interval.0;
        true
    }

    /// Puts the next generation off by `RETRY_AFTER_FAILURE`, doubled for
    /// each failure before it in a row, up to `RETRY_AT_MOST`; the wait.
    fn retry_later(&mut self) -> Duration {
        let first = crate::pause::duration("archive_retry").unwrap_or(RETRY_AFTER_FAILURE);
        let wait = first.saturating_mul(1 << self.failures.min(16)).min(RETRY_AT_MOST.max(first));
        self.failures = self.failures.saturating_add(1);
        self.next_generation = Instant::now() + wait;
        wait
    }

    /// After a reload a failing archive is tried at once: the operator who
    /// freed the disk or mended the folder need not wait out the backoff.
    fn after_reload(&mut self, cfg: &Arc<Config>) {
        let reloaded = self.config_seen.as_ref().is_some_and(|seen| !Arc::ptr_eq(seen, cfg));
        self.config_seen = Some(Arc::clone(cfg));
        if reloaded && self.failures > 0 {
            self.failures = 0;
            self.next_generation = Instant::now();
        }
    }

    /// Hands checkpoints to this hook while archiving, back to SQLite when not.
    fn set_archiving(&mut self, conn: &Connection, on: bool) {
        if self.archiving == Some(on) {
            return;
        }
        let pages = if on { 0 } else { 1000 };
        if let Err(e) = conn.pragma_update(None, "wal_autocheckpoint", pages) {
            tracing::warn!(error = %e, "WAL archive: setting wal_autocheckpoint failed");
        }
        if !on {
            // Turned on again later, it starts a generation at once.
            (self.generation, self.next_generation) = (None, Instant::now());
            self.progress.forget_lost();
            metrics::gauge!("latch_wal_archive_lag_seconds").set(0.0);
        }
        self.archiving = Some(on);
    }

    /// Checkpoints the whole log into the database file (so the file alone
    /// is the database), starts a new generation, and has the archive
    /// thread snapshot the file: compressing it here would stall every
    /// write for as long as that takes (seconds for a large database).
    fn start_generation(&mut self, conn: &Connection, cfg: &Config) -> Result<(), BackupError> {
        // On the writer: a reader holding a transaction open (an operator's
        // sqlite3 session) would otherwise hold up every write for the
        // whole busy timeout at each try.
        let done = truncate_checkpoint(conn, TRUNCATE_WAIT)
            .map_err(|source| BackupError::Sqlite { path: self.wal.display().to_string(), source })?;
        if done.busy {
            let source = std::io::Error::other("readers kept the log from being checkpointed");
            return Err(BackupError::Io { path: self.wal.display().to_string(), source });
        }
        let pin = pin_database_file(&self.db)
            .map_err(|source| BackupError::Sqlite { path: self.db.display().to_string(), source })?;
        let root = cfg.archive_dir();
        let started_ms = crate::clock::now_unix_ms();
        let name_ms = self.stamp_generation(&root, started_ms);
        let dir = root.join(format!("{GENERATION_PREFIX}{name_ms:013}"));
        copies::make_private_dir(&dir)?;
        // On a damaged database no generation is pruned (`hold_generation`).
        let keep = if self.damage.is_seen() { usize::MAX } else { cfg.backup.keep as usize };
        let db = Box::new(self.file.reader());
        let damage = self.damage.clone();
        let snapshot = Snapshot { dir: dir.clone(), started_ms, db, pin, root, keep, damage };
        self.progress.snapshotting.store(true, Ordering::Release);
        if self.to_thread.send(Work::Snapshot(Box::new(snapshot))).is_err() {
            self.progress.snapshotting.store(false, Ordering::Release);
            let source = std::io::Error::other("the archive thread is gone");
            return Err(BackupError::Io { path: dir.display().to_string(), source });
        }
        self.generation = Some(dir);
        self.next_generation = Instant::now() + cfg.backup.interval.0;
        (self.pass, self.offset) = (None, HEADER);
        Ok(())
    }

    /// The time a generation begun now is named by: now, unless the archive
    /// already holds a later time (this host's clock was set back, or
    /// another host wrote the archive with its clock ahead); then just
    /// after that, so that generations sort in the order they began. Pruning
    /// keeps the newest by that order, and a keep of 1 deleted the
    /// generation being written when a clock set back named it first.
    fn stamp_generation(&mut self, root: &Path, now: i64) -> i64 {
        let newest = self.newest_stamp_ms.max(super::replay::newest_stamp(root));
        if now < newest {
            tracing::warn!(
                behind_ms = newest - now,
                "WAL archive: the clock is behind the archive's newest time; commits are stamped with that \
                 time until the clock passes it (a restore --to-time counts by those stamps)"
            );
        }
        self.newest_stamp_ms = now.max(newest + 1);
        self.newest_stamp_ms
    }

    /// A commit's time for the archive: never before one already given,
    /// so a restore to a time replays a prefix of what was committed.
    fn stamp(&mut self, commit_ms: i64) -> i64 {
        self.newest_stamp_ms = self.newest_stamp_ms.max(commit_ms);
        self.newest_stamp_ms
    }

    /// Reads the frames committed since the last call and sends them to the
    /// archive thread.
    fn collect(&mut self) {
        let Some(generation) = self.generation.clone() else { return };
        match self.read_committed() {
            Ok(Some((page_size, frames))) => {
                let commit_ms = last_commit_unix_ms();
                let stamp_ms = self.stamp(commit_ms);
                if self
                    .to_thread
                    .send(Work::Chunk(Chunk { generation, page_size, commit_ms, stamp_ms, frames }))
                    .is_err()
                {
                    tracing::error!("WAL archive: the archive thread is gone");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "WAL archive: reading the log failed; will retry"),
        }
    }

    /// The whole frames after `offset` through the last commit, if any.
    fn read_committed(&mut self) -> std::io::Result<Option<(usize, Vec<u8>)>> {
        // Kept open between batches: SQLite truncates the log but never
        // removes it while latch's connections are open.
        if self.log.is_none() {
            match File::open(&self.wal) {
                Ok(f) => self.log = Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let Some(file) = &self.log else { return Ok(None) };
        // The size by seeking, not `metadata()`: a stat marks the log's
        // times as read, so on Linux 6.13+ (fine-grained timestamps) the
        // next commit's write changes them, and ext4 without a journal then
        // writes the inode in that commit's fdatasync: one more disk write
        // per commit (measured: 0.99 → 0.09 inode writes a commit).
        let len = (&*file).seek(std::io::SeekFrom::End(0))?;
        let mut head = [0u8; HEADER as usize];
        if len < HEADER || file.read_exact_at(&mut head, 0).is_err() {
            return Ok(None);
        }
        let Some(h) = wal::header(&head) else { return Ok(None) };
        if self.pass != Some(h) {
            // The log restarted from its beginning (new salts).
            (self.pass, self.offset) = (Some(h), HEADER);
        }
        read_live(file, &h, self.offset, len, &mut self.scratch)?;
        let end = wal::committed_len(&self.scratch, &h);
        if end == 0 {
            return Ok(None);
        }
        self.offset += end as u64;
        Ok(Some((h.page_size, self.scratch[..end].to_vec())))
    }
}

/// Frames read first; each further read doubles. A batch's new frames are
/// a handful when quiet and a few dozen under load, and every byte read
/// past them (an earlier pass's frames) is copied and thrown away.
const FIRST_READ_FRAMES: u64 = 8;

/// Reads into `body` the frames of the current pass from `offset` on, a
/// growing window at a time and only as far as they go. The file does not
/// shrink when the log starts over, so everything after `offset` may be an
/// earlier pass's frames: reading it all after every batch cost the writer
/// megabytes of reads and the archive thread megabytes of memory per
/// batch. `body` is reused from batch to batch: a fresh buffer cost an
/// allocation and zeroing per batch on the writer thread.
fn read_live(file: &File, h: &WalHeader, offset: u64, len: u64, body: &mut Vec<u8>) -> std::io::Result<()> {
    let frame = wal::frame_len(h) as u64;
    body.clear();
    let (mut at, mut window) = (offset, FIRST_READ_FRAMES);
    loop {
        let want = ((len.saturating_sub(at)) / frame).min(window) * frame;
        if want == 0 {
            return Ok(());
        }
        let start = body.len();
        body.resize(start + want as usize, 0);
        file.read_exact_at(&mut body[start..], at)?;
        let live = wal::live_len(&body[start..], h);
        body.truncate(start + live);
        if (live as u64) < want {
            return Ok(());
        }
        at += want;
        window *= 2;
    }
}

/// A read transaction on the database file, begun while the log is empty.
fn pin_database_file(db: &Path) -> rusqlite::Result<Connection> {
    let pin = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    pin.execute_batch("BEGIN")?;
    pin.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
    Ok(pin)
}

fn checkpoint(conn: &Connection, mode: &str) {
    if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
        tracing::warn!(error = %e, "WAL checkpoint failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the snapshot relies on: while the pin's read transaction is
    /// open, no checkpoint (not even TRUNCATE) writes the database file.
    #[test]
    fn a_pinned_database_file_stays_as_it_was_until_the_pin_goes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let w = Connection::open(&db).unwrap();
        w.busy_timeout(Duration::ZERO).unwrap();
        w.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t (x BLOB);")
            .unwrap();
        w.execute("INSERT INTO t VALUES (randomblob(50000))", []).unwrap();
        w.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
        let pin = pin_database_file(&db).unwrap();
        let before = std::fs::read(&db).unwrap();
        for _ in 0..20 {
            w.execute("INSERT INTO t VALUES (randomblob(50000))", []).unwrap();
        }
        for mode in ["PASSIVE", "FULL", "TRUNCATE"] {
            let _ = w.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()));
        }
        assert!(std::fs::read(&db).unwrap() == before, "the file moved under the pin");
        let rows: i64 = pin.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 1, "the pin still sees the generation's start");
        drop(pin);
        w.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
        assert!(std::fs::read(&db).unwrap() != before, "checkpoints go on once it is gone");
    }
}
