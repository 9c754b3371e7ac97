//! `latchctl backup restore FILE`: put a backup in place of the live
//! database, offline, without reopening what the backup point left open.
//!
//! The backup is unpacked beside the database and checked; the replaced
//! database is read for the security-tightening changes made after the
//! backup (a restore would silently undo them, so it refuses unless told
//! to accept the rollback); in the restored copy every session, refresh
//! token, one-time token, `mfa_token` and queued email is voided, and the
//! newest signing keys of both databases are kept. Only then is the live
//! file kept aside (never deleted) and the copy renamed over it.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};
use serde_json::json;

use crate::audit::{self, Entry};
use crate::keys::MasterKey;
use crate::state_dir::StateDir;
use crate::store::backup::{self, BackupError, Inspected};
use crate::store::migrations;
use crate::store::{StoreError, archive_layout};

/// Audit actions that make an account or the install safer; a restore to
/// before one of them undoes it.
const TIGHTENING: &[&str] = &[
    "password_changed",
    "password_reset",
    "user_updated",
    "user_deleted",
    "account_deleted",
    "role_deleted",
    "api_key_revoked",
    "signing_key_revoked",
    "ip_blocked",
    "ip_block_added",
    "totp_enabled",
    "recovery_codes_regenerated",
    // A person who moved their account off an address they no longer
    // hold: restored, its reset links would go to that mailbox again.
    "email_changed",
];

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("{file} is damaged: {findings}; nothing was changed{instead}")]
    Damaged { file: String, findings: String, instead: String },
    #[error("{0}; nothing was changed")]
    Key(#[from] crate::keys::KeyError),
    #[error(
        "the live database has {} security change(s) made after this backup, which a restore would undo \
         (first: {}); pass --accept-rollback to restore anyway; nothing was changed",
        .0.len(), .0.first().map_or_else(String::new, |c| c.to_string())
    )]
    Rollback(Vec<Tightening>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Migration(#[from] migrations::MigrationError),
    #[error("{0}; nothing was changed")]
    Replay(#[from] super::replay::ReplayError),
}

/// What to restore from.
pub enum Source<'a> {
    /// A backup file, already open (root may read it before acting as the
    /// state directory's owner), and its name for messages.
    File { file: File, shown: &'a Path },
    /// The WAL archive under `archive`, as of `to_ms` (Unix milliseconds).
    PointInTime { archive: &'a Path, to_ms: i64 },
}

impl From<rusqlite::Error> for RestoreError {
    fn from(e: rusqlite::Error) -> Self {
        RestoreError::Store(StoreError::Sqlite(e))
    }
}

/// One change the restore would undo, from the replaced database's audit log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tightening {
    pub audit_id: i64,
    pub at: String,
    pub action: String,
    pub subject_id: Option<String>,
    pub details: String,
}

impl std::fmt::Display for Tightening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subject = self.subject_id.as_deref().unwrap_or("-");
        write!(f, "#{} {} {} {subject}", self.audit_id, self.at, self.action)
    }
}

