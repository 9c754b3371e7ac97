//! What a login asks of the defenses, as the layer sees it: may this email
//! try from here, a login failed or succeeded, a reset cleared the email,
//! the anomaly rules after a login or refresh. The defense feature
//! implements `LoginGuard`; the features that log people in hold it as a
//! trait object and never import the defense feature.

use std::future::Future;
use std::pin::Pin;

use crate::config::Config;
use crate::http::ClientInfo;
use crate::http::problem::{Kind, RateLimitInfo, ToProblem};
use crate::store::StoreError;

/// A boxed future: the guard is used as a trait object.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a login (or another credential attempt by email) was refused
/// before any work was done.
#[derive(Debug, thiserror::Error)]
pub enum LoginRefused {
    #[error("too many failed logins for this email from this address; retry in {0} s")]
    Throttled(u64),
    #[error("rate limited")]
    RateLimited { retry_after: u64, info: RateLimitInfo },
}

impl ToProblem for LoginRefused {
    fn kind(&self) -> Kind {
        match self {
            LoginRefused::Throttled(_) => Kind::LoginThrottled,
            LoginRefused::RateLimited { .. } => Kind::RateLimited,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        Some(match self {
            LoginRefused::Throttled(secs) => *secs,
            LoginRefused::RateLimited { retry_after, .. } => *retry_after,
        })
    }

    fn rate_limit(&self) -> Option<RateLimitInfo> {
        match self {
            LoginRefused::RateLimited { info, .. } => Some(*info),
            LoginRefused::Throttled(_) => None,
        }
    }
}

/// The login throttle and the account-related anomaly rules.
pub trait LoginGuard: Send + Sync {
    /// Before a password is checked: the email's delay for this address,
    /// then the per-email limit. Decided in memory, no database.
    fn check_login(&self, email: &str, client: &ClientInfo, cfg: &Config) -> Result<(), LoginRefused>;
    /// The `account` limit alone: credential attempts per email.
    fn check_account(&self, email: &str) -> Result<(), LoginRefused>;
    /// A wrong password or code for `email` from `client`.
    fn login_failed(&self, email: &str, client: &ClientInfo, cfg: &Config);
    /// The right credentials from `client`: its delay is over.
    fn login_succeeded(&self, email: &str, client: &ClientInfo, cfg: &Config);
    /// A reset proved the address: every failure and lock of it goes.
    fn clear_login_failures<'a>(&'a self, email: &'a str) -> Pending<'a, Result<(), StoreError>>;
    /// Until when `email` is locked for login from every address.
    fn locked_until(&self, email: &str) -> Option<i64>;
    /// After a login made `session_id`: the login anomaly rules.
    fn after_login<'a>(
        &'a self,
        user_id: &'a str,
        session_id: &'a str,
        client: &'a ClientInfo,
        device_name: Option<&'a str>,
        cfg: &'a Config,
    ) -> Pending<'a, Result<(), StoreError>>;
    /// After `session_id` refreshed: the refresh anomaly rule.
    fn refreshed(&self, session_id: &str, user_id: &str, client: &ClientInfo, cfg: &Config);
}
