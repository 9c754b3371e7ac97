//! SQL for accounts and one-time tokens.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::store::{StoreError, exec, row};

/// The account an address belongs to.
pub struct Holder {
    pub id: String,
    /// The address as stored: where its mail goes.
    pub email: String,
    pub verified: bool,
}

pub fn holder_of(c: &Connection, email_norm: &str) -> Result<Option<Holder>, StoreError> {
    Ok(row(
        c,
        "SELECT id, email, email_verified_at IS NOT NULL FROM users WHERE email_norm = ?1",
        params![email_norm],
        |r| Ok(Holder { id: r.get(0)?, email: r.get(1)?, verified: r.get(2)? }),
    )
    .optional()?)
}

/// Who a live one-time token reaches, and how long it was made to live.
pub struct TokenOwner {
    pub email: String,
    pub lifetime_secs: i64,
}

/// The owner of a live one-time token of `purpose`, without spending it.
pub fn one_time_user(
    c: &Connection,
    hash: &[u8],
    purpose: &str,
    now: i64,
) -> Result<Option<TokenOwner>, StoreError> {
    Ok(row(
        c,
        "SELECT u.email, t.expires_at - t.created_at FROM one_time_tokens t
         JOIN users u ON u.id = t.user_id
         WHERE t.hash = ?1 AND t.purpose = ?2 AND t.used_at IS NULL AND t.expires_at > ?3",
        params![hash, purpose, now],
        |r| Ok(TokenOwner { email: r.get(0)?, lifetime_secs: r.get(1)? }),
    )
    .optional()?)
}

/// For a confirmation link that no longer works: whether its account's
/// address is confirmed by now (`None`: no such link, or no such account).
pub fn confirmation_link_owner_verified(c: &Connection, hash: &[u8]) -> Result<Option<bool>, StoreError> {
    Ok(row(
        c,
        "SELECT u.email_verified_at IS NOT NULL FROM one_time_tokens t
         JOIN users u ON u.id = t.user_id
         WHERE t.hash = ?1 AND t.purpose = 'verify_email'",
        params![hash],
        |r| r.get(0),
    )
    .optional()?)
}

/// The owner of a one-time token of `purpose` that was spent by its own
/// use — not voided, and not yet deleted after its expiry.
pub fn spent_link_owner(
    c: &Connection,
    hash: &[u8],
    purpose: &str,
) -> Result<Option<TokenOwner>, StoreError> {
    Ok(row(
        c,
        "SELECT u.email, t.expires_at - t.created_at FROM one_time_tokens t
         JOIN users u ON u.id = t.user_id
         WHERE t.hash = ?1 AND t.purpose = ?2 AND t.used_at IS NOT NULL AND t.voided = 0",
        params![hash, purpose],
        |r| Ok(TokenOwner { email: r.get(0)?, lifetime_secs: r.get(1)? }),
    )
    .optional()?)
}

/// Voids every unspent one-time token of `purpose` the user holds (after
/// a reset or a change, older reset links must not work); returns how many.
pub fn void_one_time(c: &Connection, user_id: &str, purpose: &str, now: i64) -> Result<usize, StoreError> {
    exec(
        c,
        "UPDATE one_time_tokens SET used_at = ?3, voided = 1
         WHERE user_id = ?1 AND purpose = ?2 AND used_at IS NULL",
        params![user_id, purpose, now],
    )
}

/// Spends a live one-time token of `purpose`; returns its user.
pub fn spend_one_time(
    c: &Connection,
    hash: &[u8],
    purpose: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let user: Option<String> = c
        .query_row(
            "SELECT user_id FROM one_time_tokens
             WHERE hash = ?1 AND purpose = ?2 AND used_at IS NULL AND expires_at > ?3",
            params![hash, purpose, now],
            |r| r.get(0),
        )
        .optional()?;
    if user.is_some() {
        exec(c, "UPDATE one_time_tokens SET used_at = ?2 WHERE hash = ?1", params![hash, now])?;
    }
    Ok(user)
}

pub fn mark_verified(c: &Connection, user_id: &str, now: i64) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE users SET email_verified_at = COALESCE(email_verified_at, ?2), updated_at = ?2 WHERE id = ?1",
        params![user_id, now],
    )?;
    Ok(())
}

pub fn set_password(c: &Connection, user_id: &str, phc: &str, now: i64) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE users SET password_hash = ?2, locked_until = NULL, updated_at = ?3 WHERE id = ?1",
        params![user_id, phc, now],
    )?;
    Ok(())
}

/// Replaces the password hash only if it is still `old` (the one the
/// caller's current password was checked against); false if it changed.
pub fn replace_password(
    c: &Connection,
    user_id: &str,
    old: &str,
    new: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let n = exec(
        c,
        "UPDATE users SET password_hash = ?3, updated_at = ?4 WHERE id = ?1 AND password_hash = ?2",
        params![user_id, old, new, now],
    )?;
    Ok(n == 1)
}

/// The address of a user as stored (`None`: no such user).
pub fn email_of(c: &Connection, user_id: &str) -> Result<Option<String>, StoreError> {
    Ok(row(c, "SELECT email FROM users WHERE id = ?1", params![user_id], |r| r.get(0)).optional()?)
}

/// The normalized address of a user (`Some` for an existing one).
pub fn email_norm_of(c: &Connection, user_id: &str) -> Result<Option<String>, StoreError> {
    Ok(row(c, "SELECT email_norm FROM users WHERE id = ?1", params![user_id], |r| r.get(0)).optional()?)
}

/// Deletes the user if its password hash is still `phc`; false if not.
pub fn delete_user(c: &Connection, user_id: &str, phc: &str) -> Result<bool, StoreError> {
    Ok(exec(c, "DELETE FROM users WHERE id = ?1 AND password_hash = ?2", params![user_id, phc])? == 1)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Mfa {
    pub totp: bool,
}

/// `GET /v1/auth/me`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub email_verified: bool,
    pub roles: Vec<String>,
    pub mfa: Mfa,
    pub created_at: String,
}

impl Me {
    /// The caller's account from what the auth layer knows of them (the
    /// live view mirrors the database exactly, so this reads nothing).
    pub fn of(facts: &crate::auth::UserFacts) -> Me {
        Me {
            id: facts.user_id.clone(),
            email: facts.email.clone(),
            name: facts.name.clone(),
            email_verified: facts.email_verified,
            roles: facts.roles.clone(),
            mfa: Mfa { totp: facts.totp },
            created_at: crate::clock::rfc3339(facts.created_at),
        }
    }
}
