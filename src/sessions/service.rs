//! Login, refresh-token rotation with reuse detection, logout and session
//! listing. Password checks and signing happen outside write transactions;
//! each state change and its audit row commit together.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::queries::{self, NewSession, SessionView};
use super::refresh_token::{Presented, Secret};
use super::{Deps, SessionError, second_step};
use crate::audit::{self, Entry};
use crate::auth::queries::{revoke_session, revoke_user_sessions, roles_of};
use crate::auth::{
    AccessClaims, LoginRefused, Signer, UserSession, display_text, issuer, normalize_email, reject_oversized,
};
use crate::config::Config;
use crate::http::ClientInfo;
use crate::keys::MasterKey;
use crate::store::{Store, StoreError};
use crate::telemetry::auth_event as count;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    pub device_name: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserBrief {
    pub id: String,
    pub email: String,
    pub roles: Vec<String>,
}

/// The `tokens` object of API.md.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
    pub session_id: String,
    pub user: UserBrief,
}

/// Everything needed to mint the token pair after the write committed.
pub(super) struct Issued {
    user: UserBrief,
    session_id: String,
    amr: Vec<String>,
    refresh_token: String,
    refresh_expires_in: i64,
}

fn tokens(signer: &Signer, cfg: &Config, issued: Issued) -> Result<TokenResponse, SessionError> {
    let now = crate::clock::now_unix();
    let ttl = cfg.tokens.access_ttl.0.as_secs();
    let claims = AccessClaims {
        iss: issuer(cfg),
        aud: cfg.tokens.audience.clone(),
        sub: issued.user.id.clone(),
        sid: issued.session_id.clone(),
        jti: uuid::Uuid::now_v7().to_string(),
        iat: now,
        exp: now + i64::try_from(ttl).unwrap_or(i64::MAX / 2),
        roles: issued.user.roles.clone(),
        amr: issued.amr,
    };
    Ok(TokenResponse {
        access_token: signer.sign(&claims)?,
        token_type: "Bearer",
        expires_in: ttl,
        refresh_token: issued.refresh_token,
        refresh_expires_in: u64::try_from(issued.refresh_expires_in).unwrap_or(0),
        session_id: issued.session_id,
        user: issued.user,
    })
}

/// What a correct password gets: tokens, or (with TOTP on) the way to the
/// second step.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LoginAnswer {
    Tokens(TokenResponse),
    SecondStep(second_step::Challenge),
}

pub async fn login(
    d: &Deps,
    cfg: &Config,
    req: LoginRequest,
    client: &ClientInfo,
) -> Result<LoginAnswer, SessionError> {
    let (store, hasher) = (&d.store, &d.hasher);
    reject_oversized("password", &req.password)?;
    let device_name = display_text("device_name", req.device_name)?;
    let email_norm = normalize_email(&req.email);
    // Security: throttled or over the per-email limit, answered from
    // memory before any lookup or hash, identically for every email.
    d.defense.check_login(&email_norm, client, cfg).inspect_err(count_refusal)?;
    // Under overload, refuse before the lookup (the same for every email).
    hasher.has_room()?;
    let (lookup, reader) = (email_norm.clone(), store.clone());
    let find = move || reader.read_now(|c| queries::find_login_user(c, &lookup)).map_err(SessionError::from);
    let params = cfg.passwords.argon2;
    // Security: an unknown email costs one argon2 verification too, with
    // the parameters most stored hashes use, so the answer's timing does not
    // tell whether the account exists.
    let both = (params, d.dummy.get(params));
    let (found, verified) = hasher
        .verify_found(both, req.password.clone(), find, |u: &queries::LoginUser| &u.password_hash)
        .await?;
    let user = match found {
        Some(u) if verified.ok => u,
        other => {
            d.defense.login_failed(&email_norm, client, cfg);
            return Err(failed(d, other.map(|u| u.id), client).await);
        }
    };
    // Security: with TOTP on, the password alone does not end the
    // per-address delay; the second step does.
    if !user.totp {
        d.defense.login_succeeded(&email_norm, client, cfg);
    }
    if !user.active {
        count("login", "disabled");
        return Err(SessionError::AccountDisabled);
    }
    if cfg.accounts.require_verified_email && !user.verified {
        count("login", "unverified");
        return Err(SessionError::EmailNotVerified);
    }
    let rehash = match verified.needs_rehash {
        true => Some(hasher.hash(params, req.password).await?),
        false => None,
    };
    crate::pause::at("login_commit").await;
    if user.totp {
        return second_step::challenge(d, &user, device_name, rehash, client)
            .await
            .map(LoginAnswer::SecondStep);
    }
    let mut login = NewLogin::new(cfg, &user.id, &user.email, "pwd", client)?;
    (login.device_name, login.checked_hash, login.rehash) = (device_name, user.password_hash, rehash);
    signed_in(d, cfg, login, client).await.map(LoginAnswer::Tokens)
}

