//! A person changes their own address (`POST /v1/auth/email/change`,
//! beyond API.md; the account page's form). The account keeps its old
//! address until the new one proves it is theirs: a link goes to the new
//! address, and opening it (the same `verify-email` call and page as a
//! registration's link) makes the change. So a typo cannot strand the
//! account where no reset link reaches it, and a stolen session alone
//! cannot move it: the password is asked, the old address is told at once,
//! and a password change or reset voids the pending change, as does an
//! administrator disabling the account.
//!
//! An address another account holds gets the same answer, the same shape
//! of work (one mail to it, the "already has an account" notice) and the
//! same pending change on the account page (whose link went nowhere), so
//! nothing tells a signed-in caller who else is registered.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::queries;
use super::{AccountError, Deps};
use crate::audit::{self, Entry};
use crate::auth::queries::{password_hash, set_email, void_email_change};
use crate::auth::{UserSession, normalize_email, validate_email};
use crate::config::Config;
use crate::email::{self, Template};
use crate::http::ClientInfo;
use crate::keys::{random_token, token_hash};
use crate::store::{StoreError, exec, row};
use crate::telemetry::auth_event as count;

/// A change link lives as long as a registration's (API.md: 24 h).
const CHANGE_TTL_SECS: i64 = 24 * 3600;

/// Asks for the change: checks the password, mails the new address its
/// link and the old one a notice, and keeps the pending change.
pub async fn request_change(
    d: &Deps,
    cfg: &Config,
    user: &UserSession,
    password: String,
    new_email: &str,
    client: &ClientInfo,
) -> Result<(), AccountError> {
    let new_email =
        validate_email(new_email).map_err(|e| AccountError::InvalidNewAddress(e.email_reason()))?;
    let norm = normalize_email(&new_email);
    if norm == normalize_email(&user.facts.email) {
        return Err(AccountError::AddressUnchanged);
    }
    let checked = super::passwords::check_current(d, cfg, user, password, client, "email_change").await?;
    let Mails { to_new, to_old, hash, link_sent } = mails(d, cfg, user, &new_email, client).await?;
    let (uid, cap, client) = (user.user_id.clone(), cfg.email.max_per_recipient, client.clone());
    crate::pause::at("email_change_write").await;
    let kept = d
        .store
        .write(move |c| {
            // The account may have been deleted (the insert would break its
            // foreign key: a 500), disabled or its password reset since the
            // check above; each voids what the check allowed.
            if password_hash(c, &uid)?.as_deref() != Some(checked.as_str()) || !is_active(c, &uid)? {
                return Ok(false);
            }
            let now = crate::clock::now_unix();
            void_email_change(c, &uid, now)?;
            email::enqueue(c, cap, to_old)?;
            // A link that was never sent (mail cap) is not kept. For a
            // taken address the change is kept too, so the account page
            // looks the same; its token was mailed nowhere, and confirming
            // would find the address taken anyway.
            if email::enqueue(c, cap, to_new)? {
                exec(
                    c,
                    "INSERT INTO email_changes (hash, user_id, new_email, created_at, expires_at, link_sent)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![hash, uid, new_email, now, now + CHANGE_TTL_SECS, link_sent],
                )?;
            }
            let entry = Entry::by_user("email_change_requested", &uid, &client);
            audit::record(c, &entry.with(json!({ "new_email": new_email })))?;
            Ok(true)
        })
        .await?;
    if !kept {
        count("email_change", "failure");
        return Err(AccountError::InvalidCredentials);
    }
    d.outbox.wake.notify_one();
    count("email_change", "success");
    Ok(())
}

/// The two messages of a change request, and its link's hash.
struct Mails {
    to_new: email::Prepared,
    to_old: email::Prepared,
    hash: Vec<u8>,
    /// False when the new address is another account's (it is told so
    /// instead, and the link goes nowhere).
    link_sent: bool,
}

