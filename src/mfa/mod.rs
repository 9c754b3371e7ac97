//! The second factor a person manages for their own account: enrolling a
//! TOTP authenticator (secret, `otpauth://` URI and QR code), confirming it
//! with a first code (which returns the recovery codes, once), replacing
//! the recovery codes, and turning TOTP off. The checks themselves live in
//! `auth::second_factor`, shared with login's second step.

mod errors;
mod handlers;
pub mod service;

use crate::auth::Hasher;
use crate::http::Routes;
use crate::keys::MasterKey;
use crate::store::Store;

pub use errors::MfaError;

/// The services the MFA calls use, built once at start.
pub struct Deps {
    pub store: Store,
    pub hasher: Hasher,
    pub key: MasterKey,
    /// Woken after a notice to the person was queued.
    pub outbox: crate::email::Outbox,
    /// A wrong password counts toward the login throttle and lock.
    pub defense: std::sync::Arc<dyn crate::auth::LoginGuard>,
}

pub fn routes(r: &mut Routes) {
    use handlers::*;
    r.add(__path_enrol, enrol)
        .add(__path_confirm, confirm)
        .add(__path_disable, disable)
        .add(__path_recovery_codes, recovery_codes);
}
