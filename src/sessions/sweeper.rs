//! Session upkeep. Deletes the refresh tokens of ended sessions (revoked,
//! past their maximum age, or deleted with their user): refresh_tokens has
//! no index on session_id — one fewer page written per rotation — so instead
//! of deleting by session, the sweeper walks the table by rowid, a bounded
//! step at a time, and wraps around at the end. Also deletes sessions that
//! ended more than `[tokens].ended_session_retention` ago (their tokens go
//! with the next pass) and second steps past their five minutes — neither
//! for an hour after the clock jumped (`clock::steady`) —, keeps the
//! `latch_sessions_active` gauge, and recounts the parameters of stored
//! password hashes for the dummy hash.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::queries;
use crate::auth::{DUMMY_RECOUNT_EVERY, DummyParams, Hasher};
use crate::config::Config;
use crate::store::Store;

/// Rows looked at per step: a step is one job in a write batch, so it must
/// stay short (a few milliseconds) to keep that batch's latency low.
const STEP_ROWS: i64 = 2_000;
/// Pause between steps: with `STEP_ROWS` that is 1,000 rows a second, a
/// full pass over a million tokens in about 17 minutes.
const STEP_EVERY: Duration = Duration::from_secs(2);

/// How often live sessions are counted (a scan of the sessions table on a
/// reader connection) and long-ended ones pruned.
const COUNT_EVERY: Duration = Duration::from_secs(15);
/// Sessions deleted per prune: one short job in a write batch, like a step.
const PRUNE_ROWS: i64 = 2_000;

/// What the sweeper works on.
pub struct Upkeep {
    pub store: Store,
    pub config: Arc<ArcSwap<Config>>,
    pub dummy: Arc<DummyParams>,
    pub hasher: Hasher,
}

/// Starts the sweeper on `tracker`; it stops when `cancel` fires.
pub fn spawn(tracker: &TaskTracker, cancel: CancellationToken, upkeep: Upkeep) {
    let Upkeep { store, config, dummy, hasher } = upkeep;
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(STEP_EVERY);
        let mut cursor = 0;
        let mut counted: Option<std::time::Instant> = None;
        let mut recounted = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {},
            }
            if recounted.elapsed() >= DUMMY_RECOUNT_EVERY {
                recounted = std::time::Instant::now();
                dummy.recount(&store).await;
                // Security: make a dummy for new parameters now, not on the
                // next unknown-email login, which would stand out by a hash.
                let params = dummy.get(config.load().passwords.argon2);
                if let Err(e) = hasher.verify_dummy(params, String::new()).await {
                    tracing::warn!(error = %e, "could not prepare the dummy password hash");
                }
            }
            if counted.is_none_or(|t| t.elapsed() >= COUNT_EVERY) {
                counted = Some(std::time::Instant::now());
                match store.read(|c| queries::count_live_sessions(c, crate::clock::now_unix())).await {
                    Ok(n) => metrics::gauge!("latch_sessions_active").set(n as f64),
                    Err(e) => tracing::warn!(error = %e, "counting live sessions failed"),
                }
                if crate::clock::steady() {
                    prune_ended(&store, config.load().tokens.ended_session_retention.0).await;
                }
            }
            // A session ended by a clock jumped ahead keeps its tokens.
            if !crate::clock::steady() {
                continue;
            }
            let after = cursor;
            let step = store
                .write(move |c| queries::sweep_refresh_tokens(c, after, STEP_ROWS, crate::clock::now_unix()))
                .await;
            match step {
                Ok(swept) => {
                    if swept.deleted > 0 {
                        tracing::debug!(deleted = swept.deleted, "refresh tokens of ended sessions deleted");
                    }
                    cursor = swept.next;
                }
                Err(e) => tracing::warn!(error = %e, "refresh-token sweep failed; will retry"),
            }
        }
    });
}

/// Deletes up to `PRUNE_ROWS` sessions that ended (revoked or expired)
/// more than `retention` ago; audit rows about them stay.
async fn prune_ended(store: &Store, retention: Duration) {
    let cutoff = crate::clock::now_unix() - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX / 2);
    let pruned = store.write(move |c| {
        // Second steps nobody finished: at most five minutes' worth.
        queries::delete_expired_mfa_tokens(c, crate::clock::now_unix())?;
        queries::delete_ended_sessions(c, cutoff, PRUNE_ROWS)
    });
    match pruned.await {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "sessions past ended_session_retention deleted"),
        Err(e) => tracing::warn!(error = %e, "pruning ended sessions failed; will retry"),
    }
}
