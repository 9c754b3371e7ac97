//! What can go wrong while enrolling, confirming or turning off TOTP, and
//! which problem each failure is.

use crate::auth::second_factor::SecondFactorError;
use crate::auth::{HashError, LoginRefused, PolicyError, ReauthError, WRONG_PASSWORD};
use crate::http::problem::{FieldError, Kind, RateLimitInfo, ToProblem};

#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    #[error("TOTP is already enabled")]
    AlreadyEnabled,
    #[error("TOTP is not enabled")]
    NotEnabled,
    #[error("no enrolment is waiting for confirmation; enrol first")]
    NothingToConfirm,
    #[error("the code does not match the new secret")]
    WrongConfirmCode,
    #[error("the code or recovery code is wrong or used")]
    WrongCode,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("send exactly one of code and recovery_code")]
    OneProof,
    #[error("could not draw the QR code: {0}")]
    Qr(String),
    #[error(transparent)]
    SecondFactor(#[from] SecondFactorError),
    #[error(transparent)]
    Refused(#[from] LoginRefused),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Email(#[from] crate::email::EmailError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<ReauthError> for MfaError {
    fn from(e: ReauthError) -> Self {
        match e {
            ReauthError::InvalidCredentials => MfaError::InvalidCredentials,
            ReauthError::Refused(e) => MfaError::Refused(e),
            ReauthError::Policy(e) => MfaError::Policy(e),
            ReauthError::Hash(e) => MfaError::Hash(e),
            ReauthError::Store(e) => MfaError::Store(e),
        }
    }
}

impl ToProblem for MfaError {
    fn kind(&self) -> Kind {
        match self {
            MfaError::AlreadyEnabled => Kind::MfaAlreadyEnabled,
            MfaError::NotEnabled => Kind::Conflict,
            MfaError::NothingToConfirm | MfaError::WrongConfirmCode => Kind::InvalidMfaCode,
            MfaError::WrongCode => Kind::InvalidMfa,
            MfaError::InvalidCredentials => Kind::InvalidCredentials,
            MfaError::OneProof => Kind::InvalidRequest,
            MfaError::Refused(e) => e.kind(),
            MfaError::Policy(e) => e.kind(),
            MfaError::Hash(e) => e.kind(),
            MfaError::Store(e) => e.kind(),
            MfaError::Qr(_) | MfaError::SecondFactor(_) | MfaError::Key(_) | MfaError::Email(_) => {
                Kind::Internal
            }
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            MfaError::NotEnabled | MfaError::NothingToConfirm => Some(self.to_string()),
            MfaError::Policy(e) => e.detail(),
            MfaError::InvalidCredentials => Some(WRONG_PASSWORD.to_string()),
            _ => None,
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            MfaError::OneProof => FieldError::one("code", "send exactly one of code and recovery_code"),
            MfaError::Policy(e) => e.field_errors(),
            _ => Vec::new(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            MfaError::Refused(e) => e.retry_after(),
            _ => None,
        }
    }

    fn rate_limit(&self) -> Option<RateLimitInfo> {
        match self {
            MfaError::Refused(e) => e.rate_limit(),
            _ => None,
        }
    }
}
