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

use crate::auth::{
    ApiKeys, Authenticator, BreachedList, DummyParams, Hasher, LiveView, LoginGuard, Signer, read_pepper,
};
use crate::config::{Config, Reloadable};
use crate::defense::Defense;
use crate::email::{self, Outbox};
use crate::http::{ApiDocument, ApiRoutes, Gate, Routes};
use crate::keys::MasterKey;
use crate::store::Store;
use crate::{accounts, admin, backup, defense, mfa, pages, sessions};

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
    /// The WAL archive's last flush, for the stop.
    pub archive: backup::archive::Finisher,
}

/// Set to `1` only by benchmarks: runs without the defense gate to measure
/// what the defenses add to a request. Never in production.
pub const BENCH_NO_DEFENSE_ENV: &str = "LATCH_BENCH_UNSAFE_NO_DEFENSE";

/// The services the features share, built once at start.
struct Services {
    store: Store,
    key: MasterKey,
    hasher: Hasher,
    dummy: Arc<DummyParams>,
    signer: Arc<Signer>,
    breached: Arc<BreachedList>,
    outbox: Outbox,
    defense: Arc<Defense>,
    api_keys: Arc<ApiKeys>,
    live: Arc<LiveView>,
    backups: Arc<backup::Deps>,
}

/// `[passwords].breached_list`, read whole at the start (a reload reads
/// it again); an unreadable file names itself.
fn breached_list(cfg: &Config) -> anyhow::Result<BreachedList> {
    let list = cfg.passwords.breached_list.as_deref();
    BreachedList::load(list).with_context(|| {
        format!("passwords.breached_list {}", list.map_or_else(String::new, |p| p.display().to_string()))
    })
}

/// Builds the shared services and starts every background worker; the
/// WAL archive's finisher goes to the stop.
async fn services(
    shared: &Arc<ArcSwap<Config>>,
    store: &Store,
    key: MasterKey,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) -> anyhow::Result<(Services, backup::archive::Finisher)> {
    let cfg = shared.load_full();
    let (hasher, dummy) = password_hashing(&cfg, store, tracker).await?;
    let signer = Arc::new(Signer::load(store, &key, &cfg).await?);
    let live = LiveView::watching(store).await?;
    let breached = Arc::new(breached_list(&cfg)?);
    email::SmtpSettings::check(&cfg).map_err(anyhow::Error::msg)?;
    let outbox = Outbox::default();
    let api_keys = Arc::new(ApiKeys::load(store).await?);
    spawn_key_use_flusher(tracker, cancel.child_token(), Arc::clone(&api_keys));
    let ctx = crate::defense::Context {
        store: store.clone(),
        config: Arc::clone(shared),
        key: key.clone(),
        outbox: outbox.clone(),
        api_keys: Arc::clone(&api_keys),
    };
    let defense = crate::defense::start(ctx, tracker, cancel.child_token()).await?;
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
    accounts::spawn_upkeep(tracker, cancel.child_token(), store.clone());
    crate::audit::spawn_upkeep(tracker, cancel.child_token(), store.clone(), Arc::clone(shared));
    let archive = backup::archive::install(store, Arc::clone(shared), tracker, cancel.child_token()).await?;
    let backups = Arc::new(backup::Deps::new(store.clone()));
    backup::spawn_schedule(tracker, cancel.child_token(), Arc::clone(&backups), Arc::clone(shared));
    let services = Services {
        store: store.clone(),
        key,
        hasher,
        dummy,
        signer,
        breached,
        outbox,
        defense,
        api_keys,
        live,
        backups,
    };
    Ok((services, archive))
}

/// The hashing pool, and the dummy hash an unknown address's login checks
/// (made now, in the background).
async fn password_hashing(
    cfg: &Config,
    store: &Store,
    tracker: &TaskTracker,
) -> anyhow::Result<(Hasher, Arc<DummyParams>)> {
    let pepper = read_pepper(cfg.passwords.pepper_file.as_deref()).map_err(anyhow::Error::msg)?;
    let hasher = Hasher::start(pepper, cfg.passwords.max_queue_wait.0);
    let dummy = Arc::new(DummyParams::default());
    dummy.recount(store).await;
    // Security: make the dummy hash now, off the request path; otherwise the
    // first unknown-email login would pay for it and stand out by ~20 ms.
    let (primer, params) = (hasher.clone(), dummy.get(cfg.passwords.argon2));
    tracker.spawn(async move {
        if let Err(e) = primer.verify_dummy(params, String::new()).await {
            tracing::warn!(error = %e, "could not prepare the dummy password hash");
        }
    });
    Ok((hasher, dummy))
}

pub async fn start(
    shared: &Arc<ArcSwap<Config>>,
    store: &Store,
    key: MasterKey,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) -> anyhow::Result<Features> {
    let (s, archive) = services(shared, store, key, tracker, cancel).await?;
    let reloadable: Vec<Arc<dyn Reloadable>> = vec![
        Arc::new(s.hasher.clone()),
        Arc::new(Arc::clone(&s.breached)),
        Arc::new(Arc::clone(&s.signer)),
        Arc::new(Arc::clone(&s.defense)),
        Arc::new(email::SmtpSettings),
    ];
    let gate: Option<Arc<dyn Gate>> = if std::env::var(BENCH_NO_DEFENSE_ENV).is_ok_and(|v| v == "1") {
        tracing::warn!("{BENCH_NO_DEFENSE_ENV}=1: no rate limits, blocks or anomaly rules (benchmark mode)");
        None
    } else {
        Some(Arc::clone(&s.defense) as Arc<dyn Gate>)
    };
    let admin_routes = admin_routes(&s);
    let routes = api_routes(&s, tracker, cancel, Arc::clone(&admin_routes));
    Ok(Features { routes, admin_routes, reloadable, gate, archive })
}

