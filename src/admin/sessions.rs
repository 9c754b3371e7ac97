//! `/v1/admin/sessions` (list, revoke) and `/v1/admin/outbox` (emails
//! pending or failed for good, never their bodies).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::errors::{refusal, refuse};
use super::{AdminError, Deps, queries};
use crate::audit::{self, Entry};
use crate::auth::Principal;
use crate::auth::queries::revoke_session;
use crate::http::{ApiError, ClientInfo};

type D = web::Data<Deps>;

#[derive(Deserialize)]
pub struct SessionQuery {
    user_id: Option<String>,
}

pub async fn list(d: D, who: Principal, q: web::Query<SessionQuery>) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let user = q.into_inner().user_id;
    let items =
        d.store.read(move |c| queries::live_sessions(c, user.as_deref(), crate::clock::now_unix())).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

pub async fn revoke(
    d: D,
    who: Principal,
    client: ClientInfo,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let (sid, actor) = (id.into_inner(), who.actor());
    d.store
        .write(move |c| {
            let Some(user) = queries::session_user(c, &sid)? else {
                return Err(refuse(AdminError::NotFound("session")));
            };
            revoke_session(c, &sid, "revoked_by_admin", crate::clock::now_unix())?;
            let entry = Entry {
                action: "session_revoked",
                actor_id: Some(&actor),
                subject_id: Some(&user),
                client: Some(&client),
                details: json!({ "session_id": sid }),
            };
            audit::record(c, &entry)
        })
        .await
        .map_err(refusal)?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct OutboxQuery {
    status: Option<String>,
}

pub async fn outbox(d: D, who: Principal, q: web::Query<OutboxQuery>) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let status = q.into_inner().status.unwrap_or_else(|| "queued".into());
    if status != "queued" && status != "dead" {
        return Err(AdminError::invalid("status", "must be queued or dead").into());
    }
    let items = d.store.read(move |c| queries::outbox(c, &status)).await?;
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}
