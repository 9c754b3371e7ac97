//! SQL for the defenses: IP blocks, account-wide login locks, and what
//! the anomaly rules read of an account's sessions.

use rusqlite::{Connection, params};

use super::blocks::{Block, Source};
use crate::store::{StoreError, exec};

pub fn insert_block(c: &Connection, b: &Block) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO ip_blocks (id, cidr, reason, source, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![b.id, b.cidr.to_string(), b.reason, b.source.as_str(), b.created_at, b.expires_at],
    )?;
    Ok(())
}

/// Deletes block `id`; true if it existed.
pub fn delete_block(c: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(exec(c, "DELETE FROM ip_blocks WHERE id = ?1", params![id])? == 1)
}

pub fn delete_expired_blocks(c: &Connection, now: i64) -> Result<usize, StoreError> {
    exec(c, "DELETE FROM ip_blocks WHERE expires_at IS NOT NULL AND expires_at <= ?1", params![now])
}

/// Blocks in force at `now`; a row whose CIDR no longer parses is skipped.
pub fn live_blocks(c: &Connection, now: i64) -> Result<Vec<Block>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT id, cidr, reason, source, created_at, expires_at FROM ip_blocks
         WHERE expires_at IS NULL OR expires_at > ?1",
    )?;
    let rows = stmt.query_map(params![now], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, Option<i64>>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, cidr, reason, source, created_at, expires_at) = row?;
        if let Ok(cidr) = cidr.parse() {
            out.push(Block { id, cidr, reason, source: Source::parse(&source), created_at, expires_at });
        }
    }
    Ok(out)
}

pub fn upsert_lock(c: &Connection, email_norm: &str, until: i64) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO login_locks (email_norm, locked_until) VALUES (?1, ?2)
         ON CONFLICT (email_norm) DO UPDATE SET locked_until = excluded.locked_until",
        params![email_norm, until],
    )?;
    Ok(())
}

pub fn delete_lock(c: &Connection, email_norm: &str) -> Result<(), StoreError> {
    exec(c, "DELETE FROM login_locks WHERE email_norm = ?1", params![email_norm])?;
    Ok(())
}

pub fn live_locks(c: &Connection, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = c.prepare("SELECT email_norm, locked_until FROM login_locks WHERE locked_until > ?1")?;
    let rows = stmt.query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// An account's sessions other than `except`, oldest first: when each
/// began, from where, and on what device (device name, else user agent).
pub struct SeenSession {
    pub created_at: i64,
    pub ip: Option<String>,
    pub device: Option<String>,
}

pub fn other_sessions(c: &Connection, user_id: &str, except: &str) -> Result<Vec<SeenSession>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT created_at, ip, COALESCE(device_name, user_agent) FROM sessions
         WHERE user_id = ?1 AND id <> ?2 ORDER BY created_at",
    )?;
    let rows = stmt.query_map(params![user_id, except], |r| {
        Ok(SeenSession { created_at: r.get(0)?, ip: r.get(1)?, device: r.get(2)? })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The stored address of a user (for the new-sign-in notice).
pub fn email_of(c: &Connection, user_id: &str) -> Result<Option<String>, StoreError> {
    use rusqlite::OptionalExtension;
    Ok(c.query_row("SELECT email FROM users WHERE id = ?1", params![user_id], |r| r.get(0)).optional()?)
}
