//! Online copies of the live database with SQLite's backup API: a complete,
//! consistent copy of one read snapshot, taken while the writer goes on
//! (WAL readers never block it). The copy is written to a hidden temp file,
//! fsynced, made 0600 and renamed into place, so a reader of the backups
//! folder never sees half a copy. Used before every migration, and by the
//! scheduled and on-demand backups.

use std::path::Path;

use rusqlite::Connection;
use rusqlite::backup::{Backup, StepResult};

use crate::state_dir::partial_name;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup to {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("backup to {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("backup to {path}: the copy did not complete ({step:?})")]
    Incomplete { path: String, step: String },
}

/// Copies the database behind `src` (its snapshot at the start of the
/// copy) to `dest`, replacing any file there only once the copy is whole.
pub fn copy_to(src: &Connection, dest: &Path) -> Result<(), BackupError> {
    let shown = || dest.display().to_string();
    let sqlite = |source| BackupError::Sqlite { path: shown(), source };
    let io = |source| BackupError::Io { path: shown(), source };
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = partial_name(dest);
    let _ = std::fs::remove_file(&tmp);
    let copied = (|| {
        let mut to = Connection::open(&tmp).map_err(sqlite)?;
        // One step over every page: one read snapshot, so the copy is
        // consistent even while the writer commits (WAL).
        let step = Backup::new(src, &mut to).map_err(sqlite)?.step(-1).map_err(sqlite)?;
        if step != StepResult::Done {
            return Err(BackupError::Incomplete { path: shown(), step: format!("{step:?}") });
        }
        drop(to);
        let file = std::fs::File::open(&tmp).map_err(io)?;
        file.sync_all().map_err(io)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        std::fs::rename(&tmp, dest).map_err(io)?;
        if let Some(dir) = dest.parent() {
            // The rename itself is durable only once the directory is.
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    })();
    if copied.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    copied
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_copy_is_whole_private_and_taken_while_writes_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.db");
        let writer = Connection::open(&live).unwrap();
        writer.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (x INTEGER);").unwrap();
        writer.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let reader = Connection::open(&live).unwrap();
        reader.execute_batch("BEGIN; SELECT count(*) FROM t;").unwrap();
        // A write after the reader's snapshot began is not in its copy.
        writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
        let dest = dir.path().join("backups/copy.db");
        copy_to(&reader, &dest).unwrap();
        let copy = Connection::open(&dest).unwrap();
        let n: i64 = copy.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
        let ok: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
        assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!partial_name(&dest).exists());
    }
}
