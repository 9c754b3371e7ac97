//! Builds the features' shared services (hashing pool, token signer, email
//! outbox, breached list), starts their background workers (the email
//! worker, the session sweeper), and returns the route registration every
//! API listener applies — one `Deps` bundle per feature — and the services
//! a reload must rebuild.

use std::sync::Arc;

use actix_web::web;
use anyhow::Context;
use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, BreachedList, DummyParams, Hasher, Signer, read_pepper};
use crate::config::{Config, Reloadable};
use crate::email::{self, Outbox};
use crate::http::{ApiRoutes, Gate};
use crate::keys::MasterKey;
use crate::store::Store;
use crate::{accounts, admin, sessions};

/// What `start` hands the daemon.
pub struct Features {
    pub routes: ApiRoutes,
    /// The admin API, served on the admin socket.
    pub admin_routes: ApiRoutes,
    /// Rebuilt by every reload before the new config is swapped in.
    pub reloadable: Vec<Arc<dyn Reloadable>>,
    /// The defenses every API request passes (`None` only in benchmarks
    /// measuring what they cost).
    pub gate: Option<Arc<dyn Gate>>,
}

/// Set to `1` only by benchmarks: runs without the defense gate to measure
/// what the defenses add to a request. Never in production.
pub const BENCH_NO_DEFENSE_ENV: &str = "LATCH_BENCH_UNSAFE_NO_DEFENSE";

pub async fn start(
    shared: &Arc<ArcSwap<Config>>,
    store: &Store,
    key: MasterKey,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) -> anyhow::Result<Features> {
    let cfg = shared.load_full();
    let hasher =
        Hasher::start(read_pepper(cfg.passwords.pepper_file.as_deref()).map_err(anyhow::Error::msg)?);
    let dummy = Arc::new(DummyParams::default());
    dummy.recount(store).await;
    // Security: make the dummy hash now, off the request path; otherwise the
    // first unknown-email login would pay for it and stand out by ~20 ms.
    let primer = hasher.clone();
    let params = dummy.get(cfg.passwords.argon2);
    tracker.spawn(async move {
        if let Err(e) = primer.verify_dummy(params, String::new()).await {
            tracing::warn!(error = %e, "could not prepare the dummy password hash");
        }
    });
    let signer = Arc::new(Signer::load(store, &key, &cfg).await?);
    let list = cfg.passwords.breached_list.as_deref();
    let breached = Arc::new(BreachedList::load(list).with_context(|| {
        format!("passwords.breached_list {}", list.map_or_else(String::new, |p| p.display().to_string()))
    })?);
    let outbox = Outbox::default();
    let defense = crate::defense::start(
        store,
        Arc::clone(shared),
        key.clone(),
        outbox.clone(),
        tracker,
        cancel.child_token(),
    )
    .await?;
    let work = accounts::MailWork { store: store.clone(), key: key.clone(), outbox: outbox.clone() };
    let mailer = accounts::start_mailer(tracker, cancel.child_token(), work);
    email::spawn_worker(
        tracker,
        cancel.child_token(),
        store.clone(),
        Arc::clone(shared),
        key.clone(),
        outbox.clone(),
    );
    let upkeep = sessions::Upkeep {
        store: store.clone(),
        config: Arc::clone(shared),
        dummy: Arc::clone(&dummy),
        hasher: hasher.clone(),
    };
    sessions::spawn_sweeper(tracker, cancel.child_token(), upkeep);

    let reloadable: Vec<Arc<dyn Reloadable>> = vec![
        Arc::new(hasher.clone()),
        Arc::new(Arc::clone(&breached)),
        Arc::new(Arc::clone(&signer)),
        Arc::new(Arc::clone(&defense)),
    ];
    let gate: Option<Arc<dyn Gate>> = if std::env::var(BENCH_NO_DEFENSE_ENV).is_ok_and(|v| v == "1") {
        tracing::warn!("{BENCH_NO_DEFENSE_ENV}=1: no rate limits, blocks or anomaly rules (benchmark mode)");
        None
    } else {
        Some(Arc::clone(&defense) as Arc<dyn Gate>)
    };
    let auth = web::Data::new(Authenticator { store: store.clone(), signer: Arc::clone(&signer) });
    let account_deps = web::Data::new(accounts::Deps {
        store: store.clone(),
        hasher: hasher.clone(),
        key: key.clone(),
        outbox,
        breached,
        mailer,
        defense: Arc::clone(&defense),
    });
    let session_deps = web::Data::new(sessions::Deps {
        store: store.clone(),
        hasher,
        signer,
        key,
        dummy,
        defense: Arc::clone(&defense),
    });
    let routes: ApiRoutes = Arc::new(move |c: &mut web::ServiceConfig| {
        c.app_data(auth.clone()).app_data(account_deps.clone()).app_data(session_deps.clone());
        accounts::routes(c);
        sessions::routes(c);
    });
    let admin_deps = web::Data::new(admin::Deps { defense });
    let admin_routes: ApiRoutes = Arc::new(move |c: &mut web::ServiceConfig| {
        c.app_data(admin_deps.clone());
        admin::routes(c);
    });
    Ok(Features { routes, admin_routes, reloadable, gate })
}
