//! SQL several features share: a user's roles, revoking sessions (logout,
//! password change and reset, admin actions), and an account's address
//! (the person's own change, an administrator's).

use rusqlite::{Connection, OptionalExtension, params};

use super::normalize_email;
use crate::store::{StoreError, exec};

pub fn roles_of(c: &Connection, user_id: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = c.prepare_cached("SELECT role FROM user_roles WHERE user_id = ?1 ORDER BY role")?;
    let roles = stmt.query_map(params![user_id], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(roles)
}

/// Revokes one live session; true if it was live. Its refresh tokens stop
/// working at once (the lookup joins the session) and the sweeper deletes
/// them later: refresh_tokens has no index on session_id (migration 0003).
pub fn revoke_session(c: &Connection, id: &str, reason: &str, now: i64) -> Result<bool, StoreError> {
    let n = exec(
        c,
        "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now, reason],
    )?;
    Ok(n > 0)
}

/// Revokes every live session of `user_id` except `keep`; returns how many.
pub fn revoke_user_sessions(
    c: &Connection,
    user_id: &str,
    keep: Option<&str>,
    reason: &str,
    now: i64,
) -> Result<usize, StoreError> {
    let ids: Vec<String> = {
        let mut stmt =
            c.prepare("SELECT id FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL AND id IS NOT ?2")?;
        stmt.query_map(params![user_id, keep], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    for id in &ids {
        revoke_session(c, id, reason, now)?;
    }
    Ok(ids.len())
}

/// Calls `f` with every stored password hash (PHC string), streaming.
pub fn each_password_hash(c: &Connection, mut f: impl FnMut(&str)) -> Result<(), StoreError> {
    let mut stmt = c.prepare("SELECT password_hash FROM users")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        if let Ok(phc) = row.get_ref(0)?.as_str() {
            f(phc);
        }
    }
    Ok(())
}

/// A new account (registration, or created by an admin).
pub struct NewUser<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub password_hash: &'a str,
    pub now: i64,
}

pub fn insert_user(c: &Connection, u: &NewUser<'_>) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO users (id, email, email_norm, name, password_hash, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![u.id, u.email, normalize_email(u.email), u.name, u.password_hash, u.now],
    )?;
    Ok(())
}

pub fn insert_one_time(
    c: &Connection,
    hash: &[u8],
    user_id: &str,
    purpose: &str,
    now: i64,
    ttl_secs: i64,
) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO one_time_tokens (hash, user_id, purpose, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![hash, user_id, purpose, now, now + ttl_secs],
    )?;
    Ok(())
}

/// Gives the user another address (verified now, or not) and voids every
/// link mailed to the old one: a verification link must not confirm the
/// new address, nor a reset link sent there reach the account, nor a
/// pending change of the person's own (`email_changes`) undo this one.
pub fn set_email(c: &Connection, id: &str, email: &str, verified: bool, now: i64) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE users SET email = ?2, email_norm = ?3, email_verified_at = CASE WHEN ?4 THEN ?5 END,
                          updated_at = ?5 WHERE id = ?1",
        params![id, email, normalize_email(email), verified, now],
    )?;
    exec(
        c,
        "UPDATE one_time_tokens SET used_at = ?2, voided = 1 WHERE user_id = ?1 AND used_at IS NULL",
        params![id, now],
    )?;
    void_email_change(c, id, now)?;
    Ok(())
}

/// Voids the user's pending change of address, if any (`email_changes`):
/// a password change or reset, an administrator's address change, or a
/// newer request ends it.
pub fn void_email_change(c: &Connection, user_id: &str, now: i64) -> Result<usize, StoreError> {
    exec(
        c,
        "UPDATE email_changes SET used_at = ?2 WHERE user_id = ?1 AND used_at IS NULL",
        params![user_id, now],
    )
}

/// Gives the user another display name (`None`: none), already cleaned
/// by `display_text`; returns whether it was another one (only then does
/// `updated_at` move).
pub fn set_name(c: &Connection, user_id: &str, name: Option<&str>, now: i64) -> Result<bool, StoreError> {
    let sql = "UPDATE users SET name = ?2, updated_at = ?3 WHERE id = ?1 AND name IS NOT ?2";
    Ok(exec(c, sql, params![user_id, name, now])? > 0)
}

/// The user's live pending change of address: where a confirmed link
/// would move the account, until when (Unix seconds) its link works, and
/// whether that link was mailed at all (not when another account holds
/// the address).
pub struct PendingAddress {
    pub new_email: String,
    pub expires_at: i64,
    pub link_sent: bool,
}

/// The user's pending change of address, if one is live at `now`.
pub fn pending_email_change(
    c: &Connection,
    user_id: &str,
    now: i64,
) -> Result<Option<PendingAddress>, StoreError> {
    Ok(c.query_row(
        "SELECT new_email, expires_at, link_sent FROM email_changes
         WHERE user_id = ?1 AND used_at IS NULL AND expires_at > ?2",
        params![user_id, now],
        |r| Ok(PendingAddress { new_email: r.get(0)?, expires_at: r.get(1)?, link_sent: r.get(2)? }),
    )
    .optional()?)
}

/// Active users holding role `admin`.
pub fn active_admins(c: &Connection) -> Result<i64, StoreError> {
    Ok(c.query_row(
        "SELECT count(*) FROM user_roles r JOIN users u ON u.id = r.user_id
         WHERE r.role = 'admin' AND u.status = 'active'",
        [],
        |r| r.get(0),
    )?)
}

/// Whether account `user_id` still exists: a write that inserts a row
/// keyed to an account read earlier asks first (the foreign key would
/// otherwise fail the write with a 500 after a deletion meanwhile).
pub fn user_exists(c: &Connection, user_id: &str) -> Result<bool, StoreError> {
    Ok(c.query_row("SELECT 1 FROM users WHERE id = ?1", params![user_id], |_| Ok(())).optional()?.is_some())
}

/// The user's stored password hash (PHC string).
pub fn password_hash(c: &Connection, user_id: &str) -> Result<Option<String>, StoreError> {
    Ok(c.query_row("SELECT password_hash FROM users WHERE id = ?1", params![user_id], |r| r.get(0))
        .optional()?)
}
