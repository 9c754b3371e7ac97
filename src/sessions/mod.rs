//! Sessions and tokens: login, refresh-token rotation, logout, the user's
//! session list, the well-known documents apps verify tokens with, and the
//! sweeper that deletes what ended sessions leave behind.

mod errors;
mod handlers;
mod introspect;
mod queries;
pub mod service;
mod sweeper;

use std::sync::Arc;

use actix_web::web;

use crate::auth::{DummyParams, Hasher, Signer};
use crate::defense::Defense;
use crate::keys::MasterKey;
use crate::store::Store;

pub use errors::SessionError;
pub use sweeper::{Upkeep, spawn as spawn_sweeper};

/// The services every session flow uses, built once at start.
pub struct Deps {
    pub store: Store,
    pub hasher: Hasher,
    pub signer: Arc<Signer>,
    pub key: MasterKey,
    /// The parameters unknown-email logins verify the dummy hash with.
    pub dummy: Arc<DummyParams>,
    pub defense: Arc<Defense>,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/auth/login").route(web::post().to(handlers::login)))
        .service(web::resource("/v1/auth/refresh").route(web::post().to(handlers::refresh)))
        .service(web::resource("/v1/auth/logout").route(web::post().to(handlers::logout)))
        .service(web::resource("/v1/auth/logout-all").route(web::post().to(handlers::logout_all)))
        .service(web::resource("/v1/auth/sessions").route(web::get().to(handlers::sessions)))
        .service(web::resource("/v1/auth/sessions/{id}").route(web::delete().to(handlers::revoke_session)))
        .service(web::resource("/v1/auth/introspect").route(web::post().to(introspect::introspect)))
        .service(web::resource("/.well-known/jwks.json").route(web::get().to(handlers::jwks)))
        .service(
            web::resource("/.well-known/openid-configuration")
                .route(web::get().to(handlers::openid_configuration)),
        );
}
