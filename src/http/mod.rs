//! The HTTP layer: listeners (HTTPS, HTTP, Unix socket, admin socket), TLS,
//! the request-context middleware, trusted hosts and CORS, the problem
//! catalogue and the ops routes. Features register their routes through
//! `ApiRoutes` and map their errors with `problem::ToProblem`.

mod admin_socket;
mod answering;
mod client;
mod conn_limits;
mod context;
pub mod device;
pub mod drain;
pub mod gate;
mod h2_frames;
mod json;
mod ops;
mod origin;
pub mod problem;
mod query;
mod routes;
mod serde_text;
pub(crate) mod server;
pub mod tls;
mod tls_listener;

use std::future::{Ready, ready};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, ReloadOutcome};
use crate::store::Store;

pub use admin_socket::{PeerCred, bind_admin};
pub use client::ClientInfo;
pub use gate::{Admission, Gate};
pub use json::ApiJson;
pub use ops::ApiDocument;
pub use problem::{ApiError, FieldError, Kind, Problem, RateLimitInfo, ToProblem, html_page};
pub use query::{ApiQuery, parameters_refused};
pub use routes::Routes;

/// Adds `/v1/openapi.json` (the document must be in the app data as
/// `web::Data<ApiDocument>`) and the ops routes, so the document lists
/// them too.
pub fn document_routes(r: &mut Routes) {
    r.add(ops::__path_openapi, ops::openapi);
}

/// The ops routes as the document describes them (every listener serves
/// `/health` and `/ready`; `/metrics` only where `metrics = true`).
pub fn ops_routes(r: &mut Routes) {
    ops::routes(r, true);
}
pub use server::{ApiRoutes, BoundAdmin, BoundListener, HttpError, Servers, bind_all};

/// What the ops and admin routes reach, shared by all workers of all
/// listeners. Features get their own `Deps` bundle instead.
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

/// `{"status": "…"}`: the body of calls whose answer is only an outcome
/// (`verification_sent`, `accepted`, `password_reset`, …).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct StatusBody {
    pub status: &'static str,
}

impl StatusBody {
    pub fn of(status: &'static str) -> StatusBody {
        StatusBody { status }
    }
}

/// `{"items": […]}`: a whole list.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// One page of a longer list, and how many items there are in all.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: i64,
    pub page_size: i64,
    pub total: i64,
}

/// The config in force when the request arrived. The request-context
/// middleware takes one snapshot per request and every later step (client
/// address, body limit, authentication, the handler) reads that one, so a
/// reload in the middle of a request never mixes two configs.
#[derive(Clone)]
pub struct LiveConfig(pub Arc<Config>);

impl std::ops::Deref for LiveConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.0
    }
}

/// Marks a request that arrived on an HTTPS listener, or through a trusted
/// proxy that terminated HTTPS (set by the request-context middleware): the
/// pages are served there only, as the browser cookies they set are
/// `Secure` and their forms carry passwords.
#[derive(Clone, Copy)]
pub struct OverTls;

/// Whether `req` arrived over HTTPS (see `OverTls`).
pub fn over_tls(req: &HttpRequest) -> bool {
    req.extensions().contains::<OverTls>()
}

/// Marks a HEAD request, which the request-context middleware routes as
/// GET (actix drops the body): a handler whose body costs work to make (a
/// streamed export) can leave it out.
#[derive(Clone, Copy)]
pub struct HeadOnly;

/// Whether `req` came as HEAD (see `HeadOnly`).
pub fn head_only(req: &HttpRequest) -> bool {
    req.extensions().contains::<HeadOnly>()
}

/// The request's config snapshot (see `LiveConfig`); `None` only outside
/// latch's own servers.
pub fn config_of(req: &HttpRequest) -> Option<Arc<Config>> {
    if let Some(snapshot) = req.extensions().get::<LiveConfig>() {
        return Some(Arc::clone(&snapshot.0));
    }
    req.app_data::<web::Data<AppState>>().map(|s| s.config.load_full())
}

impl FromRequest for LiveConfig {
    type Error = ApiError;
    type Future = Ready<Result<LiveConfig, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(config_of(req).map(LiveConfig).ok_or_else(|| Problem::new(Kind::Internal).into()))
    }
}
