//! Numbered SQL migrations embedded in the binary. Each is applied in its own
//! transaction and recorded with a SHA-256 checksum; an applied migration
//! whose text changed stops the start, and a database that already had a
//! schema is backed up (`VACUUM INTO`) before anything new is applied.

use std::path::Path;

use rusqlite::{Connection, params};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../../migrations/0001_init.sql") },
    Migration { version: 2, name: "accounts", sql: include_str!("../../migrations/0002_accounts.sql") },
    Migration {
        version: 3,
        name: "refresh_tokens_unindexed",
        sql: include_str!("../../migrations/0003_refresh_tokens_unindexed.sql"),
    },
    Migration { version: 4, name: "defense", sql: include_str!("../../migrations/0004_defense.sql") },
    Migration { version: 5, name: "api_keys", sql: include_str!("../../migrations/0005_api_keys.sql") },
    Migration { version: 6, name: "audit_chain", sql: include_str!("../../migrations/0006_audit_chain.sql") },
    Migration {
        version: 7,
        name: "key_rotation",
        sql: include_str!("../../migrations/0007_key_rotation.sql"),
    },
    Migration {
        version: 8,
        name: "housekeeping",
        sql: include_str!("../../migrations/0008_housekeeping.sql"),
    },
    Migration {
        version: 9,
        name: "second_factor",
        sql: include_str!("../../migrations/0009_second_factor.sql"),
    },
    Migration {
        version: 10,
        name: "browser_sessions",
        sql: include_str!("../../migrations/0010_browser_sessions.sql"),
    },
    Migration {
        version: 11,
        name: "refresh_tokens_by_row",
        sql: include_str!("../../migrations/0011_refresh_tokens_by_row.sql"),
    },
    Migration {
        version: 12,
        name: "one_time_tokens_voided",
        sql: include_str!("../../migrations/0012_one_time_tokens_voided.sql"),
    },
    Migration {
        version: 13,
        name: "email_changes",
        sql: include_str!("../../migrations/0013_email_changes.sql"),
    },
    Migration {
        version: 14,
        name: "email_changes_link_sent",
        sql: include_str!("../../migrations/0014_email_changes_link_sent.sql"),
    },
    Migration {
        version: 15,
        name: "outbox_link_hash",
        sql: include_str!("../../migrations/0015_outbox_link_hash.sql"),
    },
];

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "migration {version} ({name}) was changed after it was applied \
         (checksum {stored} in the database, {embedded} in this binary); refusing to start"
    )]
    ChecksumMismatch { version: i64, name: String, stored: String, embedded: String },
    #[error(
        "the database has schema version {found}, newer than this latchd knows ({known}); upgrade latchd"
    )]
    TooNew { found: i64, known: i64 },
    #[error("migration {version} ({name}) failed: {source}")]
    Failed { version: i64, name: &'static str, source: rusqlite::Error },
    #[error("backup before migration failed: {0}")]
    Backup(#[from] super::backup::BackupError),
    #[error("schema_migrations: {0}")]
    Bookkeeping(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub fn checksum(sql: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, sql.as_bytes()))
}

/// Reads the applied migrations and checks each against the embedded text;
/// returns `(version, name, checksum)` rows in order.
pub fn verify_applied(conn: &Connection) -> Result<Vec<(i64, String, String)>, MigrationError> {
    let applied: Vec<(i64, String, String)> = {
        let mut stmt =
            conn.prepare("SELECT version, name, checksum FROM schema_migrations ORDER BY version")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?
    };
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    for (version, name, stored) in &applied {
        let Some(m) = MIGRATIONS.iter().find(|m| m.version == *version) else {
            return Err(MigrationError::TooNew { found: *version, known });
        };
        let embedded = checksum(m.sql);
        if &embedded != stored {
            return Err(MigrationError::ChecksumMismatch {
                version: *version,
                name: name.clone(),
                stored: stored.clone(),
                embedded,
            });
        }
    }
    Ok(applied)
}

/// Applies every pending migration; returns how many ran.
pub fn apply(conn: &mut Connection, backup_dir: &Path) -> Result<usize, MigrationError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             checksum   TEXT NOT NULL,
             applied_at TEXT NOT NULL
         ) STRICT;",
    )?;
    let applied = verify_applied(conn)?;
    let pending: Vec<&Migration> =
        MIGRATIONS.iter().filter(|m| !applied.iter().any(|(v, _, _)| *v == m.version)).collect();
    if pending.is_empty() {
        return Ok(0);
    }
    if let Some((from, _, _)) = applied.last() {
        backup_before(conn, backup_dir, *from)?;
    }
    for m in &pending {
        let tx = conn.transaction()?;
        tx.execute_batch(m.sql).map_err(|source| MigrationError::Failed {
            version: m.version,
            name: m.name,
            source,
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![m.version, m.name, checksum(m.sql), crate::clock::now_rfc3339()],
        )?;
        tx.commit()?;
        // A new database says so once below; an upgrade names each step.
        if applied.is_empty() {
            tracing::debug!(version = m.version, name = m.name, "migration applied");
        } else {
            tracing::info!(version = m.version, name = m.name, "migration applied");
        }
    }
    if applied.is_empty() {
        let version = pending.last().map_or(0, |m| m.version);
        tracing::info!(path = %conn.path().unwrap_or_default(), schema = version, "database created");
    }
    Ok(pending.len())
}

/// A complete copy of the database as it was before migrating from `from`.
fn backup_before(conn: &Connection, dir: &Path, from: i64) -> Result<(), MigrationError> {
    let taken = super::backup::take(conn, dir, &format!("pre-migrate-v{from}-"))?;
    tracing::info!(path = %taken.path.display(), "database backed up before migration");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing_and_unique() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
    }

    #[test]
    fn changed_migration_text_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        assert_eq!(apply(&mut conn, dir.path()).unwrap(), MIGRATIONS.len());
        assert_eq!(apply(&mut conn, dir.path()).unwrap(), 0);
        conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1", []).unwrap();
        let err = apply(&mut conn, dir.path()).unwrap_err();
        assert!(matches!(err, MigrationError::ChecksumMismatch { version: 1, .. }), "{err}");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        apply(&mut conn, dir.path()).unwrap();
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x', 'now')", []).unwrap();
        assert!(matches!(apply(&mut conn, dir.path()), Err(MigrationError::TooNew { found: 999, .. })));
    }
}
