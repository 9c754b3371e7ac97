//! `/v1/admin/sessions` (list, revoke) and `/v1/admin/outbox` (emails
//! pending or failed for good, never their bodies).

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::errors::{refusal, refuse};
use super::queries::{self, AdminSession, OutboxItem};
use super::{AdminError, Deps};
use crate::audit::{self, Entry};
use crate::auth::Principal;
use crate::auth::queries::revoke_session;
use crate::http::{ApiError, ApiQuery, ClientInfo};

type D = web::Data<Deps>;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SessionQuery {
    user_id: Option<String>,
}

/// The newest live sessions and how many there are in all, so a list cut
/// at 1,000 says so.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LiveSessions {
    items: Vec<AdminSession>,
    total: i64,
}

#[utoipa::path(get, path = "/v1/admin/sessions", tag = "admin", security(("bearer" = [])), params(SessionQuery),
    responses((status = 200, description = "Live sessions, newest first (at most 1,000), and their total", body = LiveSessions)))]
pub async fn list(d: D, who: Principal, q: ApiQuery<SessionQuery>) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    // Blank, as a form's empty field sends it, means every user (as the
    // audit filters read it), not a user whose id is "".
    let user = q.0.user_id.filter(|u| !u.trim().is_empty());
    let now = crate::clock::now_unix();
    let list = d
        .store
        .read(move |c| {
            let items = queries::live_sessions(c, user.as_deref(), now)?;
            let total = queries::live_session_count(c, user.as_deref(), now)?;
            Ok(LiveSessions { items, total })
        })
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(delete, path = "/v1/admin/sessions/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204, description = "Revoked")))]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    /// queued (default) or dead.
    #[param(pattern = "^(queued|dead)$")]
    status: Option<String>,
}

/// Mail of one status, newest first, and how much there is in all, so a
/// list cut at 1,000 says so.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OutboxList {
    items: Vec<OutboxItem>,
    total: i64,
}

#[utoipa::path(get, path = "/v1/admin/outbox", tag = "admin", security(("bearer" = [])), params(OutboxQuery),
    responses((status = 200, description = "Emails pending or failed for good (no bodies; at most 1,000), and their total", body = OutboxList)))]
pub async fn outbox(d: D, who: Principal, q: ApiQuery<OutboxQuery>) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let status = q.0.status.unwrap_or_else(|| "queued".into());
    if status != "queued" && status != "dead" {
        return Err(AdminError::invalid("status", "must be queued or dead").into());
    }
    let list = d
        .store
        .read(move |c| {
            let (queued, dead) = queries::outbox_counts(c)?;
            let total = if status == "dead" { dead } else { queued };
            Ok(OutboxList { items: queries::outbox(c, &status)?, total })
        })
        .await?;
    Ok(HttpResponse::Ok().json(list))
}
