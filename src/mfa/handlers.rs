//! HTTP handlers for API.md "Second factor".

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::service::{self, NewEnrolment, RecoveryCodes};
use super::{Deps, MfaError};
use crate::auth::UserSession;
use crate::auth::second_factor::Proof;
use crate::http::{ApiError, ApiJson, ClientInfo, LiveConfig};

type D = web::Data<Deps>;

/// Starts a TOTP enrolment (or replaces an unconfirmed one).
#[utoipa::path(post, path = "/v1/auth/mfa/totp", tag = "mfa", security(("bearer" = [])),
    responses((status = 200, description = "The new secret, its otpauth URI and QR code", body = NewEnrolment)))]
pub async fn enrol(
    d: D,
    cfg: LiveConfig,
    user: UserSession,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::enrol(&d, &cfg, &user, &client).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ConfirmRequest {
    code: String,
}

/// Turns TOTP on with a first code; answers the recovery codes, once.
#[utoipa::path(post, path = "/v1/auth/mfa/totp/confirm", tag = "mfa", request_body = ConfirmRequest,
    security(("bearer" = [])),
    responses((status = 200, description = "TOTP is on; ten recovery codes", body = RecoveryCodes)))]
pub async fn confirm(
    d: D,
    cfg: LiveConfig,
    user: UserSession,
    client: ClientInfo,
    body: ApiJson<ConfirmRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::confirm(&d, &cfg, &user, body.0.code, &client).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct DisableRequest {
    password: String,
    code: Option<String>,
    recovery_code: Option<String>,
}

/// Turns TOTP off; the user's other sessions are revoked.
#[utoipa::path(delete, path = "/v1/auth/mfa/totp", tag = "mfa", request_body = DisableRequest,
    security(("bearer" = [])), responses((status = 204, description = "TOTP is off")))]
pub async fn disable(
    d: D,
    cfg: LiveConfig,
    user: UserSession,
    client: ClientInfo,
    body: ApiJson<DisableRequest>,
) -> Result<HttpResponse, ApiError> {
    let DisableRequest { password, code, recovery_code } = body.0;
    let proof = Proof::from_fields(code, recovery_code).ok_or(MfaError::OneProof)?;
    service::disable(&d, &cfg, &user, password, proof, &client).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordRequest {
    password: String,
}

/// New recovery codes; the old ones stop working.
#[utoipa::path(post, path = "/v1/auth/mfa/recovery-codes", tag = "mfa", request_body = PasswordRequest,
    security(("bearer" = [])),
    responses((status = 200, description = "Ten new recovery codes", body = RecoveryCodes)))]
pub async fn recovery_codes(
    d: D,
    cfg: LiveConfig,
    user: UserSession,
    client: ClientInfo,
    body: ApiJson<PasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(service::regenerate(&d, &cfg, &user, body.0.password, &client).await?))
}
