//! HTTP handlers for login, tokens, sessions and the well-known documents.

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::Deps;
use super::service::{self, LoginRequest};
use crate::auth::{UserSession, issuer};
use crate::http::{ApiError, ApiJson, ClientInfo, LiveConfig};

type D = web::Data<Deps>;

pub async fn login(
    d: D,
    cfg: LiveConfig,
    client: ClientInfo,
    body: ApiJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::login(&d, &cfg, body.0, &client).await?))
}

#[derive(Deserialize)]
pub struct RefreshRequest {
    refresh_token: String,
}

pub async fn refresh(
    d: D,
    cfg: LiveConfig,
    client: ClientInfo,
    body: ApiJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::refresh(&d, &cfg, &body.0.refresh_token, &client).await?))
}

pub async fn logout(d: D, user: UserSession, client: ClientInfo) -> Result<HttpResponse, ApiError> {
    service::logout(&d.store, &user, false, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn logout_all(d: D, user: UserSession, client: ClientInfo) -> Result<HttpResponse, ApiError> {
    service::logout(&d.store, &user, true, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn sessions(d: D, user: UserSession) -> Result<HttpResponse, ApiError> {
    let items = service::list(&d.store, &user).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

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
pub async fn jwks(d: D) -> HttpResponse {
    // Apps may cache the JWKS this long; a rotated-in key waits as long
    // before it signs (auth::signing_keys).
    let max_age = format!("public, max-age={}", crate::auth::jwks_max_age());
    HttpResponse::Ok().insert_header((CACHE_CONTROL, max_age)).json(d.signer.jwks())
}

/// Only endpoints that exist are advertised.
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
