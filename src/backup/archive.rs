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

use std::fs::File;
use std::io::Seek;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rusqlite::Connection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::segment;
use super::wal::{self, HEADER, WalHeader};
use crate::config::Config;
use crate::store::archive_layout::{GENERATION_PREFIX, SNAPSHOT, generations};
use crate::store::backup::{self as copies, BackupError};
use crate::store::{DatabaseFile, FileReader, Store, StoreError, last_commit_unix_ms};

/// Bytes into the current pass through the log after which every batch
/// checkpoints (PASSIVE) until a complete one lets the next write start
/// the log over: SQLite's own autocheckpoint threshold (1,000 pages).
const CHECKPOINT_AFTER: u64 = 4 << 20;
/// While archiving fails, the archive thread holds up to this many bytes of
/// frames before it gives them up (and the log may be checkpointed): the
/// database stays available and a new generation starts.
const GIVE_UP_AFTER: u64 = 256 << 20;
/// At most one segment per this long: the recovery point stays well under
/// a second while the archive's fsyncs stay few beside the commits'.
const SEGMENT_EVERY: Duration = Duration::from_millis(100);
/// How often the hooks run while no writes come, so a failed copy is
/// retried and the lag gauge stays true.
const TICK: Duration = Duration::from_secs(1);

/// What the writer's hook and the archive thread share.
#[derive(Default)]
struct Progress {
    /// Set by the thread when it gave frames up: the generation has a hole.
    broken: AtomicBool,
    /// Set by the hook when it sends a snapshot, cleared by the thread once
    /// written: the next generation waits for it, since its TRUNCATE
    /// checkpoint would wait on the pin with the writer thread.
    snapshotting: AtomicBool,
}

/// What the hook (and the stop) send the archive thread.
enum Work {
    Chunk(Chunk),
    Snapshot(Box<Snapshot>),
    /// The daemon stops: write everything held, then answer and end.
    Finish(tokio::sync::oneshot::Sender<()>),
}

/// Committed frames for the archive thread.
struct Chunk {
    generation: PathBuf,
    page_size: usize,
    commit_ms: i64,
    frames: Vec<u8>,
}

/// A new generation's snapshot, for the archive thread to write. `pin`
/// holds a read transaction begun right after the full checkpoint: while
/// it is open SQLite lets no checkpoint write the database file (they wait
/// on the read lock of readers that use no log), so the file the thread
/// compresses stays exactly the generation's start, however long it takes
/// and even if the daemon stops meanwhile.
struct Snapshot {
    dir: PathBuf,
    db: FileReader,
    pin: Connection,
    root: PathBuf,
    keep: usize,
}

struct Archiver {
    config: Arc<ArcSwap<Config>>,
    db: PathBuf,
    /// The database file, read through the store's own descriptor.
    file: DatabaseFile,
    wal: PathBuf,
    /// The current generation's folder.
    generation: Option<PathBuf>,
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
        self.set_archiving(conn, cfg.backup.wal_archive);
        if !cfg.backup.wal_archive {
            return;
        }
        if self.progress.broken.swap(false, Ordering::AcqRel) {
            self.generation = None;
        }
        let due = self.generation.is_none() || Instant::now() >= self.next_generation;
        if due && !self.progress.snapshotting.load(Ordering::Acquire) {
            // The old generation takes its last frames before the new one starts.
            self.collect();
            if let Err(e) = self.start_generation(conn, &cfg) {
                tracing::warn!(error = %e, "WAL archive: could not start a generation; will retry");
                self.generation = None;
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
            self.generation = None;
            metrics::gauge!("latch_wal_archive_lag_seconds").set(0.0);
        }
        self.archiving = Some(on);
    }

