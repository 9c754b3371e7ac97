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