/// What a restore did.
#[derive(Debug, serde::Serialize)]
pub struct Restored {
    pub database: PathBuf,
    /// Where the replaced database was kept (`None` when there was none).
    pub replaced_kept_at: Option<PathBuf>,
    pub backup: Inspected,
    /// For a point-in-time restore: what was replayed.
    pub replayed: Option<super::replay::Rebuilt>,
    pub voided: Voided,
    /// Changes undone, listed because `--accept-rollback` was given.
    pub rolled_back: Vec<Tightening>,
    /// The replaced database was there but could not be read (damaged, or
    /// no database): the changes it holds after the backup are unknown.
    pub replaced_unreadable: bool,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Voided {
    pub sessions: usize,
    pub refresh_tokens: usize,
    pub one_time_tokens: usize,
    pub mfa_tokens: usize,
    pub queued_emails: usize,
}

/// Restores `source` into `state`. The caller holds the state-directory
/// lock.
pub fn restore(
    source: Source<'_>,
    state: &StateDir,
    backup_dir: &Path,
    accept_rollback: bool,
) -> Result<Restored, RestoreError> {
    let live = state.database();
    let staging = live.with_file_name(".latch.db.restoring");
    let result = (|| {
        let (shown, replayed, archive) = match source {
            Source::File { file, shown } => {
                backup::decompress(file, shown, &staging)?;
                (shown.display().to_string(), None, None)
            }
            Source::PointInTime { archive, to_ms } => {
                let rebuilt = super::replay::rebuild(archive, to_ms, &staging)?;
                (rebuilt.generation.display().to_string(), Some(rebuilt), Some(archive))
            }
        };
        let inspected = backup::inspect(&staging)?;
        if !inspected.is_ok() {
            let findings = inspected.integrity.join("; ");
            let instead = match (archive, &replayed) {
                (Some(archive), Some(rebuilt)) => before_damage(archive, &rebuilt.generation),
                _ => String::new(),
            };
            return Err(RestoreError::Damaged { file: shown, findings, instead });
        }
        let mut conn = Connection::open(&staging)?;
        let key = crate::keys::load_existing(&conn, state.key_file())?;
        migrations::apply(&mut conn, backup_dir)?;
        let later = later_changes(&live, last_audit_id(&conn)?);
        let replaced_unreadable = later.is_none();
        let rolled_back = later.unwrap_or_default();
        if !rolled_back.is_empty() && !accept_rollback {
            return Err(RestoreError::Rollback(rolled_back));
        }
        let voided = seal_restored(&conn, &live, &key, &inspected, rolled_back.len())?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        drop(conn);
        let replaced_kept_at = swap_in(&staging, &live)?;
        Ok(Restored {
            database: live.clone(),
            replaced_kept_at,
            backup: inspected,
            replayed,
            voided,
            rolled_back,
            replaced_unreadable,
        })
    })();
    if result.is_err() {
        remove_with_sidecars(&staging);
    }
    result
}

/// What may be whole instead of a rebuild from `generation` that is
/// damaged. A generation copies the database as it is when it begins,
/// damage and all, and its check then keeps the older ones (see
/// `archive_thread.rs`): the moment before it began is restored from one
/// of those, so that moment is named, ready to pass. An earlier time in
/// the same generation may be whole too, when the damage came later.
fn before_damage(archive: &Path, generation: &Path) -> String {
    let began = archive_layout::generation_start(generation).unwrap_or(i64::MIN);
    let older = archive_layout::generations(archive)
        .into_iter()
        .any(|(ms, dir)| ms < began && archive_layout::restorable(&dir));
    if !older {
        return " (an earlier --to-time, or a backup, may be whole)".to_string();
    }
    let began_at = crate::clock::rfc3339(began.div_euclid(1000));
    let way_back = super::replay::way_back(began);
    format!(
        " (an earlier --to-time may be whole: this generation began at {began_at}; {way_back}; or a backup may be whole)"
    )
}

/// The tightening changes the live database logged after row `after`, its
/// WAL folded in first so the file alone is complete; `None` when it is
/// there but cannot be read (damaged, or no database at all: nothing can
/// be compared, and the operator is restoring because of exactly that).
fn later_changes(live: &Path, after: i64) -> Option<Vec<Tightening>> {
    if !live.exists() {
        return Some(Vec::new());
    }
    let read = Connection::open(live).map_err(RestoreError::from).and_then(|conn| {
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        tightenings_since(&conn, after)
    });
    match read {
        Ok(found) => Some(found),
        Err(e) => {
            tracing::warn!(error = %e, "the replaced database cannot be read; nothing to compare");
            None
        }
    }
}

fn last_audit_id(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row("SELECT coalesce(max(id), 0) FROM audit_log", [], |r| r.get(0))
}

/// The tightening changes the replaced database logged after row `after`.
fn tightenings_since(old: &Connection, after: i64) -> Result<Vec<Tightening>, RestoreError> {
    let marks = vec!["?"; TIGHTENING.len()].join(", ");
    let sql = format!(
        "SELECT id, at, action, subject_id, details FROM audit_log WHERE id > ?1 AND action IN ({marks}) ORDER BY id"
    );
    let mut stmt = old.prepare(&sql)?;
    let params: Vec<&dyn rusqlite::ToSql> = std::iter::once(&after as &dyn rusqlite::ToSql)
        .chain(TIGHTENING.iter().map(|a| a as &dyn rusqlite::ToSql))
        .collect();
    let rows = stmt.query_map(params.as_slice(), |r| {
        Ok(Tightening {
            audit_id: r.get(0)?,
            at: crate::clock::rfc3339(r.get(1)?),
            action: r.get(2)?,
            subject_id: r.get(3)?,
            details: r.get(4)?,
        })
    })?;
    let all: Vec<Tightening> = rows.collect::<Result<_, _>>()?;
    // A user_updated row tightens only when it disabled or set roles.
    Ok(all.into_iter().filter(|t| t.action != "user_updated" || changes_access(&t.details)).collect())
}

fn changes_access(details: &str) -> bool {
    let v: serde_json::Value = serde_json::from_str(details).unwrap_or_default();
    v["status"] == "disabled" || v["roles"].is_array()
}

/// In the restored copy: voids every credential the backup point left
/// live, keeps the newest signing keys of both databases, and records the
/// restore in the audit chain — one transaction.
fn seal_restored(
    c: &Connection,
    live: &Path,
    key: &MasterKey,
    inspected: &Inspected,
    rolled_back: usize,
) -> Result<Voided, RestoreError> {
    let now = crate::clock::now_unix();
    // ATTACH and DETACH cannot run inside the transaction. A replaced
    // database that cannot be attached has no keys to give.
    let attached =
        live.exists() && c.execute("ATTACH DATABASE ?1 AS replaced", [live.display().to_string()]).is_ok();
    c.execute_batch("BEGIN IMMEDIATE")?;
    let done = (|| {
        let voided = Voided {
            refresh_tokens: c.execute("DELETE FROM refresh_tokens", [])?,
            sessions: c.execute(
                "UPDATE sessions SET revoked_at = ?1, revoked_reason = 'restore' WHERE revoked_at IS NULL",
                [now],
            )?,
            one_time_tokens: c.execute("DELETE FROM one_time_tokens WHERE used_at IS NULL", [])?
                + if has_table(c, "email_changes")? {
                    c.execute("DELETE FROM email_changes WHERE used_at IS NULL", [])?
                } else {
                    0
                },
            mfa_tokens: if has_table(c, "mfa_tokens")? { c.execute("DELETE FROM mfa_tokens", [])? } else { 0 },
            queued_emails: c.execute(
                "UPDATE outbox SET status = 'dead', body = NULL, last_error = 'voided by a restore' WHERE status = 'queued'",
                [],
            )?,
        };
        if attached {
            carry_signing_keys(c)?;
        }
        audit::install_key(key);
        let details = json!({ "taken_at": inspected.taken_at.map(crate::clock::rfc3339), "voided": &voided, "rolled_back": rolled_back });
        audit::record(
            c,
            &Entry { action: "backup_restored", actor_id: None, subject_id: None, client: None, details },
        )?;
        Ok::<_, RestoreError>(voided)
    })();
    let finished = match done {
        Ok(voided) => c.execute_batch("COMMIT").map(|()| voided).map_err(RestoreError::from),
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    };
    if attached {
        c.execute_batch("DETACH DATABASE replaced")?;
    }
    finished
}

/// True when `name` (`table` or `schema.table`) exists.
fn has_table(c: &Connection, name: &str) -> rusqlite::Result<bool> {
    let (schema, table) = name.split_once('.').unwrap_or(("main", name));
    let sql = format!("SELECT 1 FROM \"{schema}\".sqlite_schema WHERE type = 'table' AND name = ?1");
    match c.query_row(&sql, [table], |_| Ok(())).optional() {
        Ok(found) => Ok(found.is_some()),
        // No such schema: nothing attached.
        Err(rusqlite::Error::SqliteFailure(_, Some(msg))) if msg.starts_with("unknown database") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every signing key the replaced database knows, in its newest state:
/// keys rotated in after the backup stay (apps may already have fetched
/// them), and keys revoked after it stay revoked.
fn carry_signing_keys(c: &Connection) -> Result<(), RestoreError> {
    match has_table(c, "replaced.signing_keys") {
        Ok(true) => {}
        Ok(false) => return Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "the replaced database's signing keys cannot be read; keeping the backup's");
            return Ok(());
        }
    }
    let columns: Vec<String> = {
        let mut stmt = c.prepare(
            "SELECT name FROM pragma_table_info('signing_keys') WHERE name IN \
             (SELECT name FROM replaced.pragma_table_info('signing_keys'))",
        )?;
        stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    let list = columns.join(", ");
    c.execute_batch(&format!(
        "INSERT OR REPLACE INTO main.signing_keys ({list}) SELECT {list} FROM replaced.signing_keys;"
    ))?;
    Ok(())
}

/// Keeps the live database aside (with a time in its name) and renames
/// the restored copy over it; returns where the old one is kept.
///
/// The old file is linked aside, not moved: until the one rename replaces
/// it, `latch.db` is the old database, so a restore cut short (a kill, a
/// power cut) leaves latchd a database to start on, never none, from
/// which it would make a new empty one.
fn swap_in(staging: &Path, live: &Path) -> Result<Option<PathBuf>, RestoreError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| RestoreError::Backup(BackupError::Io { path, source })
    };
    let kept = if live.exists() {
        let aside = free_aside_name(live);
        keep_aside(live, &aside).map_err(io(live))?;
        Some(aside)
    } else {
        None
    };
    crate::pause::blocking("restore_swap");
    std::fs::rename(staging, live).map_err(io(staging))?;
    remove_with_sidecars(staging);
    if let Some(dir) = live.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(kept)
}

