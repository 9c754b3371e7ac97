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

/// Where and on what an account signed in before session `except`: one
/// row per address and device (device name, else user agent), with when
/// that pair was first seen, oldest first. Both login rules need only
/// that, and a long-lived account has far more sessions than pairs: the
/// grouping stays inside SQLite instead of a row per session crossing
/// into Rust on every login. Only the newest `RECENT_SESSIONS` sessions
/// are looked at.
pub struct SeenSession {
    pub created_at: i64,
    pub ip: Option<String>,
    pub device: Option<String>,
}

/// How many of an account's earlier sessions the login rules look at, the
/// newest first. A script that signs in every minute keeps ~43,000 sessions
/// within the 30-day maximum age; grouping them all takes SQLite ~50 ms
/// (in memory, on this machine), the newest 1,000 ~0.6 ms, whatever the
/// total. A network or device last seen further back counts as new again.
const RECENT_SESSIONS: i64 = 1_000;

/// Newest by rowid: sessions are inserted as they start, and the user_id
/// index walks backwards in rowid order without a sort. The bound is
/// written into the text: SQLite prepares a statement whose `LIMIT` is a
/// parameter anew every time the parameter is bound (its plan may depend
/// on the value), which was a quarter of a login's store reads.
fn other_sessions_sql() -> String {
    format!(
        "SELECT MIN(created_at), ip, device FROM
           (SELECT created_at, ip, COALESCE(device_name, user_agent) AS device FROM sessions
            WHERE user_id = ?1 AND id <> ?2 ORDER BY rowid DESC LIMIT {RECENT_SESSIONS})
         GROUP BY ip, device ORDER BY 1"
    )
}

pub fn other_sessions(c: &Connection, user_id: &str, except: &str) -> Result<Vec<SeenSession>, StoreError> {
    let mut stmt = c.prepare_cached(&other_sessions_sql())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_sign_ins_come_back_once_per_address_and_device_with_their_first_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("t.db")).unwrap();
        crate::store::migrations::apply(&mut c, dir.path()).unwrap();
        c.execute_batch(
            "INSERT INTO users (id, email, email_norm, password_hash, created_at, updated_at)
                 VALUES ('u', 'u@x', 'u@x', 'h', 0, 0), ('v', 'v@x', 'v@x', 'h', 0, 0);
             INSERT INTO sessions (id, user_id, ip, user_agent, device_name, amr, created_at, last_seen_at, expires_at) VALUES
                 ('a', 'u', '192.0.2.1', 'curl', NULL, 'pwd', 30, 0, 9000),
                 ('b', 'u', '192.0.2.1', 'curl', NULL, 'pwd', 10, 0, 9000),
                 ('c', 'u', '192.0.2.1', 'curl', 'laptop', 'pwd', 20, 0, 9000),
                 ('d', 'u', '198.51.100.7', 'curl', NULL, 'pwd', 40, 0, 9000),
                 ('now', 'u', '203.0.113.5', 'phone', NULL, 'pwd', 5, 0, 9000),
                 ('w', 'v', '192.0.2.1', 'watch', NULL, 'pwd', 1, 0, 9000);",
        )
        .unwrap();
        let seen = other_sessions(&c, "u", "now").unwrap();
        let rows: Vec<_> =
            seen.iter().map(|s| (s.created_at, s.ip.as_deref().unwrap(), s.device.as_deref())).collect();
        assert_eq!(
            rows,
            [
                (10, "192.0.2.1", Some("curl")),
                (20, "192.0.2.1", Some("laptop")),
                (40, "198.51.100.7", Some("curl"))
            ]
        );
        // Every login asks: the statement runs from the cache as prepared,
        // not prepared again for each new user and session.
        assert_eq!(other_sessions(&c, "v", "now").unwrap().len(), 1);
        other_sessions(&c, "u", "a").unwrap();
        let cached = c.prepare_cached(&other_sessions_sql()).unwrap();
        assert_eq!(cached.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    #[test]
    fn only_the_newest_sessions_are_looked_at() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("t.db")).unwrap();
        crate::store::migrations::apply(&mut c, dir.path()).unwrap();
        c.execute("INSERT INTO users (id, email, email_norm, password_hash, created_at, updated_at) VALUES ('u', 'u@x', 'u@x', 'h', 0, 0)", []).unwrap();
        let tx = c.transaction().unwrap();
        for i in 0..RECENT_SESSIONS + 200 {
            let ip = if i < 200 { "192.0.2.1" } else { "198.51.100.7" };
            tx.execute(
                "INSERT INTO sessions (id, user_id, ip, user_agent, amr, created_at, last_seen_at, expires_at)
                 VALUES (?1, 'u', ?2, 'cron', 'pwd', ?3, 0, 9999999)",
                params![format!("s{i}"), ip, i],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        let seen = other_sessions(&c, "u", "now").unwrap();
        let rows: Vec<_> = seen.iter().map(|s| (s.created_at, s.ip.as_deref().unwrap())).collect();
        assert_eq!(rows, [(200, "198.51.100.7")], "the 200 oldest sessions are past the bound");
    }
}
