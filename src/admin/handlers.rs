//! Admin handlers: `GET /v1/admin/status`, `GET /v1/admin/config` (the
//! config in force) and `POST /v1/admin/config/reload`; and the refusal
//! of a parameter an admin call does not take.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use tokio::sync::oneshot;

use super::{AdminError, queries};
use crate::auth::Principal;
use crate::config::ReloadOutcome;
use crate::http::{ApiError, AppState, LiveConfig, parameters_refused};
use crate::telemetry::gauges_now;

/// The answer of an admin call given a query parameter it does not take
/// (see `Routes::refusing_parameters`): who asks is checked first, as the
/// call itself would, so only an admin learns of the parameter.
pub async fn no_parameters(who: Principal, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    Err(parameters_refused(&req))
}

#[utoipa::path(get, path = "/v1/admin/status", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Version, pid, uptime, listeners, database, mail queue, newest backup, WAL archive reach, certificate expiry, audit chain", body = Object)))]
pub async fn status(state: web::Data<AppState>, who: Principal) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let cfg = state.config.load();
    let schema = state.store.read(queries::schema_version).await;
    let mail = state.store.read(|c| Ok((queries::outbox_counts(c)?, queries::outbox_failing(c)?))).await.ok();
    // What an operator checks first after "is it up": is mail stuck, and
    // when was the last backup written.
    let backups = backups_status(cfg.backup_dir()).await;
    let [cert_expiry, chain_ok, archive_lag, damaged] = gauges_now(
        &state.metrics,
        [
            "latch_tls_cert_expiry_timestamp_seconds",
            "latch_audit_chain_ok",
            "latch_wal_archive_lag_seconds",
            "latch_db_damaged",
        ],
    );
    let archive = archive_status(&cfg, archive_lag).await;
    Ok(HttpResponse::Ok().json(json!({
        "version": crate::telemetry::VERSION,
        "pid": std::process::id(),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "config": cfg.source,
        "state_dir": cfg.state.root(),
        "listeners": state.bound.get(),
        "admin_socket": cfg.admin_socket,
        "database": {
            "path": state.store.path(),
            "ok": schema.is_ok(),
            "schema_version": schema.ok(),
            // SQLite met damage in the file since the start (`store::damage`).
            "damaged": damaged == Some(1.0),
        },
        "mail": mail.map(|((queued, dead), failing)| json!({
            "queued": queued, "dead": dead, "failing": failing, "delivery": delivery(&cfg),
        })),
        "backups": backups,
        "archive": archive,
        "tls": tls_status(cert_expiry, &cfg),
        "audit": { "chain_ok": chain_ok.map(|v| v == 1.0) },
    })))
}

/// When the certificate being served expires (the gauge is set whenever
/// one is loaded), and whether latch made it; null without HTTPS.
fn tls_status(expiry: Option<f64>, cfg: &crate::config::Config) -> serde_json::Value {
    let Some(expiry) = expiry else { return serde_json::Value::Null };
    let (expiry, now) = (expiry as i64, crate::clock::now_unix());
    let days_left = (expiry - now).div_euclid(86_400);
    json!({ "expires": crate::clock::rfc3339(expiry), "days_left": days_left, "generated": cfg.tls.is_none() })
}

/// How mail leaves: by SMTP, or (without `[smtp]`) as files an operator
/// must pick up — which an admin who just invited someone needs to know.
fn delivery(cfg: &crate::config::Config) -> serde_json::Value {
    match &cfg.smtp {
        Some(smtp) => {
            json!({ "via": "smtp", "host": smtp.host, "port": smtp.port, "security": smtp.security })
        }
        None => json!({ "via": "files", "dir": cfg.state.mail() }),
    }
}

/// The backup folder and its newest file — or why it cannot be read, which
/// an operator must not take for "none yet". Listed off the worker.
async fn backups_status(dir: std::path::PathBuf) -> serde_json::Value {
    let listing = dir.clone();
    match off_worker(move || crate::store::backup::list(&listing)).await {
        Ok(found) => {
            let newest = found.iter().map(|b| b.written_at).max().map(crate::clock::rfc3339);
            json!({ "dir": dir, "newest": newest })
        }
        Err(error) => json!({ "dir": dir, "newest": null, "error": error }),
    }
}

/// Whether the WAL archive is on, where, from when a restore can reach
/// (and the stretches since that it cannot: `gaps`, each from a second up
/// to another; `restorable_until`, when its newest generation copied a
/// damaged database) and how far it trails the last commit: with it on, "no
/// backups yet" does not mean nothing could be restored. Listed off the
/// worker.
async fn archive_status(cfg: &crate::config::Config, lag: Option<f64>) -> serde_json::Value {
    let root = cfg.archive_dir();
    if !cfg.backup.wal_archive {
        return json!({ "enabled": false, "dir": root });
    }
    let listing = root.clone();
    match off_worker(move || crate::store::archive_layout::reach(&listing)).await {
        Ok(reach) => {
            let from = reach.as_ref().map(|r| crate::clock::rfc3339(r.from));
            let gaps: Vec<_> = reach.iter().flat_map(|r| &r.gaps).map(|(from, until)| {
                json!({ "from": crate::clock::rfc3339(*from), "until": crate::clock::rfc3339(*until) })
            }).collect();
            let until = reach.as_ref().and_then(|r| r.until).map(crate::clock::rfc3339);
            json!({ "enabled": true, "dir": root, "restorable_from": from, "gaps": gaps,
                "restorable_until": until, "lag_seconds": lag.unwrap_or(0.0) })
        }
        Err(error) => json!({ "enabled": true, "dir": root, "restorable_from": null, "error": error }),
    }
}

/// Runs a folder listing on the blocking pool (a slow disk must not stall
/// the worker), its failure as text for the status answer.
async fn off_worker<T: Send + 'static, E: std::fmt::Display>(
    list: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, String> {
    let listed = tokio::task::spawn_blocking(move || list().map_err(|e| e.to_string())).await;
    listed.map_err(|e| e.to_string())?
}

#[utoipa::path(get, path = "/v1/admin/config", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "The config in force, every default and path resolved", body = Object)))]
pub async fn config(cfg: LiveConfig, who: Principal) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    Ok(HttpResponse::Ok().json(cfg.effective()))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Reloaded {
    status: &'static str,
    /// Changed keys that only a restart applies.
    needs_restart: Vec<&'static str>,
}

#[utoipa::path(post, path = "/v1/admin/config/reload", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Reloaded", body = Reloaded)))]
pub async fn reload(state: web::Data<AppState>, who: Principal) -> Result<HttpResponse, ApiError> {
    who.require_admin()?;
    let (tx, rx) = oneshot::channel();
    state.reload.send(tx).await.map_err(|_| AdminError::DaemonBusy)?;
    match rx.await.map_err(|_| AdminError::DaemonBusy)? {
        ReloadOutcome::Applied { needs_restart } => {
            Ok(HttpResponse::Ok().json(Reloaded { status: "reloaded", needs_restart }))
        }
        ReloadOutcome::Refused { faults } => Err(AdminError::ConfigRejected(faults).into()),
    }
}
