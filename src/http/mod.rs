//! The HTTP layer: listeners (HTTPS, HTTP, Unix socket), TLS, the
//! request-context middleware, problem+json errors and the ops routes.
//! Features register their routes through `routes`.

mod context;
mod ops;
pub mod problem;
mod server;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::store::Store;

pub use problem::{ApiError, Problem};
pub use server::{BoundListener, HttpError, Servers, bind_all};

/// What every handler can reach, shared by all workers of all listeners.
pub struct AppState {
    pub config: Arc<ArcSwap<Config>>,
    pub store: Store,
    pub metrics: PrometheusHandle,
    /// Set on shutdown: `/ready` answers 503 while in-flight requests drain.
    pub draining: Arc<AtomicBool>,
}
