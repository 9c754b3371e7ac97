//! Offline database work for `latchctl db check|migrate`: run only while no
//! daemon holds the state directory (the caller checks the lock).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;
use super::migrations::{self, MIGRATIONS};

/// What `db check` found.
#[derive(Debug, serde::Serialize)]
pub struct CheckReport {
    /// `["ok"]` when SQLite's integrity check passes, else its findings.
    pub integrity: Vec<String>,
    /// `None` (like `schema_version`) when the damage kept SQLite from
    /// checking at all (the file's header, the schema's page).
    pub foreign_key_violations: Option<usize>,
    pub schema_version: Option<i64>,
    /// The newest schema this binary knows.
    pub known_version: i64,
    /// `None` when every applied migration matches this binary.
    pub migration_error: Option<String>,
}

impl CheckReport {
    pub fn is_healthy(&self) -> bool {
        self.integrity == ["ok"] && self.foreign_key_violations == Some(0) && self.migration_error.is_none()
    }
}

/// Checks integrity, foreign keys and migration checksums, read-only.
pub fn check(path: &Path) -> Result<CheckReport, StoreError> {
    let known_version = MIGRATIONS.last().map_or(0, |m| m.version);
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let super::backup::Integrity { findings: integrity, ran } = super::backup::integrity(&conn)?;
    if !ran {
        // What lies past the damage is unknown, not zero.
        let (foreign_key_violations, schema_version, migration_error) = (None, None, None);
        return Ok(CheckReport {
            integrity,
            foreign_key_violations,
            schema_version,
            known_version,
            migration_error,
        });
    }
    let foreign_key_violations = {
        let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
        stmt.query_map([], |_| Ok(()))?.count()
    };
    let (schema_version, migration_error) = match migrations::verify_applied(&conn) {
        Ok(applied) => (applied.last().map_or(0, |a| a.0), None),
        Err(e) => (0, Some(e.to_string())),
    };
    Ok(CheckReport {
        integrity,
        foreign_key_violations: Some(foreign_key_violations),
        schema_version: Some(schema_version),
        known_version,
        migration_error,
    })
}

/// Applies pending migrations (backing up first); returns how many ran.
pub fn migrate(path: &Path, backup_dir: &Path) -> Result<usize, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    Ok(migrations::apply(&mut conn, backup_dir)?)
}
