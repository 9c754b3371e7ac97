//! Login's second step for accounts with TOTP on. A correct password gets
//! an `mfa_token` instead of tokens: 256-bit, stored as SHA-256, bound to
//! the user and to the password hash it was earned with, alive 5 minutes,
//! spent by the first right code and void after 5 wrong ones. The code is
//! checked, the step recorded and the session made in one write
//! transaction, so a code opens at most one session.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::queries::{self, LoginUser, PendingStep};
use super::service::{Issued, NewLogin, TokenResponse, failed, welcome};
use super::{Deps, SessionError};
use crate::audit::{self, Entry};
use crate::auth::reject_oversized;
use crate::auth::second_factor::{self, Checked, Proof, RECOVERY_CODE_COUNT};
use crate::config::Config;
use crate::email::{self, Prepared, Template};
use crate::http::ClientInfo;
use crate::keys::{MasterKey, random_token, token_hash};
use crate::store::{Store, StoreError};
use crate::telemetry::auth_event as count;

/// How long a second step waits for its code.
const STEP_TTL_SECS: i64 = 300;
/// Wrong codes one `mfa_token` takes before it is void.
const MAX_WRONG_CODES: i64 = 5;

/// The answer to a correct password when TOTP is on.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Challenge {
    /// Always true: tells the two answers of login apart.
    pub mfa_required: bool,
    pub mfa_token: String,
    pub methods: [&'static str; 2],
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SecondStepRequest {
    pub mfa_token: String,
    /// The 6-digit code from the authenticator app.
    pub code: Option<String>,
    /// Or one of the recovery codes, `XXXX-XXXX-XXXX`.
    pub recovery_code: Option<String>,
}

/// Step one's end for a TOTP account: stores the `mfa_token` (with the
/// upgraded password hash, if there is one) and hands it out.
pub async fn challenge(
    d: &Deps,
    user: &LoginUser,
    device_name: Option<String>,
    rehash: Option<String>,
    client: &ClientInfo,
) -> Result<Challenge, SessionError> {
    let token = random_token()?;
    let hash = token_hash(&token);
    let (uid, checked) = (user.id.clone(), user.password_hash.clone());
    let stored = d
        .store
        .write(move |c| {
            if !queries::may_still_log_in(c, &uid, &checked)? {
                return Ok(false);
            }
            let now = crate::clock::now_unix();
            if let Some(phc) = &rehash {
                queries::upgrade_password_hash(c, &uid, &checked, phc, now)?;
            }
            let digest = token_hash(rehash.as_deref().unwrap_or(&checked));
            let expires = now + STEP_TTL_SECS;
            queries::insert_mfa_token(c, &hash, &uid, &digest, device_name.as_deref(), now, expires)?;
            Ok(true)
        })
        .await?;
    if !stored {
        return Err(failed(d, Some(user.id.clone()), client).await);
    }
    count("login", "mfa_required");
    Ok(Challenge { mfa_required: true, mfa_token: token, methods: ["totp", "recovery_code"] })
}

/// What the second step's transaction decided.
enum Outcome {
    Passed(Issued),
    /// A wrong code: counted against the `mfa_token`.
    Wrong,
    /// The `mfa_token` is unknown, spent, expired or void, or the account
    /// changed since step one.
    Void,
}

/// `POST /v1/auth/login/mfa`.
pub async fn login_mfa(
    d: &Deps,
    cfg: &Config,
    req: SecondStepRequest,
    client: &ClientInfo,
) -> Result<TokenResponse, SessionError> {
    let Some(proof) = Proof::from_fields(req.code, req.recovery_code) else {
        return Err(SessionError::OneProof);
    };
    reject_oversized("mfa_token", &req.mfa_token)?;
    let hash = token_hash(&req.mfa_token);
    let now = crate::clock::now_unix();
    let lookup = hash.clone();
    let pending = d.store.read(move |c| queries::pending_step(c, &lookup, now, MAX_WRONG_CODES)).await?;
    let Some(pending) = pending else {
        return Err(void_step(&d.store, client).await);
    };
    // Security: wrong codes count toward the same per-address delay and
    // per-email limit as wrong passwords.
    d.defense.check_login(&pending.email_norm, client, cfg).inspect_err(super::service::count_refusal)?;
    let (email_norm, device) = (pending.email_norm.clone(), pending.device_name.clone());
    let login = NewLogin::new(cfg, &pending.user_id, &pending.email, "pwd otp", client)?;
    let notice = match proof {
        Proof::RecoveryCode(_) => {
            Some((recovery_notice(d, cfg, &pending, client).await?, cfg.email.max_per_recipient))
        }
        Proof::Code(_) => None,
    };
    let key = d.key.clone();
    let outcome = d.store.write(move |c| decide(c, &key, &hash, &proof, login, notice)).await?;
    match outcome {
        Outcome::Passed(issued) => {
            d.outbox.wake.notify_one();
            d.defense.login_succeeded(&email_norm, client, cfg);
            welcome(d, cfg, issued, device.as_deref(), client).await
        }
        Outcome::Wrong => {
            count("login_mfa", "failure");
            d.defense.login_failed(&email_norm, client, cfg);
            Err(SessionError::InvalidMfa)
        }
        Outcome::Void => {
            count("login_mfa", "failure");
            Err(SessionError::InvalidMfa)
        }
    }
}

/// The mail telling the person a recovery code signed in, with the codes
/// left after this one (built before the write, as every mail is).
async fn recovery_notice(
    d: &Deps,
    cfg: &Config,
    pending: &PendingStep,
    client: &ClientInfo,
) -> Result<Prepared, SessionError> {
    let uid = pending.user_id.clone();
    let left = d.store.read(move |c| second_factor::recovery_codes_left(c, &uid)).await?;
    let (ip, at) = (client.ip.clone(), crate::clock::now_rfc3339());
    let template = Template::RecoveryCodeUsed { ip, at, left: (left - 1).max(0) };
    Ok(email::prepare(cfg, &d.key, &pending.email, &template)?)
}

/// The second step's one transaction: the `mfa_token` is live and the
/// user's, the proof is accepted (and its step or recovery code used up,
/// the person mailed for a recovery code: `notice`, under the hourly cap),
/// the password is still the one step one checked, and the session is made.
fn decide(
    c: &rusqlite::Connection,
    key: &MasterKey,
    hash: &[u8],
    proof: &Proof,
    mut login: NewLogin,
    notice: Option<(Prepared, u32)>,
) -> Result<Outcome, StoreError> {
    let now = crate::clock::now_unix();
    let client = login.client.clone();
    let step = queries::pending_step(c, hash, now, MAX_WRONG_CODES)?;
    let Some(step) = step.filter(|s| s.user_id == login.user_id) else {
        record_failure(c, None, &client, json!({"reason": "unknown_or_expired_token"}))?;
        return Ok(Outcome::Void);
    };
    let uid = step.user_id.clone();
    if second_factor::accept(c, key, &uid, proof, now)? != Checked::Accepted {
        let failures = queries::mfa_token_failed(c, hash, MAX_WRONG_CODES)?;
        let details =
            json!({"method": proof.method(), "failures": failures, "void": failures >= MAX_WRONG_CODES});
        record_failure(c, Some(&uid), &client, details)?;
        return Ok(Outcome::Wrong);
    }
    queries::delete_mfa_token(c, hash)?;
    if let Proof::RecoveryCode(_) = proof {
        let left = second_factor::recovery_codes_left(c, &uid)?;
        let details = json!({"remaining": left, "of": RECOVERY_CODE_COUNT});
        audit::record(c, &Entry::by_user("recovery_code_used", &uid, &client).with(details))?;
    }
    let Some(phc) = queries::password_if_unchanged(c, &uid, &step.password_digest)? else {
        record_failure(c, Some(&uid), &client, json!({"reason": "account_changed"}))?;
        return Ok(Outcome::Void);
    };
    (login.checked_hash, login.device_name) = (phc, step.device_name);
    let Some(issued) = login.insert(c)? else { return Ok(Outcome::Void) };
    if let Some((mail, cap)) = notice {
        email::enqueue(c, cap, mail)?;
    }
    Ok(Outcome::Passed(issued))
}

fn record_failure(
    c: &rusqlite::Connection,
    subject: Option<&str>,
    client: &ClientInfo,
    details: serde_json::Value,
) -> Result<(), StoreError> {
    let entry = Entry {
        action: "login_mfa_failed",
        actor_id: None,
        subject_id: subject,
        client: Some(client),
        details,
    };
    audit::record(c, &entry)
}

/// An `mfa_token` that names no live second step: audited and refused.
async fn void_step(store: &Store, client: &ClientInfo) -> SessionError {
    count("login_mfa", "failure");
    let client = client.clone();
    let details = json!({"reason": "unknown_or_expired_token"});
    match store.write(move |c| record_failure(c, None, &client, details)).await {
        Ok(()) => SessionError::InvalidMfa,
        Err(e) => e.into(),
    }
}
