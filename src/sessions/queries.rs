//! SQL for sessions and refresh tokens.

use rusqlite::{Connection, OptionalExtension, params};

use super::refresh_token::Presented;
use crate::store::{StoreError, exec, row};

/// What login needs to know about an account.
pub struct LoginUser {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub active: bool,
    pub verified: bool,
    /// TOTP is on: a correct password leads to the second step.
    pub totp: bool,
}

pub fn find_login_user(c: &Connection, email_norm: &str) -> Result<Option<LoginUser>, StoreError> {
    Ok(row(
        c,
        "SELECT id, email, password_hash, status, email_verified_at, \
         EXISTS (SELECT 1 FROM totp_credentials t WHERE t.user_id = users.id AND t.confirmed_at IS NOT NULL) \
         FROM users WHERE email_norm = ?1",
        params![email_norm],
        |r| {
            Ok(LoginUser {
                id: r.get(0)?,
                email: r.get(1)?,
                password_hash: r.get(2)?,
                active: r.get::<_, String>(3)? == "active",
                verified: r.get::<_, Option<i64>>(4)?.is_some(),
                totp: r.get(5)?,
            })
        },
    )
    .optional()?)
}

pub struct NewSession<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub device_name: Option<&'a str>,
    pub ip: &'a str,
    pub user_agent: Option<&'a str>,
    pub amr: &'a str,
    pub now: i64,
    pub expires_at: i64,
}

pub fn insert_session(c: &Connection, s: &NewSession<'_>) -> Result<(), StoreError> {
    exec(c,
        "INSERT INTO sessions (id, user_id, device_name, ip, user_agent, amr, created_at, last_seen_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
        params![s.id, s.user_id, s.device_name, s.ip, s.user_agent, s.amr, s.now, s.expires_at],
    )?;
    Ok(())
}

