//! Continuous WAL archiving (`[backup].wal_archive`), in-process: latch owns
//! the only writer, so after every batch — on the writer thread, with no
//! transaction open — this hook copies the WAL frames committed since the
//! last call into a checksummed, fsynced segment named by its sequence and
//! commit time, and only then lets the log be checkpointed (SQLite's own
//! autocheckpoint is off on the writer while archiving). As in Litestream,
//! the archive is cut into generations: each starts with a snapshot of the
//! database file taken right after a full checkpoint (so the file alone is
//! the whole database) and holds every frame written after it; a restore
//! replays one generation's frames onto its snapshot (`replay.rs`). A new
//! generation starts every `[backup].interval`; `keep` of them are kept.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rusqlite::Connection;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::wal::{self, HEADER, WalHeader};
use crate::config::Config;
use crate::store::backup::{self as copies, BackupError};
use crate::store::{Store, StoreError, last_commit_unix_ms};

/// A generation's folder: `gen-<start, Unix ms>`.
pub const GENERATION_PREFIX: &str = "gen-";
/// The generation's snapshot: the database file right after a checkpoint.
pub const SNAPSHOT: &str = "snapshot.db.zst";
/// Segments: `<sequence>-<commit Unix ms>.wal.zst`.
pub const SEGMENT_SUFFIX: &str = ".wal.zst";
/// A segment starts with this and the page size (big-endian u32).
pub const SEGMENT_MAGIC: &[u8; 4] = b"LWA1";
/// Frames in the current pass through the log before it is checkpointed.
const CHECKPOINT_AFTER: u64 = 4 << 20;
/// While archiving fails, the log may grow to this before latch gives up
/// on the generation and checkpoints anyway: the database stays available
/// and the next success starts a new generation.
const GIVE_UP_AFTER: u64 = 256 << 20;
/// How often the hooks run while no writes come, so a failed copy is
/// retried and the lag gauge stays true.
const TICK: Duration = Duration::from_secs(1);

struct Archiver {
    config: Arc<ArcSwap<Config>>,
    db: PathBuf,
    wal: PathBuf,
    /// The current generation's folder.
    generation: Option<PathBuf>,
    next_generation: Instant,
    /// The pass through the log being read, and where its unarchived part
    /// begins.
    pass: Option<WalHeader>,
    offset: u64,
    seq: u64,
    /// The first commit the archive failed to take (Unix ms).
    failing_since: Option<i64>,
    archiving: Option<bool>,
}

