//! `/v1/admin/signing-keys`: list, rotate (`POST`; `{"now": true}` skips
//! the wait for apps' JWKS caches) and revoke the EdDSA keys that sign
//! access tokens. Each change is written with its audit row, then the
//! signer's ring is rebuilt so it applies to the next request.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::errors::{refusal, refuse};
use super::{AdminError, Deps};
use crate::audit::{self, Entry};
use crate::auth::Principal;
use crate::auth::signing_keys::{self, KeyInfo};
use crate::config::{Config, TokenAlgorithm};
use crate::http::{ApiError, ApiJson, ClientInfo, LiveConfig};

type D = web::Data<Deps>;

fn retain(cfg: &Config) -> i64 {
    (cfg.tokens.access_ttl.0 + cfg.tokens.leeway.0).as_secs() as i64
}

fn eddsa_only(cfg: &Config) -> Result<(), AdminError> {
    match cfg.tokens.algorithm {
        TokenAlgorithm::EdDSA => Ok(()),
        TokenAlgorithm::HS256 => Err(AdminError::Conflict(
            "tokens.algorithm is HS256: rotate by replacing tokens.secret_file and reloading".into(),
        )),
    }
}

/// The algorithm in force and, for EdDSA, every key.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct KeyList {
    algorithm: &'static str,
    items: Vec<KeyInfo>,
}

#[utoipa::path(get, path = "/v1/admin/signing-keys", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "The signing keys, newest first, with their states", body = KeyList)))]
pub async fn list(d: D, who: Principal, cfg: LiveConfig) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let (now, retain) = (crate::clock::now_unix(), retain(&cfg.0));
    let items = d.store.read(move |c| signing_keys::list(c, now, retain)).await.map_err(AdminError::from)?;
    let algorithm = d.signer.algorithm_name();
    Ok(HttpResponse::Ok().json(KeyList { algorithm, items }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// Sign with the new key at once instead of after the JWKS max-age.
    #[serde(default)]
    now: bool,
}

/// The key a rotation made.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Rotated {
    kid: String,
    algorithm: &'static str,
    /// pending, or signing with `now`.
    state: &'static str,
    activates_at: String,
}

#[utoipa::path(post, path = "/v1/admin/signing-keys", tag = "admin", security(("bearer" = [])), request_body = Rotate,
    responses((status = 201, description = "The next key, published at once", body = Rotated)))]
pub async fn rotate(
    d: D,
    who: Principal,
    client: ClientInfo,
    cfg: LiveConfig,
    body: ApiJson<Rotate>,
) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    eddsa_only(&cfg.0)?;
    let at_once = body.0.now;
    let now = crate::clock::now_unix();
    let delay = if at_once { 0 } else { crate::auth::jwks_max_age() as i64 };
    let fresh = signing_keys::generate(&d.key, now + delay).map_err(AdminError::from)?;
    let (kid, activates_at, actor) = (fresh.kid.clone(), fresh.activates_at, who.actor());
    d.store
        .write(move |c| {
            let pending = signing_keys::pending(c, now)?;
            if let Some((waiting, at)) = pending.first().filter(|_| !at_once) {
                let when = crate::clock::rfc3339(*at);
                let msg = format!("key {waiting} already starts signing at {when}; wait, or rotate with now");
                return Err(refuse(AdminError::Conflict(msg)));
            }
            // Keys that were still waiting never signed anything.
            for (waiting, _) in &pending {
                signing_keys::revoke_unused(c, waiting, now)?;
            }
            signing_keys::insert(c, &fresh)?;
            let superseded: Vec<&String> = pending.iter().map(|(k, _)| k).collect();
            let details =
                json!({ "kid": fresh.kid, "activates_at": fresh.activates_at, "superseded": superseded });
            let entry = Entry::by_admin("signing_key_rotated", &actor, &client).with(details);
            audit::record(c, &entry)
        })
        .await
        .map_err(refusal)?;
    d.signer.refresh(&cfg.0).await.map_err(AdminError::from)?;
    Ok(HttpResponse::Created().json(Rotated {
        kid,
        algorithm: "EdDSA",
        state: if at_once { "signing" } else { "pending" },
        activates_at: crate::clock::rfc3339(activates_at),
    }))
}

#[utoipa::path(delete, path = "/v1/admin/signing-keys/{kid}", tag = "admin", security(("bearer" = [])),
    params(("kid" = String, Path)), responses((status = 204, description = "Revoked; its tokens stop verifying")))]
pub async fn revoke(
    d: D,
    who: Principal,
    client: ClientInfo,
    cfg: LiveConfig,
    kid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    eddsa_only(&cfg.0)?;
    let (kid, actor, now) = (kid.into_inner(), who.actor(), crate::clock::now_unix());
    let spare = signing_keys::generate(&d.key, now).map_err(AdminError::from)?;
    d.store
        .write(move |c| {
            let Some(successor) = signing_keys::revoke(c, &kid, now, &spare)? else {
                return Err(refuse(AdminError::NotFound("signing key")));
            };
            let details = json!({ "kid": kid, "now_signing": successor });
            audit::record(c, &Entry::by_admin("signing_key_revoked", &actor, &client).with(details))
        })
        .await
        .map_err(refusal)?;
    d.signer.refresh(&cfg.0).await.map_err(AdminError::from)?;
    Ok(HttpResponse::NoContent().finish())
}
