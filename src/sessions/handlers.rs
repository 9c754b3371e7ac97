//! HTTP handlers for login, tokens, sessions and the well-known documents.

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::Deps;
use super::queries::SessionView;
use super::second_step::{self, SecondStepRequest};
use super::service::{self, LoginAnswer, LoginRequest, TokenResponse};
use crate::auth::{UserSession, issuer};
use crate::http::{ApiError, ApiJson, ClientInfo, Items, LiveConfig};

type D = web::Data<Deps>;

#[utoipa::path(post, path = "/v1/auth/login", tag = "sessions", request_body = LoginRequest,
    responses((status = 200, description = "A new session and its tokens, or (TOTP on) an mfa_token for the second step",
        body = LoginAnswer)))]
pub async fn login(
    d: D,
    cfg: LiveConfig,
    client: ClientInfo,
    body: ApiJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::login(&d, &cfg, body.0, &client).await?))
}

/// The second step: the `mfa_token` from login and a TOTP or recovery code.
#[utoipa::path(post, path = "/v1/auth/login/mfa", tag = "sessions", request_body = SecondStepRequest,
    responses((status = 200, description = "A new session and its tokens (amr pwd, otp)", body = TokenResponse)))]
pub async fn login_mfa(
    d: D,
    cfg: LiveConfig,
    client: ClientInfo,
    body: ApiJson<SecondStepRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(second_step::login_mfa(&d, &cfg, body.0, &client).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// Rotates the refresh token; a spent one revokes its whole session.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "sessions", request_body = RefreshRequest,
    responses((status = 200, description = "New tokens for the same session", body = TokenResponse)))]
pub async fn refresh(
    d: D,
    cfg: LiveConfig,
    client: ClientInfo,
    body: ApiJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::refresh(&d, &cfg, &body.0.refresh_token, &client).await?))
}

#[utoipa::path(post, path = "/v1/auth/logout", tag = "sessions", security(("bearer" = [])),
    responses((status = 204, description = "This session revoked")))]
pub async fn logout(d: D, user: UserSession, client: ClientInfo) -> Result<HttpResponse, ApiError> {
    service::logout(&d.store, &user, false, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/v1/auth/logout-all", tag = "sessions", security(("bearer" = [])),
    responses((status = 204, description = "Every session of the caller revoked")))]
pub async fn logout_all(d: D, user: UserSession, client: ClientInfo) -> Result<HttpResponse, ApiError> {
    service::logout(&d.store, &user, true, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/v1/auth/sessions", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, description = "The caller's live sessions, newest first: the current one and the newest others, 1,000 at most", body = Items<SessionView>)))]
pub async fn sessions(d: D, user: UserSession) -> Result<HttpResponse, ApiError> {
    let items = service::list(&d.store, &user).await?;
    Ok(HttpResponse::Ok().json(Items { items }))
}

#[utoipa::path(delete, path = "/v1/auth/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = String, Path, description = "A session id of the caller")),
    responses((status = 204, description = "Revoked")))]
pub async fn revoke_session(
    d: D,
    user: UserSession,
    client: ClientInfo,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    service::revoke_own(&d.store, &user, id.into_inner(), &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Apps may cache the key set for 5 minutes; a new key is published before
/// it signs anything, so a cached set never misses a live key.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "sessions",
    responses((status = 200, description = "The public keys access tokens may be signed with (RFC 7517)",
        body = Object)))]
pub async fn jwks(d: D) -> HttpResponse {
    // Apps may cache the JWKS this long; a rotated-in key waits as long
    // before it signs (auth::signing_keys).
    let max_age = format!("public, max-age={}", crate::auth::jwks_max_age());
    HttpResponse::Ok().insert_header((CACHE_CONTROL, max_age)).json(d.signer.jwks())
}

/// Only endpoints that exist are advertised.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "sessions",
    responses((status = 200, description = "Discovery metadata: issuer, jwks_uri, endpoints", body = Object)))]
pub async fn openid_configuration(d: D, cfg: LiveConfig) -> HttpResponse {
    let base = &cfg.public_url;
    HttpResponse::Ok().insert_header((CACHE_CONTROL, "public, max-age=300")).json(json!({
        "issuer": issuer(&cfg),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/v1/auth/login"),
        "introspection_endpoint": format!("{base}/v1/auth/introspect"),
        "id_token_signing_alg_values_supported": [d.signer.algorithm_name()],
        "grant_types_supported": ["password", "refresh_token"],
    }))
}
