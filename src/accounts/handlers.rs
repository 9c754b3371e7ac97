//! HTTP handlers for the account calls of API.md "Accounts".

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use tokio_util::task::TaskTracker;

use super::Hasher;
use super::policy::{BreachedList, validate_email};
use super::service::{self, ByEmail, Deps, RegisterRequest};
use crate::config::Config;
use crate::email::Outbox;
use crate::http::{ApiError, ApiJson, AppState, ClientInfo, Problem};
use crate::keys::MasterKey;
use crate::sessions::Authenticated;

/// The services account handlers share, taken from app data in one go.
pub struct Ctx {
    state: web::Data<AppState>,
    hasher: web::Data<Hasher>,
    key: web::Data<MasterKey>,
    outbox: web::Data<Outbox>,
    breached: web::Data<BreachedList>,
    tasks: web::Data<TaskTracker>,
    cfg: Arc<Config>,
}

impl Ctx {
    fn deps(&self) -> Deps<'_> {
        Deps {
            store: &self.state.store,
            hasher: &self.hasher,
            key: &self.key,
            outbox: &self.outbox,
            breached: &self.breached,
            cfg: &self.cfg,
        }
    }
}

impl FromRequest for Ctx {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ctx = (|| {
            let state = req.app_data::<web::Data<AppState>>()?.clone();
            let cfg = state.config.load_full();
            Some(Ctx {
                hasher: req.app_data::<web::Data<Hasher>>()?.clone(),
                key: req.app_data::<web::Data<MasterKey>>()?.clone(),
                outbox: req.app_data::<web::Data<Outbox>>()?.clone(),
                breached: req.app_data::<web::Data<BreachedList>>()?.clone(),
                tasks: req.app_data::<web::Data<TaskTracker>>()?.clone(),
                state,
                cfg,
            })
        })();
        ready(ctx.ok_or_else(|| Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR).into()))
    }
}

pub async fn register(
    ctx: Ctx,
    client: ClientInfo,
    body: ApiJson<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    service::register(&ctx.deps(), body.0, &client).await?;
    Ok(HttpResponse::Accepted().json(json!({ "status": "verification_sent" })))
}

#[derive(Deserialize)]
pub struct TokenRequest {
    token: String,
}

pub async fn verify_email(
    ctx: Ctx,
    client: ClientInfo,
    body: ApiJson<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    service::verify_email(&ctx.state.store, &body.0.token, &client).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "verified" })))
}

#[derive(Deserialize)]
pub struct EmailRequest {
    email: String,
}

/// Answers 202 once the input is valid; the work runs afterwards.
fn accept_by_email(
    ctx: Ctx,
    client: ClientInfo,
    email: &str,
    what: ByEmail,
) -> Result<HttpResponse, ApiError> {
    let email = validate_email(email)?;
    let tasks = ctx.tasks.clone();
    tasks.spawn(async move {
        if let Err(e) = service::send_by_email(&ctx.deps(), email, what, client).await {
            tracing::warn!(error = %e, "queued account email failed");
        }
    });
    Ok(HttpResponse::Accepted().json(json!({ "status": "accepted" })))
}

pub async fn resend(
    ctx: Ctx,
    client: ClientInfo,
    body: ApiJson<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    accept_by_email(ctx, client, &body.0.email, ByEmail::ResendVerification)
}

pub async fn forgot(
    ctx: Ctx,
    client: ClientInfo,
    body: ApiJson<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    accept_by_email(ctx, client, &body.0.email, ByEmail::PasswordReset)
}

#[derive(Deserialize)]
pub struct ResetRequest {
    token: String,
    new_password: String,
}

pub async fn reset(
    ctx: Ctx,
    client: ClientInfo,
    body: ApiJson<ResetRequest>,
) -> Result<HttpResponse, ApiError> {
    let ResetRequest { token, new_password } = body.0;
    service::reset_password(&ctx.deps(), &token, new_password, &client).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "password_reset" })))
}

#[derive(Deserialize)]
pub struct ChangeRequest {
    current_password: String,
    new_password: String,
}

pub async fn change(
    ctx: Ctx,
    auth: Authenticated,
    client: ClientInfo,
    body: ApiJson<ChangeRequest>,
) -> Result<HttpResponse, ApiError> {
    let ChangeRequest { current_password, new_password } = body.0;
    service::change_password(&ctx.deps(), &auth, current_password, new_password, &client).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "password_changed" })))
}

pub async fn me(ctx: Ctx, auth: Authenticated) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::me(&ctx.state.store, &auth).await?))
}

#[derive(Deserialize)]
pub struct DeleteRequest {
    password: String,
}

pub async fn delete_me(
    ctx: Ctx,
    auth: Authenticated,
    client: ClientInfo,
    body: ApiJson<DeleteRequest>,
) -> Result<HttpResponse, ApiError> {
    service::delete_me(&ctx.deps(), &auth, body.0.password, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}
