//! The daemon's life: start-up in a fixed order (lock the state dir, open and
//! migrate the store, check the master key, bind every listener, write
//! `ready.json`, tell systemd READY=1), the signal loop (SIGHUP reloads,
//! SIGTERM/SIGINT stop), and the graceful stop (STOPPING=1, drain, stop
//! tasks, checkpoint and close the store, remove `ready.json`).

pub mod cli;
mod features;
mod page_actions;
pub mod preflight;
pub use features::BENCH_NO_DEFENSE_ENV;
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
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ReloadOutcome};
use crate::http::{self, AppState, BoundListener, tls};
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

/// A started daemon: what the signal loop and the stop need.
struct Running {
    cfg: Config,
    shared: Arc<ArcSwap<Config>>,
    store: Store,
    state: web::Data<AppState>,
    draining: Arc<AtomicBool>,
    reload_rx: mpsc::Receiver<oneshot::Sender<ReloadOutcome>>,
    reloadable: Vec<Arc<dyn crate::config::Reloadable>>,
    certs: Option<Arc<tls::CertStore>>,
    /// Socket files to remove at a clean stop.
    sockets: Vec<std::path::PathBuf>,
    /// Every server's stop handle, the admin socket's included.
    handles: Vec<actix_web::dev::ServerHandle>,
    /// Ends the HTTPS connections before actix is told to stop.
    drain: crate::http::drain::Drain,
    tracker: TaskTracker,
    cancel: CancellationToken,
    archive: crate::backup::archive::Finisher,
}

/// Runs the daemon until SIGTERM or SIGINT. Errors during start-up are
/// returned (the caller prints them and exits 1).
pub async fn run(cfg: Config, metrics: PrometheusHandle) -> anyhow::Result<()> {
    let mut signals = Signals::listen().context("listening for signals")?;
    let _lock = cfg.state.lock()?;
    cfg.state.remove_ready();
    for caution in cfg.cautions() {
        tracing::warn!("{caution}");
    }
    let (db, archive) = (cfg.database_path(), cfg.backup.wal_archive.then(|| cfg.archive_dir()));
    let (mut d, mut running) =
        start(cfg, metrics).await.map_err(|e| with_the_way_out(e, &db, archive.as_deref()))?;
    let ended_early = serve_until_stopped(&mut d, &mut running, &mut signals).await?;
    stop(d, running, ended_early).await
}

/// A database SQLite finds damaged is not served: the start ends naming
/// the file and the restore that mends it (which keeps the damaged file
/// beside it as `latch.db.replaced-<time>`).
fn with_the_way_out(
    e: anyhow::Error,
    db: &std::path::Path,
    archive: Option<&std::path::Path>,
) -> anyhow::Error {
    if !crate::store::is_damaged(&e) {
        return e;
    }
    let restore = crate::store::way_out(archive);
    let db = db.display();
    e.context(format!(
        "{db} is damaged; `latchctl db check` shows where; {restore}; a restore keeps the damaged file as \
         latch.db.replaced-<time>"
    ))
}

/// Loads the audit chain's key before anything can write an audit row, and
/// links rows written before the chain existed.
async fn link_audit_chain(store: &Store, master: &crate::keys::MasterKey) -> anyhow::Result<()> {
    crate::audit::install_key(master);
    let key = crate::audit::ChainKey::new(master);
    let sealed =
        store.write(move |c| crate::audit::seal_legacy(c, &key)).await.context("linking the audit log")?;
    if sealed > 0 {
        tracing::info!(rows = sealed, "audit rows from before the chain linked into it");
    }
    Ok(())
}

