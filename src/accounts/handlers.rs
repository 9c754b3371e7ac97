//! HTTP handlers for the account calls of API.md "Accounts".

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::mailer::ByEmail;
use super::queries::Me;
use super::service::{self, RegisterRequest};
use super::{Deps, address, passwords};
use crate::auth::UserSession;
use crate::http::{ApiError, ApiJson, ClientInfo, LiveConfig, StatusBody};

type D = web::Data<Deps>;

/// Creates an account and mails a verification link. An email already
/// registered gets the same answer (its owner is told instead).
#[utoipa::path(post, path = "/v1/auth/register", tag = "accounts", request_body = RegisterRequest,
    responses((status = 202, description = "Verification mail queued", body = StatusBody)))]
pub async fn register(
    d: D,
    cfg: LiveConfig,
    client: ClientInfo,
    body: ApiJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    service::register(&d, &cfg, body.0, &client).await?;
    Ok(HttpResponse::Accepted().json(StatusBody::of("verification_sent")))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    token: String,
}

#[utoipa::path(post, path = "/v1/auth/verify-email", tag = "accounts", request_body = TokenRequest,
    responses((status = 200, description = "Email verified", body = StatusBody)))]
pub async fn verify_email(
    d: D,
    client: ClientInfo,
    body: ApiJson<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    service::verify_email(&d.store, &body.0.token, &client).await?;
    Ok(HttpResponse::Ok().json(StatusBody::of("verified")))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct EmailRequest {
    email: String,
}

/// Answers 202 once the input is valid; the work runs afterwards.
fn accept_by_email(
    d: D,
    cfg: LiveConfig,
    client: ClientInfo,
    email: &str,
    what: ByEmail,
) -> Result<HttpResponse, ApiError> {
    service::by_email(&d, &cfg.0, email, what, &client)?;
    Ok(HttpResponse::Accepted().json(StatusBody::of("accepted")))
}

/// Always 202 for a valid address, known or not.
#[utoipa::path(post, path = "/v1/auth/verify-email/resend", tag = "accounts", request_body = EmailRequest,
    responses((status = 202, description = "Accepted", body = StatusBody)))]
pub async fn resend(
    d: D,
    cfg: LiveConfig,
    client: ClientInfo,
    body: ApiJson<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    accept_by_email(d, cfg, client, &body.0.email, ByEmail::ResendVerification)
}

/// Always 202 for a valid address, known or not.
#[utoipa::path(post, path = "/v1/auth/password/forgot", tag = "accounts", request_body = EmailRequest,
    responses((status = 202, description = "Accepted", body = StatusBody)))]
pub async fn forgot(
    d: D,
    cfg: LiveConfig,
    client: ClientInfo,
    body: ApiJson<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    accept_by_email(d, cfg, client, &body.0.email, ByEmail::PasswordReset)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ResetRequest {
    token: String,
    new_password: String,
}

#[utoipa::path(post, path = "/v1/auth/password/reset", tag = "accounts", request_body = ResetRequest,
    responses((status = 200, description = "Password set; every session revoked", body = StatusBody)))]
pub async fn reset(
    d: D,
    cfg: LiveConfig,
    client: ClientInfo,
    body: ApiJson<ResetRequest>,
) -> Result<HttpResponse, ApiError> {
    let ResetRequest { token, new_password } = body.0;
    passwords::reset_password(&d, &cfg, &token, new_password, &client).await?;
    Ok(HttpResponse::Ok().json(StatusBody::of("password_reset")))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ChangeRequest {
    current_password: String,
    new_password: String,
}

#[utoipa::path(post, path = "/v1/auth/password/change", tag = "accounts", request_body = ChangeRequest,
    security(("bearer" = [])),
    responses((status = 200, description = "Password changed; other sessions revoked", body = StatusBody)))]
pub async fn change(
    d: D,
    cfg: LiveConfig,
    user: UserSession,
    client: ClientInfo,
    body: ApiJson<ChangeRequest>,
) -> Result<HttpResponse, ApiError> {
    let ChangeRequest { current_password, new_password } = body.0;
    passwords::change_password(&d, &cfg, &user, current_password, new_password, &client).await?;
    Ok(HttpResponse::Ok().json(StatusBody::of("password_changed")))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct EmailChangeRequest {
    password: String,
    new_email: String,
}

/// Mails the new address a link that makes the change; the account keeps
/// its address until the link is opened (`POST /v1/auth/verify-email`).
#[utoipa::path(post, path = "/v1/auth/email/change", tag = "accounts", request_body = EmailChangeRequest,
    security(("bearer" = [])),
    responses((status = 202, description = "Link mailed to the new address", body = StatusBody)))]
pub async fn change_email(
    d: D,
    cfg: LiveConfig,
    user: UserSession,
    client: ClientInfo,
    body: ApiJson<EmailChangeRequest>,
) -> Result<HttpResponse, ApiError> {
    let EmailChangeRequest { password, new_email } = body.0;
    address::request_change(&d, &cfg, &user, password, &new_email, &client).await?;
    Ok(HttpResponse::Accepted().json(StatusBody::of("verification_sent")))
}

#[utoipa::path(get, path = "/v1/auth/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, description = "The caller's account", body = Me)))]
pub async fn me(user: UserSession) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::me(&user)))
}

/// `name` must be present: a body without it (`{}`, or a misspelt key)
/// would otherwise read as `null` and erase the stored name.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// The new display name; `null` or blank removes it.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true)]
    name: Option<String>,
}

/// Changes the caller's display name (beyond API.md).
#[utoipa::path(patch, path = "/v1/auth/me", tag = "accounts", request_body = RenameRequest,
    security(("bearer" = [])), responses((status = 200, description = "The caller's account", body = Me)))]
pub async fn rename(
    d: D,
    user: UserSession,
    client: ClientInfo,
    body: ApiJson<RenameRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::rename(&d.store, &user, body.0.name, &client).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct DeleteRequest {
    password: String,
}

#[utoipa::path(delete, path = "/v1/auth/me", tag = "accounts", request_body = DeleteRequest,
    security(("bearer" = [])), responses((status = 204, description = "Account, sessions and tokens deleted")))]
pub async fn delete_me(
    d: D,
    cfg: LiveConfig,
    user: UserSession,
    client: ClientInfo,
    body: ApiJson<DeleteRequest>,
) -> Result<HttpResponse, ApiError> {
    service::delete_me(&d, &cfg, &user, body.0.password, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}
