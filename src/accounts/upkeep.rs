//! One-time token upkeep: verification, reset and change-of-address links
//! are deleted once past their expiry, spent or not, so the table holds only links that
//! could still be in someone's inbox. A spent link and a deleted one get
//! the same `invalid-token` answer.

use std::time::Duration;

use rusqlite::params;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{Store, exec};

/// How often expired links are looked for.
const EVERY: Duration = Duration::from_secs(60);
/// Rows deleted per write job: one short job in a write batch.
const STEP_ROWS: i64 = 2_000;

/// Starts the upkeep on `tracker`; it stops when `cancel` fires.
pub fn spawn(tracker: &TaskTracker, cancel: CancellationToken, store: Store) {
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {},
            }
            // Not by a clock that has just jumped (`clock::steady`).
            if !crate::clock::steady() {
                continue;
            }
            // A full step means there may be more; the next tick goes on.
            let now = crate::clock::now_unix();
            let step = store
                .write(move |c| {
                    let links = exec(
                        c,
                        "DELETE FROM one_time_tokens WHERE rowid IN
                           (SELECT rowid FROM one_time_tokens WHERE expires_at < ?1 LIMIT ?2)",
                        params![now, STEP_ROWS],
                    )?;
                    let changes = exec(
                        c,
                        "DELETE FROM email_changes WHERE rowid IN
                           (SELECT rowid FROM email_changes WHERE expires_at < ?1 LIMIT ?2)",
                        params![now, STEP_ROWS],
                    )?;
                    Ok(links + changes)
                })
                .await;
            match step {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "expired one-time tokens deleted"),
                Err(e) => tracing::warn!(error = %e, "deleting expired one-time tokens failed; will retry"),
            }
        }
    });
}
