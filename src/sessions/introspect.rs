//! `POST /v1/auth/introspect` (RFC 7662 shape), for apps holding an API
//! key with scope `introspect`: is this access token, refresh token or
//! API key active right now? An access token is inactive at once when its
//! session is revoked or its user disabled (offline verifiers only learn
//! that at `exp`). Anything else, malformed or unknown, is exactly
//! `{"active":false}`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::refresh_token::Presented;
use super::{Deps, SessionError, queries};
use crate::auth::{Authenticator, MAX_TOKEN_BYTES, Principal};
use crate::config::Config;
use crate::http::{ApiError, ApiJson, LiveConfig};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct IntrospectRequest {
    token: String,
}

/// RFC 7662 §2.2. Only `active` is present when it is false.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Introspection {
    active: bool,
    /// access_token, refresh_token or api_key.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    /// An API key's scopes, space-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
}

#[utoipa::path(post, path = "/v1/auth/introspect", tag = "sessions", request_body = IntrospectRequest,
    security(("bearer" = [])),
    responses((status = 200, description = "Whether the token is active now (an API key with scope introspect asks)",
        body = Introspection)))]
pub async fn introspect(
    d: web::Data<Deps>,
    auth: web::Data<Authenticator>,
    cfg: LiveConfig,
    who: Principal,
    body: ApiJson<IntrospectRequest>,
) -> Result<HttpResponse, ApiError> {
    who.require_scope("introspect")?;
    let answer = examine(&d, &auth, &cfg, &body.0.token).await?;
    crate::telemetry::auth_event("introspect", if answer.active { "active" } else { "inactive" });
    Ok(HttpResponse::Ok().json(answer))
}

fn inactive() -> Introspection {
    Introspection::default()
}

async fn examine(
    d: &Deps,
    auth: &Authenticator,
    cfg: &Config,
    token: &str,
) -> Result<Introspection, SessionError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Ok(inactive());
    }
    if token.starts_with("latch_") {
        let Some(key) = auth.api_keys.peek(token) else { return Ok(inactive()) };
        let k = auth.api_keys.narrowed(key).await?;
        return Ok(Introspection {
            active: true,
            token_type: Some("api_key"),
            sub: k.owner_id,
            scope: Some(k.scopes.join(" ")),
            exp: k.expires_at,
            iat: Some(k.created_at),
            ..inactive()
        });
    }
    if token.matches('.').count() == 2 {
        let Some(claims) = auth.signer.validate(token, cfg) else { return Ok(inactive()) };
        let live = auth.live.session(&d.store, &claims.sid).await?;
        return Ok(match live {
            Some(facts) if facts.user_id == claims.sub => Introspection {
                active: true,
                token_type: Some("access_token"),
                sub: Some(claims.sub),
                sid: Some(claims.sid),
                roles: Some(facts.roles.clone()),
                exp: Some(claims.exp),
                iat: Some(claims.iat),
                ..inactive()
            },
            _ => inactive(),
        });
    }
    let presented = Presented::parse(token);
    let found = d.store.read(move |c| queries::live_refresh(c, &presented, crate::clock::now_unix())).await?;
    Ok(found.map_or_else(inactive, |(sub, sid, iat, exp)| Introspection {
        active: true,
        token_type: Some("refresh_token"),
        sub: Some(sub),
        sid: Some(sid),
        exp: Some(exp),
        iat: Some(iat),
        ..inactive()
    }))
}
