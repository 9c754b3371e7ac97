//! Live reload, the one path SIGHUP, `latchctl config reload` and a changed
//! file all take: read → parse → validate → rebuild the services that hold
//! config-derived state → swap, whole or not at all. Restart-only settings
//! keep their running values and are reported as "needs restart"; the TLS
//! certificate is re-read so a renewed file takes effect without dropping
//! connections (a generated one is renewed first when it expires soon);
//! `[log].file` is opened anew (after logrotate).

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use sd_notify::NotifyState;

use crate::config::{Commit, Config, ConfigError, ReloadOutcome, Reloadable};
use crate::http::tls::{self, CertStore};

fn count(result: &'static str) {
    metrics::counter!("latch_config_reloads_total", "result" => result).increment(1);
}

/// Reloads the config file the daemon started with, the files it names,
/// and the certificate.
pub async fn apply(
    shared: &ArcSwap<Config>,
    certs: Option<&CertStore>,
    services: &[Arc<dyn Reloadable>],
) -> ReloadOutcome {
    // systemd (Type=notify-reload) refuses a RELOADING=1 without the
    // monotonic time the reload began at.
    let mut reloading = vec![NotifyState::Reloading];
    reloading.extend(NotifyState::monotonic_usec_now().ok());
    let _ = sd_notify::notify(false, &reloading);
    let old = shared.load_full();
    // Whether or not the new config is good: logrotate sends SIGHUP too.
    crate::telemetry::reopen_log_file(&old.log);
    let outcome = match prepare(&old, services).await {
        Ok((merged, needs_restart, commits)) => {
            for key in &needs_restart {
                tracing::warn!(key, "setting changed: needs restart (keeping the running value)");
            }
            for caution in merged.cautions() {
                tracing::warn!("{caution}");
            }
            if let Some(certs) = certs {
                if let Err(e) = tls::renew_generated(&merged) {
                    tracing::warn!(error = %e, "renewing the generated certificate failed");
                }
                match tls::load_certified_key(&tls::cert_files(&merged)) {
                    Ok(key) => certs.swap(key),
                    Err(e) => {
                        tracing::warn!(error = %e, "certificate reload failed; keeping the current one")
                    }
                }
            }
            for commit in commits {
                commit();
            }
            shared.store(Arc::new(merged));
            count("success");
            let source =
                old.source.as_deref().map_or("(built-in defaults)".into(), |p| p.display().to_string());
            tracing::info!(source, "config reloaded");
            ReloadOutcome::Applied { needs_restart }
        }
        Err(faults) => {
            count("error");
            // One log line, each fault in the file's order.
            let error = faults.join("; ");
            tracing::error!(error, "config reload rejected; keeping the running config");
            ReloadOutcome::Refused { faults }
        }
    };
    let _ = sd_notify::notify(false, &[NotifyState::Ready]);
    outcome
}

/// The new config (with the running restart-only values), the restart-only
/// keys that changed, and every service's prepared part; or each fault
/// that refused it.
async fn prepare(
    old: &Config,
    services: &[Arc<dyn Reloadable>],
) -> Result<(Config, Vec<&'static str>, Vec<Commit>), Vec<String>> {
    let new = match old.source.as_deref() {
        Some(path) => Config::reload_from(path).map_err(|refused| every_fault(refused, path)),
        None => Config::load(None).map_err(ConfigError::into_list),
    };
    let new = new.map_err(|faults| faults.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let needs_restart = old.restart_only_changes(&new);
    let merged = new.keep_restart_only(old);
    let mut commits = Vec::with_capacity(services.len());
    for service in services {
        commits.push(service.prepare(&merged).await.map_err(|fault| vec![fault])?);
    }
    Ok((merged, needs_restart, commits))
}

/// A refused file's faults, with the files its other keys name checked
/// beside them as a start and `check-config` check them (as this process,
/// opening only): a fix of the rules is then not met by a missing pepper
/// file at the next reload. An empty file (refused on reload alone), and
/// one that cannot be read or parsed, are told as they were.
fn every_fault(refused: ConfigError, path: &Path) -> Vec<ConfigError> {
    match super::preflight::load_checked(Some(path)) {
        Err(every) if !every.is_empty() => every,
        _ => refused.into_list(),
    }
}
