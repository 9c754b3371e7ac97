//! The daemon's life: start-up in a fixed order (lock the state dir, open and
//! migrate the store, check the master key, bind every listener, write
//! `ready.json`, tell systemd READY=1), the signal loop (SIGHUP reloads,
//! SIGTERM/SIGINT stop), and the graceful stop (STOPPING=1, drain, stop
//! tasks, checkpoint and close the store, remove `ready.json`).

pub mod cli;
mod features;
mod reload;
mod watch;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix_web::web;
use anyhow::Context;
use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ReloadOutcome};
use crate::http::{self, AppState, BoundListener};
use crate::store::{Store, StoreOptions};

/// Set to `1` only by benchmarks: runs the writer with `synchronous=OFF`
/// to measure what fsync costs. Never for real data.
pub const BENCH_NO_FSYNC_ENV: &str = "LATCH_BENCH_UNSAFE_NO_FSYNC";

/// How long background tasks get to stop after the servers drained.
const TASK_STOP_DEADLINE: Duration = Duration::from_secs(5);

fn notify(state: NotifyState<'_>) {
    // Without systemd there is no socket to notify; that is not an error.
    let _ = sd_notify::notify(false, &[state]);
}

/// `ready.json` (API.md "Command line"): what scripts and tests read to
/// learn the bound addresses once the daemon is ready.
#[derive(serde::Serialize)]
struct Ready<'a> {
    pid: u32,
    version: &'a str,
    listeners: &'a [BoundListener],
    admin_socket: &'a Path,
}

/// Runs the daemon until SIGTERM or SIGINT. Errors during start-up are
/// returned (the caller prints them and exits 1).
pub async fn run(cfg: Config, metrics: PrometheusHandle) -> anyhow::Result<()> {
    let _lock = cfg.state.lock()?;
    cfg.state.remove_ready();
    let no_fsync = std::env::var(BENCH_NO_FSYNC_ENV).is_ok_and(|v| v == "1");
    if no_fsync {
        tracing::warn!("{BENCH_NO_FSYNC_ENV}=1: commits are not durable (benchmark mode)");
    }
    let db_path = cfg.database_path();
    let store = Store::open(&StoreOptions {
        path: &db_path,
        backup_dir: &cfg.backup_dir(),
        unsafe_no_fsync: no_fsync,
    })
    .with_context(|| format!("opening database {}", db_path.display()))?;
    let master = crate::keys::load_or_create(&store, cfg.state.key_file()).await?;

    let shared = Arc::new(ArcSwap::from_pointee(cfg.clone()));
    let draining = Arc::new(AtomicBool::new(false));
    let (reload_tx, mut reload_rx) = mpsc::channel::<oneshot::Sender<ReloadOutcome>>(4);
    let state = web::Data::new(AppState {
        config: Arc::clone(&shared),
        store: store.clone(),
        metrics: metrics.clone(),
        draining: Arc::clone(&draining),
        started: Instant::now(),
        bound: OnceLock::new(),
        reload: reload_tx,
    });
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let features = features::start(&shared, &store, master, &tracker, &cancel).await?;
    let reloadable = features.reloadable;
    let servers = http::bind_all(&cfg, state.clone(), features.routes)?;
    let admin = http::bind_admin(&cfg, state.clone(), crate::admin::routes)?;
    let _ = state.bound.set(servers.bound.clone());
    let ready = Ready {
        pid: std::process::id(),
        version: crate::telemetry::VERSION,
        listeners: &servers.bound,
        admin_socket: &admin.path,
    };
    cfg.state.write_ready(&serde_json::to_vec_pretty(&ready)?).context("writing ready.json")?;
    notify(NotifyState::Ready);
    tracing::info!(version = crate::telemetry::VERSION, state_dir = %cfg.state.root().display(), "ready");

    spawn_housekeeping(&tracker, &cancel, &store, &metrics);

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut handles = servers.handles.clone();
    handles.push(admin.handle.clone());
    let mut all = servers.servers;
    all.push(admin.server);
    let mut running = futures_util::future::join_all(all);
    let mut watch = watch::start(&cfg);
    let ended_early = loop {
        let file_changed = async {
            match watch.as_mut() {
                Some(w) => w.changes.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(()) = file_changed => {
                // Editors write in several steps; let them finish, then
                // reload once for the whole burst.
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Some(w) = watch.as_mut() {
                    while w.changes.try_recv().is_ok() {}
                }
                tracing::info!("config or certificate file changed");
                reload::apply(&shared, servers.certs.as_deref(), &reloadable).await;
            }
            _ = term.recv() => break false,
            _ = int.recv() => break false,
            _ = hup.recv() => { reload::apply(&shared, servers.certs.as_deref(), &reloadable).await; }
            Some(reply) = reload_rx.recv() => {
                let _ = reply.send(reload::apply(&shared, servers.certs.as_deref(), &reloadable).await);
            }
            _ = &mut running => break true,
        }
    };

    notify(NotifyState::Stopping);
    draining.store(true, Ordering::Relaxed);
    tracing::info!("stopping: draining in-flight requests");
    if !ended_early {
        // The server futures must keep being polled while they stop.
        let stops = futures_util::future::join_all(handles.iter().map(|h| h.stop(true)));
        futures_util::future::join(stops, running).await;
    }
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(TASK_STOP_DEADLINE, tracker.wait()).await.is_err() {
        tracing::warn!("background tasks did not stop in time");
    }
    drop(state);
    store.close(Duration::from_secs(10));
    // Nothing listens on them any more; a socket file left behind would
    // only look like a daemon that does not answer.
    let sockets = servers.bound.iter().filter_map(|b| b.path.as_ref()).chain([&admin.path]);
    for path in sockets {
        let _ = std::fs::remove_file(path);
    }
    cfg.state.remove_ready();
    tracing::info!("stopped");
    if ended_early {
        anyhow::bail!("a listener stopped unexpectedly");
    }
    Ok(())
}

/// Tasks that run for the daemon's whole life: the systemd watchdog (pinged
/// only while the database answers) and the metrics upkeep.
fn spawn_housekeeping(
    tracker: &TaskTracker,
    cancel: &CancellationToken,
    store: &Store,
    metrics: &PrometheusHandle,
) {
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) {
        let (store, cancel) = (store.clone(), cancel.clone());
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(usec / 2));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => if store.ping().await { notify(NotifyState::Watchdog) },
                }
            }
        });
    }
    let (metrics, cancel) = (metrics.clone(), cancel.clone());
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => metrics.run_upkeep(),
            }
        }
    });
}
