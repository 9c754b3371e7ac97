//! Account flows: register, verify email, resend, forgot/reset password,
//! change password, show and delete the own account. Every flow that could
//! reveal whether an address is registered answers the same way and does the
//! same shape of work either way (API.md "Accounts").

use serde::Deserialize;
use serde_json::json;

use super::queries::{self, Me, NewUser};
use super::{AccountError, Deps};
use crate::audit::{self, Entry};
use crate::auth::queries::revoke_user_sessions;
use crate::auth::{UserSession, check_password, normalize_email, reject_oversized, validate_email};
use crate::config::{Config, Registration};
use crate::email::{self, Template};
use crate::http::ClientInfo;
use crate::keys::{random_token, token_hash};
use crate::store::Store;
use crate::telemetry::auth_event as count;

const VERIFY_TTL_SECS: i64 = 24 * 3600;
const RESET_TTL_SECS: i64 = 30 * 60;

#[derive(Deserialize)]
pub struct RegisterRequest {
    pub email: String,
    pub password: String,
    pub name: Option<String>,
}

/// Security: both branches hash once, seal one message and write once; the
/// owner of an existing address gets a notice instead of a second account.
pub async fn register(
    d: &Deps,
    cfg: &Config,
    req: RegisterRequest,
    client: &ClientInfo,
) -> Result<(), AccountError> {
    if cfg.accounts.registration == Registration::Closed {
        return Err(AccountError::RegistrationClosed);
    }
    let email = validate_email(&req.email)?;
    check_password(cfg, &d.breached, "password", &req.password)?;
    let name: Option<String> =
        req.name.map(|n| n.trim().chars().take(128).collect()).filter(|n: &String| !n.is_empty());
    let phc = d.hasher.hash(cfg.passwords.argon2, req.password).await?;
    let token = random_token()?;
    let token_hash = token_hash(&token);
    let welcome = email::prepare(cfg, &d.key, &email, &Template::VerifyEmail { token })?;
    let notice = email::prepare(cfg, &d.key, &email, &Template::AlreadyRegistered)?;
    let (cap, client) = (cfg.email.max_per_recipient, client.clone());
    let created = d
        .store
        .write(move |c| {
            let now = crate::clock::now_unix();
            if let Some((existing, _)) = queries::user_id_by_email(c, &normalize_email(&email))? {
                email::enqueue(c, cap, notice)?;
                audit::record(c, &Entry::by_user("register_existing_email", &existing, &client))?;
                return Ok(false);
            }
            let id = uuid::Uuid::now_v7().to_string();
            let user = NewUser { id: &id, email: &email, name: name.as_deref(), password_hash: &phc, now };
            queries::insert_user(c, &user)?;
            queries::insert_one_time(c, &token_hash, &id, "verify_email", now, VERIFY_TTL_SECS)?;
            email::enqueue(c, cap, welcome)?;
            audit::record(c, &Entry::by_user("register", &id, &client))?;
            Ok(true)
        })
        .await?;
    d.outbox.wake.notify_one();
    count("register", if created { "success" } else { "existing" });
    Ok(())
}

pub async fn verify_email(store: &Store, token: &str, client: &ClientInfo) -> Result<(), AccountError> {
    let hash = token_hash(token);
    let client = client.clone();
    let verified = store
        .write(move |c| {
            let now = crate::clock::now_unix();
            let Some(user) = queries::spend_one_time(c, &hash, "verify_email", now)? else {
                return Ok(false);
            };
            queries::mark_verified(c, &user, now)?;
            audit::record(c, &Entry::by_user("email_verified", &user, &client))?;
            Ok(true)
        })
        .await?;
    count("verify_email", if verified { "success" } else { "failure" });
    if verified { Ok(()) } else { Err(AccountError::InvalidToken) }
}

/// Which mail an address-only request sends, if the account exists.
#[derive(Clone, Copy)]
pub enum ByEmail {
    ResendVerification,
    PasswordReset,
}

