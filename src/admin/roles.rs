//! `/v1/admin/roles`: list, create, delete. The role `admin` always exists.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::errors::{refusal, refuse};
use super::queries::{self, Role};
use super::{AdminError, Deps};
use crate::audit::{self, Entry};
use crate::auth::{Principal, display_text};
use crate::http::{ApiError, ApiJson, ClientInfo, Items};

type D = web::Data<Deps>;

#[utoipa::path(get, path = "/v1/admin/roles", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Every role", body = Items<Role>)))]
pub async fn list(d: D, who: Principal) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let roles = d.store.read(queries::roles).await?;
    Ok(HttpResponse::Ok().json(Items { items: roles }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRole {
    #[schema(pattern = "^[a-z0-9_.-]{1,64}$")]
    name: String,
    description: Option<String>,
}

/// Role names: 1–64 of `[a-z0-9_.-]`, so they read the same everywhere a
/// token or a log shows them.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

#[utoipa::path(post, path = "/v1/admin/roles", tag = "admin", security(("bearer" = [])), request_body = NewRole,
    responses((status = 201, description = "Created", body = Role)))]
pub async fn create(
    d: D,
    who: Principal,
    client: ClientInfo,
    body: ApiJson<NewRole>,
) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let NewRole { name, description } = body.0;
    if !valid_name(&name) {
        return Err(AdminError::invalid("name", "1 to 64 of a-z, 0-9, '_', '.', '-'").into());
    }
    // Shown in latchctl's table: no escape sequence reaches a terminal.
    let description = display_text("description", description).map_err(AdminError::Policy)?;
    let (actor, role) = (who.actor(), name.clone());
    d.store
        .write(move |c| {
            if queries::role_exists(c, &role)? {
                return Err(refuse(AdminError::Conflict(format!("the role {role:?} exists"))));
            }
            queries::insert_role(c, &role, description.as_deref().unwrap_or(""), crate::clock::now_unix())?;
            let entry = Entry {
                action: "role_created",
                actor_id: Some(&actor),
                subject_id: None,
                client: Some(&client),
                details: json!({ "role": role }),
            };
            audit::record(c, &entry)
        })
        .await
        .map_err(refusal)?;
    let roles = d.store.read(queries::roles).await?;
    let created = roles.into_iter().find(|r| r.name == name).ok_or(AdminError::NotFound("role"))?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(delete, path = "/v1/admin/roles/{name}", tag = "admin", security(("bearer" = [])),
    params(("name" = String, Path)), responses((status = 204, description = "Deleted")))]
pub async fn delete(
    d: D,
    who: Principal,
    client: ClientInfo,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let (role, actor) = (name.into_inner(), who.actor());
    if role == "admin" {
        return Err(AdminError::Conflict("the role admin cannot be deleted".into()).into());
    }
    d.store
        .write(move |c| {
            if !queries::delete_role(c, &role)? {
                return Err(refuse(AdminError::NotFound("role")));
            }
            let entry = Entry {
                action: "role_deleted",
                actor_id: Some(&actor),
                subject_id: None,
                client: Some(&client),
                details: json!({ "role": role }),
            };
            audit::record(c, &entry)
        })
        .await
        .map_err(refusal)?;
    Ok(HttpResponse::NoContent().finish())
}
