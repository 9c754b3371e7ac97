//! The operations surface: `/health` (the process answers), `/ready` (the
//! database answers and we are not draining) and `/metrics` (Prometheus text,
//! only on listeners marked `metrics = true`).

use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, web};
#[cfg(debug_assertions)]
use serde_json::json;

use super::problem::{ApiError, Kind, Problem};
use super::{AppState, Routes, StatusBody};

#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, description = "The process answers", body = StatusBody)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(StatusBody::of("ok"))
}

#[utoipa::path(get, path = "/ready", tag = "ops",
    responses((status = 200, description = "The database answers and latchd is not draining", body = StatusBody)))]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(Problem::new(Kind::Unavailable).with_detail("The daemon is shutting down.").into());
    }
    if !state.store.ping().await {
        return Err(Problem::new(Kind::Unavailable).with_detail("The database does not answer.").into());
    }
    Ok(HttpResponse::Ok().json(StatusBody::of("ready")))
}

#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text (listeners with metrics = true)", body = String,
        content_type = "text/plain")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::telemetry::render(&state.metrics))
}

/// The OpenAPI document of every route, rendered once at start.
pub struct ApiDocument(pub actix_web::web::Bytes);

#[utoipa::path(get, path = "/v1/openapi.json", tag = "ops",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
pub async fn openapi(doc: web::Data<ApiDocument>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(doc.0.clone())
}

/// The ops routes every API listener serves (`/metrics` only where asked).
pub fn routes(r: &mut Routes, with_metrics: bool) {
    r.add(__path_health, health).add(__path_ready, ready);
    if with_metrics {
        r.add(__path_metrics, metrics);
    }
}

/// Debug builds only: the socket options of this very connection, as the
/// server set them (`{"tcp_nodelay": true}`), so a test can check them.
#[cfg(debug_assertions)]
pub async fn debug_tcp(req: actix_web::HttpRequest) -> HttpResponse {
    let Some(socket) = req.conn_data::<super::server::ConnSocket>() else {
        return HttpResponse::Ok().json(json!({ "tcp_nodelay": null }));
    };
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt on the fd of the connection this request arrived
    // on (open while the request is served), into a c_int of the right size.
    let rc = unsafe {
        libc::getsockopt(
            socket.fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    HttpResponse::Ok().json(json!({ "tcp_nodelay": (rc == 0).then_some(value != 0) }))
}
