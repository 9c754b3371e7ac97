//! Account flows: register, verify email, show and delete the own account.
//! Every flow that could reveal whether an address is registered answers
//! the same way and does the same shape of work either way (API.md
//! "Accounts"). Password reset and change are in `passwords.rs`; the mail
//! of address-only requests in `mailer.rs`.

use serde::Deserialize;

use super::address::{self, Confirmation};
use super::queries::{self, Me};
use super::{AccountError, Deps};
use crate::audit::{self, Entry};
use crate::auth::queries::{NewUser, active_admins, insert_one_time, insert_user, roles_of, set_name};
use crate::auth::{PolicyError, UserSession, check_password, display_text, normalize_email, validate_email};
use crate::config::{Config, Registration};
use crate::email::{self, Template};
use crate::http::ClientInfo;
use crate::keys::{random_token, token_hash};
use crate::store::Store;
use crate::telemetry::auth_event as count;

pub(super) const VERIFY_TTL_SECS: i64 = 24 * 3600;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RegisterRequest {
    pub email: String,
    pub password: String,
    pub name: Option<String>,
}

/// Security: both branches read once, hash once, seal two messages and
/// write once; the owner of an existing address gets a notice (at the
/// address as stored) instead of a second account.
pub async fn register(
    d: &Deps,
    cfg: &Config,
    req: RegisterRequest,
    client: &ClientInfo,
) -> Result<(), AccountError> {
    if cfg.accounts.registration == Registration::Closed {
        return Err(AccountError::RegistrationClosed);
    }
    let (email, name) = valid_fields(cfg, d, &req.email, &req.password, req.name)?;
    let norm = normalize_email(&email);
    let lookup = norm.clone();
    let holder = d.store.read(move |c| queries::holder_of(c, &lookup)).await?;
    let phc = d.hasher.hash(cfg.passwords.argon2, req.password).await?;
    let token = random_token()?;
    let token_hash = token_hash(&token);
    let welcome = email::prepare(cfg, &d.key, &email, &Template::VerifyEmail { token })?;
    let owner = holder.map_or_else(|| email.clone(), |h| h.email);
    let notice = email::prepare(cfg, &d.key, &owner, &Template::AlreadyRegistered)?;
    let (cap, client) = (cfg.email.max_per_recipient, client.clone());
    // Like a login's session: other registrations hashing now may share
    // this commit.
    d.store
        .write_with_company(d.hasher.company_due(), move |c| {
            let now = crate::clock::now_unix();
            // Checked again in the write: another registration may have won.
            if let Some(existing) = queries::holder_of(c, &norm)? {
                email::enqueue(c, cap, notice)?;
                return audit::record(c, &Entry::by_user("register_existing_email", &existing.id, &client));
            }
            let id = uuid::Uuid::now_v7().to_string();
            let user = NewUser { id: &id, email: &email, name: name.as_deref(), password_hash: &phc, now };
            insert_user(c, &user)?;
            // A link that was never sent (mail cap) is not kept.
            if email::enqueue(c, cap, welcome)? {
                insert_one_time(c, &token_hash, &id, "verify_email", now, VERIFY_TTL_SECS)?;
            }
            audit::record(c, &Entry::by_user("register", &id, &client))
        })
        .await?;
    d.outbox.wake.notify_one();
    // Security: /metrics is unauthenticated; one result for both branches,
    // or the counter would tell which addresses are registered.
    count("register", "success");
    Ok(())
}

/// A registration's fields, each checked, every refusal told at once.
fn valid_fields(
    cfg: &Config,
    d: &Deps,
    email: &str,
    password: &str,
    name: Option<String>,
) -> Result<(String, Option<String>), PolicyError> {
    let strong = check_password(cfg, &d.breached, "password", password);
    match (validate_email(email), strong, display_text("name", name)) {
        (Ok(email), Ok(()), Ok(name)) => Ok((email, name)),
        (email, strong, name) => Err(PolicyError::of_fields([email.err(), strong.err(), name.err()])),
    }
}

/// What a confirmation link is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmationLink {
    /// It works: the page offers the Confirm button.
    Live,
    /// Spent or expired, and its address is confirmed (a second click).
    AlreadyConfirmed,
    /// Spent, expired or unknown, and nothing is confirmed.
    Dead,
}

/// What the confirmation link `token` is (a read; spends nothing), so the
/// page can answer before the click. A link that moves an account to a new
/// address (`address.rs`) is a confirmation link too.
pub async fn confirmation_link(store: &Store, token: &str) -> Result<ConfirmationLink, AccountError> {
    let hash = token_hash(token);
    let now = crate::clock::now_unix();
    Ok(store
        .read(move |c| {
            if queries::one_time_user(c, &hash, "verify_email", now)?.is_some()
                || address::is_live(c, &hash, now)?
            {
                return Ok(ConfirmationLink::Live);
            }
            let confirmed = queries::confirmation_link_owner_verified(c, &hash)? == Some(true)
                || address::was_applied(c, &hash)?;
            Ok(if confirmed { ConfirmationLink::AlreadyConfirmed } else { ConfirmationLink::Dead })
        })
        .await?)
}

