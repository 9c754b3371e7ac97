//! RFC 9457 problem documents and the one place that knows HTTP status codes
//! for errors: the catalogue of problem kinds (one per API.md slug, with its
//! status, title and default detail). Features never name a status: each
//! implements `ToProblem` for its own error, saying which `Kind` it is, and
//! `ApiError` is built from any such error. Internal causes are logged with
//! the request id, never sent.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::store::StoreError;

tokio::task_local! {
    /// The current request's id, set by the request-context middleware so an
    /// error rendered anywhere below it can fill `instance`.
    pub static REQUEST_ID: String;
}

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every kind of problem latch answers with. The slug is stable API (add new
/// ones, never rename); two kinds may share a slug when API.md gives the same
/// failure a different status on different calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    HeadersTooLarge,
    RateLimited,
    Internal,
    Unavailable,
    Overloaded,
    WeakPassword,
    RegistrationClosed,
    /// A one-time token (email verification, password reset): 400.
    InvalidToken,
    /// A refresh token: 401.
    InvalidRefreshToken,
    InvalidCredentials,
    EmailNotVerified,
    AccountDisabled,
    RefreshTokenReused,
    LoginThrottled,
    IpBlocked,
    /// A second step or turning TOTP off: 401.
    InvalidMfa,
    /// Confirming an enrolment: 400.
    InvalidMfaCode,
    MfaAlreadyEnabled,
    ConfigInvalid,
}

/// One row of the catalogue.
pub struct Entry {
    pub status: u16,
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: &'static str,
    /// `Retry-After` seconds every answer of this kind carries.
    pub retry_after: Option<u64>,
}

const fn row(status: u16, slug: &'static str, title: &'static str, detail: &'static str) -> Entry {
    Entry { status, slug, title, detail, retry_after: None }
}

impl Kind {
    /// Every kind, for the catalogue checks in the tests.
    pub const ALL: [Kind; 28] = {
        use Kind::*;
        [
            InvalidRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            MethodNotAllowed,
            RequestTimeout,
            Conflict,
            PayloadTooLarge,
            UnsupportedMediaType,
            HeadersTooLarge,
            RateLimited,
            Internal,
            Unavailable,
            Overloaded,
            WeakPassword,
            RegistrationClosed,
            InvalidToken,
            InvalidRefreshToken,
            InvalidCredentials,
            EmailNotVerified,
            AccountDisabled,
            RefreshTokenReused,
            LoginThrottled,
            IpBlocked,
            InvalidMfa,
            InvalidMfaCode,
            MfaAlreadyEnabled,
            ConfigInvalid,
        ]
    };

