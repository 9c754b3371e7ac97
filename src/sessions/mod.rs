//! Sessions and tokens: login (with its second step when TOTP is on),
//! refresh-token rotation, logout, the user's
//! session list, the well-known documents apps verify tokens with, and the
//! sweeper that deletes what ended sessions leave behind.

mod errors;
mod handlers;
mod introspect;
mod queries;
pub mod refresh_token;
pub mod second_step;
pub mod service;
mod sweeper;

use std::sync::Arc;

use crate::auth::{DummyParams, Hasher, LoginGuard, Signer};
use crate::email::Outbox;
use crate::http::Routes;
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
    pub defense: Arc<dyn LoginGuard>,
    /// Woken when a sign-in queued a mail (a recovery code was used).
    pub outbox: Outbox,
}

pub fn routes(r: &mut Routes) {
    use handlers::*;
    r.add(__path_login, login)
        .add(__path_login_mfa, login_mfa)
        .add(__path_refresh, refresh)
        .add(__path_logout, logout)
        .add(__path_logout_all, logout_all)
        .add(__path_sessions, sessions)
        .add(__path_revoke_session, revoke_session)
        .add(introspect::__path_introspect, introspect::introspect)
        .add(__path_jwks, jwks)
        .add(__path_openid_configuration, openid_configuration);
}
