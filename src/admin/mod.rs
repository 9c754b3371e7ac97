//! Administration over the admin socket (and, for admins, later over the
//! API): daemon status, the config in force, and config reload for
//! `latchctl`.

mod api_keys;
mod audit;
mod blocks;
mod errors;
mod handlers;
mod queries;
mod roles;
mod sessions;
mod signing_keys;
mod users;

use std::sync::Arc;

use actix_web::web;

use crate::auth::{ApiKeys, BreachedList, Hasher, Signer};
use crate::defense::Defense;
use crate::email::Outbox;
use crate::keys::MasterKey;
use crate::store::Store;

pub use errors::AdminError;

/// What the admin API works with besides `AppState`.
pub struct Deps {
    pub store: Store,
    pub hasher: Hasher,
    pub breached: Arc<BreachedList>,
    pub key: MasterKey,
    pub outbox: Outbox,
    pub defense: Arc<Defense>,
    pub api_keys: Arc<ApiKeys>,
    pub signer: Arc<Signer>,
}

/// The admin API, on the admin socket and (for admins) every API listener.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/admin/status").route(web::get().to(handlers::status)))
        .service(web::resource("/v1/admin/config").route(web::get().to(handlers::config)))
        .service(web::resource("/v1/admin/config/reload").route(web::post().to(handlers::reload)))
        .service(
            web::resource("/v1/admin/blocked-ips")
                .route(web::get().to(blocks::list))
                .route(web::post().to(blocks::add)),
        )
        .service(web::resource("/v1/admin/blocked-ips/{id}").route(web::delete().to(blocks::remove)))
        .service(
            web::resource("/v1/admin/users")
                .route(web::get().to(users::list))
                .route(web::post().to(users::create)),
        )
        .service(
            web::resource("/v1/admin/users/{id}")
                .route(web::get().to(users::show))
                .route(web::patch().to(users::patch))
                .route(web::delete().to(users::delete)),
        )
        .service(
            web::resource("/v1/admin/roles")
                .route(web::get().to(roles::list))
                .route(web::post().to(roles::create)),
        )
        .service(web::resource("/v1/admin/roles/{name}").route(web::delete().to(roles::delete)))
        .service(web::resource("/v1/admin/sessions").route(web::get().to(sessions::list)))
        .service(web::resource("/v1/admin/sessions/{id}").route(web::delete().to(sessions::revoke)))
        .service(web::resource("/v1/admin/outbox").route(web::get().to(sessions::outbox)))
        .service(
            web::resource("/v1/admin/api-keys")
                .route(web::get().to(api_keys::list))
                .route(web::post().to(api_keys::create)),
        )
        .service(web::resource("/v1/admin/api-keys/{id}").route(web::delete().to(api_keys::revoke)))
        .service(web::resource("/v1/admin/audit-logs").route(web::get().to(audit::list)))
        .service(
            web::resource("/v1/admin/signing-keys")
                .route(web::get().to(signing_keys::list))
                .route(web::post().to(signing_keys::rotate)),
        )
        .service(web::resource("/v1/admin/signing-keys/{kid}").route(web::delete().to(signing_keys::revoke)));
}