/// Security: called after the 202 was decided: the lookup, token and
/// email happen here, off the request path, so the answer's timing cannot
/// depend on whether the account exists.
pub async fn send_by_email(
    d: &Deps,
    cfg: &Config,
    email: String,
    what: ByEmail,
    client: ClientInfo,
) -> Result<(), AccountError> {
    let email_norm = normalize_email(&email);
    let found = d.store.read(move |c| queries::user_id_by_email(c, &email_norm)).await?;
    let Some((user_id, verified)) = found else { return Ok(()) };
    let (purpose, ttl, template, token) = {
        let token = random_token()?;
        match what {
            ByEmail::ResendVerification if verified => return Ok(()),
            ByEmail::ResendVerification => {
                ("verify_email", VERIFY_TTL_SECS, Template::VerifyEmail { token: token.clone() }, token)
            }
            ByEmail::PasswordReset => {
                ("password_reset", RESET_TTL_SECS, Template::PasswordReset { token: token.clone() }, token)
            }
        }
    };
    let msg = email::prepare(cfg, &d.key, &email, &template)?;
    let (hash, cap) = (token_hash(&token), cfg.email.max_per_recipient);
    d.store
        .write(move |c| {
            let now = crate::clock::now_unix();
            queries::insert_one_time(c, &hash, &user_id, purpose, now, ttl)?;
            email::enqueue(c, cap, msg)?;
            let action =
                if purpose == "verify_email" { "verification_resent" } else { "password_reset_requested" };
            audit::record(c, &Entry::by_user(action, &user_id, &client))
        })
        .await?;
    d.outbox.wake.notify_one();
    Ok(())
}

/// Sets a new password from a reset token; revokes every session and
/// clears the account lock. Proves the address, so it also verifies it.
pub async fn reset_password(
    d: &Deps,
    cfg: &Config,
    token: &str,
    new_password: String,
    client: &ClientInfo,
) -> Result<(), AccountError> {
    check_password(cfg, &d.breached, "new_password", &new_password)?;
    let phc = d.hasher.hash(cfg.passwords.argon2, new_password).await?;
    let (hash, client) = (token_hash(token), client.clone());
    let done = d
        .store
        .write(move |c| {
            let now = crate::clock::now_unix();
            let Some(user) = queries::spend_one_time(c, &hash, "password_reset", now)? else {
                return Ok(false);
            };
            queries::set_password(c, &user, &phc, now)?;
            queries::mark_verified(c, &user, now)?;
            let revoked = revoke_user_sessions(c, &user, None, "password_reset", now)?;
            audit::record(
                c,
                &Entry::by_user("password_reset", &user, &client)
                    .with(json!({ "sessions_revoked": revoked })),
            )?;
            Ok(true)
        })
        .await?;
    count("password_reset", if done { "success" } else { "failure" });
    if done { Ok(()) } else { Err(AccountError::InvalidToken) }
}

async fn check_current(d: &Deps, cfg: &Config, user_id: &str, password: String) -> Result<(), AccountError> {
    reject_oversized("password", &password)?;
    let uid = user_id.to_string();
    let phc = d
        .store
        .read(move |c| queries::password_hash(c, &uid))
        .await?
        .ok_or(AccountError::InvalidCredentials)?;
    let verified = d.hasher.verify(cfg.passwords.argon2, password, phc).await?;
    if verified.ok { Ok(()) } else { Err(AccountError::InvalidCredentials) }
}

/// Changes the password; every other session of the user is revoked.
pub async fn change_password(
    d: &Deps,
    cfg: &Config,
    user: &UserSession,
    current: String,
    new_password: String,
    client: &ClientInfo,
) -> Result<(), AccountError> {
    check_password(cfg, &d.breached, "new_password", &new_password)?;
    if let Err(e) = check_current(d, cfg, &user.user_id, current).await {
        count("password_change", "failure");
        return Err(e);
    }
    let phc = d.hasher.hash(cfg.passwords.argon2, new_password).await?;
    let (uid, sid, client) = (user.user_id.clone(), user.session_id.clone(), client.clone());
    d.store
        .write(move |c| {
            let now = crate::clock::now_unix();
            queries::set_password(c, &uid, &phc, now)?;
            let revoked = revoke_user_sessions(c, &uid, Some(&sid), "password_change", now)?;
            audit::record(
                c,
                &Entry::by_user("password_changed", &uid, &client)
                    .with(json!({ "sessions_revoked": revoked })),
            )
        })
        .await?;
    count("password_change", "success");
    Ok(())
}

pub async fn me(store: &Store, user: &UserSession) -> Result<Me, AccountError> {
    let uid = user.user_id.clone();
    store.read(move |c| queries::me(c, &uid)).await?.ok_or(AccountError::InvalidCredentials)
}

/// Deletes the account with its sessions and tokens; audit rows stay.
pub async fn delete_me(
    d: &Deps,
    cfg: &Config,
    user: &UserSession,
    password: String,
    client: &ClientInfo,
) -> Result<(), AccountError> {
    check_current(d, cfg, &user.user_id, password).await?;
    let (uid, client) = (user.user_id.clone(), client.clone());
    d.store
        .write(move |c| {
            queries::delete_user(c, &uid)?;
            audit::record(c, &Entry::by_user("account_deleted", &uid, &client))
        })
        .await?;
    Ok(())
}