/// Start-up in order: store and migrations, master key, features, bind,
/// `ready.json`, READY=1.
async fn start(cfg: Config, metrics: PrometheusHandle) -> anyhow::Result<(Running, AllServers)> {
    let store = open_store(&cfg)?;
    let master = crate::keys::load_or_create(&store, cfg.state.key_file()).await?;
    link_audit_chain(&store, &master).await?;
    crate::pause::at("starting").await;

    let shared = Arc::new(ArcSwap::from_pointee(cfg.clone()));
    let draining = Arc::new(AtomicBool::new(false));
    let (reload_tx, reload_rx) = mpsc::channel::<oneshot::Sender<ReloadOutcome>>(4);
    let state = web::Data::new(AppState {
        config: Arc::clone(&shared),
        store: store.clone(),
        metrics: metrics.clone(),
        draining: Arc::clone(&draining),
        started: Instant::now(),
        bound: OnceLock::new(),
        reload: reload_tx,
    });
    let (tracker, cancel) = (TaskTracker::new(), CancellationToken::new());
    let features = features::start(&shared, &store, master, &tracker, &cancel).await?;
    let servers = http::bind_all(&cfg, state.clone(), features.routes, features.gate)?;
    let admin = http::bind_admin(&cfg, state.clone(), features.admin_routes)?;
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
    let sockets = servers.bound.iter().filter_map(|b| b.path.clone()).chain([admin.path]).collect();
    let (mut handles, mut all) = (servers.handles, servers.servers);
    handles.push(admin.handle);
    all.push(admin.server);
    let running = Running {
        cfg,
        shared,
        store,
        state,
        draining,
        reload_rx,
        reloadable: features.reloadable,
        certs: servers.certs,
        sockets,
        handles,
        drain: servers.drain,
        tracker,
        cancel,
        archive: features.archive,
    };
    Ok((running, futures_util::future::join_all(all)))
}

/// The database, migrated (after a verified backup) if it is older.
fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let no_fsync = std::env::var(BENCH_NO_FSYNC_ENV).is_ok_and(|v| v == "1");
    if no_fsync {
        tracing::warn!("{BENCH_NO_FSYNC_ENV}=1: commits are not durable (benchmark mode)");
    }
    let db_path = cfg.database_path();
    let options = StoreOptions { path: &db_path, backup_dir: &cfg.backup_dir(), unsafe_no_fsync: no_fsync };
    Store::open(&options).with_context(|| format!("opening database {}", db_path.display()))
}

type AllServers = futures_util::future::JoinAll<actix_web::dev::Server>;

impl Running {
    async fn reload(&self) -> ReloadOutcome {
        reload::apply(&self.shared, self.certs.as_deref(), &self.reloadable).await
    }

    /// Renews a generated certificate that expires soon and serves the new
    /// one, for a daemon that runs for months without a reload.
    fn renew_generated_certificate(&self) {
        let Some(certs) = &self.certs else { return };
        let cfg = self.shared.load_full();
        let renewed = match tls::renew_generated(&cfg) {
            Ok(false) => return,
            Ok(true) => tls::load_certified_key(&tls::cert_files(&cfg)),
            Err(e) => Err(e),
        };
        match renewed {
            Ok(key) => certs.swap(key),
            Err(e) => tracing::warn!(error = %e, "renewing the generated certificate failed"),
        }
    }
}

/// How often a generated certificate's expiry is looked at.
const CERT_CHECK_EVERY: Duration = Duration::from_secs(3600);

/// Editors and certbot write in several steps: a reload waits this long
/// after the last change, so a burst of writes reloads once.
const WATCH_SETTLE: Duration = Duration::from_millis(250);

/// The signals latchd acts on, listened for from its first moment: each
/// one's default action ends the process (SIGHUP's too), and systemd may
/// send one as soon as it hears READY=1 (`systemctl reload` right after a
/// start killed the daemon) or while the daemon still starts. One that
/// comes during start-up is acted on once started.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// The signal loop: SIGHUP, `latchctl config reload` and file changes
/// reload; SIGTERM/SIGINT stop. Returns true when a server ended by itself.
async fn serve_until_stopped(
    d: &mut Running,
    running: &mut AllServers,
    signals: &mut Signals,
) -> anyhow::Result<bool> {
    let mut watch = watch::start(&d.cfg);
    let mut settle_until: Option<tokio::time::Instant> = None;
    // A test shortens the period: LATCH_TEST_PAUSE="cert_check_every:300".
    let every = crate::pause::duration("cert_check_every").unwrap_or(CERT_CHECK_EVERY);
    let mut cert_check = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        let file_changed = async {
            match watch.as_mut() {
                Some(w) => w.changes.recv().await,
                None => std::future::pending().await,
            }
        };
        let settled = async {
            match settle_until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(()) = file_changed => settle_until = Some(tokio::time::Instant::now() + WATCH_SETTLE),
            () = settled => {
                settle_until = None;
                tracing::info!("config or certificate file changed");
                d.reload().await;
            }
            _ = signals.term.recv() => return Ok(false),
            _ = signals.int.recv() => return Ok(false),
            _ = signals.hup.recv() => { d.reload().await; }
            _ = cert_check.tick() => d.renew_generated_certificate(),
            Some(reply) = d.reload_rx.recv() => { let _ = reply.send(d.reload().await); }
            _ = &mut *running => return Ok(true),
        }
    }
}