    /// The catalogue: status, slug, title and default detail of each kind.
    pub const fn entry(self) -> Entry {
        use Kind::*;
        match self {
            InvalidRequest => {
                row(400, "invalid-request", "Invalid request", "The request could not be understood.")
            }
            Unauthorized => {
                row(401, "unauthorized", "Unauthorized", "A valid bearer credential is required.")
            }
            Forbidden => row(403, "forbidden", "Forbidden", "You may not do this."),
            NotFound => row(404, "not-found", "Not found", "No such resource."),
            MethodNotAllowed => row(
                405,
                "method-not-allowed",
                "Method not allowed",
                "This resource does not take that method.",
            ),
            RequestTimeout => row(408, "request-timeout", "Request timeout", "The request took too long."),
            Conflict => row(409, "conflict", "Conflict", "The request conflicts with the current state."),
            PayloadTooLarge => {
                row(413, "payload-too-large", "Payload too large", "The request body is too large.")
            }
            UnsupportedMediaType => {
                row(415, "unsupported-media-type", "Unsupported media type", "Send application/json.")
            }
            HeadersTooLarge => row(
                431,
                "headers-too-large",
                "Request headers too large",
                "The request line and headers are too large.",
            ),
            RateLimited => row(429, "rate-limited", "Too many requests", "Slow down."),
            Internal => row(500, "internal", "Internal error", "Something went wrong on our side."),
            Unavailable => Entry {
                retry_after: Some(5),
                ..row(503, "unavailable", "Service unavailable", "The service cannot answer right now.")
            },
            Overloaded => Entry {
                retry_after: Some(1),
                ..row(503, "overloaded", "Overloaded", "Too many password checks are waiting; retry shortly.")
            },
            WeakPassword => {
                row(422, "weak-password", "Weak password", "The password does not meet the policy.")
            }
            RegistrationClosed => row(
                403,
                "registration-closed",
                "Registration closed",
                "New accounts are created by administrators.",
            ),
            InvalidToken => {
                row(400, "invalid-token", "Invalid token", "The token is unknown, already used or expired.")
            }
            InvalidRefreshToken => {
                row(401, "invalid-token", "Invalid token", "The token is unknown, expired or revoked.")
            }
            // Security: every login failure shares this one type and detail.
            InvalidCredentials => {
                row(401, "invalid-credentials", "Invalid credentials", "The email or password is wrong.")
            }
            EmailNotVerified => {
                row(403, "email-not-verified", "Email not verified", "Confirm your email address first.")
            }
            AccountDisabled => row(403, "account-disabled", "Account disabled", "This account is disabled."),
            RefreshTokenReused => row(
                401,
                "refresh-token-reused",
                "Refresh token reused",
                "This refresh token was already used; the session has been revoked.",
            ),
            LoginThrottled => row(
                429,
                "login-throttled",
                "Login throttled",
                "Too many failed logins; wait before trying again.",
            ),
            IpBlocked => row(403, "ip-blocked", "Address blocked", "Requests from this address are blocked."),
            InvalidMfa => row(401, "invalid-mfa", "Invalid code", "The code is wrong, used or expired."),
            InvalidMfaCode => row(
                400,
                "invalid-mfa",
                "Invalid code",
                "The code does not match the new secret; check the device clock.",
            ),
            MfaAlreadyEnabled => {
                row(409, "mfa-already-enabled", "Second factor already enabled", "TOTP is already enabled.")
            }
            ConfigInvalid => row(422, "config-invalid", "Config rejected", "The config file is invalid."),
        }
    }

    pub fn status(self) -> StatusCode {
        StatusCode::from_u16(self.entry().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn slug(self) -> &'static str {
        self.entry().slug
    }

    /// The generic kind for a status produced outside our handlers
    /// (routing, method matching, the HTTP codec, timeouts).
    pub fn for_status(status: StatusCode) -> Kind {
        match status.as_u16() {
            400 => Kind::InvalidRequest,
            401 => Kind::Unauthorized,
            403 => Kind::Forbidden,
            404 => Kind::NotFound,
            405 => Kind::MethodNotAllowed,
            408 => Kind::RequestTimeout,
            409 => Kind::Conflict,
            413 => Kind::PayloadTooLarge,
            415 => Kind::UnsupportedMediaType,
            431 => Kind::HeadersTooLarge,
            429 => Kind::RateLimited,
            503 => Kind::Unavailable,
            s if s >= 500 => Kind::Internal,
            _ => Kind::InvalidRequest,
        }
    }
}

/// An error a handler may return: it says which problem it is and, when
/// safe to show, what exactly went wrong. Never the cause chain.
pub trait ToProblem: std::error::Error + Send + Sync + 'static {
    fn kind(&self) -> Kind;
    /// Replaces the kind's default detail; must be safe to show.
    fn detail(&self) -> Option<String> {
        None
    }
    /// Field errors for `errors` (validation failures).
    fn field_errors(&self) -> Vec<FieldError> {
        Vec::new()
    }
    /// Replaces the kind's `Retry-After` (whole seconds).
    fn retry_after(&self) -> Option<u64> {
        None
    }
    /// The `RateLimit-*` headers of the bucket that refused.
    fn rate_limit(&self) -> Option<RateLimitInfo> {
        None
    }
}