    /// Checkpoints the whole log into the database file (so the file alone
    /// is the database), starts a new generation, and has the archive
    /// thread snapshot the file: compressing it here would stall every
    /// write for as long as that takes (seconds for a large database).
    fn start_generation(&mut self, conn: &Connection, cfg: &Config) -> Result<(), BackupError> {
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(|source| BackupError::Sqlite { path: self.wal.display().to_string(), source })?;
        if busy != 0 {
            let source = std::io::Error::other("readers kept the log from being checkpointed");
            return Err(BackupError::Io { path: self.wal.display().to_string(), source });
        }
        let pin = pin_database_file(&self.db)
            .map_err(|source| BackupError::Sqlite { path: self.db.display().to_string(), source })?;
        let root = cfg.archive_dir();
        let dir = root.join(format!("{GENERATION_PREFIX}{:013}", crate::clock::now_unix_ms()));
        copies::make_private_dir(&dir)?;
        let snapshot =
            Snapshot { dir: dir.clone(), db: self.file.reader(), pin, root, keep: cfg.backup.keep as usize };
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

    /// Reads the frames committed since the last call and sends them to the
    /// archive thread.
    fn collect(&mut self) {
        let Some(generation) = self.generation.clone() else { return };
        match self.read_committed() {
            Ok(Some((page_size, frames))) => {
                let commit_ms = last_commit_unix_ms();
                if self
                    .to_thread
                    .send(Work::Chunk(Chunk { generation, page_size, commit_ms, frames }))
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

/// The archive thread: writes what the hook sends as segments, several
/// batches to a segment when they queue up, retrying once a second while
/// the archive cannot be written. It gives frames up (and marks the
/// generation broken, so a new one starts) only past `GIVE_UP_AFTER`.
fn write_segments(work: &mpsc::Receiver<Work>, progress: &Progress) {
    let (mut pending, mut next_seq): (Vec<Chunk>, (PathBuf, u64)) = (Vec::new(), (PathBuf::new(), 0));
    let (mut failing, mut last_write) = (false, Instant::now());
    let mut finish = None;
    loop {
        let first = if pending.is_empty() {
            work.recv()
        } else {
            work.recv_timeout(TICK).map_err(|_| mpsc::RecvError)
        };
        let gone = first.is_err();
        if gone && pending.is_empty() {
            return; // the hook is gone: the daemon stopped
        }
        if gone && failing {
            // Nothing more can come; the wait between retries is ours.
            std::thread::sleep(TICK);
        }
        take(first.ok(), &mut pending, &mut finish, progress);
        if finish.is_none() {
            // Each segment costs two fsyncs of the disk the commits need
            // too: gather what commits in the next moment into one segment.
            std::thread::sleep(SEGMENT_EVERY.saturating_sub(last_write.elapsed()));
        }
        for w in work.try_iter() {
            take(Some(w), &mut pending, &mut finish, progress);
        }
        write_pending(&mut pending, &mut next_seq, (&mut failing, &mut last_write), progress);
        let lag =
            pending.first().map_or(0.0, |c| (crate::clock::now_unix_ms() - c.commit_ms).max(0) as f64 / 1e3);
        metrics::gauge!("latch_wal_archive_lag_seconds").set(lag);
        if let Some(done) = finish.take() {
            if !pending.is_empty() {
                tracing::error!(batches = pending.len(), "WAL archive: stopping with frames not archived");
            }
            let _ = done.send(());
            return;
        }
    }
}

/// A read transaction on the database file, begun while the log is empty.
fn pin_database_file(db: &Path) -> rusqlite::Result<Connection> {
    let pin = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    pin.execute_batch("BEGIN")?;
    pin.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
    Ok(pin)
}

/// Writes a generation's snapshot (before any of its segments: they come
/// after it on the channel), then prunes old generations. A failed one
/// has the hook start a new generation, and its segments are dropped; its
/// folder stays, empty, when it is the first failure after a finished
/// generation: it tells a restore that the archive holds none of the
/// commits from its start to the next finished one.
fn write_snapshot(s: Snapshot, progress: &Progress) {
    // Tests stop the daemon here, as a crash or a stop's timeout would.
    crate::pause::blocking("archive_snapshot");
    match copies::compress_from(s.db, &s.dir.join(SNAPSHOT)) {
        Ok(_) => {
            tracing::info!(generation = %s.dir.display(), "WAL archive: new generation");
            prune(&s.root, s.keep);
        }
        Err(e) => {
            tracing::warn!(error = %e, "WAL archive: the snapshot failed; a new generation will start");
            if !marks_a_gap(&s.root, &s.dir) {
                let _ = std::fs::remove_dir_all(&s.dir);
            }
            progress.broken.store(true, Ordering::Release);
        }
    }
    drop(s.pin);
    progress.snapshotting.store(false, Ordering::Release);
    // Compressing the database took zstd's window and buffers.
    crate::telemetry::memory::return_free_memory();
}

/// Whether the folder of a generation whose snapshot failed is worth
/// keeping: only when the generation before it was finished. A run of
/// failures (a full disk, retried every second) marks the same stretch
/// with its first folder and adds none; a failure before any finished
/// generation is outside what a restore can reach anyway.
fn marks_a_gap(root: &Path, failed: &Path) -> bool {
    let before =
        generations(root).into_iter().map(|(_, dir)| dir).take_while(|dir| dir.as_path() != failed).last();
    before.is_some_and(|dir| dir.join(SNAPSHOT).exists())
}

fn take(
    w: Option<Work>,
    pending: &mut Vec<Chunk>,
    finish: &mut Option<tokio::sync::oneshot::Sender<()>>,
    progress: &Progress,
) {
    match w {
        Some(Work::Chunk(c)) => pending.push(c),
        Some(Work::Snapshot(snapshot)) => write_snapshot(*snapshot, progress),
        Some(Work::Finish(done)) => *finish = Some(done),
        None => {}
    }
}

/// Writes what is pending, a segment per run of one generation, until done
/// or a write fails (then it is kept for the next try, within bounds).
fn write_pending(
    pending: &mut Vec<Chunk>,
    next_seq: &mut (PathBuf, u64),
    (failing, last_write): (&mut bool, &mut Instant),
    progress: &Progress,
) {
    while !pending.is_empty() {
        let run = pending.iter().take_while(|c| c.generation == pending[0].generation).count();
        let (generation, page_size) = (pending[0].generation.clone(), pending[0].page_size);
        if next_seq.0 != generation {
            *next_seq = (generation.clone(), 0);
        }
        if !generation.join(SNAPSHOT).exists() {
            // Pruned meanwhile (a newer generation's snapshot holds these),
            // or its snapshot failed: nothing could replay them.
            pending.drain(..run);
            continue;
        }
        let runs = pending[..run].iter().map(|c| c.frames.as_slice()).collect::<Vec<_>>();
        let bytes = segment::encode(&runs, page_size);
        let name = segment::file_name(next_seq.1, pending[run - 1].commit_ms);
        match copies::write_bytes(&bytes, &generation.join(name)) {
            Ok(_) => {
                *last_write = Instant::now();
                next_seq.1 += 1;
                pending.drain(..run);
                if std::mem::take(failing) {
                    tracing::info!("WAL archive: caught up");
                }
            }
            Err(e) => {
                if !std::mem::replace(failing, true) {
                    tracing::error!(error = %e, "WAL archive: writing a segment failed; will retry");
                }
                give_up_if_too_much(pending, progress);
                return;
            }
        }
    }
}

fn give_up_if_too_much(pending: &mut Vec<Chunk>, progress: &Progress) {
    let held: usize = pending.iter().map(|c| c.frames.len()).sum();
    if held as u64 > GIVE_UP_AFTER {
        tracing::error!(
            bytes = held,
            "WAL archive: giving up frames the archive could not take; a new generation starts once it can"
        );
        progress.broken.store(true, Ordering::Release);
        pending.clear();
    }
}

fn checkpoint(conn: &Connection, mode: &str) {
    if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
        tracing::warn!(error = %e, "WAL checkpoint failed");
    }
}

/// Deletes the oldest generations beyond the newest `keep`.
fn prune(root: &Path, keep: usize) {
    let all = generations(root);
    for (_, old) in &all[..all.len().saturating_sub(keep)] {
        if let Err(e) = std::fs::remove_dir_all(old) {
            tracing::warn!(error = %e, generation = %old.display(), "WAL archive: pruning failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_failed_generation_after_a_finished_one_is_kept() {
        let root = tempfile::tempdir().unwrap();
        let folder = |ms: i64, snapshot: bool| {
            let dir = root.path().join(format!("{GENERATION_PREFIX}{ms:013}"));
            std::fs::create_dir(&dir).unwrap();
            if snapshot {
                std::fs::write(dir.join(SNAPSHOT), b"").unwrap();
            }
            dir
        };
        let first = folder(1_000, false);
        assert!(!marks_a_gap(root.path(), &first), "nothing finished before it");
        folder(2_000, true);
        let failed = folder(3_000, false);
        assert!(marks_a_gap(root.path(), &failed), "the stretch from 3 s on is not archived");
        let again = folder(4_000, false);
        assert!(!marks_a_gap(root.path(), &again), "3 s already marks it");
    }

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
