//! The HTTP layer: listeners (HTTPS, HTTP, Unix socket), TLS, the
//! request-context middleware, trusted hosts and CORS, problem+json errors
//! and the ops routes.
//! Features register their routes through `routes`.

mod admin_socket;
mod client;
mod context;
mod json;
mod ops;
mod origin;
pub mod problem;
pub(crate) mod server;
pub mod tls;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;

use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, ReloadOutcome};
use crate::store::Store;

pub use admin_socket::bind_admin;
pub use client::ClientInfo;
pub use json::ApiJson;
pub use problem::{ApiError, Problem};
pub use server::{ApiRoutes, BoundAdmin, BoundListener, HttpError, Servers, bind_all};

/// What every handler can reach, shared by all workers of all listeners.
pub struct AppState {
    pub config: Arc<ArcSwap<Config>>,
    pub store: Store,
    pub metrics: PrometheusHandle,
    /// Set on shutdown: `/ready` answers 503 while in-flight requests drain.
    pub draining: Arc<AtomicBool>,
    pub started: Instant,
    /// What got bound, set once after start-up.
    pub bound: OnceLock<Vec<BoundListener>>,
    /// Asks the daemon loop to reload (as SIGHUP does) and answers how it went.
    pub reload: mpsc::Sender<oneshot::Sender<ReloadOutcome>>,
}
