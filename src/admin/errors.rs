//! What can go wrong in an admin call, and which problem each failure is.

use crate::auth::{AuthError, HashError, PolicyError};
use crate::http::problem::{self, FieldError, Kind, ToProblem};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("the daemon is not taking reload requests (stopping?)")]
    DaemonBusy,
    /// A reload's refusal: each fault a line, as check-config tells them.
    #[error("{}\nreload refused: the running config stays", .0.join("\n"))]
    ConfigRejected(Vec<String>),
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
    /// Several fields of one body refused, told in one answer.
    #[error("{}", problem::joined(.0))]
    Several(Vec<AdminError>),
}

impl AdminError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> AdminError {
        AdminError::Invalid { field, message: message.into() }
    }

    /// The refusals among a body's fields, as one error: `Several` when
    /// more than one (call it with at least one; each a 400 refusal).
    pub fn of_fields(found: impl IntoIterator<Item = Option<AdminError>>) -> AdminError {
        problem::of_fields(found, AdminError::Several)
    }
}

impl ToProblem for AdminError {
    fn kind(&self) -> Kind {
        match self {
            AdminError::DaemonBusy => Kind::Unavailable,
            AdminError::ConfigRejected(_) => Kind::ConfigInvalid,
            AdminError::Invalid { .. } | AdminError::Several(_) => Kind::InvalidRequest,
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
            | AdminError::Conflict(_)
            | AdminError::Several(_) => Some(self.to_string()),
            AdminError::Policy(e) => e.detail(),
            _ => None,
        }
    }

    fn field_errors(&self) -> Vec<FieldError> {
        match self {
            AdminError::Invalid { field, message } => FieldError::one(field, message),
            AdminError::Policy(e) => e.field_errors(),
            AdminError::Several(all) => all.iter().flat_map(ToProblem::field_errors).collect(),
            _ => Vec::new(),
        }
    }
}

/// The page a list call asks for (`page` from 1, default 1; `page_size`
/// 1 to 500, default 50), with the refusal of each that is out of range.
pub(super) fn paging(page: Option<i64>, size: Option<i64>) -> ((i64, i64), [Option<AdminError>; 2]) {
    let (page, size) = (page.unwrap_or(1), size.unwrap_or(50));
    let refusals = [
        (page < 1).then(|| AdminError::invalid("page", "must be 1 or more")),
        (!(1..=500).contains(&size)).then(|| AdminError::invalid("page_size", "must be between 1 and 500")),
    ];
    ((page, size), refusals)
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
