//! RFC 9457 problem documents and the one place that maps errors to HTTP
//! status codes. Internal causes are logged with the request id, never sent.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::accounts::{AccountError, HashError};
use crate::sessions::AuthError;
use crate::store::StoreError;

tokio::task_local! {
    /// The current request's id, set by the request-context middleware so an
    /// error rendered anywhere below it can fill `instance`.
    pub static REQUEST_ID: String;
}

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, Clone, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// One problem document. `slug` is the stable part of `type`.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem { status, slug, title, detail: detail.into(), errors: Vec::new(), retry_after: None }
    }

    /// The generic problem for a status produced outside our handlers
    /// (routing, method matching, the HTTP codec).
    pub fn for_status(status: StatusCode) -> Self {
        let (slug, title, detail) = match status.as_u16() {
            400 => ("invalid-request", "Invalid request", "The request could not be understood."),
            401 => ("unauthorized", "Unauthorized", "A valid bearer credential is required."),
            403 => ("forbidden", "Forbidden", "You may not do this."),
            404 => ("not-found", "Not found", "No such resource."),
            405 => ("method-not-allowed", "Method not allowed", "This resource does not take that method."),
            408 => ("request-timeout", "Request timeout", "The request took too long."),
            409 => ("conflict", "Conflict", "The request conflicts with the current state."),
            413 => ("payload-too-large", "Payload too large", "The request body is too large."),
            415 => ("unsupported-media-type", "Unsupported media type", "Send application/json."),
            429 => ("rate-limited", "Too many requests", "Slow down."),
            503 => ("unavailable", "Service unavailable", "The service cannot answer right now."),
            s if s >= 500 => ("internal", "Internal error", "Something went wrong on our side."),
            _ => ("invalid-request", "Invalid request", "The request could not be handled."),
        };
        Problem::new(status, slug, title, detail)
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn into_response(self) -> HttpResponse {
        let body = Body {
            kind: format!("urn:latch:problem:{}", self.slug),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            instance: REQUEST_ID.try_with(Clone::clone).ok(),
            errors: &self.errors,
        };
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.slug == "unauthorized" {
            res.insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#));
        }
        res.body(serde_json::to_vec(&body).unwrap_or_default())
    }
}

/// Every error a handler can return. Features add their own variants here;
/// only this file decides what they look like on the wire.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Problem(Box<Problem>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

fn field(field: &str, message: &str) -> Vec<FieldError> {
    vec![FieldError { field: field.to_string(), message: message.to_string() }]
}

fn store_problem(e: &StoreError) -> Problem {
    if e.is_unavailable() {
        Problem::for_status(StatusCode::SERVICE_UNAVAILABLE).with_retry_after(5)
    } else {
        Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

fn hash_problem(e: &HashError) -> Problem {
    match e {
        HashError::Overloaded => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Overloaded",
            "Too many password checks are waiting; retry shortly.",
        )
        .with_retry_after(1),
        _ => Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

// Security: every login failure shares this one type and detail.
fn invalid_credentials() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid-credentials",
        "Invalid credentials",
        "The email or password is wrong.",
    )
}

fn account_problem(e: &AccountError) -> Problem {
    use AccountError::*;
    match e {
        WeakPassword { field: f, reason } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak-password",
            "Weak password",
            format!("{f}: {reason}"),
        )
        .with_errors(field(f, reason)),
        InvalidEmail => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            "email: not a valid address",
        )
        .with_errors(field("email", "not a valid address")),
        TooLong { field: f } => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            format!("{f}: longer than 1 KiB"),
        )
        .with_errors(field(f, "longer than 1 KiB")),
        InvalidToken => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-token",
            "Invalid token",
            "The token is unknown, already used or expired.",
        ),
        RegistrationClosed => Problem::new(
            StatusCode::FORBIDDEN,
            "registration-closed",
            "Registration closed",
            "New accounts are created by administrators.",
        ),
        InvalidCredentials => invalid_credentials(),
        Hash(h) => hash_problem(h),
        Store(s) => store_problem(s),
        Email(_) | Key(_) => Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

fn auth_problem(e: &AuthError) -> Problem {
    use AuthError::*;
    let p = |status, slug, title, detail: &str| Problem::new(status, slug, title, detail);
    match e {
        InvalidCredentials => invalid_credentials(),
        EmailNotVerified => p(
            StatusCode::FORBIDDEN,
            "email-not-verified",
            "Email not verified",
            "Confirm your email address first.",
        ),
        AccountDisabled => {
            p(StatusCode::FORBIDDEN, "account-disabled", "Account disabled", "This account is disabled.")
        }
        InvalidToken => p(
            StatusCode::UNAUTHORIZED,
            "invalid-token",
            "Invalid token",
            "The token is unknown, expired or revoked.",
        ),
        RefreshReused => p(
            StatusCode::UNAUTHORIZED,
            "refresh-token-reused",
            "Refresh token reused",
            "This refresh token was already used; the session has been revoked.",
        ),
        Unauthorized => Problem::for_status(StatusCode::UNAUTHORIZED),
        NotFound => Problem::for_status(StatusCode::NOT_FOUND),
        Account(a) => account_problem(a),
        Hash(h) => hash_problem(h),
        Store(s) => store_problem(s),
        Signing(_) | Key(_) => Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.slug, self.detail)
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        ApiError::Problem(Box::new(p))
    }
}

impl ApiError {
    fn problem(&self) -> Problem {
        match self {
            ApiError::Problem(p) => (**p).clone(),
            ApiError::Store(e) => store_problem(e),
            ApiError::Account(e) => account_problem(e),
            ApiError::Auth(e) => auth_problem(e),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.problem().status
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.problem();
        if problem.status.is_server_error() {
            let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
            tracing::error!(request_id, error = %self, "request failed");
        }
        problem.into_response()
    }
}
