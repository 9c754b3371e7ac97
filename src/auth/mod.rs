//! The auth layer, under every feature: who is calling (`Principal`: a
//! user's session, an API key, or a peer on the admin socket) and its
//! extractors and guards; access-token signing and validation; the argon2id
//! hashing pool and the password and email policy; the second factor
//! (TOTP and recovery codes, checked alike by login and by the mfa
//! feature); and the few queries
//! several features share (session liveness, roles, revoking a user's
//! sessions). It imports only layers, never a feature.

mod admission;
pub mod api_keys;
mod dummy;
mod guard;
mod hash_memory;
pub mod imported;
pub mod live;
mod password;
mod policy;
mod principal;
pub mod queries;
mod reauth;
pub mod second_factor;
mod signing;
pub mod signing_keys;
mod verified;

pub use api_keys::{ApiKey, ApiKeys};
pub use dummy::{DummyParams, RECOUNT_EVERY as DUMMY_RECOUNT_EVERY};
pub use guard::{LoginGuard, LoginRefused, Pending};
pub use hash_memory::workspaces_fit;
pub use live::{LiveView, UserFacts};
pub use password::{
    HashError, Hasher, QUEUE_PER_CORE as HASH_QUEUE_PER_CORE, Verified, hash_now, read_pepper,
};
pub use policy::{
    BreachedList, MAX_PASSWORD_BYTES, PolicyError, check_password, display_text, is_unshowable,
    normalize_email, reject_oversized, validate_email,
};
pub use principal::{Authenticator, Principal, UserSession};
pub use reauth::{Reauth, ReauthError, WRONG_PASSWORD};
pub use signing::{
    ACCESS_TYP, AccessClaims, MAX_TOKEN_BYTES, Signer, SigningError, check_secret_file, issuer,
};
pub use signing_keys::jwks_max_age;

use crate::http::problem::{Kind, ToProblem};
use crate::store::StoreError;

/// Why a caller was not let in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing or invalid bearer credential")]
    Unauthorized,
    #[error("the caller lacks the role or scope this needs")]
    Forbidden,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ToProblem for AuthError {
    fn kind(&self) -> Kind {
        match self {
            AuthError::Unauthorized => Kind::Unauthorized,
            AuthError::Forbidden => Kind::Forbidden,
            AuthError::Store(e) => e.kind(),
        }
    }
}
