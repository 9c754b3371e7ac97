//! What can go wrong in login, refresh and session management, and which
//! problem each failure is.

use crate::auth::{HashError, LoginRefused, PolicyError, SigningError};
use crate::http::problem::{FieldError, Kind, RateLimitInfo, ToProblem};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("email address not verified")]
    EmailNotVerified,
    #[error("account disabled")]
    AccountDisabled,
    #[error("invalid or expired refresh token")]
    InvalidToken,
    #[error("refresh token reused; session revoked")]
    RefreshReused,
    #[error("no such session")]
    NotFound,
    #[error("wrong code, or a spent, expired or foreign mfa_token")]
    InvalidMfa,
    #[error("send exactly one of code and recovery_code")]
    OneProof,
    #[error(transparent)]
    Refused(#[from] LoginRefused),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Email(#[from] crate::email::EmailError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl ToProblem for SessionError {
    fn kind(&self) -> Kind {
        match self {
            SessionError::InvalidCredentials => Kind::InvalidCredentials,
            SessionError::EmailNotVerified => Kind::EmailNotVerified,
            SessionError::AccountDisabled => Kind::AccountDisabled,
            SessionError::InvalidToken => Kind::InvalidRefreshToken,
            SessionError::RefreshReused => Kind::RefreshTokenReused,
            SessionError::NotFound => Kind::NotFound,
            SessionError::InvalidMfa => Kind::InvalidMfa,
            SessionError::OneProof => Kind::InvalidRequest,
            SessionError::Refused(e) => e.kind(),
            SessionError::Policy(e) => e.kind(),
            SessionError::Hash(e) => e.kind(),
            SessionError::Store(e) => e.kind(),
            SessionError::Signing(_) | SessionError::Key(_) | SessionError::Email(_) => Kind::Internal,
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            SessionError::Policy(e) => e.detail(),
            _ => None,
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            SessionError::OneProof => FieldError::one("code", "send exactly one of code and recovery_code"),
            SessionError::Policy(e) => e.field_errors(),
            _ => Vec::new(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            SessionError::Refused(e) => e.retry_after(),
            _ => None,
        }
    }

    fn rate_limit(&self) -> Option<RateLimitInfo> {
        match self {
            SessionError::Refused(e) => e.rate_limit(),
            _ => None,
        }
    }
}
