//! The WAL archive's own thread: it writes the frames the writer's hook
//! (`archive.rs`) hands it as checksummed, fsynced segments, a new
//! generation's snapshot before any of that generation's segments, and
//! prunes old generations, so that the archive disk never holds up a
//! commit. What the hook and the thread share is defined here.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::archive::TICK;
use super::segment;
use crate::store::DamageWatch;
use crate::store::archive_layout::{DAMAGED, SNAPSHOT, generations, restorable};
use crate::store::backup as copies;

/// While archiving fails, the archive thread holds up to this many bytes of
/// frames before it gives them up (and the log may be checkpointed): the
/// database stays available and a new generation starts.
const GIVE_UP_AFTER: u64 = 256 << 20;
/// At most one segment per this long: the recovery point stays well under
/// a second while the archive's fsyncs stay few beside the commits'.
const SEGMENT_EVERY: Duration = Duration::from_millis(100);

/// What the writer's hook and the archive thread share.
#[derive(Default)]
pub(super) struct Progress {
    /// Set by the thread when it gave frames up: the generation has a hole.
    pub(super) broken: AtomicBool,
    /// Set by the hook when it sends a snapshot, cleared by the thread once
    /// written: the next generation waits for it, since its TRUNCATE
    /// checkpoint would wait on the pin with the writer thread.
    pub(super) snapshotting: AtomicBool,
    /// Set by the thread: since when (Unix ms) commits have gone into no
    /// usable generation (a failed snapshot, frames given up), 0 while none
    /// have. Cleared by the next finished snapshot, which holds them all,
    /// or by the hook when archiving is turned off.
    unarchived_since_ms: AtomicI64,
}

impl Progress {
    /// Commits from `ms` on are in no usable generation (an earlier mark
    /// stays: the stretch began then).
    fn lost_from(&self, ms: i64) {
        let _ = self.unarchived_since_ms.compare_exchange(0, ms.max(1), Ordering::AcqRel, Ordering::Acquire);
    }

    /// Whether every commit so far is in a usable generation or on its way
    /// there (none lost to a failure since the last finished snapshot).
    pub(super) fn owes_nothing(&self) -> bool {
        self.unarchived_since_ms.load(Ordering::Acquire) == 0
    }

    /// Archiving was turned off: nothing is owed to the archive any more.
    pub(super) fn forget_lost(&self) {
        self.unarchived_since_ms.store(0, Ordering::Release);
    }

    /// The lag gauge's value: the age of the oldest commit the archive does
    /// not hold, of those still `held` for writing or lost to a failure.
    fn lag_seconds(&self, held: Option<i64>) -> f64 {
        let lost = Some(self.unarchived_since_ms.load(Ordering::Acquire)).filter(|ms| *ms > 0);
        let oldest = held.into_iter().chain(lost).min();
        oldest.map_or(0.0, |ms| (crate::clock::now_unix_ms() - ms).max(0) as f64 / 1e3)
    }
}

/// What the hook (and the stop) send the archive thread.
pub(super) enum Work {
    Chunk(Chunk),
    Snapshot(Box<Snapshot>),
    /// The daemon stops: write everything held, then answer and end.
    Finish(tokio::sync::oneshot::Sender<()>),
}

/// Committed frames for the archive thread.
pub(super) struct Chunk {
    pub(super) generation: PathBuf,
    pub(super) page_size: usize,
    /// When the last of its commits was made, by the clock (the lag gauge
    /// counts from it), and the archive's time for it (the segment's name;
    /// later when the clock is behind the archive, see `archive.rs`).
    pub(super) commit_ms: i64,
    pub(super) stamp_ms: i64,
    pub(super) frames: Vec<u8>,
}

/// A new generation's snapshot, for the archive thread to write. `pin`
/// holds a read transaction begun right after the full checkpoint: while
/// it is open SQLite lets no checkpoint write the database file (they wait
/// on the read lock of readers that use no log), so the file the thread
/// compresses stays exactly the generation's start, however long it takes
/// and even if the daemon stops meanwhile.
pub(super) struct Snapshot {
    pub(super) dir: PathBuf,
    /// When the generation began (Unix ms), by the clock: its folder's
    /// name unless the clock was behind the archive.
    pub(super) started_ms: i64,
    /// The database file (`store::FileReader`), read from its start.
    pub(super) db: Box<dyn std::io::Read + Send>,
    pub(super) pin: Connection,
    pub(super) root: PathBuf,
    pub(super) keep: usize,
    /// Told when the snapshot's check finds the database damaged.
    pub(super) damage: DamageWatch,
}

