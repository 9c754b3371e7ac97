//! Accounts: registration with email verification, password reset and
//! change, and the own account (`/v1/auth/me`).

mod errors;
mod handlers;
mod mailer;
mod passwords;
mod queries;
pub mod service;

use std::sync::Arc;

use actix_web::web;

use crate::auth::{BreachedList, Hasher};
use crate::defense::Defense;
use crate::email::Outbox;
use crate::keys::MasterKey;
use crate::store::Store;

pub use errors::AccountError;
pub use mailer::{MailWork, Mailer, QUEUE_DEPTH as MAIL_QUEUE_DEPTH, start as start_mailer};

/// The services every account flow uses, built once at start.
pub struct Deps {
    pub store: Store,
    pub hasher: Hasher,
    pub key: MasterKey,
    pub outbox: Outbox,
    pub breached: Arc<BreachedList>,
    /// The address-only work (forgot, resend), done after the answer.
    pub mailer: Mailer,
    pub defense: Arc<Defense>,
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