/// The admin API with its dependencies.
fn admin_routes(s: &Services) -> ApiRoutes {
    let deps = web::Data::new(admin::Deps {
        store: s.store.clone(),
        hasher: s.hasher.clone(),
        breached: Arc::clone(&s.breached),
        key: s.key.clone(),
        outbox: s.outbox.clone(),
        defense: Arc::clone(&s.defense) as Arc<dyn LoginGuard>,
        api_keys: Arc::clone(&s.api_keys),
        signer: Arc::clone(&s.signer),
    });
    let backups = web::Data::from(Arc::clone(&s.backups));
    let defense = web::Data::from(Arc::clone(&s.defense));
    Arc::new(move |c: &mut web::ServiceConfig| {
        c.app_data(deps.clone()).app_data(backups.clone()).app_data(defense.clone());
        let mut r = Routes::new();
        r.refusing_parameters(admin::no_parameters);
        admin_feature_routes(&mut r);
        r.register(c);
    })
}

/// The admin API's routes: administration proper, the IP blocks and the
/// backups.
fn admin_feature_routes(r: &mut Routes) {
    admin::routes(r);
    defense::routes(r);
    backup::routes(r);
}

/// Every route of the API listeners: the features' and, for admins, the
/// admin API.
fn api_routes(
    s: &Services,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
    admin: ApiRoutes,
) -> ApiRoutes {
    let auth = web::Data::new(Authenticator {
        store: s.store.clone(),
        signer: Arc::clone(&s.signer),
        live: Arc::clone(&s.live),
        api_keys: Arc::clone(&s.api_keys),
    });
    let accounts = web::Data::new(accounts_deps(s, tracker, cancel));
    let sessions = web::Data::new(sessions::Deps {
        store: s.store.clone(),
        hasher: s.hasher.clone(),
        signer: Arc::clone(&s.signer),
        key: s.key.clone(),
        dummy: Arc::clone(&s.dummy),
        defense: Arc::clone(&s.defense) as Arc<dyn LoginGuard>,
        outbox: s.outbox.clone(),
    });
    let mfa = web::Data::new(mfa::Deps {
        store: s.store.clone(),
        hasher: s.hasher.clone(),
        key: s.key.clone(),
        outbox: s.outbox.clone(),
        defense: Arc::clone(&s.defense) as Arc<dyn LoginGuard>,
    });
    let actions = super::page_actions::FeatureActions {
        accounts: accounts.clone(),
        sessions: sessions.clone(),
        mfa: mfa.clone(),
    };
    let pages = web::Data::new(pages::Deps {
        store: s.store.clone(),
        key: s.key.clone(),
        actions: Arc::new(actions),
    });
    let document = web::Data::new(ApiDocument(openapi_json().into()));
    Arc::new(move |c: &mut web::ServiceConfig| {
        c.app_data(auth.clone()).app_data(accounts.clone()).app_data(sessions.clone()).app_data(mfa.clone());
        c.app_data(pages.clone());
        c.app_data(document.clone());
        let mut r = Routes::new();
        feature_routes(&mut r);
        crate::http::document_routes(&mut r);
        r.register(c);
        admin(c);
    })
}

/// The accounts feature's dependencies; building them starts its mail
/// worker on `tracker`, stopped when `cancel` fires.
fn accounts_deps(s: &Services, tracker: &TaskTracker, cancel: &CancellationToken) -> accounts::Deps {
    let work = accounts::MailWork { store: s.store.clone(), key: s.key.clone(), outbox: s.outbox.clone() };
    accounts::Deps {
        store: s.store.clone(),
        hasher: s.hasher.clone(),
        key: s.key.clone(),
        outbox: s.outbox.clone(),
        breached: Arc::clone(&s.breached),
        mailer: accounts::start_mailer(tracker, cancel.child_token(), work),
        defense: Arc::clone(&s.defense) as Arc<dyn LoginGuard>,
        api_keys: Arc::clone(&s.api_keys),
        recent_changes: Default::default(),
    }
}

/// The features' routes on the API listeners (the admin API is added
/// apart: it also serves the admin socket).
fn feature_routes(r: &mut Routes) {
    accounts::routes(r);
    sessions::routes(r);
    mfa::routes(r);
    pages::routes(r);
}

/// The OpenAPI 3.1 document of every route an API listener serves, from
/// the same registration calls that serve them.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut r = Routes::new();
    crate::http::ops_routes(&mut r);
    crate::http::document_routes(&mut r);
    feature_routes(&mut r);
    admin_feature_routes(&mut r);
    r.openapi()
}

fn openapi_json() -> Vec<u8> {
    // Serializing plain data cannot fail; an empty document would show it.
    serde_json::to_vec(&openapi()).unwrap_or_default()
}

/// How often API-key uses (`last_used_at`) are written: one write for all
/// the keys used since, instead of one per request.
const KEY_USE_FLUSH: std::time::Duration = std::time::Duration::from_secs(30);

fn spawn_key_use_flusher(tracker: &TaskTracker, cancel: CancellationToken, keys: Arc<ApiKeys>) {
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(KEY_USE_FLUSH);
        loop {
            let stopping = tokio::select! {
                _ = cancel.cancelled() => true,
                _ = tick.tick() => false,
            };
            if let Err(e) = keys.flush_uses().await {
                tracing::warn!(error = %e, "writing API-key uses failed");
            }
            if stopping {
                break;
            }
        }
    });
}
