//! Accounts: registration with email verification, password reset and
//! change, the own account (`/v1/auth/me`), and argon2id password hashing
//! on its own bounded pool.

mod handlers;
mod password;
mod policy;
mod queries;
pub mod service;

use actix_web::web;

pub use password::{HashError, Hasher, Verified, hash_now};
pub use policy::{BreachedList, normalize_email, reject_oversized};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{field}: {reason}")]
    WeakPassword { field: &'static str, reason: String },
    #[error("email: not a valid address")]
    InvalidEmail,
    #[error("{field}: longer than 1 KiB")]
    TooLong { field: &'static str },
    #[error("invalid, used or expired token")]
    InvalidToken,
    #[error("registration is closed")]
    RegistrationClosed,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Email(#[from] crate::email::EmailError),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/auth/register").route(web::post().to(handlers::register)))
        .service(web::resource("/v1/auth/verify-email").route(web::post().to(handlers::verify_email)))
        .service(web::resource("/v1/auth/verify-email/resend").route(web::post().to(handlers::resend)))
        .service(web::resource("/v1/auth/password/forgot").route(web::post().to(handlers::forgot)))
        .service(web::resource("/v1/auth/password/reset").route(web::post().to(handlers::reset)))
        .service(web::resource("/v1/auth/password/change").route(web::post().to(handlers::change)))
        .service(
            web::resource("/v1/auth/me")
                .route(web::get().to(handlers::me))
                .route(web::delete().to(handlers::delete_me)),
        );
}
