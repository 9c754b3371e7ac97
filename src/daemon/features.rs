//! Builds the features' shared services (hashing pool, token signer, email
//! outbox, breached list), starts their background workers (the email
//! worker, the refresh-token sweeper), and returns the route registration
//! every API listener applies.

use std::sync::Arc;

use actix_web::web;
use anyhow::Context;
use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accounts::{self, BreachedList, Hasher};
use crate::config::Config;
use crate::email::{self, Outbox};
use crate::http::ApiRoutes;
use crate::keys::MasterKey;
use crate::sessions::{self, TokenSigner};
use crate::store::Store;

/// Reads `[passwords].pepper_file` (trailing newline trimmed), if set.
fn pepper(cfg: &Config) -> anyhow::Result<Option<Vec<u8>>> {
    let path = cfg.passwords.pepper_file.trim();
    if path.is_empty() {
        return Ok(None);
    }
    let mut bytes = std::fs::read(path).with_context(|| format!("passwords.pepper_file {path}"))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    anyhow::ensure!(bytes.len() >= 16, "passwords.pepper_file {path}: needs at least 16 bytes");
    Ok(Some(bytes))
}

pub async fn start(
    shared: &Arc<ArcSwap<Config>>,
    store: &Store,
    key: MasterKey,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) -> anyhow::Result<ApiRoutes> {
    let cfg = shared.load_full();
    let hasher = web::Data::new(Hasher::start(pepper(&cfg)?));
    // Security: make the dummy hash now, off the request path; otherwise the
    // first unknown-email login would pay for it and stand out by ~20 ms.
    let primer = Hasher::clone(&hasher);
    let params = cfg.passwords.argon2;
    tracker.spawn(async move {
        if let Err(e) = primer.verify_dummy(params, String::new()).await {
            tracing::warn!(error = %e, "could not prepare the dummy password hash");
        }
    });
    let signer = web::Data::new(TokenSigner::load(store, &key, &cfg).await?);
    let breached = web::Data::new(
        BreachedList::load(&cfg)
            .with_context(|| format!("passwords.breached_list {}", cfg.passwords.breached_list))?,
    );
    let outbox = Outbox::default();
    email::spawn_worker(
        tracker,
        cancel.child_token(),
        store.clone(),
        Arc::clone(shared),
        key.clone(),
        outbox.clone(),
    );
    sessions::spawn_sweeper(tracker, cancel.child_token(), store.clone());
    let outbox = web::Data::new(outbox);
    let key = web::Data::new(key);
    let tasks = web::Data::new(tracker.clone());
    Ok(Arc::new(move |c: &mut web::ServiceConfig| {
        c.app_data(hasher.clone())
            .app_data(signer.clone())
            .app_data(breached.clone())
            .app_data(outbox.clone())
            .app_data(key.clone())
            .app_data(tasks.clone());
        accounts::routes(c);
        sessions::routes(c);
    }))
}
