//! `POST /v1/auth/introspect` (RFC 7662 shape), for apps holding an API
//! key with scope `introspect`: is this access token, refresh token or
//! API key active right now? An access token is inactive at once when its
//! session is revoked or its user disabled (offline verifiers only learn
//! that at `exp`). Anything else, malformed or unknown, is exactly
//! `{"active":false}`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Deps, SessionError, queries};
use crate::auth::queries::{live_session_user, roles_of};
use crate::auth::{Authenticator, MAX_TOKEN_BYTES, Principal};
use crate::config::Config;
use crate::http::{ApiError, ApiJson, LiveConfig};
use crate::keys::token_hash;

#[derive(Deserialize)]
pub struct IntrospectRequest {
    token: String,
}

pub async fn introspect(
    d: web::Data<Deps>,
    auth: web::Data<Authenticator>,
    cfg: LiveConfig,
    who: Principal,
    body: ApiJson<IntrospectRequest>,
) -> Result<HttpResponse, ApiError> {
    who.require_scope("introspect")?;
    let answer = examine(&d, &auth, &cfg, &body.0.token).await?;
    crate::telemetry::auth_event("introspect", if answer["active"] == true { "active" } else { "inactive" });
    Ok(HttpResponse::Ok().json(answer))
}

fn inactive() -> Value {
    json!({ "active": false })
}

async fn examine(d: &Deps, auth: &Authenticator, cfg: &Config, token: &str) -> Result<Value, SessionError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Ok(inactive());
    }
    if token.starts_with("latch_") {
        return Ok(auth.api_keys.peek(token).map_or_else(inactive, |k| {
            json!({
                "active": true,
                "token_type": "api_key",
                "sub": k.owner_id,
                "scope": k.scopes.join(" "),
                "exp": k.expires_at,
                "iat": k.created_at,
            })
        }));
    }
    if token.matches('.').count() == 2 {
        let Some(claims) = d.signer.validate(token, cfg) else { return Ok(inactive()) };
        let sid = claims.sid.clone();
        let live = d
            .store
            .read(move |c| {
                let Some(user) = live_session_user(c, &sid, crate::clock::now_unix())? else {
                    return Ok(None);
                };
                Ok(Some((roles_of(c, &user)?, user)))
            })
            .await?;
        return Ok(match live {
            Some((roles, user)) if user == claims.sub => json!({
                "active": true,
                "token_type": "access_token",
                "sub": claims.sub,
                "sid": claims.sid,
                "roles": roles,
                "exp": claims.exp,
                "iat": claims.iat,
            }),
            _ => inactive(),
        });
    }
    let hash = token_hash(token);
    let found = d.store.read(move |c| queries::live_refresh(c, &hash, crate::clock::now_unix())).await?;
    Ok(found.map_or_else(inactive, |(sub, sid, iat, exp)| {
        json!({ "active": true, "token_type": "refresh_token", "sub": sub, "sid": sid, "exp": exp, "iat": iat })
    }))
}
