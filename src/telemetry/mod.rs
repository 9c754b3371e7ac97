//! Logs and metrics. Logs are JSON lines for journald (plain text on a TTY),
//! carrying the request id; metrics use the `metrics` facade with the
//! Prometheus recorder, rendered by our own `/metrics` route (`render`).
//! `catalogue.rs` describes every metric; `memory.rs` hands freed memory
//! back to the system.

mod catalogue;
mod log_output;
pub mod memory;

use std::io::IsTerminal;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSection};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub use log_output::flush as flush_logs;

/// `info`, less actix-server's own: it logs each worker starting and
/// stopping and each listener twice over (a dozen lines a start and stop),
/// which latch's "listening", "ready" and "stopped" lines already say.
/// Its warnings and errors still show. Nothing from actix-http's HTTP/1
/// reader: it logs at ERROR every request it cannot parse and every
/// client that resets mid-request, so anyone could fill the log with
/// errors that are not the daemon's (the client gets its 400; latch's own
/// lines say when one of its answers is cut short).
const DEFAULT_FILTER: &str =
    "info,actix_server=warn,actix_http::h1::dispatcher=off,actix_http::h1::decoder=off";

/// Installs the global tracing subscriber: to `[log].file` when set
/// (appended, 0600), else stdout, in batches (`log_output`). `RUST_LOG`
/// overrides the level (default `DEFAULT_FILTER`). Safe to call once per
/// process; call `flush_logs` before the process exits.
pub fn init_logging(log: &LogSection) -> std::io::Result<()> {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let file = log.file.as_deref().map(open_log_file).transpose()?;
    let json = match log.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => file.is_some() || !std::io::stdout().is_terminal(),
    };
    let ansi = file.is_none() && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let output: log_output::Output = match file {
        Some(f) => Box::new(f),
        None => Box::new(std::io::stdout()),
    };
    let output = log_output::BatchedOutput::start(output)?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter()).with_writer(output).with_ansi(ansi);
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    let earlier = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        log_output::flush_after_panic();
        earlier(info);
    }));
    Ok(())
}

fn open_log_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// Opens `[log].file` anew at every reload, so `logrotate` can move the
/// file away and then send SIGHUP (or run `latchctl config reload`). If it
/// cannot be opened, lines keep going to the file already open.
pub fn reopen_log_file(log: &LogSection) {
    let Some(path) = log.file.as_deref() else { return };
    match open_log_file(path) {
        Ok(file) => log_output::replace(Box::new(file)),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot reopen the log file; writing on to the old one")
        }
    }
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
    catalogue::describe();
    metrics::gauge!("latch_build_info", "version" => VERSION).set(1.0);
    Ok(handle)
}

/// The Prometheus text of every metric, the process series freshly read.
pub fn render(handle: &PrometheusHandle) -> String {
    catalogue::process().collect();
    handle.render()
}

/// The values of unlabelled gauges as `/metrics` would show them now
/// (`None` for one never set), from one rendering: what the daemon exports
/// is what `latchctl status` says.
pub fn gauges_now<const N: usize>(handle: &PrometheusHandle, names: [&str; N]) -> [Option<f64>; N] {
    let text = handle.render();
    names.map(|name| {
        text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    })
}

/// Counts one authentication attempt: `latch_auth_events_total{kind,result}`.
pub fn auth_event(kind: &'static str, result: &'static str) {
    metrics::counter!("latch_auth_events_total", "kind" => kind, "result" => result).increment(1);
}
