//! SQL for the admin feature: users, roles, sessions and the outbox as
//! admins see them.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::auth::queries::{pending_email_change, roles_of};
use crate::store::{StoreError, exec, row};

/// The highest applied migration.
pub fn schema_version(c: &Connection) -> Result<i64, StoreError> {
    Ok(c.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))?)
}

/// Mail still being tried, and mail given up on (kept for
/// `[email].file_retention`).
/// Why queued mail is not going out: the last error of the queued message
/// tried most often (in an outage they all fail alike), if any failed.
pub fn outbox_failing(c: &Connection) -> Result<Option<String>, StoreError> {
    let failing = c.query_row(
        "SELECT last_error FROM outbox WHERE status = 'queued' AND last_error IS NOT NULL
         ORDER BY attempts DESC, next_attempt_at DESC LIMIT 1",
        [],
        |r| r.get(0),
    );
    match failing {
        Ok(error) => Ok(Some(error)),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn outbox_counts(c: &Connection) -> Result<(i64, i64), StoreError> {
    Ok(c.query_row(
        "SELECT COALESCE(SUM(status = 'queued'), 0), COALESCE(SUM(status = 'dead'), 0) FROM outbox",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AdminMfa)]
pub struct Mfa {
    pub totp: bool,
}

/// A change of address the person asked for and has not confirmed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EmailChange {
    /// Where the link's click would move the account.
    pub to: String,
    /// When the link stops working.
    pub expires_at: String,
    /// Whether the link was mailed: not when another account holds `to`
    /// (its holder was told instead), so the change cannot happen.
    pub link_sent: bool,
}

/// A user as API.md "Admin" shows one.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AdminUser {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub status: String,
    pub email_verified: bool,
    pub roles: Vec<String>,
    pub mfa: Mfa,
    /// Set by the caller from the login locks in force.
    pub locked_until: Option<String>,
    pub created_at: String,
    pub last_login_at: Option<String>,
    /// Beyond API.md: the person's pending change of address, so support
    /// can see where a link went ("I never got it").
    pub email_change: Option<EmailChange>,
    #[serde(skip)]
    pub email_norm: String,
}

const USER_COLUMNS: &str = "id, email, name, status, email_verified_at IS NOT NULL, created_at, last_login_at, email_norm, \
     EXISTS (SELECT 1 FROM totp_credentials t WHERE t.user_id = users.id AND t.confirmed_at IS NOT NULL)";

fn user_row(c: &Connection, r: &rusqlite::Row<'_>) -> rusqlite::Result<AdminUser> {
    let id: String = r.get(0)?;
    let lookup_failed = |e| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
    let roles = roles_of(c, &id).map_err(lookup_failed)?;
    let email_change =
        pending_email_change(c, &id, crate::clock::now_unix()).map_err(lookup_failed)?.map(|p| EmailChange {
            to: p.new_email,
            expires_at: crate::clock::rfc3339(p.expires_at),
            link_sent: p.link_sent,
        });
    Ok(AdminUser {
        email: r.get(1)?,
        name: r.get(2)?,
        status: r.get(3)?,
        email_verified: r.get(4)?,
        roles,
        mfa: Mfa { totp: r.get(8)? },
        locked_until: None,
        created_at: crate::clock::rfc3339(r.get(5)?),
        last_login_at: r.get::<_, Option<i64>>(6)?.map(crate::clock::rfc3339),
        email_change,
        email_norm: r.get(7)?,
        id,
    })
}

pub fn user(c: &Connection, id: &str) -> Result<Option<AdminUser>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
    Ok(c.query_row(&sql, params![id], |r| user_row(c, r)).optional()?)
}

/// `query`: a substring of the email or name; `status`: active|disabled.
pub struct UserFilter {
    pub query: Option<String>,
    pub status: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

/// `LIKE` with `%` and `_` in the needle taken literally.
fn like(needle: &str) -> String {
    let escaped: String = needle
        .chars()
        .flat_map(|c| if matches!(c, '%' | '_' | '\\') { vec!['\\', c] } else { vec![c] })
        .collect();
    format!("%{escaped}%")
}

/// One page of users, newest first, and how many match in all.
pub fn users(c: &Connection, f: &UserFilter) -> Result<(Vec<AdminUser>, i64), StoreError> {
    // Addresses are ASCII and kept lower-cased; names are folded on both
    // sides, as SQLite's `lower` knows only ASCII.
    let needle = f.query.as_deref().map(|q| like(&crate::store::fold::fold(q)));
    let filter = "(?1 IS NULL OR email_norm LIKE ?1 ESCAPE '\\' OR latch_fold(name) LIKE ?1 ESCAPE '\\')
                  AND (?2 IS NULL OR status = ?2)";
    let total: i64 =
        c.query_row(&format!("SELECT count(*) FROM users WHERE {filter}"), params![needle, f.status], |r| {
            r.get(0)
        })?;
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE {filter} ORDER BY created_at DESC, id LIMIT ?3 OFFSET ?4"
    );
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(params![needle, f.status, f.limit, f.offset], |r| user_row(c, r))?;
    Ok((rows.collect::<Result<Vec<_>, _>>()?, total))
}