/// Makes the session of a checked login and answers with its tokens, or
/// with `invalid-credentials` if the account changed meanwhile.
async fn signed_in(
    d: &Deps,
    cfg: &Config,
    login: NewLogin,
    client: &ClientInfo,
) -> Result<TokenResponse, SessionError> {
    let (user_id, device) = (login.user_id.clone(), login.device_name.clone());
    // Other logins hashing now will write in a few milliseconds: waiting
    // for one lets a single commit serve both.
    let company = d.hasher.company_due();
    let Some(issued) = d.store.write_with_company(company, move |c| login.insert(c)).await? else {
        return Err(failed(d, Some(user_id), client).await);
    };
    welcome(d, cfg, issued, device.as_deref(), client).await
}

/// After a login's session committed: counted, the login anomaly rules
/// run, and the tokens signed.
pub(super) async fn welcome(
    d: &Deps,
    cfg: &Config,
    issued: Issued,
    device: Option<&str>,
    client: &ClientInfo,
) -> Result<TokenResponse, SessionError> {
    count(if issued.amr.len() > 1 { "login_mfa" } else { "login" }, "success");
    let checked = d.defense.after_login(&issued.user.id, &issued.session_id, client, device, cfg).await;
    if let Err(e) = checked {
        tracing::warn!(error = %e, "login anomaly rules could not run");
    }
    tokens(&d.signer, cfg, issued)
}

/// Counts a login the defenses refused before its password was checked:
/// a throttled email is `locked` on the dashboard; the per-email limit
/// counts itself as a rate limit.
pub(super) fn count_refusal(refused: &LoginRefused) {
    if let LoginRefused::Throttled(_) = refused {
        count("login", "locked");
    }
}

/// Counts and audits a failed login; the error to answer with. It comes
/// after a password check, so it may share its commit like a session's.
pub(super) async fn failed(d: &Deps, subject: Option<String>, client: &ClientInfo) -> SessionError {
    count("login", "failure");
    let client = client.clone();
    let recorded = d
        .store
        .write_with_company(d.hasher.company_due(), move |c| {
            let entry = Entry {
                action: "login_failed",
                actor_id: None,
                subject_id: subject.as_deref(),
                client: Some(&client),
                details: serde_json::Value::Null,
            };
            audit::record(c, &entry)
        })
        .await;
    match recorded {
        Ok(()) => SessionError::InvalidCredentials,
        Err(e) => e.into(),
    }
}

/// A session about to be made, once the credentials were checked: built
/// before the write, inserted inside it.
pub(super) struct NewLogin {
    pub user_id: String,
    pub email: String,
    pub device_name: Option<String>,
    /// Space-separated methods: `pwd`, or `pwd otp`.
    pub amr: &'static str,
    /// The password hash the credentials were checked against: the write
    /// insists it is still the account's.
    pub checked_hash: String,
    /// The same password hashed with the current parameters, if the stored
    /// hash used others.
    pub rehash: Option<String>,
    pub client: ClientInfo,
    session_id: String,
    refresh_secret: Secret,
    now: i64,
    session_expires: i64,
    refresh_expires: i64,
}

impl NewLogin {
    pub fn new(
        cfg: &Config,
        user_id: &str,
        email: &str,
        amr: &'static str,
        client: &ClientInfo,
    ) -> Result<Self, SessionError> {
        let now = crate::clock::now_unix();
        let session_expires = now + secs(cfg.tokens.session_max_age.0);
        Ok(NewLogin {
            user_id: user_id.to_string(),
            email: email.to_string(),
            device_name: None,
            amr,
            checked_hash: String::new(),
            rehash: None,
            client: client.clone(),
            session_id: uuid::Uuid::now_v7().to_string(),
            refresh_secret: Secret::new()?,
            now,
            session_expires,
            refresh_expires: (now + secs(cfg.tokens.refresh_ttl.0)).min(session_expires),
        })
    }

