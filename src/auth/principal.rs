//! Who is calling. A `Principal` is a user's live session (a bearer access
//! token that is valid *and* whose session is live and user active, with
//! roles from the database or the live view that mirrors it, never from the
//! token), an API key, or a peer on the admin socket (already checked by
//! SO_PEERCRED). Guards ask a principal for a role or scope, so admin calls
//! have one code path whoever makes them. `UserSession` is the extractor for
//! calls only a signed-in user can make (`/v1/auth/*`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};

use super::AuthError;
use super::api_keys::ApiKeys;
use super::live::{LiveView, UserFacts};
use super::signing::Signer;
use crate::config::Config;
use crate::http::{ApiError, PeerCred, config_of};
use crate::store::Store;

/// A signed-in user's session, as latch's own endpoints see it.
#[derive(Debug, Clone)]
pub struct UserSession {
    pub user_id: String,
    pub session_id: String,
    /// How the session was authenticated (`pwd`, `otp`).
    pub amr: Vec<String>,
    /// The user as of the last write (roles included), never from the
    /// token: from the live view or the database.
    pub facts: Arc<UserFacts>,
}

/// Any caller latch knows.
#[derive(Debug, Clone)]
pub enum Principal {
    User(UserSession),
    ApiKey {
        id: String,
        scopes: Vec<String>,
    },
    /// A process on the admin socket: root, latchd's user or an admin-group
    /// member. It may do everything an admin may.
    AdminPeer {
        uid: u32,
    },
}

impl Principal {
    pub fn has_role(&self, role: &str) -> bool {
        match self {
            Principal::User(u) => u.facts.roles.iter().any(|r| r == role),
            Principal::ApiKey { .. } => false,
            Principal::AdminPeer { .. } => true,
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        match self {
            Principal::ApiKey { scopes, .. } => scopes.iter().any(|s| s == scope),
            Principal::User(_) => false,
            Principal::AdminPeer { .. } => true,
        }
    }

    pub fn require_role(&self, role: &str) -> Result<(), AuthError> {
        if self.has_role(role) { Ok(()) } else { Err(AuthError::Forbidden) }
    }

    pub fn require_scope(&self, scope: &str) -> Result<(), AuthError> {
        if self.has_scope(scope) { Ok(()) } else { Err(AuthError::Forbidden) }
    }

    /// Who this is, for an audit row's `actor_id`: a user id, or
    /// `api_key:<id>`, or `admin_socket:<uid>`.
    pub fn actor(&self) -> String {
        match self {
            Principal::User(u) => u.user_id.clone(),
            Principal::ApiKey { id, .. } => format!("api_key:{id}"),
            Principal::AdminPeer { uid } => format!("admin_socket:{uid}"),
        }
    }

    /// Admin calls: a user with role `admin`, an API key with scope
    /// `admin`, or the admin socket (API.md "Admin").
    pub fn require_admin(&self) -> Result<(), AuthError> {
        if self.has_role("admin") || self.has_scope("admin") { Ok(()) } else { Err(AuthError::Forbidden) }
    }
}

/// What the extractors need: the database, the token validator, the live
/// view of sessions and users, and the API keys.
pub struct Authenticator {
    pub store: Store,
    pub signer: Arc<Signer>,
    pub live: Arc<LiveView>,
    pub api_keys: Arc<ApiKeys>,
}

impl Authenticator {
    /// The live session behind an access token, or `Unauthorized`.
    pub async fn user(&self, token: &str, cfg: &Config) -> Result<UserSession, AuthError> {
        let claims = self.signer.validate(token, cfg).ok_or(AuthError::Unauthorized)?;
        let facts = self.live.session(&self.store, &claims.sid).await?;
        match facts {
            Some(facts) if facts.user_id == claims.sub => {
                Ok(UserSession { user_id: claims.sub, session_id: claims.sid, amr: claims.amr, facts })
            }
            _ => Err(AuthError::Unauthorized),
        }
    }
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

type Extracting<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

/// The user session named by the request's bearer token.
fn user_of(req: &HttpRequest) -> Extracting<UserSession> {
    let token = bearer(req);
    let auth = req.app_data::<web::Data<Authenticator>>().cloned();
    let cfg = config_of(req);
    Box::pin(async move {
        let (Some(token), Some(auth), Some(cfg)) = (token, auth, cfg) else {
            return Err(AuthError::Unauthorized.into());
        };
        Ok(auth.user(&token, &cfg).await?)
    })
}

impl FromRequest for UserSession {
    type Error = ApiError;
    type Future = Extracting<UserSession>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        user_of(req)
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Extracting<Principal>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Only the admin socket records peer credentials, after its check.
        if let Some(peer) = req.conn_data::<PeerCred>() {
            let uid = peer.uid;
            return Box::pin(async move { Ok(Principal::AdminPeer { uid }) });
        }
        if let Some(token) = bearer(req).filter(|t| t.starts_with("latch_")) {
            let auth = req.app_data::<web::Data<Authenticator>>().cloned();
            return Box::pin(async move {
                let auth = auth.ok_or(AuthError::Unauthorized)?;
                let key = auth.api_keys.check(&token).ok_or(AuthError::Unauthorized)?;
                let key = auth.api_keys.narrowed(key).await.map_err(AuthError::from)?;
                Ok(Principal::ApiKey { id: key.id, scopes: key.scopes })
            });
        }
        let user = user_of(req);
        Box::pin(async move { Ok(Principal::User(user.await?)) })
    }
}
