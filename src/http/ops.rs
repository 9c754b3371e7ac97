//! The operations surface: `/health` (the process answers), `/ready` (the
//! database answers and we are not draining) and `/metrics` (Prometheus text,
//! only on listeners marked `metrics = true`).

use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use super::problem::{ApiError, Kind, Problem};

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(Problem::new(Kind::Unavailable).with_detail("The daemon is shutting down.").into());
    }
    if !state.store.ping().await {
        return Err(Problem::new(Kind::Unavailable).with_detail("The database does not answer.").into());
    }
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::telemetry::render(&state.metrics))
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