async fn mails(
    d: &Deps,
    cfg: &Config,
    user: &UserSession,
    new_email: &str,
    client: &ClientInfo,
) -> Result<Mails, AccountError> {
    let lookup = normalize_email(new_email);
    let holder = d.store.read(move |c| queries::holder_of(c, &lookup)).await?;
    let token = random_token()?;
    let hash = token_hash(&token);
    let link_sent = holder.is_none();
    let to_new = match holder {
        None => email::prepare(cfg, &d.key, new_email, &Template::ConfirmAddressChange { token })?,
        Some(h) => email::prepare(cfg, &d.key, &h.email, &Template::AlreadyRegistered)?,
    };
    let asked = Template::AddressChangeAsked {
        new_address: new_email.to_string(),
        ip: client.ip.clone(),
        at: crate::clock::now_rfc3339(),
    };
    let to_old = email::prepare(cfg, &d.key, &user.facts.email, &asked)?;
    Ok(Mails { to_new, to_old, hash, link_sent })
}

/// Whether `hash` is a live change link (for the page before the click).
pub fn is_live(c: &Connection, hash: &[u8], now: i64) -> Result<bool, StoreError> {
    Ok(live_change(c, hash, now)?.is_some())
}

/// The user and new address of the live change link `hash`, if it is one:
/// a disabled account's link moves nothing (disabling voids it too).
fn live_change(c: &Connection, hash: &[u8], now: i64) -> Result<Option<(String, String)>, StoreError> {
    Ok(row(
        c,
        "SELECT e.user_id, e.new_email FROM email_changes e JOIN users u ON u.id = e.user_id
         WHERE e.hash = ?1 AND e.used_at IS NULL AND e.expires_at > ?2 AND u.status = 'active'",
        params![hash, now],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?)
}

fn is_active(c: &Connection, user_id: &str) -> Result<bool, StoreError> {
    let status =
        row(c, "SELECT status FROM users WHERE id = ?1", params![user_id], |r| r.get::<_, String>(0));
    Ok(status.optional()?.as_deref() == Some("active"))
}

/// Whether `hash` is a change link that made its change (a second click).
pub fn was_applied(c: &Connection, hash: &[u8]) -> Result<bool, StoreError> {
    let found = row(
        c,
        "SELECT 1 FROM email_changes e JOIN users u ON u.id = e.user_id
         WHERE e.hash = ?1 AND e.used_at IS NOT NULL AND u.email_norm = lower(e.new_email)",
        params![hash],
        |r| r.get::<_, i64>(0),
    )
    .optional()?;
    Ok(found.is_some())
}

/// What a confirmation link did inside the confirming write.
pub enum Confirmation {
    /// It is no live link.
    NoLiveLink,
    /// Another account took the address meanwhile; the link is spent.
    AddressTaken,
    /// A registration's (or an administrator's) link: the address is
    /// confirmed.
    Verified,
    /// A change link: the account has its new address now.
    Moved,
}

/// Inside the confirming write: spends a live change link and moves the
/// account to its address. Every link mailed to the old address stops
/// working, as after an administrator's change.
pub fn apply_change(
    c: &Connection,
    hash: &[u8],
    client: &ClientInfo,
    now: i64,
) -> Result<Confirmation, StoreError> {
    let pending = live_change(c, hash, now)?;
    let Some((user_id, new_email)) = pending else { return Ok(Confirmation::NoLiveLink) };
    exec(c, "UPDATE email_changes SET used_at = ?2 WHERE hash = ?1", params![hash, now])?;
    if queries::holder_of(c, &normalize_email(&new_email))?.is_some() {
        return Ok(Confirmation::AddressTaken);
    }
    let old = queries::email_of(c, &user_id)?;
    set_email(c, &user_id, &new_email, true, now)?;
    let details = json!({ "from": old, "to": new_email });
    audit::record(c, &Entry::by_user("email_changed", &user_id, client).with(details))?;
    Ok(Confirmation::Moved)
}
