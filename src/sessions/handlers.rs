//! HTTP handlers for login, tokens, sessions and the well-known documents.

use actix_web::http::header::CACHE_CONTROL;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::service::{self, LoginRequest};
use super::{Authenticated, TokenSigner};
use crate::accounts::Hasher;
use crate::http::{ApiError, ApiJson, AppState, ClientInfo};
use crate::keys::MasterKey;

pub async fn login(
    state: web::Data<AppState>,
    hasher: web::Data<Hasher>,
    signer: web::Data<TokenSigner>,
    client: ClientInfo,
    body: ApiJson<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let cfg = state.config.load();
    let tokens = service::login(&state.store, &hasher, &signer, &cfg, body.0, &client).await?;
    Ok(HttpResponse::Ok().json(tokens))
}

#[derive(Deserialize)]
pub struct RefreshRequest {
    refresh_token: String,
}

pub async fn refresh(
    state: web::Data<AppState>,
    signer: web::Data<TokenSigner>,
    key: web::Data<MasterKey>,
    client: ClientInfo,
    body: ApiJson<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let cfg = state.config.load();
    let tokens = service::refresh(&state.store, &signer, &key, &cfg, &body.0.refresh_token, &client).await?;
    Ok(HttpResponse::Ok().json(tokens))
}

pub async fn logout(
    state: web::Data<AppState>,
    auth: Authenticated,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    service::logout(&state.store, &auth, false, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn logout_all(
    state: web::Data<AppState>,
    auth: Authenticated,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    service::logout(&state.store, &auth, true, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn sessions(state: web::Data<AppState>, auth: Authenticated) -> Result<HttpResponse, ApiError> {
    let items = service::list(&state.store, &auth).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

pub async fn revoke_session(
    state: web::Data<AppState>,
    auth: Authenticated,
    client: ClientInfo,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    service::revoke_own(&state.store, &auth, id.into_inner(), &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Apps may cache the key set for 5 minutes; a new key is published before
/// it signs anything, so a cached set never misses a live key.
pub async fn jwks(signer: web::Data<TokenSigner>) -> HttpResponse {
    HttpResponse::Ok().insert_header((CACHE_CONTROL, "public, max-age=300")).json(signer.jwks())
}

pub async fn openid_configuration(
    state: web::Data<AppState>,
    signer: web::Data<TokenSigner>,
) -> HttpResponse {
    let cfg = state.config.load();
    let base = &cfg.public_url;
    HttpResponse::Ok().insert_header((CACHE_CONTROL, "public, max-age=300")).json(json!({
        "issuer": super::signing::issuer(&cfg),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/v1/auth/login"),
        "introspection_endpoint": format!("{base}/v1/auth/introspect"),
        "id_token_signing_alg_values_supported": [signer.algorithm_name()],
        "grant_types_supported": ["password", "refresh_token"],
    }))
}
