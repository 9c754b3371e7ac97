//! What can go wrong in an account flow, and which problem each failure is.

use crate::auth::{HashError, LoginRefused, PolicyError, ReauthError, WRONG_PASSWORD};
use crate::http::problem::{FieldError, Kind, RateLimitInfo, ToProblem};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("invalid, used or expired token")]
    InvalidToken,
    #[error("registration is closed")]
    RegistrationClosed,
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Why, as `validate_email` says it of an `email` field.
    #[error("new_email: {0}")]
    InvalidNewAddress(&'static str),
    #[error("new_email: is already the account's address")]
    AddressUnchanged,
    #[error("Another account has taken this address since the link was sent.")]
    AddressTaken,
    #[error(
        "This is the last active admin account: give another account the admin role first (latchctl users add-role EMAIL admin)."
    )]
    LastAdmin,
    #[error(transparent)]
    Refused(#[from] LoginRefused),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Email(#[from] crate::email::EmailError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<ReauthError> for AccountError {
    fn from(e: ReauthError) -> Self {
        match e {
            ReauthError::InvalidCredentials => AccountError::InvalidCredentials,
            ReauthError::Refused(e) => AccountError::Refused(e),
            ReauthError::Policy(e) => AccountError::Policy(e),
            ReauthError::Hash(e) => AccountError::Hash(e),
            ReauthError::Store(e) => AccountError::Store(e),
        }
    }
}

impl ToProblem for AccountError {
    fn kind(&self) -> Kind {
        match self {
            AccountError::InvalidToken => Kind::InvalidToken,
            AccountError::RegistrationClosed => Kind::RegistrationClosed,
            AccountError::InvalidCredentials => Kind::InvalidCredentials,
            AccountError::InvalidNewAddress(_) | AccountError::AddressUnchanged => Kind::InvalidRequest,
            AccountError::AddressTaken | AccountError::LastAdmin => Kind::Conflict,
            AccountError::Refused(e) => e.kind(),
            AccountError::Policy(e) => e.kind(),
            AccountError::Hash(e) => e.kind(),
            AccountError::Store(e) => e.kind(),
            AccountError::Email(_) | AccountError::Key(_) => Kind::Internal,
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            AccountError::Policy(e) => e.detail(),
            // Only a password asked again is wrong here (login is sessions').
            AccountError::InvalidCredentials => Some(WRONG_PASSWORD.to_string()),
            AccountError::InvalidNewAddress(_)
            | AccountError::AddressUnchanged
            | AccountError::AddressTaken
            | AccountError::LastAdmin => Some(self.to_string()),
            _ => None,
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            AccountError::Policy(e) => e.field_errors(),
            AccountError::InvalidNewAddress(why) => FieldError::one("new_email", why),
            AccountError::AddressUnchanged => {
                FieldError::one("new_email", "is already the account's address")
            }
            _ => Vec::new(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            AccountError::Refused(e) => e.retry_after(),
            _ => None,
        }
    }

    fn rate_limit(&self) -> Option<RateLimitInfo> {
        match self {
            AccountError::Refused(e) => e.rate_limit(),
            _ => None,
        }
    }
}
