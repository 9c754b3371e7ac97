//! `/v1/admin/api-keys`: list, create (the key is shown once, here),
//! revoke.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::errors::{refusal, refuse};
use super::{AdminError, Deps, queries};
use crate::audit::{self, Entry};
use crate::auth::{ApiKey, ApiKeys, Principal, api_keys, display_text};
use crate::http::{ApiError, ApiJson, ClientInfo, Items};

type D = web::Data<Deps>;

#[utoipa::path(get, path = "/v1/admin/api-keys", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Every key (never a secret)", body = Items<ApiKey>)))]
pub async fn list(d: D, who: Principal) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let items = d.api_keys.list_with_idle_scopes().await.map_err(AdminError::from)?;
    Ok(HttpResponse::Ok().json(Items { items }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    #[schema(min_length = 1, max_length = 128)]
    name: String,
    #[schema(min_items = 1)]
    scopes: Vec<String>,
    /// RFC 3339; absent: never.
    expires_at: Option<String>,
    owner_id: Option<String>,
}

fn valid_scope(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.:-".contains(&b))
}

/// A new key's fields, each checked, every refusal told at once; the
/// expiry as Unix seconds.
fn checked(req: &NewKey) -> Result<Option<i64>, AdminError> {
    // Shown in latchctl's table: no escape sequence reaches a terminal.
    let name = match display_text("name", Some(req.name.clone())) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(AdminError::invalid("name", "1 to 128 characters")),
        Err(e) => Err(AdminError::from(e)),
    };
    let scopes = (req.scopes.is_empty() || !req.scopes.iter().all(|s| valid_scope(s))).then(|| {
        AdminError::invalid("scopes", "one or more of a-z, 0-9, '_', '.', ':', '-' (like \"introspect\")")
    });
    match (name, scopes, expiry(req.expires_at.as_deref())) {
        (Ok(_), None, Ok(at)) => Ok(at),
        (name, scopes, at) => Err(AdminError::of_fields([name.err(), scopes, at.err()])),
    }
}

fn expiry(text: Option<&str>) -> Result<Option<i64>, AdminError> {
    let Some(text) = text else { return Ok(None) };
    let at = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| AdminError::invalid("expires_at", "an RFC 3339 time like 2027-01-31T00:00:00Z"))?
        .unix_timestamp();
    if at <= crate::clock::now_unix() {
        return Err(AdminError::invalid("expires_at", "is in the past"));
    }
    Ok(Some(at))
}

/// The key as made: `key` is shown here and never again.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    id: String,
    name: String,
    scopes: Vec<String>,
    key: String,
    expires_at: Option<String>,
    created_at: String,
}

#[utoipa::path(post, path = "/v1/admin/api-keys", tag = "admin", security(("bearer" = [])), request_body = NewKey,
    responses((status = 201, description = "Created; the key is in this answer only", body = CreatedKey)))]
pub async fn create(
    d: D,
    who: Principal,
    client: ClientInfo,
    body: ApiJson<NewKey>,
) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let req = body.0;
    let expires_at = checked(&req)?;
    let minted = ApiKeys::mint(req.name.trim().to_string(), req.scopes, req.owner_id, expires_at)
        .map_err(AdminError::from)?;
    let (row, actor) = (minted.key.clone(), who.actor());
    let owner_disabled = d
        .store
        .write(move |c| {
            let owner = match &row.owner_id {
                Some(id) => match queries::user(c, id)? {
                    Some(user) => Some(user),
                    None => return Err(refuse(AdminError::invalid("owner_id", "no such user"))),
                },
                None => None,
            };
            if let Some(scope) = owner.as_ref().and_then(|u| api_keys::beyond_owner(&row.scopes, &u.roles)) {
                let why = format!(
                    "its owner does not hold role {scope}, and a person's key does no more than they may"
                );
                return Err(refuse(AdminError::invalid("scopes", why)));
            }
            api_keys::insert(c, &row)?;
            let details = json!({ "key_id": row.id, "name": row.name, "scopes": row.scopes });
            let entry = Entry {
                action: "api_key_created",
                actor_id: Some(&actor),
                subject_id: row.owner_id.as_deref(),
                client: Some(&client),
                details,
            };
            audit::record(c, &entry)?;
            Ok(owner.is_some_and(|u| u.status == "disabled"))
        })
        .await
        .map_err(refusal)?;
    // A key made for a disabled person waits for them, as theirs do.
    let mut key = minted.key;
    key.suspended = owner_disabled;
    d.api_keys.remember(key.clone());
    Ok(HttpResponse::Created().json(CreatedKey {
        id: key.id,
        name: key.name,
        scopes: key.scopes,
        key: minted.secret,
        expires_at: key.expires_at.map(crate::clock::rfc3339),
        created_at: crate::clock::rfc3339(key.created_at),
    }))
}

#[utoipa::path(delete, path = "/v1/admin/api-keys/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204, description = "Revoked")))]
pub async fn revoke(
    d: D,
    who: Principal,
    client: ClientInfo,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let (key_id, actor, now) = (id.into_inner(), who.actor(), crate::clock::now_unix());
    let revoked = key_id.clone();
    d.store
        .write(move |c| {
            if !api_keys::revoke(c, &revoked, now)? {
                return Err(refuse(AdminError::NotFound("api key")));
            }
            let entry = Entry {
                action: "api_key_revoked",
                actor_id: Some(&actor),
                subject_id: None,
                client: Some(&client),
                details: json!({ "key_id": revoked }),
            };
            audit::record(c, &entry)
        })
        .await
        .map_err(refusal)?;
    d.api_keys.forget(&key_id, now);
    Ok(HttpResponse::NoContent().finish())
}