/// The archive thread: writes what the hook sends as segments, several
/// batches to a segment when they queue up, retrying once a second while
/// the archive cannot be written, and keeps the lag gauge. It gives frames
/// up (and marks the generation broken, so a new one starts) only past
/// `GIVE_UP_AFTER`.
pub(super) fn write_segments(work: &mpsc::Receiver<Work>, progress: &Progress) {
    let (mut pending, mut next_seq): (Vec<Chunk>, (PathBuf, u64)) = (Vec::new(), (PathBuf::new(), 0));
    let (mut failing, mut last_write) = (false, Instant::now());
    let mut finish = None;
    loop {
        // A wake-up at least once a second, work or not: a failed copy is
        // retried, and the lag gauge keeps counting while nothing comes.
        let first = match work.recv_timeout(TICK) {
            Ok(w) => Some(w),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            // The hook is gone: the daemon stopped.
            Err(mpsc::RecvTimeoutError::Disconnected) if pending.is_empty() => return,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Nothing more can come; the wait between retries is ours.
                if failing {
                    std::thread::sleep(TICK);
                }
                None
            }
        };
        take(first, &mut pending, &mut finish, progress);
        if finish.is_none() {
            // Each segment costs two fsyncs of the disk the commits need
            // too: gather what commits in the next moment into one segment.
            std::thread::sleep(SEGMENT_EVERY.saturating_sub(last_write.elapsed()));
        }
        for w in work.try_iter() {
            take(Some(w), &mut pending, &mut finish, progress);
        }
        write_pending(&mut pending, &mut next_seq, (&mut failing, &mut last_write), progress);
        let lag = progress.lag_seconds(pending.first().map(|c| c.commit_ms));
        metrics::gauge!("latch_wal_archive_lag_seconds").set(lag);
        if let Some(done) = finish.take() {
            if !pending.is_empty() {
                // The stop goes on without them; the retries go on until
                // the process exits, which may come first.
                tracing::error!(
                    batches = pending.len(),
                    "WAL archive: the stop goes on with frames not yet archived; they may be missing from it"
                );
            }
            let _ = done.send(());
            // No return: a commit the stop did not foresee (a request its
            // drain cut, still finishing on a worker) may follow; it is
            // written too, and the thread ends once the hook is dropped.
        }
    }
}

/// Writes a generation's snapshot (before any of its segments: they come
/// after it on the channel), then, once SQLite's check of it passes
/// (`is_whole`), prunes old generations. A failed one
/// has the hook start a new generation, and its segments are dropped; its
/// folder stays, empty, when it is the first failure after a finished
/// generation: it tells a restore that the archive holds none of the
/// commits from its start to the next finished one.
fn write_snapshot(s: Snapshot, progress: &Progress) {
    // Tests stop the daemon here, as a crash or a stop's timeout would.
    crate::pause::blocking("archive_snapshot");
    let started = Instant::now();
    match copies::compress_from(s.db, &s.dir.join(SNAPSHOT)) {
        Ok(_) => {
            progress.unarchived_since_ms.store(0, Ordering::Release);
            let copied_s = started.elapsed().as_secs_f64();
            let checking = Instant::now();
            let whole = is_whole(&s.pin, &s.dir, &s.damage);
            // Its own clock: a difference of two f64 read 0.0003670460000000002.
            let checked_s = checking.elapsed().as_secs_f64();
            tracing::info!(generation = %s.dir.display(), copied_s, checked_s, whole, "WAL archive: new generation");
            if whole {
                prune(&s.root, s.keep);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "WAL archive: the snapshot failed; a new generation will follow");
            if !marks_a_gap(&s.root, &s.dir) {
                let _ = std::fs::remove_dir_all(&s.dir);
            }
            // Its segments will be dropped: the lag gauge must not read 0.
            progress.lost_from(s.started_ms);
            progress.broken.store(true, Ordering::Release);
        }
    }
    drop(s.pin);
    progress.snapshotting.store(false, Ordering::Release);
    // Compressing the database took zstd's window and buffers.
    crate::telemetry::memory::return_free_memory();
}

