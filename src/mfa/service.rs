//! Enrolment, confirmation, recovery-code renewal and turning TOTP off.
//! Passwords are checked on the hashing pool before the write; each write
//! then insists the password is still the one checked, and the code check
//! and its consequences (activation, removal) commit together with their
//! audit row.

use rusqlite::OptionalExtension;
use serde::Serialize;
use serde_json::json;

use super::{Deps, MfaError};
use crate::audit::{self, Entry};
use crate::auth::queries::{password_hash, revoke_user_sessions, user_exists};
use crate::auth::second_factor::{self, Checked, Enrolment, Proof};
use crate::auth::{Reauth, UserSession};
use crate::config::Config;
use crate::email::{self, Prepared, SecondFactorChange, Template};
use crate::http::ClientInfo;
use crate::store::StoreError;
use crate::telemetry::auth_event as count;

/// What a person needs to set up their authenticator app.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NewEnrolment {
    /// The 160-bit secret in base32, for typing in by hand.
    pub secret: String,
    /// `otpauth://totp/…` with issuer and account (SHA1, 6 digits, 30 s).
    pub otpauth_uri: String,
    /// The same URI as a QR code, an SVG document.
    pub qr_svg: String,
}

/// Recovery codes, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

/// Starts (or restarts) an enrolment; TOTP counts only once confirmed.
pub async fn enrol(
    d: &Deps,
    cfg: &Config,
    user: &UserSession,
    client: &ClientInfo,
) -> Result<NewEnrolment, MfaError> {
    let uid = user.user_id.clone();
    let email: Option<String> = d
        .store
        .read(move |c| {
            Ok(c.query_row("SELECT email FROM users WHERE id = ?1", [&uid], |r| r.get(0)).optional()?)
        })
        .await?;
    let email = email.ok_or(MfaError::InvalidCredentials)?;
    let secret = second_factor::new_secret(&d.key, &cfg.pages.product_name, &email)?;
    let qr_svg = qr_svg(&secret.otpauth_uri)?;
    let (uid, sealed, client) = (user.user_id.clone(), secret.sealed, client.clone());
    crate::pause::at("totp_enrol_write").await;
    let stored = d
        .store
        .write(move |c| {
            // The account may have been deleted since its token was checked.
            if !user_exists(c, &uid)? {
                return Ok(None);
            }
            if !second_factor::store_pending(c, &uid, &sealed, crate::clock::now_unix())? {
                return Ok(Some(false));
            }
            audit::record(c, &Entry::by_user("totp_enrolment_started", &uid, &client))?;
            Ok(Some(true))
        })
        .await?;
    match stored {
        None => return Err(MfaError::InvalidCredentials),
        Some(false) => return Err(MfaError::AlreadyEnabled),
        Some(true) => {}
    }
    count("totp_enroll", "started");
    Ok(NewEnrolment { secret: secret.base32, otpauth_uri: secret.otpauth_uri, qr_svg })
}

/// The QR code of `uri` as an SVG document (error correction M: a phone
/// camera reads it off a screen).
fn qr_svg(uri: &str) -> Result<String, MfaError> {
    let code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| MfaError::Qr(e.to_string()))?;
    Ok(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build())
}

/// What confirming found.
enum Confirmation {
    Done,
    Wrong,
    Nothing,
    Already,
}

/// Confirms the pending enrolment with a first code: TOTP is on from now,
/// and the ten recovery codes are returned.
pub async fn confirm(
    d: &Deps,
    cfg: &Config,
    user: &UserSession,
    code: String,
    client: &ClientInfo,
) -> Result<RecoveryCodes, MfaError> {
    let codes = second_factor::new_recovery_codes()?;
    let (notice, cap) =
        (changed_notice(d, cfg, user, client, SecondFactorChange::TurnedOn)?, cfg.email.max_per_recipient);
    let (uid, key, client, kept) = (user.user_id.clone(), d.key.clone(), client.clone(), codes.clone());
    let found = d
        .store
        .write(move |c| {
            let now = crate::clock::now_unix();
            match second_factor::enrolment(c, &uid)? {
                None => return Ok(Confirmation::Nothing),
                Some(Enrolment::Active) => return Ok(Confirmation::Already),
                Some(Enrolment::Pending) => {}
            }
            if second_factor::accept_code(c, &key, &uid, &code, Enrolment::Pending, now)? != Checked::Accepted
            {
                audit::record(c, &Entry::by_user("totp_confirm_failed", &uid, &client))?;
                return Ok(Confirmation::Wrong);
            }
            second_factor::activate(c, &uid, now)?;
            second_factor::store_recovery_codes(c, &key, &uid, &kept, now)?;
            let details = json!({ "recovery_codes": kept.len() });
            audit::record(c, &Entry::by_user("totp_enabled", &uid, &client).with(details))?;
            email::enqueue(c, cap, notice)?;
            Ok(Confirmation::Done)
        })
        .await?;
    d.outbox.wake.notify_one();
    match found {
        Confirmation::Done => {
            count("totp_enroll", "success");
            Ok(RecoveryCodes { recovery_codes: codes })
        }
        Confirmation::Wrong => {
            count("totp_enroll", "failure");
            Err(MfaError::WrongConfirmCode)
        }
        Confirmation::Nothing => Err(MfaError::NothingToConfirm),
        Confirmation::Already => Err(MfaError::AlreadyEnabled),
    }
}

