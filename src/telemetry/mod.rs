//! Logs and metrics. Logs are JSON lines for journald (plain text on a TTY),
//! carrying the request id; metrics use the `metrics` facade with the
//! Prometheus recorder, rendered by our own `/metrics` route.

use std::io::IsTerminal;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Installs the global tracing subscriber. `RUST_LOG` overrides the level
/// (default `info`). Safe to call once per process.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    let _ = if json {
        builder.json().flatten_event(true).with_current_span(false).try_init()
    } else {
        builder.try_init()
    };
}

/// Latency buckets in seconds: sub-millisecond reads up to slow logins.
const DURATION_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Installs the Prometheus recorder and sets `latch_build_info`.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), DURATION_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("latch_db_commit_batch_size".into()), BATCH_BUCKETS)?
        .install_recorder()?;
    metrics::gauge!("latch_build_info", "version" => VERSION).set(1.0);
    Ok(handle)
}

/// Counts one authentication attempt: `latch_auth_events_total{kind,result}`.
pub fn auth_event(kind: &'static str, result: &'static str) {
    metrics::counter!("latch_auth_events_total", "kind" => kind, "result" => result).increment(1);
}
