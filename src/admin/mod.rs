//! Administration over the admin socket (and, for admins, later over the
//! API): daemon status, the config in force, and config reload for
//! `latchctl`.

mod address;
mod api_keys;
mod audit;
mod errors;
mod handlers;
mod queries;
mod roles;
mod sessions;
mod signing_keys;
mod users;

use std::sync::Arc;

use crate::auth::{ApiKeys, BreachedList, Hasher, LoginGuard, Signer};
use crate::email::Outbox;
use crate::http::Routes;
use crate::keys::MasterKey;
use crate::store::Store;

pub use errors::AdminError;
pub use handlers::no_parameters;

/// What the admin API works with besides `AppState`.
pub struct Deps {
    pub store: Store,
    pub hasher: Hasher,
    pub breached: Arc<BreachedList>,
    pub key: MasterKey,
    pub outbox: Outbox,
    pub defense: Arc<dyn LoginGuard>,
    pub api_keys: Arc<ApiKeys>,
    pub signer: Arc<Signer>,
}

/// The admin API, on the admin socket and (for admins) every API listener.
pub fn routes(r: &mut Routes) {
    r.add(handlers::__path_status, handlers::status)
        .add(handlers::__path_config, handlers::config)
        .add(handlers::__path_reload, handlers::reload)
        .add(users::__path_list, users::list)
        .add(users::__path_create, users::create)
        .add(users::__path_show, users::show)
        .add(users::__path_patch, users::patch)
        .add(users::__path_delete, users::delete)
        .add(roles::__path_list, roles::list)
        .add(roles::__path_create, roles::create)
        .add(roles::__path_delete, roles::delete)
        .add(sessions::__path_list, sessions::list)
        .add(sessions::__path_revoke, sessions::revoke)
        .add(sessions::__path_outbox, sessions::outbox)
        .add(api_keys::__path_list, api_keys::list)
        .add(api_keys::__path_create, api_keys::create)
        .add(api_keys::__path_revoke, api_keys::revoke)
        .add(audit::__path_list, audit::list)
        .add(signing_keys::__path_list, signing_keys::list)
        .add(signing_keys::__path_rotate, signing_keys::rotate)
        .add(signing_keys::__path_revoke, signing_keys::revoke);
}
