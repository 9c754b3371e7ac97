//! What can go wrong in an admin call, and which problem each failure is.

use crate::auth::{AuthError, HashError, PolicyError};
use crate::http::problem::{FieldError, Kind, ToProblem};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("the daemon is not taking reload requests (stopping?)")]
    DaemonBusy,
    #[error("{0}; the running config stays")]
    ConfigRejected(String),
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Email(#[from] crate::email::EmailError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Signing(#[from] crate::auth::SigningError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl AdminError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> AdminError {
        AdminError::Invalid { field, message: message.into() }
    }
}

impl ToProblem for AdminError {
    fn kind(&self) -> Kind {
        match self {
            AdminError::DaemonBusy => Kind::Unavailable,
            AdminError::ConfigRejected(_) => Kind::ConfigInvalid,
            AdminError::Invalid { .. } => Kind::InvalidRequest,
            AdminError::NotFound(_) => Kind::NotFound,
            AdminError::Conflict(_) => Kind::Conflict,
            AdminError::Auth(e) => e.kind(),
            AdminError::Policy(e) => e.kind(),
            AdminError::Hash(e) => e.kind(),
            AdminError::Store(e) => e.kind(),
            AdminError::Email(_) | AdminError::Key(_) | AdminError::Signing(_) => Kind::Internal,
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            AdminError::ConfigRejected(_)
            | AdminError::Invalid { .. }
            | AdminError::NotFound(_)
            | AdminError::Conflict(_) => Some(self.to_string()),
            AdminError::Policy(e) => e.detail(),
            _ => None,
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            AdminError::Invalid { field, message } => FieldError::one(field, message),
            AdminError::Policy(e) => e.field_errors(),
            _ => Vec::new(),
        }
    }
}

/// Inside a write: refuses (and so rolls back) the change with `e`.
pub(super) fn refuse(e: AdminError) -> StoreError {
    StoreError::Refused(Box::new(e))
}

/// The admin error a refused write carried, or the store's own.
pub(super) fn refusal(e: StoreError) -> AdminError {
    match e {
        StoreError::Refused(reason) => match reason.downcast::<AdminError>() {
            Ok(admin) => *admin,
            Err(other) => AdminError::Store(StoreError::Refused(other)),
        },
        other => AdminError::Store(other),
    }
}
