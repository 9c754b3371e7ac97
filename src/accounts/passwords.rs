//! Password reset (by emailed token) and change (by the current password).
//! Both re-check in their write transaction that nothing changed since the
//! password or token was checked, void every other outstanding reset link
//! and a pending change of address, revoke sessions, and mail the owner
//! that the password changed (unless an invitation's link chose the first
//! one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;

use super::queries;
use super::{AccountError, Deps};
use crate::audit::{self, Entry};
use crate::auth::queries::{password_hash, revoke_user_sessions, void_email_change};
use crate::auth::{Reauth, UserSession, check_password, reject_oversized};
use crate::config::Config;
use crate::email::{self, Prepared, Template};
use crate::http::ClientInfo;
use crate::keys::token_hash;
use crate::telemetry::auth_event as count;

pub(super) const RESET_TTL_SECS: i64 = 30 * 60;
const RESET: &str = "password_reset";

/// How long the same password change may be sent again and answered as
/// the first was.
const REPEAT_WINDOW: Duration = Duration::from_secs(60);

/// The sessions that changed their password within `REPEAT_WINDOW`. The
/// same change sent again — a double click on the account page, an app's
/// retry after a timeout — found the current password changed and was
/// told it was wrong, right after it worked. Kept in memory: a restart
/// forgets a minute of repeats, which then fail as before.
#[derive(Clone, Default)]
pub struct RecentChanges(Arc<Mutex<HashMap<String, Instant>>>);

impl RecentChanges {
    fn record(&self, session_id: &str) {
        let mut changes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        changes.retain(|_, at| at.elapsed() < REPEAT_WINDOW);
        changes.insert(session_id.to_string(), Instant::now());
    }

    fn just_changed(&self, session_id: &str) -> bool {
        let changes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        changes.get(session_id).is_some_and(|at| at.elapsed() < REPEAT_WINDOW)
    }
}

/// Only an administrator's invitation makes a password link live longer
/// than a reset link.
fn is_invitation(owner: &queries::TokenOwner) -> bool {
    owner.lifetime_secs > RESET_TTL_SECS
}

/// What a password link is now; `invitation` says whether it was mailed
/// as an administrator's invitation or as a reset link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordLink {
    /// It works; `email` is the account's address (the link was mailed
    /// there), so a password manager can file the new password under it.
    Live { invitation: bool, email: String },
    /// Its own use set a password (a form sent twice meets this).
    Used { invitation: bool },
    /// Unknown, expired, or voided by a later reset or change.
    Dead,
}

/// What the password link `token` is (a read; spends nothing).
pub async fn password_link(d: &Deps, token: &str) -> Result<PasswordLink, AccountError> {
    let hash = token_hash(token);
    let now = crate::clock::now_unix();
    Ok(d.store
        .read(move |c| {
            if let Some(owner) = queries::one_time_user(c, &hash, RESET, now)? {
                let invitation = is_invitation(&owner);
                return Ok(PasswordLink::Live { invitation, email: owner.email });
            }
            let spent = queries::spent_link_owner(c, &hash, RESET)?;
            Ok(spent.map_or(PasswordLink::Dead, |o| PasswordLink::Used { invitation: is_invitation(&o) }))
        })
        .await?)
}

/// Sets a new password from a reset token; revokes every session, voids
/// the user's other reset links and clears the account lock. Proves the
/// address, so it also verifies it.
pub async fn reset_password(
    d: &Deps,
    cfg: &Config,
    token: &str,
    new_password: String,
    client: &ClientInfo,
) -> Result<(), AccountError> {
    check_password(cfg, &d.breached, "new_password", &new_password)?;
    // Performance: a garbage token must not cost an argon2 hash; look it
    // up on a reader first and hash only for a live one.
    let hash = token_hash(token);
    let lookup = hash.clone();
    let live =
        d.store.read(move |c| queries::one_time_user(c, &lookup, RESET, crate::clock::now_unix())).await?;
    let Some(owner) = live else {
        count("password_reset", "failure");
        return Err(AccountError::InvalidToken);
    };
    // The person chooses their first password: "your password was
    // changed" would only alarm them.
    let invited = is_invitation(&owner);
    let notice = if invited { None } else { Some(changed_notice(d, cfg, &owner.email, client)?) };
    let cap = cfg.email.max_per_recipient;
    let phc = d.hasher.hash(cfg.passwords.argon2, new_password).await?;
    let client = client.clone();
    let done = d
        .store
        .write(move |c| {
            let now = crate::clock::now_unix();
            let Some(user) = queries::spend_one_time(c, &hash, RESET, now)? else { return Ok(None) };
            queries::set_password(c, &user, &phc, now)?;
            queries::mark_verified(c, &user, now)?;
            let voided = queries::void_one_time(c, &user, RESET, now)?;
            void_email_change(c, &user, now)?;
            let revoked = revoke_user_sessions(c, &user, None, RESET, now)?;
            let details = json!({ "sessions_revoked": revoked, "reset_links_voided": voided });
            audit::record(c, &Entry::by_user(RESET, &user, &client).with(details))?;
            if let Some(notice) = notice {
                email::enqueue(c, cap, notice)?;
            }
            queries::email_norm_of(c, &user)
        })
        .await?;
    d.outbox.wake.notify_one();
    count("password_reset", if done.is_some() { "success" } else { "failure" });
    let Some(email_norm) = done else { return Err(AccountError::InvalidToken) };
    // The reset proved the address: login throttling and locks for it end.
    d.defense.clear_login_failures(&email_norm).await?;
    Ok(())
}