/// The `RateLimit-Limit`, `-Remaining` and `-Reset` headers of the tightest
/// bucket that applied to a request (API.md "Client address and defenses").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitInfo {
    pub limit: u32,
    pub remaining: u32,
    /// Whole seconds until the bucket is full again.
    pub reset_secs: u64,
}

impl RateLimitInfo {
    pub fn apply(&self, headers: &mut actix_web::http::header::HeaderMap) {
        use actix_web::http::header::HeaderName;
        for (name, value) in [
            ("ratelimit-limit", self.limit.to_string()),
            ("ratelimit-remaining", self.remaining.to_string()),
            ("ratelimit-reset", self.reset_secs.to_string()),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        }
    }
}

/// Busy or full disk is a 503 the client may retry; anything else is ours.
impl ToProblem for StoreError {
    fn kind(&self) -> Kind {
        if self.is_unavailable() { Kind::Unavailable } else { Kind::Internal }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    /// One field error, as validation failures report them.
    pub fn one(field: &str, message: &str) -> Vec<FieldError> {
        vec![FieldError { field: field.to_string(), message: message.to_string() }]
    }
}

/// The refusals among a request's fields as one error, so that every
/// field at fault is told in one answer: the refusal itself when there is
/// one, else `several` of them (call it with at least one). Each feature's
/// error keeps its own `Several` variant, whose detail is `joined` and
/// whose `errors` are those of each refusal.
pub fn of_fields<E>(found: impl IntoIterator<Item = Option<E>>, several: impl FnOnce(Vec<E>) -> E) -> E {
    let mut all: Vec<E> = found.into_iter().flatten().collect();
    if all.len() == 1 { all.remove(0) } else { several(all) }
}

/// Whether text the client sent may be told back in a problem (a CORS
/// origin, a key that is no field): short printable ASCII, spaces allowed
/// as between listed names.
pub fn echoable(text: &str) -> bool {
    text.len() <= 200 && text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

/// Several refusals' words, as a `Several` error's detail.
pub fn joined<E: std::fmt::Display>(all: &[E]) -> String {
    all.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// One problem document.
#[derive(Debug, Clone)]
pub struct Problem {
    pub kind: Kind,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after: Option<u64>,
    pub rate_limit: Option<RateLimitInfo>,
}

/// The body of every error answer (RFC 9457).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProblemBody<'a> {
    /// `urn:latch:problem:<slug>`, one per entry of API.md's catalogue.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    /// The request id, as in the `X-Request-Id` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    /// Which fields of the request were wrong, and why.
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    #[schema(value_type = Vec<FieldError>)]
    errors: &'a [FieldError],
}

impl Problem {
    /// The problem of `kind` with its catalogue detail and Retry-After.
    pub fn new(kind: Kind) -> Self {
        let e = kind.entry();
        Problem {
            kind,
            detail: e.detail.to_string(),
            errors: Vec::new(),
            retry_after: e.retry_after,
            rate_limit: None,
        }
    }

    pub fn for_status(status: StatusCode) -> Self {
        Problem::new(Kind::for_status(status))
    }

    /// 400 `invalid-request` about one field: `field: message` as the
    /// detail and the one entry of `errors`.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let (field, message) = (field.into(), message.into());
        Problem::new(Kind::InvalidRequest)
            .with_detail(format!("{field}: {message}"))
            .with_errors(vec![FieldError { field, message }])
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn with_rate_limit(mut self, info: RateLimitInfo) -> Self {
        self.rate_limit = Some(info);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The document as sent: JSON bytes, with the request id when there is one.
    pub fn json(&self) -> Vec<u8> {
        let entry = self.kind.entry();
        let body = ProblemBody {
            kind: format!("urn:latch:problem:{}", entry.slug),
            title: entry.title,
            status: entry.status,
            detail: &self.detail,
            instance: REQUEST_ID.try_with(Clone::clone).ok(),
            errors: &self.errors,
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    pub fn into_response(self) -> HttpResponse {
        let body = self.json();
        let mut res = HttpResponse::build(self.kind.status());
        res.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        // RFC 6750 §3: a missing or bad bearer credential names the scheme.
        if self.kind == Kind::Unauthorized {
            res.insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#));
        }
        let mut res = res.body(body);
        if let Some(info) = self.rate_limit {
            info.apply(res.headers_mut());
        }
        res.extensions_mut().insert(self.kind);
        res
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.kind.entry().status, self.kind.slug(), self.detail)
    }
}

/// What every handler returns on failure: the problem to send and, for
/// server errors, the cause to log (never sent); for a person's form, the
/// page that explains it instead (a browser shows problem JSON as text).
#[derive(Debug)]
pub struct ApiError {
    problem: Problem,
    cause: Option<Box<str>>,
    page: Option<Box<(&'static str, String)>>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{}: {cause}", self.problem),
            None => self.problem.fmt(f),
        }
    }
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        ApiError { problem, cause: None, page: None }
    }
}

impl<E: ToProblem> From<E> for ApiError {
    fn from(e: E) -> Self {
        let kind = e.kind();
        let mut problem = Problem::new(kind).with_errors(e.field_errors());
        if let Some(detail) = e.detail() {
            problem.detail = detail;
        }
        if let Some(secs) = e.retry_after() {
            problem.retry_after = Some(secs);
        }
        problem.rate_limit = e.rate_limit();
        let cause = kind.status().is_server_error().then(|| cause_chain(&e).into_boxed_str());
        ApiError { problem, cause, page: None }
    }
}

/// `e` and its sources on one line, for the log.
fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl ApiError {
    /// `problem`, answered as the HTML `body` with its own `csp`.
    pub fn page(problem: Problem, csp: &'static str, body: String) -> ApiError {
        ApiError { problem, cause: None, page: Some(Box::new((csp, body))) }
    }

    pub fn problem(&self) -> &Problem {
        &self.problem
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.problem.status()
    }

    fn error_response(&self) -> HttpResponse {
        // An overloaded refusal is the pool doing its job, one per request
        // under a flood: the access log has each; an error line would not
        // tell the operator anything more and would cost the CPU it saves.
        if self.problem.status().is_server_error() && self.problem.kind != Kind::Overloaded {
            let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
            tracing::error!(request_id, error = %self, "request failed");
        }
        if let Some(page) = &self.page {
            return html_page(Some(self.problem.kind), page.0, page.1.clone());
        }
        self.problem.clone().into_response()
    }
}

/// An HTML page for a person: 200, or the status of `refused` (a page
/// explaining why a form was refused), with the page's own CSP. Like a
/// problem answer, it carries its kind for the gate (`answered_kind`).
pub fn html_page(refused: Option<Kind>, csp: &'static str, body: String) -> HttpResponse {
    let mut res = HttpResponse::build(refused.map_or(StatusCode::OK, Kind::status))
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .body(body);
    if let Some(kind) = refused {
        res.extensions_mut().insert(kind);
    }
    res
}

/// The problem kind a response answered (problem JSON or a refused page),
/// so the gate can tell a dead link from a mistyped form: both are 400.
pub fn answered_kind<B>(res: &HttpResponse<B>) -> Option<Kind> {
    res.extensions().get::<Kind>().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_valid_and_only_shared_slugs_repeat() {
        for kind in Kind::ALL {
            assert_eq!(kind.status().as_u16(), kind.entry().status, "{kind:?}");
            let same: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.slug() == kind.slug()).collect();
            let shared = ["invalid-token", "invalid-mfa"].contains(&kind.slug());
            assert!(same.len() == 1 || shared, "{same:?}");
        }
        assert_eq!(Kind::for_status(StatusCode::NOT_FOUND), Kind::NotFound);
        assert_eq!(Kind::for_status(StatusCode::BAD_GATEWAY), Kind::Internal);
    }
}
