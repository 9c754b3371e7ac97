//! HTTP handlers for the account calls of API.md "Accounts".

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::AccountError;
use super::mailer::ByEmail;
use super::service::{self, RegisterRequest};
use super::{Deps, passwords};
use crate::auth::{UserSession, normalize_email, validate_email};
use crate::http::{ApiError, ApiJson, ClientInfo, LiveConfig};

type D = web::Data<Deps>;

pub async fn register(
    d: D,
    cfg: LiveConfig,
    client: ClientInfo,
    body: ApiJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    service::register(&d, &cfg, body.0, &client).await?;
    Ok(HttpResponse::Accepted().json(json!({ "status": "verification_sent" })))
}

#[derive(Deserialize)]
pub struct TokenRequest {
    token: String,
}

pub async fn verify_email(
    d: D,
    client: ClientInfo,
    body: ApiJson<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    service::verify_email(&d.store, &body.0.token, &client).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "verified" })))
}

#[derive(Deserialize)]
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
    let email = validate_email(email)?;
    if matches!(what, ByEmail::PasswordReset) {
        // A credential attempt by email: the per-email limit applies.
        d.defense.check_account(&normalize_email(&email)).map_err(AccountError::from)?;
    }
    d.mailer.offer(email, what, client, cfg.0);
    Ok(HttpResponse::Accepted().json(json!({ "status": "accepted" })))
}

pub async fn resend(
    d: D,
    cfg: LiveConfig,
    client: ClientInfo,
    body: ApiJson<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    accept_by_email(d, cfg, client, &body.0.email, ByEmail::ResendVerification)
}

pub async fn forgot(
    d: D,
    cfg: LiveConfig,
    client: ClientInfo,
    body: ApiJson<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    accept_by_email(d, cfg, client, &body.0.email, ByEmail::PasswordReset)
}

#[derive(Deserialize)]
pub struct ResetRequest {
    token: String,
    new_password: String,
}

pub async fn reset(
    d: D,
    cfg: LiveConfig,
    client: ClientInfo,
    body: ApiJson<ResetRequest>,
) -> Result<HttpResponse, ApiError> {
    let ResetRequest { token, new_password } = body.0;
    passwords::reset_password(&d, &cfg, &token, new_password, &client).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "password_reset" })))
}

#[derive(Deserialize)]
pub struct ChangeRequest {
    current_password: String,
    new_password: String,
}

pub async fn change(
    d: D,
    cfg: LiveConfig,
    user: UserSession,
    client: ClientInfo,
    body: ApiJson<ChangeRequest>,
) -> Result<HttpResponse, ApiError> {
    let ChangeRequest { current_password, new_password } = body.0;
    passwords::change_password(&d, &cfg, &user, current_password, new_password, &client).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "password_changed" })))
}

pub async fn me(d: D, user: UserSession) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::me(&d.store, &user).await?))
}

#[derive(Deserialize)]
pub struct DeleteRequest {
    password: String,
}

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