/// What a confirmation link confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmed {
    /// The account's address (a registration's or an administrator's link).
    Address,
    /// A new address: the account has moved to it.
    NewAddress,
}

/// Confirms an address: a registration's (or an administrator's) link
/// marks it verified; a change link moves the account to its address.
pub async fn verify_email(
    store: &Store,
    token: &str,
    client: &ClientInfo,
) -> Result<Confirmed, AccountError> {
    let hash = token_hash(token);
    let client = client.clone();
    let outcome = store
        .write(move |c| {
            let now = crate::clock::now_unix();
            let Some(user) = queries::spend_one_time(c, &hash, "verify_email", now)? else {
                return address::apply_change(c, &hash, &client, now);
            };
            queries::mark_verified(c, &user, now)?;
            audit::record(c, &Entry::by_user("email_verified", &user, &client))?;
            Ok(Confirmation::Verified)
        })
        .await?;
    let done = matches!(outcome, Confirmation::Verified | Confirmation::Moved);
    count("verify_email", if done { "success" } else { "failure" });
    match outcome {
        Confirmation::Verified => Ok(Confirmed::Address),
        Confirmation::Moved => Ok(Confirmed::NewAddress),
        Confirmation::NoLiveLink => Err(AccountError::InvalidToken),
        Confirmation::AddressTaken => Err(AccountError::AddressTaken),
    }
}

pub fn me(user: &UserSession) -> Me {
    Me::of(&user.facts)
}

/// Gives the account another display name (`None` or blank: none), as the
/// person chose it at registration; returns the account as it is now.
pub async fn rename(
    store: &Store,
    user: &UserSession,
    name: Option<String>,
    client: &ClientInfo,
) -> Result<Me, AccountError> {
    let name = display_text("name", name)?;
    let (uid, stored, client) = (user.user_id.clone(), name.clone(), client.clone());
    store
        .write(move |c| {
            // The same name again changes nothing, so it is no event.
            match set_name(c, &uid, stored.as_deref(), crate::clock::now_unix())? {
                true => audit::record(c, &Entry::by_user("name_changed", &uid, &client)),
                false => Ok(()),
            }
        })
        .await?;
    Ok(Me { name, ..Me::of(&user.facts) })
}

/// Deletes the account with its sessions and tokens; audit rows stay, and
/// the address is told (a stolen session and password could do this). The
/// delete happens only if the password checked is still the account's.
pub async fn delete_me(
    d: &Deps,
    cfg: &Config,
    user: &UserSession,
    password: String,
    client: &ClientInfo,
) -> Result<(), AccountError> {
    let phc = super::passwords::check_current(d, cfg, user, password, client, "account_delete").await?;
    let gone = Template::AccountDeleted { ip: client.ip.clone(), at: crate::clock::now_rfc3339() };
    let notice = email::prepare(cfg, &d.key, &user.facts.email, &gone)?;
    let (uid, cap, client) = (user.user_id.clone(), cfg.email.max_per_recipient, client.clone());
    let email = crate::auth::normalize_email(&user.facts.email);
    let deletion = d
        .store
        .write(move |c| {
            // As an admin may not delete the last active admin, neither
            // may that admin: apps using its token would lose their admin.
            if roles_of(c, &uid)?.iter().any(|r| r == "admin") && active_admins(c)? == 1 {
                return Ok(Deletion::LastAdmin);
            }
            if !queries::delete_user(c, &uid, &phc)? {
                return Ok(Deletion::PasswordChanged);
            }
            let tag = serde_json::json!({ "email_tag": audit::email_tag(&email)? });
            audit::record(c, &Entry::by_user("account_deleted", &uid, &client).with(tag))?;
            email::enqueue(c, cap, notice)?;
            Ok(Deletion::Done)
        })
        .await?;
    d.outbox.wake.notify_one();
    // A refusal for the last admin is no failed password: not counted.
    match deletion {
        Deletion::Done => {
            d.api_keys.drop_owner(&user.user_id);
            count("account_delete", "success");
            Ok(())
        }
        Deletion::PasswordChanged => {
            count("account_delete", "failure");
            Err(AccountError::InvalidCredentials)
        }
        Deletion::LastAdmin => Err(AccountError::LastAdmin),
    }
}

/// What the deleting write found.
enum Deletion {
    Done,
    /// The password checked is no longer the account's (a reset meanwhile).
    PasswordChanged,
    LastAdmin,
}

/// Resend and forgot: validates the address and hands the lookup, token
/// and mail to the mailer, so the answer cannot depend on the account.
pub fn by_email(
    d: &Deps,
    cfg: &std::sync::Arc<Config>,
    email: &str,
    what: super::ByEmail,
    client: &ClientInfo,
) -> Result<(), AccountError> {
    let email = crate::auth::validate_email(email)?;
    if matches!(what, super::ByEmail::PasswordReset) {
        // A credential attempt by email: the per-email limit applies.
        d.defense.check_account(&crate::auth::normalize_email(&email))?;
    }
    d.mailer.offer(email, what, client.clone(), std::sync::Arc::clone(cfg));
    Ok(())
}