/// `latch.db.replaced-<time>`, or with `-2`, `-3`… after it when an
/// earlier restore that second took the name: a kept file is never
/// replaced.
fn free_aside_name(live: &Path) -> PathBuf {
    let at = crate::clock::now_unix();
    let mut path = live.with_file_name(format!("latch.db.replaced-{at}"));
    let mut n = 1;
    while path.exists() {
        n += 1;
        path = live.with_file_name(format!("latch.db.replaced-{at}-{n}"));
    }
    path
}

/// Gives `live` and its WAL the name `aside` as well, and takes the WAL's
/// own name away (with the index beside it), so that the restored file
/// put in place never meets it: SQLite would replay the old file's
/// commits onto the new one. The WAL goes with its file because when the
/// file could not be checkpointed (damaged), its last commits are only
/// there. A file system without hard links gets the file moved instead.
fn keep_aside(live: &Path, aside: &Path) -> std::io::Result<()> {
    std::fs::hard_link(live, aside).or_else(|_| std::fs::rename(live, aside))?;
    let wal = with_suffix(live, "-wal");
    if wal.exists() {
        let kept_wal = with_suffix(aside, "-wal");
        match std::fs::hard_link(&wal, &kept_wal) {
            Ok(()) => std::fs::remove_file(&wal)?,
            Err(_) => std::fs::rename(&wal, &kept_wal)?,
        }
    }
    let _ = std::fs::remove_file(with_suffix(live, "-shm"));
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_with_sidecars(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(with_suffix(path, suffix));
    }
}
