//! `GET|POST /v1/admin/blocked-ips`, `DELETE /v1/admin/blocked-ips/{id}`:
//! the IP blocks in force, and adding or lifting one by hand. Served with
//! the admin API (admins only), owned here with the blocks themselves.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{Block, BlockRequest, Defense};
use crate::auth::Principal;
use crate::http::{ApiError, ApiJson, ClientInfo, Items, LiveConfig, Routes};

type D = web::Data<Defense>;

pub fn routes(r: &mut Routes) {
    r.add(__path_list, list).add(__path_add, add).add(__path_remove, remove);
}

#[utoipa::path(get, path = "/v1/admin/blocked-ips", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Every block in force", body = Items<Block>)))]
pub async fn list(d: D, who: Principal) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    Ok(HttpResponse::Ok().json(Items { items: d.blocked_ips() }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBlock {
    cidr: String,
    reason: String,
    /// Like "1h"; absent: until removed.
    duration: Option<String>,
}

#[utoipa::path(post, path = "/v1/admin/blocked-ips", tag = "admin", security(("bearer" = [])), request_body = NewBlock,
    responses((status = 201, description = "Blocked", body = Block)))]
pub async fn add(
    d: D,
    who: Principal,
    client: ClientInfo,
    cfg: LiveConfig,
    body: ApiJson<NewBlock>,
) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let NewBlock { cidr, reason, duration } = body.0;
    let req = BlockRequest { cidr, reason, duration };
    let block = d.block(req, &cfg.defense.allowlist, &client, Some(&who.actor())).await?;
    Ok(HttpResponse::Created().json(block))
}

#[utoipa::path(delete, path = "/v1/admin/blocked-ips/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204, description = "Lifted")))]
pub async fn remove(
    d: D,
    who: Principal,
    client: ClientInfo,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    d.unblock(&id, &client, Some(&who.actor())).await?;
    Ok(HttpResponse::NoContent().finish())
}