/// How long a stop waits for the WAL archive's last segments.
const ARCHIVE_FINISH_DEADLINE: Duration = Duration::from_secs(10);

/// The graceful stop: STOPPING=1, drain requests, stop background tasks,
/// checkpoint and close the store, remove socket files and `ready.json`.
async fn stop(d: Running, running: AllServers, ended_early: bool) -> anyhow::Result<()> {
    notify(NotifyState::Stopping);
    d.draining.store(true, Ordering::Relaxed);
    tracing::info!("stopping: draining in-flight requests");
    if !ended_early {
        // The server futures must keep being polled while they stop.
        let stops = async {
            let graceful = drain_https(&d).await;
            futures_util::future::join_all(d.handles.iter().map(|h| h.stop(graceful))).await
        };
        futures_util::future::join(stops, running).await;
    }
    d.cancel.cancel();
    d.tracker.close();
    if tokio::time::timeout(TASK_STOP_DEADLINE, d.tracker.wait()).await.is_err() {
        tracing::warn!("background tasks did not stop in time");
    }
    // The store closes only once nothing else holds it (the signer and
    // the defense service it reloads do).
    drop((d.state, d.reloadable));
    // Last, when nothing writes any more: the archive takes the final
    // commits before the close checkpoints them out of the log.
    d.archive.finish(&d.store, ARCHIVE_FINISH_DEADLINE).await;
    d.store.close(Duration::from_secs(10));
    // Nothing listens on them any more; a socket file left behind would
    // only look like a daemon that does not answer.
    for path in &d.sockets {
        let _ = std::fs::remove_file(path);
    }
    d.cfg.state.remove_ready();
    tracing::info!("stopped");
    if ended_early {
        anyhow::bail!("a listener stopped unexpectedly");
    }
    Ok(())
}

/// Stops accepting, then lets the HTTPS connections end once each has
/// answered what it was asked (see `http::drain`), within the drain time;
/// whether they did (if not, the servers stop at once: the time is spent).
async fn drain_https(d: &Running) -> bool {
    futures_util::future::join_all(d.handles.iter().map(|h| h.pause())).await;
    d.drain.begin();
    let within = Duration::from_secs(crate::http::server::DRAIN_SECS);
    let settled = d.drain.settled(within).await;
    if !settled {
        tracing::warn!("HTTPS connections still open after the drain time; closing them");
    }
    settled
}

/// Tasks that run for the daemon's whole life: the systemd watchdog (pinged
/// only while a read answers and the writer commits), the metrics upkeep and
/// returning freed memory.
fn spawn_housekeeping(
    tracker: &TaskTracker,
    cancel: &CancellationToken,
    store: &Store,
    metrics: &PrometheusHandle,
) {
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) {
        let (store, cancel) = (store.clone(), cancel.clone());
        let every = Duration::from_micros(usec / 2);
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tick.tick() => {
                        // Reads alone keep answering while the writer is
                        // stuck; systemd should restart us then too.
                        if store.ping().await && store.writer_alive(every / 2).await {
                            notify(NotifyState::Watchdog);
                        }
                    }
                }
            }
        });
    }
    let (metrics, cancel, store) = (metrics.clone(), cancel.clone(), store.clone());
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut idle = crate::telemetry::memory::IdleTrim::default();
        for n in 0u64.. {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {},
            }
            if n % 5 == 0 {
                metrics.run_upkeep();
            }
            // What a load freed goes back to the system a second after it
            // ends (with the database pages it cached), and every 30 s
            // while it goes on.
            let gone_idle = idle.due();
            if gone_idle {
                store.release_caches().await;
            }
            if gone_idle || n % 30 == 29 {
                let _ = tokio::task::spawn_blocking(crate::telemetry::memory::return_free_memory).await;
            }
        }
    });
}