/// Installs the archive hook on the writer and the idle tick.
pub async fn install(
    store: &Store,
    config: Arc<ArcSwap<Config>>,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> Result<(), StoreError> {
    let db = store.path().to_path_buf();
    let mut archiver = Archiver {
        config,
        wal: PathBuf::from(format!("{}-wal", db.display())),
        db,
        generation: None,
        next_generation: Instant::now(),
        pass: None,
        offset: HEADER,
        seq: 0,
        failing_since: None,
        archiving: None,
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
    Ok(())
}

impl Archiver {
    fn run(&mut self, conn: &Connection) {
        let cfg = self.config.load_full();
        self.set_archiving(conn, cfg.backup.wal_archive);
        if !cfg.backup.wal_archive {
            return;
        }
        let due = self.generation.is_none() || Instant::now() >= self.next_generation;
        // The old generation takes its last frames before the new one starts.
        if due
            && self.archive().is_ok()
            && let Err(e) = self.start_generation(conn, &cfg)
        {
            tracing::warn!(error = %e, "WAL archive: could not start a generation; will retry");
            self.generation = None;
        }
        match self.archive() {
            Ok(()) => {
                if self.failing_since.take().is_some() {
                    tracing::info!("WAL archive: caught up");
                }
                metrics::gauge!("latch_wal_archive_lag_seconds").set(0.0);
                if self.offset > CHECKPOINT_AFTER {
                    checkpoint(conn, "PASSIVE");
                }
            }
            Err(e) => self.failed(conn, &e),
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

    fn failed(&mut self, conn: &Connection, e: &BackupError) {
        let since = *self.failing_since.get_or_insert_with(|| {
            tracing::error!(error = %e, "WAL archive: copying committed frames failed; will retry");
            last_commit_unix_ms()
        });
        let lag = (crate::clock::now_unix_ms() - since).max(0) as f64 / 1000.0;
        metrics::gauge!("latch_wal_archive_lag_seconds").set(lag);
        if wal_len(&self.wal) > GIVE_UP_AFTER {
            tracing::error!(
                "WAL archive: the log outgrew what may wait for the archive; checkpointing without it"
            );
            checkpoint(conn, "PASSIVE");
            self.generation = None;
        }
    }

    /// Checkpoints the whole log into the database file (so the file alone
    /// is the database), snapshots the file, and starts a new generation.
    fn start_generation(&mut self, conn: &Connection, cfg: &Config) -> Result<(), BackupError> {
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(|source| BackupError::Sqlite { path: self.wal.display().to_string(), source })?;
        if busy != 0 {
            let source = std::io::Error::other("readers kept the log from being checkpointed");
            return Err(BackupError::Io { path: self.wal.display().to_string(), source });
        }
        let root = cfg.archive_dir();
        let dir = root.join(format!("{GENERATION_PREFIX}{:013}", crate::clock::now_unix_ms()));
        copies::make_private_dir(&dir)?;
        copies::compress(&self.db, &dir.join(SNAPSHOT))?;
        tracing::info!(generation = %dir.display(), "WAL archive: new generation");
        self.generation = Some(dir);
        self.next_generation = Instant::now() + cfg.backup.interval.0;
        (self.pass, self.offset, self.seq) = (None, HEADER, 0);
        prune(&root, cfg.backup.keep as usize);
        Ok(())
    }

    /// Copies the frames committed since the last call into a new segment.
    fn archive(&mut self) -> Result<(), BackupError> {
        let Some(dir) = self.generation.clone() else { return Ok(()) };
        let io = |source| BackupError::Io { path: self.wal.display().to_string(), source };
        let file = match File::open(&self.wal) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        let len = file.metadata().map_err(io)?.len();
        let mut head = [0u8; HEADER as usize];
        if len < HEADER || file.read_exact_at(&mut head, 0).is_err() {
            return Ok(());
        }
        let Some(h) = wal::header(&head) else { return Ok(()) };
        if self.pass != Some(h) {
            // The log restarted from its beginning (new salts).
            (self.pass, self.offset) = (Some(h), HEADER);
        }
        if len <= self.offset {
            return Ok(());
        }
        let mut body = vec![0u8; (len - self.offset) as usize];
        file.read_exact_at(&mut body, self.offset).map_err(io)?;
        let end = wal::committed_len(&body, &h);
        if end == 0 {
            return Ok(());
        }
        let mut segment = Vec::with_capacity(end + 8);
        segment.extend_from_slice(SEGMENT_MAGIC);
        segment.extend_from_slice(&(h.page_size as u32).to_be_bytes());
        segment.extend_from_slice(&body[..end]);
        let name = format!("{:010}-{:013}{SEGMENT_SUFFIX}", self.seq, last_commit_unix_ms());
        copies::compress_bytes(&segment, &dir.join(name))?;
        self.offset += end as u64;
        self.seq += 1;
        Ok(())
    }
}

fn wal_len(wal: &Path) -> u64 {
    std::fs::metadata(wal).map_or(0, |m| m.len())
}

fn checkpoint(conn: &Connection, mode: &str) {
    if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
        tracing::warn!(error = %e, "WAL checkpoint failed");
    }
}

/// The generations under `root`, oldest first: (start Unix ms, folder).
pub fn generations(root: &Path) -> Vec<(i64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut found: Vec<(i64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ms = name.strip_prefix(GENERATION_PREFIX)?.parse().ok()?;
            Some((ms, e.path()))
        })
        .collect();
    found.sort();
    found
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
