//! Live reload (SIGHUP): read → parse → validate → swap, whole or not at all.
//! Restart-only settings keep their running values and are logged as
//! "needs restart"; the TLS certificate is re-read so a renewed file takes
//! effect without dropping connections.

use std::sync::Arc;

use arc_swap::ArcSwap;
use sd_notify::NotifyState;

use crate::config::{Config, ReloadOutcome};
use crate::http::tls::{self, CertStore};

fn count(result: &'static str) {
    metrics::counter!("latch_config_reloads_total", "result" => result).increment(1);
}

/// Reloads the config file the daemon started with, and the certificate.
pub fn apply(shared: &ArcSwap<Config>, certs: Option<&CertStore>) -> ReloadOutcome {
    let _ = sd_notify::notify(false, &[NotifyState::Reloading]);
    let old = shared.load_full();
    let outcome = match Config::load(old.source.as_deref()) {
        Ok(new) => {
            let needs_restart = old.restart_only_changes(&new);
            for key in &needs_restart {
                tracing::warn!(key, "setting changed: needs restart (keeping the running value)");
            }
            let merged = new.keep_restart_only(&old);
            if let Some(certs) = certs {
                match tls::load_certified_key(&tls::cert_files(&merged)) {
                    Ok(key) => certs.swap(key),
                    Err(e) => {
                        tracing::warn!(error = %e, "certificate reload failed; keeping the current one")
                    }
                }
            }
            shared.store(Arc::new(merged));
            count("success");
            tracing::info!(source = ?old.source, "config reloaded");
            ReloadOutcome { applied: true, error: None, needs_restart }
        }
        Err(e) => {
            count("error");
            tracing::error!(error = %e, "config reload rejected; keeping the running config");
            ReloadOutcome { applied: false, error: Some(e.to_string()), needs_restart: Vec::new() }
        }
    };
    let _ = sd_notify::notify(false, &[NotifyState::Ready]);
    outcome
}
