//! Backups as a feature: a scheduled online backup every `[backup].interval`
//! (pruned to `keep`), `POST /v1/admin/backups` for `latchctl backup now`,
//! and the metrics an operator alerts on. The copying, checking and
//! compressing is the store's (`store::backup`), shared with migrations
//! and restore; this module decides when, where, and what to report.

pub mod archive;
mod archive_thread;
mod handlers;
mod replay;
pub mod restore;
mod segment;
mod wal;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::http::Routes;
use crate::store::backup::{self, SCHEDULED_PREFIX, Taken};
use crate::store::{Store, StoreError};

/// What the backup routes and the schedule work with.
pub struct Deps {
    pub store: Store,
    /// One backup at a time: a second would copy the same pages again.
    running: tokio::sync::Mutex<()>,
}

impl Deps {
    pub fn new(store: Store) -> Deps {
        Deps { store, running: tokio::sync::Mutex::new(()) }
    }

    /// Takes one backup into `cfg`'s folder, prunes to `keep`, and
    /// reports it in the log and the metrics.
    pub async fn take(&self, cfg: &Config) -> Result<Taken, StoreError> {
        let _one = self.running.lock().await;
        crate::pause::at("backup_taking").await;
        let (dir, keep) = (cfg.backup_dir(), cfg.backup.keep as usize);
        let started = std::time::Instant::now();
        let taken = self.store.backup(dir.clone(), SCHEDULED_PREFIX).await;
        // The copy, its check and zstd's window held tens of MiB; an idle
        // daemon should not keep them until the next timed trim.
        let _ = tokio::task::spawn_blocking(crate::telemetry::memory::return_free_memory).await;
        let taken = taken.inspect_err(|e| {
            tracing::error!(error = %e, dir = %dir.display(), "backup failed");
        })?;
        let elapsed = started.elapsed().as_secs_f64();
        metrics::gauge!("latch_backup_last_success_timestamp_seconds").set(taken.taken_at as f64);
        metrics::gauge!("latch_backup_duration_seconds").set(elapsed);
        metrics::gauge!("latch_backup_size_bytes").set(taken.size_bytes as f64);
        let just_taken = taken.path.clone();
        let pruned = tokio::task::spawn_blocking(move || backup::prune(&dir, keep, &just_taken)).await?;
        let pruned = pruned.inspect_err(|e| tracing::warn!(error = %e, "pruning old backups failed"));
        tracing::info!(
            path = %taken.path.display(),
            size_bytes = taken.size_bytes,
            seconds = elapsed,
            pruned = pruned.unwrap_or(0),
            "backup taken and verified"
        );
        Ok(taken)
    }
}

/// The backup routes (admin only).
pub fn routes(r: &mut Routes) {
    r.add(handlers::__path_list, handlers::list).add(handlers::__path_now, handlers::now);
}

/// A daemon that starts without recent backups takes one after at most
/// this long (or `interval`, if shorter), not a whole interval later.
const FIRST_AFTER: Duration = Duration::from_secs(60);
/// How often the schedule looks at the live config again (a reload may
/// shorten the interval).
const RECHECK: Duration = Duration::from_secs(5);

/// Starts the schedule: one backup every `[backup].interval`, counted from
/// the newest backup in the folder so restarts do not postpone it.
pub fn spawn_schedule(
    tracker: &TaskTracker,
    cancel: CancellationToken,
    deps: Arc<Deps>,
    config: Arc<ArcSwap<Config>>,
) {
    let started = crate::clock::now_unix();
    tracker.spawn(async move {
        // The staleness alert reads this gauge; a restart should not make
        // the last backup look older than it is, nor hide that it is old.
        let dir = config.load().backup_dir();
        if let Ok(Some(at)) = tokio::task::spawn_blocking(move || newest_scheduled(&dir, started)).await {
            metrics::gauge!("latch_backup_last_success_timestamp_seconds").set(at as f64);
        }
        let mut held = false;
        loop {
            let cfg = config.load_full();
            let wait = until_due(&cfg.backup_dir(), cfg.backup.interval.0, started).await;
            if wait.is_zero() && held_for_damage(&deps.store, &mut held) {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(RECHECK) => {}
                }
                continue;
            }
            if wait.is_zero() {
                if let Err(e) = deps.take(&cfg).await {
                    // Logged by `take`; try again after a pause, not at once.
                    tracing::warn!(error = %e, "the scheduled backup will be retried");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(FIRST_AFTER.min(cfg.backup.interval.0)) => {}
                    }
                }
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait.min(RECHECK)) => {}
            }
        }
    });
}

/// Whether the schedule holds its backups because the database is damaged:
/// each would copy and check the whole file to fail as the first did
/// (retried a minute apart, or an interval when that is shorter), while
/// the backups from before stay.
/// Damage does not mend itself, and the restore that mends it needs a
/// stop: the next start schedules again. `backup now` still tries. Says
/// so once (`held`).
fn held_for_damage(store: &Store, held: &mut bool) -> bool {
    if !store.damage_watch().is_seen() {
        return false;
    }
    if !*held {
        tracing::warn!(
            "scheduled backups are held: the database is damaged, and a backup copies its damage and fails \
             its check (the backups from before stay; `latchctl backup now` still tries)"
        );
        *held = true;
    }
    true
}

/// How long until the next scheduled backup is due.
async fn until_due(dir: &std::path::Path, interval: Duration, started: i64) -> Duration {
    let dir: PathBuf = dir.to_path_buf();
    let now = crate::clock::now_unix();
    let newest = tokio::task::spawn_blocking(move || newest_scheduled(&dir, now)).await.ok().flatten();
    let first = started + FIRST_AFTER.min(interval).as_secs() as i64;
    let due = match newest {
        Some(at) => (at + interval.as_secs() as i64).max(first),
        None => first,
    };
    Duration::from_secs(due.saturating_sub(now).max(0) as u64)
}

/// When the newest scheduled backup was written, of those not dated after
/// `now`. One dated later was written while the clock ran ahead and has
/// since been set back: counting from it held every backup until the clock
/// caught up (hours, or a year after a bad clock), and its time in the
/// gauge kept the staleness alert quiet all along.
fn newest_scheduled(dir: &std::path::Path, now: i64) -> Option<i64> {
    let listed = backup::list(dir).ok()?;
    listed
        .iter()
        .filter(|l| l.path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(SCHEDULED_PREFIX)))
        .map(|l| l.written_at)
        .filter(|at| *at <= now)
        .max()
}