/// Checks `password` as the caller's, through the same throttle and lock
/// as a login (`auth::Reauth`); returns the stored hash it matched, so the
/// write that follows can insist it is still the one. A refusal counts as
/// a failure of `kind` (`latch_auth_events_total`).
pub(super) async fn check_current(
    d: &Deps,
    cfg: &Config,
    user: &UserSession,
    password: String,
    client: &ClientInfo,
    kind: &'static str,
) -> Result<String, AccountError> {
    let reauth = Reauth { store: &d.store, hasher: &d.hasher, guard: d.defense.as_ref() };
    let checked = reauth.confirm(cfg, user, password, client).await;
    if checked.is_err() {
        count(kind, "failure");
    }
    Ok(checked?)
}

/// Changes the password; every other session of the user is revoked and
/// outstanding reset links are voided. Refused if the password changed
/// (a reset) after the current one was checked.
pub async fn change_password(
    d: &Deps,
    cfg: &Config,
    user: &UserSession,
    current: String,
    new_password: String,
    client: &ClientInfo,
) -> Result<(), AccountError> {
    check_password(cfg, &d.breached, "new_password", &new_password)?;
    // The same change sent again (its current password is now wrong) is
    // answered as the first was, before it could count as a wrong guess.
    if is_repeat(d, cfg, user, new_password.clone()).await? {
        return Ok(());
    }
    let old = check_current(d, cfg, user, current, client, "password_change").await?;
    let repeat = new_password.clone();
    let phc = d.hasher.hash(cfg.passwords.argon2, new_password).await?;
    let notice = changed_notice(d, cfg, &user.facts.email, client)?;
    let cap = cfg.email.max_per_recipient;
    crate::pause::at("password_commit").await;
    let (uid, sid, client) = (user.user_id.clone(), user.session_id.clone(), client.clone());
    let recent = d.recent_changes.clone();
    let changed = d
        .store
        .write(move |c| {
            let now = crate::clock::now_unix();
            if !queries::replace_password(c, &uid, &old, &phc, now)? {
                return Ok(false);
            }
            let voided = queries::void_one_time(c, &uid, RESET, now)?;
            void_email_change(c, &uid, now)?;
            let revoked = revoke_user_sessions(c, &uid, Some(&sid), "password_change", now)?;
            let details = json!({ "sessions_revoked": revoked, "reset_links_voided": voided });
            audit::record(c, &Entry::by_user("password_changed", &uid, &client).with(details))?;
            email::enqueue(c, cap, notice)?;
            // Here on the writer, before a twin request's write can run
            // and look for it.
            recent.record(&sid);
            Ok(true)
        })
        .await?;
    d.outbox.wake.notify_one();
    if !changed && is_repeat(d, cfg, user, repeat).await? {
        // Sent twice at once: the other request made this very change.
        return Ok(());
    }
    count("password_change", if changed { "success" } else { "failure" });
    if changed { Ok(()) } else { Err(AccountError::InvalidCredentials) }
}

/// Whether this session just changed the password to `new_password`: the
/// same change sent again, answered as the first was. Only then is the
/// stored hash checked against it (not as a guess: the session has just
/// proved the password), so no other caller gains a guess.
async fn is_repeat(
    d: &Deps,
    cfg: &Config,
    user: &UserSession,
    new_password: String,
) -> Result<bool, AccountError> {
    if !d.recent_changes.just_changed(&user.session_id) {
        return Ok(false);
    }
    reject_oversized("new_password", &new_password)?;
    let uid = user.user_id.clone();
    let Some(phc) = d.store.read(move |c| password_hash(c, &uid)).await? else { return Ok(false) };
    Ok(d.hasher.verify(cfg.passwords.argon2, new_password, phc).await?.ok)
}

/// The owner's notice that their password changed, built before the write
/// that queues it with the change.
fn changed_notice(d: &Deps, cfg: &Config, to: &str, client: &ClientInfo) -> Result<Prepared, AccountError> {
    let template = Template::PasswordChanged { ip: client.ip.clone(), at: crate::clock::now_rfc3339() };
    Ok(email::prepare(cfg, &d.key, to, &template)?)
}
