//! Starting the defenses, and their background worker: it writes what the
//! request path decided in memory (a new block, an account-wide lock, an
//! anomaly's audit row, a revoked session, a new-sign-in notice) so no
//! request waits for a write, and every `UPKEEP_EVERY` it drops expired
//! blocks and locks, evicts idle limiter keys and failure counts (memory
//! stays bounded whatever an attacker rotates through) and sets the gauges.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::anomaly::{Recent, Rule};
use super::blocks::{Block, Blocks};
use super::limits::Limits;
use super::places::Places;
use super::throttle::Throttle;
use super::{Defense, queries};
use crate::audit::{self, Entry};
use crate::auth::ApiKeys;
use crate::config::Config;
use crate::email::{self, Outbox, Template};
use crate::http::ClientInfo;
use crate::keys::MasterKey;
use crate::store::{Store, StoreError};

/// Writes waiting for the worker; beyond this they are dropped (counted).
const QUEUE: usize = 1024;
const UPKEEP_EVERY: Duration = Duration::from_secs(10);
/// Failure counts and firings idle this long are forgotten.
const IDLE: Duration = Duration::from_secs(3600);

/// What the worker writes.
pub(super) enum Event {
    Persist(Block),
    Lock { email: String, until: i64 },
    Anomaly { rule: Rule, client: ClientInfo, user_id: Option<String>, details: serde_json::Value },
    Revoke { session_id: String, user_id: String, client: ClientInfo },
    NewSignIn { user_id: String, client: ClientInfo },
}

/// What the new-sign-in notice needs.
struct Mail {
    config: Arc<ArcSwap<Config>>,
    key: MasterKey,
    outbox: Outbox,
}

/// Loads the blocks and locks in force and starts the worker.
/// What the defenses work with.
pub struct Context {
    pub store: Store,
    pub config: Arc<ArcSwap<Config>>,
    pub key: MasterKey,
    pub outbox: Outbox,
    /// So only real API keys are exempt from the bot rule.
    pub api_keys: Arc<ApiKeys>,
}

pub async fn start(
    ctx: Context,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> Result<Arc<Defense>, StoreError> {
    let Context { store, config, key, outbox, api_keys } = ctx;
    let store = &store;
    let now = crate::clock::now_unix();
    let blocks = store.read(move |c| queries::live_blocks(c, now)).await?;
    let locks: HashMap<String, i64> =
        store.read(move |c| queries::live_locks(c, now)).await?.into_iter().collect();
    let (tx, rx) = mpsc::channel(QUEUE);
    let defense = Arc::new(Defense {
        limits: ArcSwap::from_pointee(Limits::new(&config.load())),
        blocks: Blocks::new(blocks),
        throttle: Throttle::new(locks),
        recent: Recent::default(),
        places: Places::new(),
        events: tx,
        store: store.clone(),
        api_keys,
    });
    gauges(&defense, now);
    let (d, mail) = (Arc::clone(&defense), Mail { config, key, outbox });
    tracker.spawn(async move {
        let mut rx = rx;
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(event) = rx.recv() => {
                    if let Err(e) = write(&d.store, &mail, event).await {
                        tracing::warn!(error = %e, "defense: a write failed");
                    }
                }
                _ = tick.tick() => upkeep(&d).await,
            }
        }
    });
    Ok(defense)
}

fn gauges(d: &Defense, now: i64) {
    metrics::gauge!("latch_blocked_ips").set(d.blocks.list(now).len() as f64);
    metrics::gauge!("latch_locked_accounts").set(d.throttle.locked(now) as f64);
}

async fn upkeep(d: &Defense) {
    let now = crate::clock::now_unix();
    d.limits.load().evict_idle();
    d.blocks.evict_idle(IDLE);
    d.recent.evict(IDLE);
    d.places.evict();
    let expired = !d.blocks.expire(now).is_empty();
    let ended = d.throttle.evict(now, IDLE);
    gauges(d, now);
    let cleaned = d
        .store
        .write(move |c| {
            if expired {
                queries::delete_expired_blocks(c, now)?;
            }
            for email in &ended {
                queries::delete_lock(c, email)?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = cleaned {
        tracing::warn!(error = %e, "defense: removing expired blocks and locks failed");
    }
}

async fn write(store: &Store, mail: &Mail, event: Event) -> Result<(), StoreError> {
    match event {
        Event::Persist(block) => {
            tracing::warn!(cidr = %block.cidr, reason = %block.reason, "address blocked");
            store
                .write(move |c| {
                    queries::insert_block(c, &block)?;
                    let details = serde_json::json!({"cidr": block.cidr.to_string(), "reason": block.reason, "expires_at": block.expires_at});
                    audit::record(c, &Entry { action: "ip_blocked", actor_id: None, subject_id: None, client: None, details })
                })
                .await
        }
        Event::Lock { email, until } => store.write(move |c| queries::upsert_lock(c, &email, until)).await,
        Event::Anomaly { rule, client, user_id, details } => {
            let action = format!("anomaly_{}", rule.label());
            store
                .write(move |c| {
                    let entry = Entry {
                        action: &action,
                        actor_id: None,
                        subject_id: user_id.as_deref(),
                        client: Some(&client),
                        details,
                    };
                    audit::record(c, &entry)
                })
                .await
        }
        Event::Revoke { session_id, user_id, client } => {
            store
                .write(move |c| {
                    crate::auth::queries::revoke_session(
                        c,
                        &session_id,
                        "anomaly_rapid_refresh",
                        crate::clock::now_unix(),
                    )?;
                    let details = serde_json::json!({"session_id": session_id, "reason": "anomaly"});
                    audit::record(c, &Entry::by_user("session_revoked", &user_id, &client).with(details))
                })
                .await
        }
        Event::NewSignIn { user_id, client } => notify_new_sign_in(store, mail, user_id, client).await,
    }
}

/// Mails the account's owner about a sign-in from a new network.
async fn notify_new_sign_in(
    store: &Store,
    mail: &Mail,
    user_id: String,
    client: ClientInfo,
) -> Result<(), StoreError> {
    let uid = user_id.clone();
    let Some(to) = store.read(move |c| queries::email_of(c, &uid)).await? else { return Ok(()) };
    let cfg = mail.config.load_full();
    let template = Template::NewSignIn {
        ip: client.ip.clone(),
        device: client
            .user_agent
            .as_deref()
            .map_or_else(|| "an unknown device".into(), crate::http::device::describe),
        at: crate::clock::now_rfc3339(),
    };
    let message = match email::prepare(&cfg, &mail.key, &to, &template) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "defense: preparing the new sign-in notice failed");
            return Ok(());
        }
    };
    let cap = cfg.email.max_per_recipient;
    store.write(move |c| email::enqueue(c, cap, message).map(|_| ())).await?;
    mail.outbox.wake.notify_one();
    Ok(())
}
