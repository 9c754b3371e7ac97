//! Asking a signed-in person for their password again before a change that
//! matters: a new password or address, deleting the account, the second
//! factor. A wrong password here is a guess like a failed login, and meets
//! the same defenses: a throttled or locked account is refused before any
//! hash, and each wrong password counts toward its throttle and lock.
//! Otherwise a stolen session could guess its password at the request
//! rate limit's pace, never meeting the lock that guards `/login`.

use super::guard::{LoginGuard, LoginRefused};
use super::password::{HashError, Hasher};
use super::policy::{PolicyError, normalize_email, reject_oversized};
use super::principal::UserSession;
use super::queries::password_hash;
use crate::config::Config;
use crate::http::ClientInfo;
use crate::store::{Store, StoreError};

/// The problem detail for a wrong password here: the caller named no
/// address, so login's shared "The email or password is wrong." would
/// only puzzle the person.
pub const WRONG_PASSWORD: &str = "The password is wrong.";

/// Why the password was not taken; each feature maps it onto its own
/// error (and so onto the problem catalogue).
#[derive(Debug, thiserror::Error)]
pub enum ReauthError {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error(transparent)]
    Refused(#[from] LoginRefused),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What checking a password again needs.
pub struct Reauth<'a> {
    pub store: &'a Store,
    pub hasher: &'a Hasher,
    pub guard: &'a dyn LoginGuard,
}

impl Reauth<'_> {
    /// Checks `password` as the caller's; returns the stored hash it
    /// matched, so the write that follows can insist it is unchanged.
    pub async fn confirm(
        &self,
        cfg: &Config,
        user: &UserSession,
        password: String,
        client: &ClientInfo,
    ) -> Result<String, ReauthError> {
        let phc = self.check(cfg, user, password, client).await?;
        self.guard.login_succeeded(&normalize_email(&user.facts.email), client, cfg);
        Ok(phc)
    }

    /// As `confirm`, for a change that also asks for a second-factor code:
    /// the right password does not end this address's delay, the code
    /// decides (`code_checked`), as at login — or each right password
    /// would wipe the count of wrong codes before it.
    pub async fn confirm_before_code(
        &self,
        cfg: &Config,
        user: &UserSession,
        password: String,
        client: &ClientInfo,
    ) -> Result<String, ReauthError> {
        self.check(cfg, user, password, client).await
    }

    /// The code after `confirm_before_code`: a wrong one counts like a
    /// wrong password, a right one ends this address's delay.
    pub fn code_checked(&self, cfg: &Config, user: &UserSession, client: &ClientInfo, right: bool) {
        let email = normalize_email(&user.facts.email);
        match right {
            true => self.guard.login_succeeded(&email, client, cfg),
            false => self.guard.login_failed(&email, client, cfg),
        }
    }

    async fn check(
        &self,
        cfg: &Config,
        user: &UserSession,
        password: String,
        client: &ClientInfo,
    ) -> Result<String, ReauthError> {
        reject_oversized("password", &password)?;
        let email = normalize_email(&user.facts.email);
        self.guard.check_login(&email, client, cfg)?;
        let uid = user.user_id.clone();
        let phc =
            self.store.read(move |c| password_hash(c, &uid)).await?.ok_or(ReauthError::InvalidCredentials)?;
        if self.hasher.verify(cfg.passwords.argon2, password, phc.clone()).await?.ok {
            Ok(phc)
        } else {
            self.guard.login_failed(&email, client, cfg);
            Err(ReauthError::InvalidCredentials)
        }
    }
}