    /// In the caller's write transaction: re-checks the account, then
    /// inserts the session and its first refresh token and audits the
    /// login. `None` if the password changed (a reset) or the account was
    /// disabled since the check: the old password no longer counts.
    pub fn insert(self, c: &rusqlite::Connection) -> Result<Option<Issued>, StoreError> {
        let uid = &self.user_id;
        if !queries::may_still_log_in(c, uid, &self.checked_hash)? {
            return Ok(None);
        }
        let session = NewSession {
            id: &self.session_id,
            user_id: uid,
            device_name: self.device_name.as_deref(),
            ip: &self.client.ip,
            user_agent: self.client.user_agent.as_deref(),
            amr: self.amr,
            now: self.now,
            expires_at: self.session_expires,
        };
        queries::insert_session(c, &session)?;
        let token_id = queries::insert_refresh(
            c,
            &self.refresh_secret.hash(),
            &self.session_id,
            self.now,
            self.refresh_expires,
        )?;
        queries::set_last_login(c, uid, self.now)?;
        if let Some(phc) = &self.rehash {
            queries::upgrade_password_hash(c, uid, &self.checked_hash, phc, self.now)?;
        }
        let details =
            json!({ "session_id": self.session_id, "rehashed": self.rehash.is_some(), "amr": self.amr });
        audit::record(c, &Entry::by_user("login", uid, &self.client).with(details))?;
        let roles = roles_of(c, uid)?;
        Ok(Some(Issued {
            user: UserBrief { id: self.user_id, email: self.email, roles },
            session_id: self.session_id,
            amr: self.amr.split(' ').map(str::to_string).collect(),
            refresh_token: self.refresh_secret.token(token_id),
            refresh_expires_in: self.refresh_expires - self.now,
        }))
    }
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

/// What the rotation transaction decided.
enum Rotation {
    Invalid,
    Reused,
    Rotated(Issued),
}

/// Spends `token` and issues its successor in one write transaction. A
/// token that was already spent revokes its whole session (reuse detection);
/// that revocation commits even though the caller gets an error.
pub async fn refresh(
    d: &Deps,
    cfg: &Config,
    token: &str,
    client: &ClientInfo,
) -> Result<TokenResponse, SessionError> {
    let successor = Secret::new()?;
    let grace = secs(cfg.tokens.refresh_reuse_grace.0);
    // With a grace window the successor is kept (sealed) so a retry of the
    // spent token can be answered with the same successor.
    let sealed = if grace > 0 { Some(d.key.seal(SUCCESSOR_PURPOSE, successor.bytes())?) } else { None };
    let spend = Spend {
        presented: Presented::parse(token),
        successor,
        sealed,
        key: d.key.clone(),
        refresh_ttl: secs(cfg.tokens.refresh_ttl.0),
        grace,
        caller: client.clone(),
    };
    match d.store.write(move |c| rotate(c, &spend)).await? {
        Rotation::Invalid => {
            count("refresh", "failure");
            Err(SessionError::InvalidToken)
        }
        Rotation::Reused => {
            count("refresh", "reused");
            Err(SessionError::RefreshReused)
        }
        Rotation::Rotated(issued) => {
            count("refresh", "success");
            d.defense.refreshed(&issued.session_id, &issued.user.id, client, cfg);
            tokens(&d.signer, cfg, issued)
        }
    }
}

/// What a refresh's write transaction needs, made before it starts.
struct Spend {
    presented: Presented,
    successor: Secret,
    sealed: Option<Vec<u8>>,
    key: MasterKey,
    refresh_ttl: i64,
    grace: i64,
    caller: ClientInfo,
}

/// The refresh's write: decides and records what the presented token gets.
fn rotate(c: &rusqlite::Connection, s: &Spend) -> Result<Rotation, StoreError> {
    let now = crate::clock::now_unix();
    let Some(row) = queries::find_refresh(c, &s.presented, now)? else { return Ok(Rotation::Invalid) };
    if !row.session_live || !row.user_active {
        return Ok(Rotation::Invalid);
    }
    if let Some(used_at) = row.used_at {
        if let Some((retry, expires)) = within_grace(c, &s.key, row.id, now, used_at, s.grace)? {
            return issue(c, row, retry, expires - now);
        }
        revoke_session(c, &row.session_id, "refresh_token_reused", now)?;
        let details = json!({ "session_id": row.session_id });
        audit::record(c, &Entry::by_user("refresh_token_reused", &row.user_id, &s.caller).with(details))?;
        return Ok(Rotation::Reused);
    }
    if row.expires_at <= now {
        return Ok(Rotation::Invalid);
    }
    let expires = (now + s.refresh_ttl).min(row.session_expires_at);
    let successor_id = queries::insert_refresh(c, &s.successor.hash(), &row.session_id, now, expires)?;
    queries::spend_refresh(c, row.id, now, successor_id, s.sealed.as_deref())?;
    if queries::worth_touching(&row, now, &s.caller.ip) {
        queries::touch_session(c, &row.session_id, now, &s.caller.ip)?;
    }
    issue(c, row, s.successor.token(successor_id), expires - now)
}

/// The session of `row` answered with `refresh_token`, its roles as of now.
fn issue(
    c: &rusqlite::Connection,
    row: queries::RefreshRow,
    refresh_token: String,
    refresh_expires_in: i64,
) -> Result<Rotation, StoreError> {
    let roles = roles_of(c, &row.user_id)?;
    Ok(Rotation::Rotated(Issued {
        user: UserBrief { id: row.user_id, email: row.email, roles },
        session_id: row.session_id,
        amr: row.amr.split(' ').map(str::to_string).collect(),
        refresh_token,
        refresh_expires_in,
    }))
}

const SUCCESSOR_PURPOSE: &[u8] = b"refresh successor";

/// The still-unused successor of a token spent less than `grace` seconds
/// ago, with its expiry: a client retrying after a lost answer gets the
/// same successor instead of having its session revoked.
fn within_grace(
    c: &rusqlite::Connection,
    key: &MasterKey,
    spent: i64,
    now: i64,
    used_at: i64,
    grace: i64,
) -> Result<Option<(String, i64)>, StoreError> {
    // Spent "later" than now: the clock was set back since, and how long
    // ago it really was is unknown; a reuse, not a retry, to be safe.
    if grace <= 0 || !(0..=grace).contains(&(now - used_at)) {
        return Ok(None);
    }
    let Some((id, sealed, expires_at)) = queries::successor_of(c, spent)? else { return Ok(None) };
    let Some(opened) = key.open(SUCCESSOR_PURPOSE, &sealed) else { return Ok(None) };
    // A secret names its row; before migration 0011 the whole token was kept.
    let token = match Secret::from_bytes(&opened) {
        Some(secret) => Some(secret.token(id)),
        None => String::from_utf8(opened).ok(),
    };
    Ok(token.map(|t| (t, expires_at)))
}

/// Revokes the caller's session (`all`: every session of the user).
pub async fn logout(
    store: &Store,
    user: &UserSession,
    all: bool,
    client: &ClientInfo,
) -> Result<(), SessionError> {
    let (uid, sid, client) = (user.user_id.clone(), user.session_id.clone(), client.clone());
    store
        .write(move |c| {
            let now = crate::clock::now_unix();
            let (action, count) = if all {
                ("logout_all", revoke_user_sessions(c, &uid, None, "logout_all", now)?)
            } else {
                ("logout", usize::from(revoke_session(c, &sid, "logout", now)?))
            };
            audit::record(c, &Entry::by_user(action, &uid, &client).with(json!({ "sessions": count })))
        })
        .await?;
    count("logout", "success");
    Ok(())
}

pub async fn list(store: &Store, user: &UserSession) -> Result<Vec<SessionView>, SessionError> {
    let (uid, sid) = (user.user_id.clone(), user.session_id.clone());
    Ok(store.read(move |c| queries::list_live(c, &uid, &sid, crate::clock::now_unix())).await?)
}

/// Revokes one of the caller's own sessions; another user's is "not found".
pub async fn revoke_own(
    store: &Store,
    user: &UserSession,
    id: String,
    client: &ClientInfo,
) -> Result<(), SessionError> {
    let (uid, client) = (user.user_id.clone(), client.clone());
    let revoked = store
        .write(move |c| {
            if queries::session_owner(c, &id)?.as_deref() != Some(uid.as_str()) {
                return Ok(false);
            }
            revoke_session(c, &id, "revoked_by_user", crate::clock::now_unix())?;
            audit::record(
                c,
                &Entry::by_user("session_revoked", &uid, &client).with(json!({ "session_id": id })),
            )?;
            Ok(true)
        })
        .await?;
    if revoked { Ok(()) } else { Err(SessionError::NotFound) }
}
