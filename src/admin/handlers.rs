//! Admin handlers: `GET /v1/admin/status`, `POST /v1/admin/config/reload`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;
use tokio::sync::oneshot;

use super::queries;
use crate::http::{ApiError, AppState, Problem};

pub async fn status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let cfg = state.config.load();
    let schema = state.store.read(queries::schema_version).await;
    Ok(HttpResponse::Ok().json(json!({
        "version": crate::telemetry::VERSION,
        "pid": std::process::id(),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "config": cfg.source,
        "state_dir": cfg.state_dir,
        "listeners": state.bound.get(),
        "admin_socket": cfg.admin_socket,
        "database": {
            "path": state.store.path(),
            "ok": schema.is_ok(),
            "schema_version": schema.ok(),
        },
    })))
}

pub async fn reload(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || Problem::for_status(StatusCode::SERVICE_UNAVAILABLE).with_retry_after(1);
    state.reload.send(tx).await.map_err(|_| unavailable())?;
    let outcome = rx.await.map_err(|_| unavailable())?;
    match outcome.error {
        None => Ok(HttpResponse::Ok().json(json!({
            "status": "reloaded",
            "needs_restart": outcome.needs_restart,
        }))),
        Some(error) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "config-invalid",
            "Config rejected",
            format!("{error}; the running config stays"),
        )
        .into()),
    }
}