/// Inserts a refresh token; returns its row id, which the token carries.
pub fn insert_refresh(
    c: &Connection,
    hash: &[u8],
    session_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<i64, StoreError> {
    exec(
        c,
        "INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![hash, session_id, now, expires_at],
    )?;
    Ok(c.last_insert_rowid())
}

/// The `WHERE` that finds a presented token's row (its stored hash and
/// legacy flag still to be checked with `Presented::matches`).
fn token_row(p: &Presented) -> (&'static str, rusqlite::types::Value) {
    match p {
        Presented::Row { id, .. } => ("t.id = ?1", (*id).into()),
        Presented::Legacy { hash } => ("t.hash = ?1 AND t.legacy = 1", hash.clone().into()),
    }
}

/// A refresh token with its session and user, as refresh needs them.
pub struct RefreshRow {
    pub id: i64,
    pub session_id: String,
    pub used_at: Option<i64>,
    pub expires_at: i64,
    pub session_live: bool,
    pub session_expires_at: i64,
    pub user_id: String,
    pub email: String,
    pub user_active: bool,
    pub amr: String,
    /// When the session was last refreshed, and from where.
    pub last_seen_at: i64,
    pub ip: Option<String>,
}

pub fn find_refresh(c: &Connection, token: &Presented, now: i64) -> Result<Option<RefreshRow>, StoreError> {
    let (found_by, key) = token_row(token);
    let sql = format!(
        "SELECT t.session_id, t.used_at, t.expires_at,
                s.revoked_at IS NULL AND s.expires_at > ?2, s.expires_at,
                u.id, u.email, u.status = 'active', s.amr, t.id, t.hash, t.legacy, s.last_seen_at, s.ip
         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id
         WHERE {found_by}"
    );
    let found = row(c, &sql, params![key, now], |r| {
        let (hash, legacy): (Vec<u8>, bool) = (r.get(10)?, r.get(11)?);
        Ok((
            RefreshRow {
                id: r.get(9)?,
                session_id: r.get(0)?,
                used_at: r.get(1)?,
                expires_at: r.get(2)?,
                session_live: r.get(3)?,
                session_expires_at: r.get(4)?,
                user_id: r.get(5)?,
                email: r.get(6)?,
                user_active: r.get(7)?,
                amr: r.get(8)?,
                last_seen_at: r.get(12)?,
                ip: r.get(13)?,
            },
            token.matches(&hash, legacy),
        ))
    });
    Ok(found.optional()?.and_then(|(row, matches)| matches.then_some(row)))
}

/// A refresh token as introspection reports it: its user, session,
/// issue and expiry, if it is unspent, unexpired, its session live and
/// its user active.
pub fn live_refresh(
    c: &Connection,
    token: &Presented,
    now: i64,
) -> Result<Option<(String, String, i64, i64)>, StoreError> {
    let (found_by, key) = token_row(token);
    let sql = format!(
        "SELECT s.user_id, t.session_id, t.created_at, t.expires_at, t.hash, t.legacy
         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id
         WHERE {found_by} AND t.used_at IS NULL AND t.expires_at > ?2
           AND s.revoked_at IS NULL AND s.expires_at > ?2 AND u.status = 'active'"
    );
    let found = row(c, &sql, params![key, now], |r| {
        let matches = token.matches(&r.get::<_, Vec<u8>>(4)?, r.get(5)?);
        Ok(matches.then_some((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
    });
    Ok(found.optional()?.flatten())
}

/// Marks the token in row `id` spent by the one in row `successor`;
/// `sealed` keeps the successor's secret (sealed) when a reuse grace window
/// is configured.
pub fn spend_refresh(
    c: &Connection,
    id: i64,
    now: i64,
    successor: i64,
    sealed: Option<&[u8]>,
) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE refresh_tokens SET used_at = ?2, replaced_by = ?3, successor = ?4 WHERE id = ?1",
        params![id, now, successor, sealed],
    )?;
    Ok(())
}

/// The successor of the spent token in row `id` while it is itself
/// unspent: its row id, sealed secret (before migration 0011: the whole
/// token, sealed) and expiry.
pub fn successor_of(c: &Connection, id: i64) -> Result<Option<(i64, Vec<u8>, i64)>, StoreError> {
    Ok(row(c,
        "SELECT n.id, t.successor, n.expires_at FROM refresh_tokens t JOIN refresh_tokens n ON n.id = t.replaced_by
         WHERE t.id = ?1 AND t.successor IS NOT NULL AND n.used_at IS NULL",
        params![id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()?)
}

/// How stale a session's `last_seen_at` may get before a refresh rewrites
/// it (from the same address): people read it to the minute, and writing
/// it on every refresh cost a statement and, with many sessions, a page at
/// a random place in the sessions table.
pub const LAST_SEEN_EVERY: i64 = 60;

/// Whether a refresh at `now` from `ip` should record itself on the session.
pub fn worth_touching(row: &RefreshRow, now: i64, ip: &str) -> bool {
    now - row.last_seen_at >= LAST_SEEN_EVERY || row.ip.as_deref() != Some(ip)
}

pub fn touch_session(c: &Connection, id: &str, now: i64, ip: &str) -> Result<(), StoreError> {
    exec(c, "UPDATE sessions SET last_seen_at = ?2, ip = ?3 WHERE id = ?1", params![id, now, ip])?;
    Ok(())
}

/// Sessions neither revoked nor past their maximum age.
pub fn count_live_sessions(c: &Connection, now: i64) -> Result<i64, StoreError> {
    Ok(row(
        c,
        "SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > ?1",
        params![now],
        |r| r.get(0),
    )?)
}

/// Deletes up to `limit` sessions that ended before `cutoff`: revoked then,
/// or past their maximum age by then. Returns how many.
pub fn delete_ended_sessions(c: &Connection, cutoff: i64, limit: i64) -> Result<usize, StoreError> {
    exec(
        c,
        "DELETE FROM sessions WHERE rowid IN (SELECT rowid FROM sessions
           WHERE revoked_at < ?1 OR expires_at < ?1 LIMIT ?2)",
        params![cutoff, limit],
    )
}

/// What one sweep step did.
pub struct Swept {
    /// Rows deleted.
    pub deleted: usize,
    /// Where the next step starts: the last rowid looked at, or 0 after
    /// the end of the table.
    pub next: i64,
}

/// Deletes the refresh tokens, among the `limit` rows after rowid `after`,
/// whose session has ended: revoked, past its maximum age, or deleted.
/// Spent tokens of a live session stay (reuse detection needs them).
pub fn sweep_refresh_tokens(c: &Connection, after: i64, limit: i64, now: i64) -> Result<Swept, StoreError> {
    let (last, rows): (Option<i64>, i64) = row(
        c,
        "SELECT max(rowid), count(*) FROM
           (SELECT rowid FROM refresh_tokens WHERE rowid > ?1 ORDER BY rowid LIMIT ?2)",
        params![after, limit],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let Some(last) = last else { return Ok(Swept { deleted: 0, next: 0 }) };
    let deleted = exec(
        c,
        "DELETE FROM refresh_tokens WHERE rowid > ?1 AND rowid <= ?2 AND NOT EXISTS
           (SELECT 1 FROM sessions s
            WHERE s.id = refresh_tokens.session_id AND s.revoked_at IS NULL AND s.expires_at > ?3)",
        params![after, last, now],
    )?;
    // A short step reached the end: start over from the beginning.
    Ok(Swept { deleted, next: if rows < limit { 0 } else { last } })
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    pub device_name: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: String,
    pub last_seen_at: String,
    pub current: bool,
}

/// How many sessions a list shows at most: a script that signs in every
/// minute and never signs out keeps ~43,000 live for 30 days, and listing
/// them all made a response (and an account page) of many megabytes.
/// "Sign out everywhere" still ends every one of them.
pub const LISTED_SESSIONS: i64 = 1_000;

/// Newest by rowid (sessions are inserted as they start): the `user_id`
/// index walks them backwards, with no sort of every session. The bound
/// is in the text, not a parameter: SQLite prepares a statement with a
/// bound `LIMIT` anew each time it is bound.
fn list_live_sql() -> String {
    format!(
        "SELECT id, device_name, ip, user_agent, created_at, last_seen_at FROM sessions
         WHERE id = ?3 AND user_id = ?1 AND revoked_at IS NULL AND expires_at > ?2
         UNION ALL
         SELECT * FROM (SELECT id, device_name, ip, user_agent, created_at, last_seen_at FROM sessions
           WHERE user_id = ?1 AND id <> ?3 AND revoked_at IS NULL AND expires_at > ?2
           ORDER BY rowid DESC LIMIT {})",
        LISTED_SESSIONS - 1
    )
}

/// The caller's live sessions, newest first: the current one and the
/// newest others, `LISTED_SESSIONS` in all.
pub fn list_live(
    c: &Connection,
    user_id: &str,
    current: &str,
    now: i64,
) -> Result<Vec<SessionView>, StoreError> {
    let mut stmt = c.prepare_cached(&list_live_sql())?;
    let rows = stmt.query_map(params![user_id, now, current], |r| {
        let id: String = r.get(0)?;
        Ok((
            r.get::<_, i64>(4)?,
            SessionView {
                current: id == current,
                id,
                device_name: r.get(1)?,
                ip: r.get(2)?,
                user_agent: r.get(3)?,
                created_at: crate::clock::rfc3339(r.get(4)?),
                last_seen_at: crate::clock::rfc3339(r.get(5)?),
            },
        ))
    })?;
    let mut listed = rows.collect::<Result<Vec<_>, _>>()?;
    listed.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.id.cmp(&a.1.id)));
    Ok(listed.into_iter().map(|(_, view)| view).collect())
}

/// The owner of session `id`, live or not.
pub fn session_owner(c: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    Ok(row(c, "SELECT user_id FROM sessions WHERE id = ?1 AND revoked_at IS NULL", params![id], |r| r.get(0))
        .optional()?)
}

/// True while the account is active and its password hash is still
/// `checked` (no reset or change since the password was verified).
pub fn may_still_log_in(c: &Connection, user_id: &str, checked: &str) -> Result<bool, StoreError> {
    Ok(row(
        c,
        "SELECT 1 FROM users WHERE id = ?1 AND password_hash = ?2 AND status = 'active'",
        params![user_id, checked],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

/// Stores the same password hashed with the current parameters, but only
/// over the hash it was checked against: never over a newer password.
pub fn upgrade_password_hash(
    c: &Connection,
    user_id: &str,
    old: &str,
    new: &str,
    now: i64,
) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE users SET password_hash = ?3, updated_at = ?4 WHERE id = ?1 AND password_hash = ?2",
        params![user_id, old, new, now],
    )?;
    Ok(())
}

pub fn set_last_login(c: &Connection, user_id: &str, now: i64) -> Result<(), StoreError> {
    exec(c, "UPDATE users SET last_login_at = ?2 WHERE id = ?1", params![user_id, now])?;
    Ok(())
}

/// A second step waiting for its code, as step one left it.
pub struct PendingStep {
    pub user_id: String,
    pub email: String,
    pub email_norm: String,
    pub password_digest: Vec<u8>,
    pub device_name: Option<String>,
}

pub fn insert_mfa_token(
    c: &Connection,
    hash: &[u8],
    user_id: &str,
    password_digest: &[u8],
    device_name: Option<&str>,
    now: i64,
    expires_at: i64,
) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO mfa_tokens (token_hash, user_id, password_digest, device_name, failures, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
        params![hash, user_id, password_digest, device_name, now, expires_at],
    )?;
    Ok(())
}

/// The live second step of `hash`: unexpired, with wrong codes to spare.
pub fn pending_step(
    c: &Connection,
    hash: &[u8],
    now: i64,
    max_failures: i64,
) -> Result<Option<PendingStep>, StoreError> {
    Ok(row(
        c,
        "SELECT m.user_id, u.email, u.email_norm, m.password_digest, m.device_name \
         FROM mfa_tokens m JOIN users u ON u.id = m.user_id \
         WHERE m.token_hash = ?1 AND m.expires_at > ?2 AND m.failures < ?3",
        params![hash, now, max_failures],
        |r| {
            Ok(PendingStep {
                user_id: r.get(0)?,
                email: r.get(1)?,
                email_norm: r.get(2)?,
                password_digest: r.get(3)?,
                device_name: r.get(4)?,
            })
        },
    )
    .optional()?)
}

/// Counts a wrong code; the step is void (deleted) at `max_failures`.
/// Returns the failures so far.
pub fn mfa_token_failed(c: &Connection, hash: &[u8], max_failures: i64) -> Result<i64, StoreError> {
    let failures: i64 = c.query_row(
        "UPDATE mfa_tokens SET failures = failures + 1 WHERE token_hash = ?1 RETURNING failures",
        params![hash],
        |r| r.get(0),
    )?;
    if failures >= max_failures {
        delete_mfa_token(c, hash)?;
    }
    Ok(failures)
}

pub fn delete_mfa_token(c: &Connection, hash: &[u8]) -> Result<(), StoreError> {
    exec(c, "DELETE FROM mfa_tokens WHERE token_hash = ?1", params![hash])?;
    Ok(())
}

pub fn delete_expired_mfa_tokens(c: &Connection, now: i64) -> Result<usize, StoreError> {
    exec(c, "DELETE FROM mfa_tokens WHERE expires_at <= ?1", params![now])
}

/// The account's password hash, if it is still the one whose SHA-256 is
/// `digest` and the account is active.
pub fn password_if_unchanged(
    c: &Connection,
    user_id: &str,
    digest: &[u8],
) -> Result<Option<String>, StoreError> {
    let phc: Option<String> = row(
        c,
        "SELECT password_hash FROM users WHERE id = ?1 AND status = 'active'",
        params![user_id],
        |r| r.get(0),
    )
    .optional()?;
    Ok(phc.filter(|p| crate::keys::token_hash(p) == digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh schema with one user and three sessions at `now` = 1000:
    /// "live", "revoked" and "expired", each with the given tokens.
    fn schema() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("t.db")).unwrap();
        crate::store::migrations::apply(&mut c, dir.path()).unwrap();
        c.execute_batch(
            "INSERT INTO users (id, email, email_norm, password_hash, created_at, updated_at)
                 VALUES ('u', 'u@x', 'u@x', 'h', 0, 0);
             INSERT INTO sessions (id, user_id, amr, created_at, last_seen_at, expires_at, revoked_at) VALUES
                 ('live', 'u', 'pwd', 0, 0, 2000, NULL),
                 ('revoked', 'u', 'pwd', 0, 0, 2000, 500),
                 ('expired', 'u', 'pwd', 0, 0, 900, NULL);",
        )
        .unwrap();
        // Interleaved, so every step of two rows meets a mix.
        for (i, sid) in ["live", "revoked", "expired", "live", "revoked", "gone", "live"].iter().enumerate() {
            let used = (i < 3).then_some(10);
            c.execute(
                "INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at, used_at)
                 VALUES (?1, ?2, 0, 5000, ?3)",
                params![vec![i as u8; 32], sid, used],
            )
            .unwrap();
        }
        (dir, c)
    }

    #[test]
    fn a_refresh_records_itself_on_the_session_once_a_minute_or_from_a_new_address() {
        let (_dir, c) = schema();
        // Row 1 holds hash [0; 32] for the session "live", never seen from an address.
        let token = Presented::Row { id: 1, hash: vec![0; 32] };
        let row = find_refresh(&c, &token, 1000).unwrap().unwrap();
        assert_eq!(row.session_id, "live");
        assert!(worth_touching(&row, 1000, "192.0.2.1"), "no address recorded yet");
        touch_session(&c, "live", 1000, "192.0.2.1").unwrap();
        let row = find_refresh(&c, &token, 1030).unwrap().unwrap();
        assert_eq!((row.last_seen_at, row.ip.as_deref()), (1000, Some("192.0.2.1")));
        assert!(!worth_touching(&row, 1030, "192.0.2.1"), "same address within the minute");
        assert!(worth_touching(&row, 1030, "192.0.2.2"), "a new address at once");
        assert!(worth_touching(&row, 1060, "192.0.2.1"), "a minute later");
        let forged = Presented::Row { id: 1, hash: vec![9; 32] };
        assert!(find_refresh(&c, &forged, 1000).unwrap().is_none(), "the row's hash must match");
    }

    /// The upkeep runs these every 15 s; on a table of millions of ended
    /// sessions a full scan each time would be the daemon's biggest read.
    #[test]
    fn counting_and_pruning_sessions_read_indexes_not_the_table() {
        let (_dir, c) = schema();
        let plan = |sql: &str| -> String {
            let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join(" | ")
        };
        let count = plan("SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > 1000");
        assert!(count.contains("USING INDEX sessions_live"), "{count}");
        let prune = plan("SELECT rowid FROM sessions WHERE revoked_at < 1000 OR expires_at < 1000 LIMIT 10");
        assert!(prune.contains("sessions_revoked") && prune.contains("sessions_by_expiry"), "{prune}");
        let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {}", list_live_sql())).unwrap();
        let rows = stmt.query_map(params!["u", 0, "s"], |r| r.get::<_, String>(3)).unwrap();
        let listed = rows.map(Result::unwrap).collect::<Vec<_>>().join(" | ");
        assert!(listed.contains("sessions_by_user") && !listed.contains("TEMP B-TREE"), "{listed}");
        // Listed again for another caller: run from the statement cache,
        // not prepared anew (a bound LIMIT would be, at every call).
        for (user, current) in [("u", "live"), ("v", "x"), ("u", "revoked")] {
            list_live(&c, user, current, 1000).unwrap();
        }
        let cached = c.prepare_cached(&list_live_sql()).unwrap();
        assert_eq!(cached.get_status(rusqlite::StatementStatus::RePrepare), 0);
        assert_eq!(count_live_sessions(&c, 1000).unwrap(), 1);
        assert_eq!(delete_ended_sessions(&c, 950, 10).unwrap(), 2, "revoked at 500 and expired at 900");
    }

    #[test]
    fn sweeping_steps_through_the_table_and_keeps_only_live_sessions_tokens() {
        let (_dir, c) = schema();
        let mut after = 0;
        let mut deleted = 0;
        let mut steps = Vec::new();
        loop {
            let s = sweep_refresh_tokens(&c, after, 2, 1000).unwrap();
            deleted += s.deleted;
            steps.push(s.next);
            if s.next == 0 {
                break;
            }
            after = s.next;
        }
        assert_eq!(steps, [2, 4, 6, 0], "two rows a step, then back to the start");
        assert_eq!(deleted, 4, "revoked x2, expired, and the orphan of a deleted session");
        let left: Vec<String> = c
            .prepare("SELECT session_id FROM refresh_tokens ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, ["live", "live", "live"], "spent or not, a live session's tokens stay");
        let again = sweep_refresh_tokens(&c, 0, 2, 1000).unwrap();
        assert_eq!((again.deleted, again.next), (0, 4), "live rows are rowids 1, 4 and 7");
    }

    #[test]
    fn sweeping_an_empty_table_starts_over() {
        let (_dir, c) = schema();
        c.execute("DELETE FROM refresh_tokens", []).unwrap();
        let s = sweep_refresh_tokens(&c, 7, 2, 1000).unwrap();
        assert_eq!((s.deleted, s.next), (0, 0));
    }
}
