//! Sessions and tokens: login, refresh-token rotation, logout, the user's
//! session list, the access-token signer, the `Authenticated` extractor
//! that guards latch's own endpoints, and the sweeper that deletes the
//! refresh tokens of ended sessions.

mod auth;
mod handlers;
mod queries;
pub mod service;
pub mod signing;
mod sweeper;

use actix_web::web;

pub use auth::Authenticated;
pub use queries::{revoke_user_sessions, roles_of};
pub use signing::TokenSigner;
pub use sweeper::spawn as spawn_sweeper;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("email address not verified")]
    EmailNotVerified,
    #[error("account disabled")]
    AccountDisabled,
    #[error("invalid or expired token")]
    InvalidToken,
    #[error("refresh token reused; session revoked")]
    RefreshReused,
    #[error("missing or invalid bearer credential")]
    Unauthorized,
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Account(#[from] crate::accounts::AccountError),
    #[error(transparent)]
    Hash(#[from] crate::accounts::HashError),
    #[error(transparent)]
    Signing(#[from] signing::SigningError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/auth/login").route(web::post().to(handlers::login)))
        .service(web::resource("/v1/auth/refresh").route(web::post().to(handlers::refresh)))
        .service(web::resource("/v1/auth/logout").route(web::post().to(handlers::logout)))
        .service(web::resource("/v1/auth/logout-all").route(web::post().to(handlers::logout_all)))
        .service(web::resource("/v1/auth/sessions").route(web::get().to(handlers::sessions)))
        .service(web::resource("/v1/auth/sessions/{id}").route(web::delete().to(handlers::revoke_session)))
        .service(web::resource("/.well-known/jwks.json").route(web::get().to(handlers::jwks)))
        .service(
            web::resource("/.well-known/openid-configuration")
                .route(web::get().to(handlers::openid_configuration)),
        );
}
