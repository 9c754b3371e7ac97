//! The audit log's upkeep, in one task so its two jobs never overlap:
//! `[audit].retention` (delete from the oldest end, then say so in a
//! checkpoint row) and the periodic walk of the whole chain that sets
//! `latch_audit_chain_ok`. Both work in bounded steps: a retention step is
//! one short job in a write batch, a check step one short read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rusqlite::{Connection, params};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::chain::{self, Break, CHECKPOINT_ACTION, Walk};
use super::{Entry, record};
use crate::config::Config;
use crate::store::{Store, StoreError, exec};

/// How often the chain is walked (and retention applied). A walk of a
/// million rows costs about a second of one core on a reader connection.
const CHECK_EVERY: Duration = Duration::from_secs(600);
/// Rows checked per read: a few milliseconds each.
const CHECK_STEP: i64 = 5_000;
/// Rows deleted per write job.
const PRUNE_STEP: i64 = 5_000;

pub fn spawn(tracker: &TaskTracker, cancel: CancellationToken, store: Store, config: Arc<ArcSwap<Config>>) {
    let every = crate::pause::duration("audit_check_every").unwrap_or(CHECK_EVERY);
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {},
            }
            // Not by a clock that has just jumped (`clock::steady`): what
            // retention deletes is gone for good.
            if let Some(keep) = config.load().audit.retention.filter(|_| crate::clock::steady()) {
                prune(&store, keep.0.as_secs() as i64, &cancel).await;
            }
            check(&store, &cancel).await;
        }
    });
}

async fn prune(store: &Store, keep_secs: i64, cancel: &CancellationToken) {
    let cutoff = crate::clock::now_unix().saturating_sub(keep_secs);
    while !cancel.is_cancelled() {
        match store.write(move |c| prune_step(c, cutoff, PRUNE_STEP)).await {
            Ok(0) => break,
            Ok(n) => tracing::info!(deleted = n, "audit rows past [audit].retention deleted"),
            Err(e) => {
                tracing::warn!(error = %e, "could not apply [audit].retention");
                break;
            }
        }
    }
}

/// Deletes up to `limit` of the oldest rows older than `cutoff` — only a
/// run from the oldest end, never a hole — after appending a checkpoint
/// row that names the hash the oldest remaining row follows.
pub(super) fn prune_step(c: &Connection, cutoff: i64, limit: i64) -> Result<u64, StoreError> {
    let mut stmt = c.prepare_cached("SELECT id, at, hash FROM audit_log ORDER BY id LIMIT ?1")?;
    let oldest = stmt
        .query_map([limit], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<String>>(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let run: Vec<_> = oldest.into_iter().take_while(|(_, at, _)| *at < cutoff).collect();
    let Some((through, _, hash)) = run.last().cloned() else { return Ok(0) };
    let details = json!({
        "continues_from": hash.unwrap_or_default(),
        "deleted": run.len(),
        "through_id": through,
    });
    record(c, &Entry { action: CHECKPOINT_ACTION, actor_id: None, subject_id: None, client: None, details })?;
    exec(c, "DELETE FROM audit_log WHERE id <= ?1", params![through])?;
    Ok(run.len() as u64)
}

async fn check(store: &Store, cancel: &CancellationToken) {
    let started = Instant::now();
    let key = match chain::key() {
        Ok(k) => k,
        Err(e) => return tracing::error!(error = %e, "audit chain not checked"),
    };
    let mut walk = match store.read(Walk::begin).await {
        Ok(w) => w,
        Err(e) => return tracing::warn!(error = %e, "audit chain check could not start"),
    };
    let verdict: Result<(), Break> = loop {
        if cancel.is_cancelled() {
            return;
        }
        let step = store
            .read(move |c| {
                let outcome = walk.step(c, key, CHECK_STEP)?;
                Ok((walk, outcome))
            })
            .await;
        match step {
            Ok((done, Some(verdict))) => {
                walk = done;
                break verdict;
            }
            Ok((next, None)) => walk = next,
            Err(e) => return tracing::warn!(error = %e, "audit chain check stopped"),
        }
    };
    let ok = verdict.is_ok();
    metrics::gauge!("latch_audit_chain_ok").set(if ok { 1.0 } else { 0.0 });
    match verdict {
        Ok(()) => {
            let ms = started.elapsed().as_millis() as u64;
            tracing::debug!(rows = walk.checked, ms, "audit chain intact");
        }
        Err(b) => tracing::error!(
            row = b.id,
            reason = b.reason,
            "audit chain broken: rows were changed outside latch"
        ),
    }
}
