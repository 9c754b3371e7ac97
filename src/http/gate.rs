//! The hook the defense layer plugs into: a middleware just inside CORS
//! (so its 403 and 429 answers carry CORS, security headers and a request
//! id, and are counted like any other) that asks a `Gate` whether a request
//! may reach its handler, adds the `RateLimit-*` headers of the tightest
//! bucket to what it lets through, and tells the gate how each request was
//! answered (credential failures count towards IP blocks). `http` knows no
//! more of the defenses than this trait.

use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;

use actix_web::HttpMessage;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::AUTHORIZATION;
use futures_util::future::LocalBoxFuture;

use super::problem::{Kind, Problem, RateLimitInfo, answered_kind};
use super::{ClientInfo, LiveConfig};
use crate::config::Config;

/// What the gate is told about a request.
pub struct Admission {
    pub client: ClientInfo,
    /// The route pattern (`/v1/auth/sessions/{id}`), or `unmatched`.
    pub route: String,
    /// GET or HEAD: the request shows something and submits nothing.
    pub reads: bool,
    /// The bearer credential, when it looks like an API key (`latch_…`);
    /// the gate checks whether it is one.
    pub api_key: Option<String>,
    pub config: Arc<Config>,
}

/// Decides whether requests reach their handlers (rate limits, IP blocks,
/// anomaly rules) and learns how they were answered.
pub trait Gate: Send + Sync + 'static {
    /// `Ok` with the tightest bucket's headers to add, or the refusal.
    fn admit(&self, request: &Admission) -> Result<Option<RateLimitInfo>, Problem>;
    /// Called with the status every admitted request was answered with,
    /// and its problem kind when it was refused.
    fn answered(&self, request: &Admission, status: u16, kind: Option<Kind>);
}

/// Middleware factory; without a gate every request passes (benchmarks
/// measure the defenses' cost against that).
#[derive(Clone)]
pub struct GateMiddleware(pub Option<Arc<dyn Gate>>);

impl<S, B> Transform<S, ServiceRequest> for GateMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = GateService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(GateService { service: Rc::new(service), gate: self.0.clone() }))
    }
}

pub struct GateService<S> {
    service: Rc<S>,
    gate: Option<Arc<dyn Gate>>,
}

/// What the gate needs, read from the request before it moves on.
fn admission(req: &ServiceRequest) -> Option<Admission> {
    let config = Arc::clone(&req.extensions().get::<LiveConfig>()?.0);
    let client = req.extensions().get::<ClientInfo>()?.clone();
    let api_key = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && token.trim().starts_with("latch_"))
        .map(|(_, token)| token.trim().to_string());
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let reads = matches!(*req.method(), actix_web::http::Method::GET | actix_web::http::Method::HEAD);
    Some(Admission { client, route, reads, api_key, config })
}

impl<S, B> Service<ServiceRequest> for GateService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let (Some(gate), Some(adm)) = (self.gate.clone(), admission(&req)) else {
            return Box::pin(async move { Ok(service.call(req).await?.map_into_left_body()) });
        };
        let info = match gate.admit(&adm) {
            Ok(info) => info,
            Err(refusal) => {
                let res = req.into_response(refusal.into_response()).map_into_right_body();
                return Box::pin(async move { Ok(res) });
            }
        };
        Box::pin(async move {
            let outcome = service.call(req).await;
            let (status, kind) = match &outcome {
                Ok(res) => (res.status().as_u16(), answered_kind(res.response())),
                Err(e) => (e.as_response_error().status_code().as_u16(), None),
            };
            gate.answered(&adm, status, kind);
            let mut res = outcome?;
            if let Some(info) = info {
                info.apply(res.headers_mut());
            }
            Ok(res.map_into_left_body())
        })
    }
}
