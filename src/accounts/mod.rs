//! Accounts: registration with email verification, password reset and
//! change, a change of address, and the own account (`/v1/auth/me`).

pub mod address;
mod errors;
mod handlers;
mod mailer;
pub mod passwords;
mod queries;
pub mod service;
mod upkeep;

use std::sync::Arc;

use crate::auth::{ApiKeys, BreachedList, Hasher, LoginGuard};
use crate::email::Outbox;
use crate::http::Routes;
use crate::keys::MasterKey;
use crate::store::Store;

pub use errors::AccountError;
pub use mailer::{ByEmail, MailWork, Mailer, QUEUE_DEPTH as MAIL_QUEUE_DEPTH, start as start_mailer};
pub use upkeep::spawn as spawn_upkeep;

/// The services every account flow uses, built once at start.
pub struct Deps {
    pub store: Store,
    pub hasher: Hasher,
    pub key: MasterKey,
    pub outbox: Outbox,
    pub breached: Arc<BreachedList>,
    /// The address-only work (forgot, resend), done after the answer.
    pub mailer: Mailer,
    pub defense: Arc<dyn LoginGuard>,
    /// The in-memory keys, to drop a deleted account's.
    pub api_keys: Arc<ApiKeys>,
    /// Sessions that just changed their password (a repeat is not an error).
    pub recent_changes: passwords::RecentChanges,
}

pub fn routes(r: &mut Routes) {
    use handlers::*;
    r.add(__path_register, register)
        .add(__path_verify_email, verify_email)
        .add(__path_resend, resend)
        .add(__path_forgot, forgot)
        .add(__path_reset, reset)
        .add(__path_change, change)
        .add(__path_change_email, change_email)
        .add(__path_me, me)
        .add(__path_rename, rename)
        .add(__path_delete_me, delete_me);
}
