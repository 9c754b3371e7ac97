//! Damage SQLite finds in the database file (a failing disk, a file written
//! over by something else): no retry mends it, a restore does. The start
//! refuses a file whose schema or header is damaged (`daemon`); damage in
//! a table's pages it can serve around shows in whichever request or
//! backup reads them. Each of those fails (a request answers 500), and the
//! operator is told here, when it is first met, rather than by the backup
//! that stops succeeding (`LatchBackupStale`, half an hour later).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{BackupError, StoreError};

/// The error line is repeated at most this often while requests keep
/// meeting the damage: one line is the news, a line per request is noise.
const TELL_EVERY: Duration = Duration::from_secs(60);

/// True when `e` is SQLite finding the database file damaged, or no
/// database at all.
pub fn is_damage(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    matches!(e.sqlite_error_code(), Some(DatabaseCorrupt | NotADatabase))
}

/// `is_damage` of `e` or any of its causes.
pub fn is_damaged(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| match cause.downcast_ref::<StoreError>() {
        Some(e) => e.is_damage(),
        _ => cause.downcast_ref::<rusqlite::Error>().is_some_and(is_damage),
    })
}

impl StoreError {
    /// Whether this failure is damage in the database file.
    pub fn is_damage(&self) -> bool {
        match self {
            StoreError::Sqlite(e) => is_damage(e),
            StoreError::Commit(e) => is_damage(e),
            StoreError::Backup(BackupError::LiveDamaged { .. }) => true,
            _ => false,
        }
    }
}

/// How a damaged database is mended, as latchd's refused start and
/// `latchctl db check` name it: from the WAL archive under `archive` when
/// `[backup].wal_archive` is on, else from a backup. When the archive's
/// newest generation copied the damage, the archive's way is to the last
/// moment before it, named ready to pass.
pub fn way_out(archive: Option<&Path>) -> String {
    const FROM_A_BACKUP: &str =
        "`latchctl backup restore FILE` from a backup (`latchctl backup list` shows both)";
    let Some(archive) = archive else {
        return "`latchctl backup restore FILE` puts a backup in its place (`latchctl backup list` shows them)"
            .to_string();
    };
    match super::archive_layout::reach(archive).ok().flatten().and_then(|r| r.until) {
        Some(until) => format!(
            "`latchctl backup restore --to-time {}` rebuilds it from the WAL archive as it was then, before \
             the archive's newest generation copied the damage, or {FROM_A_BACKUP}",
            crate::clock::rfc3339(until)
        ),
        None => format!(
            "`latchctl backup restore --to-time 0s` rebuilds it from the WAL archive up to its last commit, or \
             {FROM_A_BACKUP}"
        ),
    }
}

/// What the store has told of damage: `latch_db_damaged` is 0 from the
/// start and turns 1 at the first damage met (damage does not mend
/// itself; a restore and a new start do). Cheap to clone: the WAL
/// archive's thread tells through it what its snapshot's check found.
#[derive(Clone)]
pub struct DamageWatch {
    db: Arc<Path>,
    seen: Arc<AtomicBool>,
    told_at: Arc<Mutex<Option<Instant>>>,
}

impl DamageWatch {
    /// One per opened store (`Store::open`): it sets the gauge to 0.
    pub fn new(db: &Path) -> DamageWatch {
        metrics::gauge!("latch_db_damaged").set(0.0);
        DamageWatch { db: db.into(), seen: Arc::default(), told_at: Arc::default() }
    }

    /// Whether damage has been met since the store opened, for the work
    /// that must act on it (the WAL archive keeps what came before).
    pub fn is_seen(&self) -> bool {
        self.seen.load(Ordering::Acquire)
    }

    /// Tells of `out`'s error if it is damage in the database file.
    pub(super) fn notice<T>(&self, out: &Result<T, StoreError>) {
        match out {
            Err(e) if e.is_damage() => self.found(e),
            _ => {}
        }
    }

    /// Tells that the database file is damaged, as `what` found.
    pub fn found(&self, what: &dyn std::fmt::Display) {
        self.seen.store(true, Ordering::Release);
        metrics::gauge!("latch_db_damaged").set(1.0);
        let mut told_at = self.told_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if told_at.is_some_and(|at| at.elapsed() < TELL_EVERY) {
            return;
        }
        *told_at = Some(Instant::now());
        tracing::error!(
            error = %what,
            "{} is damaged: requests and backups that read its damaged pages fail; stop latchd, then `latchctl db \
             check` shows where and `latchctl backup restore` mends it (README: \"A damaged database\")",
            self.db.display()
        );
    }
}