/// Whether the database the snapshot copied passes SQLite's integrity
/// check, as a backup's copy must. Damage nothing has read yet (a page
/// the start does not touch) is copied as it is, and a generation that
/// pruned the older ones on it would delete, at a `keep` of 1, the only
/// one a restore could mend it from: such a generation prunes none, and
/// the store tells of the damage (`latch_db_damaged`), so that no new
/// generation begins on it either (`archive.rs`, `hold_generation`).
fn is_whole(pin: &Connection, generation: &Path, damage: &DamageWatch) -> bool {
    match copies::integrity(pin) {
        Ok(checked) if checked.findings == ["ok"] => true,
        Ok(checked) => {
            let findings = checked.findings.join("; ");
            damage.found(&format_args!("the WAL archive's new generation copied it ({findings})"));
            // Restores reach around it (`archive_layout::restorable`).
            if let Err(e) = copies::write_bytes(format!("{findings}\n").as_bytes(), &generation.join(DAMAGED))
            {
                tracing::warn!(error = %e, "WAL archive: marking the generation as damaged failed");
            }
            tracing::error!(
                generation = %generation.display(),
                "WAL archive: the new generation's snapshot fails SQLite's integrity check; no generation is \
                 pruned, and none begins on the damaged database"
            );
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "WAL archive: the new generation's snapshot could not be checked; no \
                 generation is pruned until one is");
            false
        }
    }
}

/// Whether the folder of a generation whose snapshot failed is worth
/// keeping: only when the generation before it was finished. A run of
/// failures (a full disk, retried ever less often) marks the same stretch
/// with its first folder and adds none; a failure before any finished
/// generation is outside what a restore can reach anyway.
fn marks_a_gap(root: &Path, failed: &Path) -> bool {
    let before =
        generations(root).into_iter().map(|(_, dir)| dir).take_while(|dir| dir.as_path() != failed).last();
    before.is_some_and(|dir| restorable(&dir))
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
        let name = segment::file_name(next_seq.1, pending[run - 1].stamp_ms);
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
        if let Some(first) = pending.first() {
            progress.lost_from(first.commit_ms);
        }
        progress.broken.store(true, Ordering::Release);
        pending.clear();
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
    use crate::store::archive_layout::GENERATION_PREFIX;

    fn snapshot(root: &Path, started_ms: i64) -> Snapshot {
        let dir = root.join(format!("{GENERATION_PREFIX}{started_ms:013}"));
        std::fs::create_dir(&dir).unwrap();
        let (db, pin) =
            (Box::new(std::io::Cursor::new(vec![7u8; 4096])), Connection::open_in_memory().unwrap());
        let damage = DamageWatch::new(&root.join("latch.db"));
        Snapshot { dir, started_ms, db, pin, root: root.to_path_buf(), keep: 10, damage }
    }

    /// Where the snapshot's temp file goes, a folder: writing it fails.
    fn failing(s: Snapshot) -> Snapshot {
        std::fs::create_dir(s.dir.join(".snapshot.db.zst.partial")).unwrap();
        s
    }

    #[test]
    fn a_failed_snapshot_counts_toward_the_lag_until_a_snapshot_is_written() {
        let root = tempfile::tempdir().unwrap();
        let (progress, now) = (Progress::default(), crate::clock::now_unix_ms());
        write_snapshot(snapshot(root.path(), now - 9_000), &progress);
        assert_eq!(progress.lag_seconds(None), 0.0, "every commit archived");
        let first = failing(snapshot(root.path(), now - 5_000));
        let first_dir = first.dir.clone();
        write_snapshot(first, &progress);
        assert!(progress.broken.swap(false, Ordering::AcqRel), "a new generation must start");
        assert!(
            first_dir.exists() && !first_dir.join(SNAPSHOT).exists(),
            "its empty folder marks the stretch"
        );
        // Its commits will be dropped: the gauge reads their age, not 0.
        assert!(progress.lag_seconds(None) >= 5.0, "{}", progress.lag_seconds(None));
        let again = failing(snapshot(root.path(), now - 2_000));
        let again_dir = again.dir.clone();
        write_snapshot(again, &progress);
        assert!(!again_dir.exists(), "the first failure already marks the stretch");
        assert!(progress.lag_seconds(Some(now - 1_000)) >= 5.0, "the stretch began with the first failure");
        write_snapshot(snapshot(root.path(), now), &progress);
        assert!(progress.lag_seconds(None) < 1.0, "the new snapshot holds every commit before it");
    }

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
}