/// Checks `password` as the caller's, through the same throttle and lock
/// as a login: the hash it matched, which the write then insists is
/// unchanged.
async fn check_password(
    d: &Deps,
    cfg: &Config,
    user: &UserSession,
    password: String,
    client: &ClientInfo,
) -> Result<String, MfaError> {
    Ok(reauth(d).confirm(cfg, user, password, client).await?)
}

fn reauth(d: &Deps) -> Reauth<'_> {
    Reauth { store: &d.store, hasher: &d.hasher, guard: d.defense.as_ref() }
}

/// The state a password-guarded write starts from.
fn guarded(
    c: &rusqlite::Connection,
    user_id: &str,
    checked: &str,
) -> Result<Result<(), MfaError>, StoreError> {
    if password_hash(c, user_id)?.as_deref() != Some(checked) {
        return Ok(Err(MfaError::InvalidCredentials));
    }
    if second_factor::enrolment(c, user_id)? != Some(Enrolment::Active) {
        return Ok(Err(MfaError::NotEnabled));
    }
    Ok(Ok(()))
}

/// Turns TOTP off with the password and a current code or a recovery code;
/// every other session of the user is revoked.
pub async fn disable(
    d: &Deps,
    cfg: &Config,
    user: &UserSession,
    password: String,
    proof: Proof,
    client: &ClientInfo,
) -> Result<(), MfaError> {
    // A wrong code counts toward the login throttle, like one at login:
    // the password alone must not let a session guess codes until one fits.
    let phc = reauth(d).confirm_before_code(cfg, user, password, client).await?;
    let (notice, cap) =
        (changed_notice(d, cfg, user, client, SecondFactorChange::TurnedOff)?, cfg.email.max_per_recipient);
    let (uid, sid, key, asker) =
        (user.user_id.clone(), user.session_id.clone(), d.key.clone(), client.clone());
    let turned_off = d
        .store
        .write(move |c| {
            if let Err(refused) = guarded(c, &uid, &phc)? {
                return Ok(Err(refused));
            }
            let now = crate::clock::now_unix();
            let method = proof.method();
            if second_factor::accept(c, &key, &uid, &proof, now)? != Checked::Accepted {
                let details = json!({ "method": method });
                audit::record(c, &Entry::by_user("totp_disable_failed", &uid, &asker).with(details))?;
                return Ok(Err(MfaError::WrongCode));
            }
            second_factor::remove(c, &uid)?;
            let revoked = revoke_user_sessions(c, &uid, Some(&sid), "totp_disabled", now)?;
            let details = json!({ "method": method, "sessions_revoked": revoked });
            audit::record(c, &Entry::by_user("totp_disabled", &uid, &asker).with(details))?;
            email::enqueue(c, cap, notice)?;
            Ok(Ok(()))
        })
        .await?;
    d.outbox.wake.notify_one();
    match &turned_off {
        Ok(()) => reauth(d).code_checked(cfg, user, client, true),
        Err(MfaError::WrongCode) => reauth(d).code_checked(cfg, user, client, false),
        Err(_) => {}
    }
    turned_off
}

/// The person's notice of a change to their second factor, built before
/// the write that queues it with the change: someone else signed in to the
/// account could otherwise lock them out, or keep a way back in, unnoticed.
fn changed_notice(
    d: &Deps,
    cfg: &Config,
    user: &UserSession,
    client: &ClientInfo,
    change: SecondFactorChange,
) -> Result<Prepared, MfaError> {
    let (ip, at) = (client.ip.clone(), crate::clock::now_rfc3339());
    let template = Template::SecondFactorChanged { change, ip, at };
    Ok(email::prepare(cfg, &d.key, &user.facts.email, &template)?)
}

/// Replaces the recovery codes; the old ones stop working at once.
pub async fn regenerate(
    d: &Deps,
    cfg: &Config,
    user: &UserSession,
    password: String,
    client: &ClientInfo,
) -> Result<RecoveryCodes, MfaError> {
    let phc = check_password(d, cfg, user, password, client).await?;
    let codes = second_factor::new_recovery_codes()?;
    let notice = changed_notice(d, cfg, user, client, SecondFactorChange::NewRecoveryCodes)?;
    let cap = cfg.email.max_per_recipient;
    let (uid, key, client, kept) = (user.user_id.clone(), d.key.clone(), client.clone(), codes.clone());
    d.store
        .write(move |c| {
            if let Err(refused) = guarded(c, &uid, &phc)? {
                return Ok(Err(refused));
            }
            second_factor::store_recovery_codes(c, &key, &uid, &kept, crate::clock::now_unix())?;
            let details = json!({ "recovery_codes": kept.len() });
            audit::record(c, &Entry::by_user("recovery_codes_regenerated", &uid, &client).with(details))?;
            email::enqueue(c, cap, notice)?;
            Ok(Ok(()))
        })
        .await??;
    d.outbox.wake.notify_one();
    Ok(RecoveryCodes { recovery_codes: codes })
}