pub fn user_id_by_email(c: &Connection, email_norm: &str) -> Result<Option<String>, StoreError> {
    Ok(row(c, "SELECT id FROM users WHERE email_norm = ?1", params![email_norm], |r| r.get(0)).optional()?)
}

pub fn set_status(c: &Connection, id: &str, status: &str, now: i64) -> Result<(), StoreError> {
    exec(c, "UPDATE users SET status = ?2, updated_at = ?3 WHERE id = ?1", params![id, status, now])?;
    Ok(())
}

pub fn set_verified(c: &Connection, id: &str, verified: bool, now: i64) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE users SET email_verified_at = CASE WHEN ?2 THEN COALESCE(email_verified_at, ?3) END,
                          updated_at = ?3 WHERE id = ?1",
        params![id, verified, now],
    )?;
    Ok(())
}

/// Replaces the user's roles with `roles`.
pub fn set_roles(c: &Connection, id: &str, roles: &[String]) -> Result<(), StoreError> {
    exec(c, "DELETE FROM user_roles WHERE user_id = ?1", params![id])?;
    for role in roles {
        exec(c, "INSERT INTO user_roles (user_id, role) VALUES (?1, ?2)", params![id, role])?;
    }
    Ok(())
}

/// Deletes the account; its normalized address, or `None` when no account
/// has this id.
pub fn delete_user(c: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    let mut stmt = c.prepare_cached("DELETE FROM users WHERE id = ?1 RETURNING email_norm")?;
    Ok(stmt.query_row(params![id], |r| r.get(0)).optional()?)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Role {
    pub name: String,
    pub description: String,
    pub created_at: String,
    pub users: i64,
}

pub fn roles(c: &Connection) -> Result<Vec<Role>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT r.name, r.description, r.created_at, (SELECT count(*) FROM user_roles u WHERE u.role = r.name)
         FROM roles r ORDER BY r.name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Role {
            name: r.get(0)?,
            description: r.get(1)?,
            created_at: crate::clock::rfc3339(r.get(2)?),
            users: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn role_exists(c: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(row(c, "SELECT 1 FROM roles WHERE name = ?1", params![name], |_| Ok(())).optional()?.is_some())
}

pub fn insert_role(c: &Connection, name: &str, description: &str, now: i64) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO roles (name, description, created_at) VALUES (?1, ?2, ?3)",
        params![name, description, now],
    )?;
    Ok(())
}

pub fn delete_role(c: &Connection, name: &str) -> Result<bool, StoreError> {
    Ok(exec(c, "DELETE FROM roles WHERE name = ?1", params![name])? == 1)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AdminSession {
    pub id: String,
    pub user_id: String,
    /// The owner's address, so a person reading the list needs no lookup.
    pub email: String,
    pub device_name: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
}

/// Live sessions, of one user or of all, newest first (at most 1,000).
pub fn live_sessions(
    c: &Connection,
    user_id: Option<&str>,
    now: i64,
) -> Result<Vec<AdminSession>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT s.id, s.user_id, s.device_name, s.ip, s.user_agent, s.created_at, s.last_seen_at, s.expires_at,
                u.email
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.revoked_at IS NULL AND s.expires_at > ?2 AND (?1 IS NULL OR s.user_id = ?1)
         ORDER BY s.created_at DESC LIMIT 1000",
    )?;
    let rows = stmt.query_map(params![user_id, now], |r| {
        Ok(AdminSession {
            id: r.get(0)?,
            user_id: r.get(1)?,
            email: r.get(8)?,
            device_name: r.get(2)?,
            ip: r.get(3)?,
            user_agent: r.get(4)?,
            created_at: crate::clock::rfc3339(r.get(5)?),
            last_seen_at: crate::clock::rfc3339(r.get(6)?),
            expires_at: crate::clock::rfc3339(r.get(7)?),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// How many sessions are live, of one user or of all (the list shows
/// at most 1,000 of them).
pub fn live_session_count(c: &Connection, user_id: Option<&str>, now: i64) -> Result<i64, StoreError> {
    Ok(row(
        c,
        "SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > ?2 AND (?1 IS NULL OR user_id = ?1)",
        params![user_id, now],
        |r| r.get(0),
    )?)
}

pub fn session_user(c: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    Ok(row(c, "SELECT user_id FROM sessions WHERE id = ?1 AND revoked_at IS NULL", params![id], |r| r.get(0))
        .optional()?)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OutboxItem {
    pub id: String,
    pub recipient: String,
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    pub next_attempt_at: String,
}

/// Emails queued or dead (never bodies), newest first (at most 1,000).
pub fn outbox(c: &Connection, status: &str) -> Result<Vec<OutboxItem>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT id, recipient, kind, status, attempts, last_error, created_at, next_attempt_at FROM outbox
         WHERE status = ?1 ORDER BY created_at DESC LIMIT 1000",
    )?;
    let rows = stmt.query_map(params![status], |r| {
        Ok(OutboxItem {
            id: r.get(0)?,
            recipient: r.get(1)?,
            kind: r.get(2)?,
            status: r.get(3)?,
            attempts: r.get(4)?,
            last_error: r.get(5)?,
            created_at: crate::clock::rfc3339(r.get(6)?),
            next_attempt_at: crate::clock::rfc3339(r.get(7)?),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
