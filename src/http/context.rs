//! The outermost middleware: request id, the request's config snapshot,
//! request timeout, trusted hosts, problem+json for every error (including
//! the framework's own 404/405/413), security headers, metrics by route
//! pattern and one access-log line per request.

use std::future::{Ready, ready};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_http::ConnectionType;
use actix_web::HttpMessage;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::error::InternalError;
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::web::Data;
use futures_util::future::LocalBoxFuture;

use super::answering::CountedBody;
use super::client::forwarded_https;
use super::origin;
use super::problem::{Kind, PROBLEM_JSON, Problem, REQUEST_ID};
use super::server::ConnSocket;
use super::{AppState, ClientInfo, HeadOnly, LiveConfig, OverTls};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Middleware factory; `tls` adds HSTS (only meaningful over HTTPS),
/// `check_host` refuses a Host outside `[http].trusted_hosts` (network
/// listeners; a Unix socket has no Host to spoof).
pub struct RequestContext {
    pub tls: bool,
    pub check_host: bool,
}

impl<S, B> Transform<S, ServiceRequest> for RequestContext
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + Unpin + 'static,
{
    type Response = ServiceResponse<CountedBody<EitherBody<B>>>;
    type Error = actix_web::Error;
    type Transform = RequestContextService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestContextService {
            service: Rc::new(service),
            tls: self.tls,
            check_host: self.check_host,
        }))
    }
}

pub struct RequestContextService<S> {
    service: Rc<S>,
    tls: bool,
    check_host: bool,
}

/// An incoming id is kept when it is 1–64 characters of `[A-Za-z0-9._-]`,
/// so it cannot inject anything into logs or headers; otherwise a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_string)
}

impl<S, B> Service<ServiceRequest> for RequestContextService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + Unpin + 'static,
{
    type Response = ServiceResponse<CountedBody<EitherBody<B>>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let tls = self.tls;
        let id = request_id(req.headers());
        let config = req.app_data::<Data<AppState>>().map(|s| s.config.load_full());
        // Once a stop has begun, an HTTP/1.1 client is told not to send
        // another request on this connection (see `drain.rs`); the stop may
        // come while the request is being answered.
        let draining = req.app_data::<Data<AppState>>().map(|s| Arc::clone(&s.draining));
        let closing = move || draining.as_ref().is_some_and(|d| d.load(Ordering::Relaxed));
        let timeout = config.as_ref().map_or(Duration::from_secs(30), |c| c.http.request_timeout.0);
        let timeout = if unbounded(&req) { None } else { Some(timeout) };
        annotate(&req, tls, config.as_ref(), &id);
        let refusal = refusal(&req, config.as_deref(), self.check_host);
        // Counted until the answer's body has been handed over (see
        // `answering.rs`); a connection without a count is a Unix socket's.
        let answering = req.conn_data::<ConnSocket>().map(|conn| conn.requests.begin());
        // Captured up front: the request itself moves into the inner service,
        // and holding a clone of it would break actix's routing.
        let seen = Seen {
            method: method_label(req.method()),
            route: req.match_pattern().unwrap_or_else(|| "unmatched".into()),
            peer: req.peer_addr(),
            started: Instant::now(),
        };
        answer_head_as_get(&mut req);
        if let Some(refusal) = refusal {
            let mut res = REQUEST_ID.sync_scope(id.clone(), || refusal.into_response());
            finish(&mut res, &id, tls, closing());
            seen.record(res.status().as_u16(), &id);
            let res = req.into_response(res).map_into_right_body();
            let res = res.map_body(|_, body| CountedBody::new(body, answering));
            return Box::pin(async move { Ok(res) });
        }
        Box::pin(REQUEST_ID.scope(id.clone(), async move {
            let outcome = match timeout {
                Some(timeout) => tokio::time::timeout(timeout, service.call(req)).await,
                None => Ok(service.call(req).await),
            };
            let error_response = match outcome {
                Ok(Ok(res)) => {
                    let mut res = as_problem_if_error(res);
                    finish(res.response_mut(), &id, tls, closing());
                    seen.record(res.status().as_u16(), &id);
                    return Ok(res.map_body(|_, body| CountedBody::new(body, answering)));
                }
                Ok(Err(e)) => e.error_response(),
                Err(_) => Problem::new(Kind::RequestTimeout).into_response(),
            };
            // Without the request we cannot build a ServiceResponse; hand
            // actix the finished answer to send as is.
            let mut res = error_response;
            finish(&mut res, &id, tls, closing());
            seen.record(res.status().as_u16(), &id);
            let res = res.map_body(|_, body| CountedBody::new(body, answering).boxed());
            Err(InternalError::from_response("request failed", res).into())
        }))
    }
}

/// Calls that `[http].request_timeout` does not cut: taking a backup of a
/// large database (compress, then `integrity_check`) can take minutes, and
/// an answer cut off at 30 s would leave the admin with an error while the
/// backup goes on. It is admin-only and one at a time.
const UNBOUNDED: &[(Method, &str)] = &[(Method::POST, "/v1/admin/backups")];

fn unbounded(req: &ServiceRequest) -> bool {
    UNBOUNDED.iter().any(|(method, path)| req.method() == method && req.path() == *path)
}

/// Longest request line or header line served, and longest head in all
/// (the customary 8 KiB / 16 KiB); beyond them: 431.
const MAX_HEAD_LINE: usize = 8 * 1024;
const MAX_HEAD: usize = 16 * 1024;

/// The size of the request head as sent, within a few bytes: the request
/// line and every `name: value` line with its CRLF.
fn head_too_large(req: &ServiceRequest) -> bool {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 11;
    let mut total = line;
    for (name, value) in req.headers() {
        let len = name.as_str().len() + value.len() + 4;
        if len > MAX_HEAD_LINE {
            return true;
        }
        total += len;
    }
    line > MAX_HEAD_LINE || total > MAX_HEAD
}

/// What handlers find in the request's extensions: whether it came over
/// TLS (here or at a trusted proxy), the config snapshot it runs under,
/// and who sent it.
fn annotate(req: &ServiceRequest, tls: bool, config: Option<&Arc<crate::config::Config>>, id: &str) {
    let peer = req.peer_addr().map(|a| a.ip());
    let proxied_tls =
        || config.is_some_and(|c| forwarded_https(req.headers(), peer, &c.defense.trusted_proxies));
    if tls || proxied_tls() {
        req.extensions_mut().insert(OverTls);
    }
    if let Some(config) = config {
        req.extensions_mut().insert(LiveConfig(Arc::clone(config)));
        let client = ClientInfo::read(req.headers(), peer, &config.defense.trusted_proxies, id);
        req.extensions_mut().insert(client);
    }
}

/// What every answer carries, whichever way it was made: the secure
/// headers with the request id and, once a stop has begun,
/// `Connection: close`.
fn finish<B>(res: &mut actix_web::HttpResponse<B>, id: &str, tls: bool, closing: bool) {
    secure_headers(res.headers_mut(), id, tls);
    if closing {
        res.head_mut().set_connection_type(ConnectionType::Close);
    }
}

/// An answer given before any handler runs: a request head over the
/// limits (431), or a Host outside `[http].trusted_hosts` (400).
fn refusal(
    req: &ServiceRequest,
    config: Option<&crate::config::Config>,
    check_host: bool,
) -> Option<Problem> {
    if head_too_large(req) {
        return Some(Problem::new(Kind::HeadersTooLarge).with_detail(format!(
            "The request line and each header must stay under {} KiB, the whole head under {} KiB.",
            MAX_HEAD_LINE / 1024,
            MAX_HEAD / 1024
        )));
    }
    let untrusted_host = check_host
        && config.is_some_and(|c| {
            let named = req.headers().get(header::HOST).and_then(|v| v.to_str().ok());
            let host = origin::request_host(req.uri(), named);
            !origin::host_allowed(&c.http.trusted_hosts, req.path(), host.as_deref())
        });
    untrusted_host.then(|| {
        Problem::new(Kind::InvalidRequest)
            .with_detail("The Host header names a host this server does not serve ([http].trusted_hosts).")
    })
}

/// What the access log and metrics need, taken before the request moves.
struct Seen {
    method: &'static str,
    route: String,
    peer: Option<std::net::SocketAddr>,
    started: Instant,
}

/// Methods as a closed set of label values, so odd methods cannot grow the
/// metric's cardinality.
fn method_label(m: &Method) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    KNOWN.into_iter().find(|k| *k == m.as_str()).unwrap_or("OTHER")
}

/// HEAD is answered wherever GET is (RFC 9110 asks every server to; an
/// operator's `curl -I /health` and load balancers' checks use it): routed
/// as GET, while actix, which noted the method as it decoded the request,
/// sends the head and its `Content-Length` without the body. Called after
/// `Seen` took the method, so the access log and metrics still say HEAD;
/// marked `HeadOnly` for a handler whose body costs work to make.
fn answer_head_as_get(req: &mut ServiceRequest) {
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
        req.extensions_mut().insert(HeadOnly);
    }
}

/// `Allow` as the framework wrote it, with HEAD wherever GET is (see
/// `answer_head_as_get`).
fn allow_with_head(allow: &HeaderValue) -> HeaderValue {
    let text = allow.to_str().unwrap_or_default();
    let methods: Vec<&str> = text.split(',').map(str::trim).collect();
    if !methods.contains(&"GET") || methods.contains(&"HEAD") {
        return allow.clone();
    }
    HeaderValue::from_str(&format!("{text}, HEAD")).unwrap_or_else(|_| allow.clone())
}

/// Error answers made by the framework (no route, wrong method, codec
/// limits) come without a body; give them the same problem+json as ours.
/// The pages' HTML answers (a refused form, shown to a person) stay.
fn as_problem_if_error<B: MessageBody + 'static>(res: ServiceResponse<B>) -> ServiceResponse<EitherBody<B>> {
    let status = res.status();
    let kept = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(PROBLEM_JSON.as_bytes()) || v.starts_with(b"text/html")
    });
    if status.as_u16() < 400 || kept {
        return res.map_into_left_body();
    }
    let (req, old) = res.into_parts();
    let preflight = (status.as_u16() == 400).then(|| cors_refusal(&req)).flatten();
    let problem = match preflight {
        Some(detail) => Problem::new(Kind::InvalidRequest).with_detail(detail),
        None => Problem::for_status(status),
    };
    let mut new = problem.into_response();
    if let Some(v) = old.headers().get(header::ALLOW) {
        new.headers_mut().insert(header::ALLOW, allow_with_head(v));
    }
    if let Some(v) = old.headers().get(header::RETRY_AFTER) {
        new.headers_mut().insert(header::RETRY_AFTER, v.clone());
    }
    ServiceResponse::new(req, new).map_into_right_body()
}

/// What a refused CORS preflight gets told (see `origin::preflight_refusal`).
fn cors_refusal(req: &actix_web::HttpRequest) -> Option<String> {
    let config = req.extensions().get::<LiveConfig>().map(|c| Arc::clone(&c.0))?;
    origin::preflight_refusal(req.method(), req.headers(), &config.http.cors_origins)
}

fn secure_headers(h: &mut HeaderMap, id: &str, tls: bool) {
    let set = |h: &mut HeaderMap, name: &'static str, value: &'static str| {
        h.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    };
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    origin::expose_headers(h);
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    // Pages set their own (a stylesheet, the QR code's data URI, forms).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        set(h, "content-security-policy", "default-src 'none'; frame-ancestors 'none'");
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    if tls {
        set(h, "strict-transport-security", "max-age=63072000; includeSubDomains");
    }
}

/// An answer written below actix (plain HTTP at an HTTPS port, see
/// `tls_listener`): counted and logged as every answer is, under the
/// route "unmatched" since no route saw it. Returns the header lines every
/// answer carries (a new request id, the security headers; no HSTS, which
/// a browser ignores over plain HTTP), each ending in CRLF.
pub(crate) fn answered_outside(request: &[u8], peer: Option<std::net::SocketAddr>, status: u16) -> String {
    let method = request.split(|b| *b == b' ').next().and_then(|m| Method::from_bytes(m).ok());
    let seen = Seen {
        method: method.as_ref().map_or("OTHER", method_label),
        route: "unmatched".into(),
        peer,
        started: Instant::now(),
    };
    let id = uuid::Uuid::now_v7().to_string();
    let mut headers = HeaderMap::new();
    secure_headers(&mut headers, &id, false);
    seen.record(status, &id);
    let lines =
        headers.iter().filter_map(|(name, value)| Some(format!("{name}: {}\r\n", value.to_str().ok()?)));
    lines.collect()
}

impl Seen {
    /// Metrics and the access log. Only the route pattern is recorded, never
    /// the raw path or query, which may carry tokens.
    fn record(&self, status: u16, id: &str) {
        crate::telemetry::memory::note_request();
        let elapsed = self.started.elapsed();
        let (method, route) = (self.method, self.route.clone());
        metrics::counter!("latch_http_requests_total",
            "method" => method, "route" => route.clone(), "status" => status.to_string())
        .increment(1);
        metrics::histogram!("latch_http_request_duration_seconds", "method" => method, "route" => route.clone())
            .record(elapsed.as_secs_f64());
        tracing::info!(
            target: "latch::access",
            request_id = id,
            method,
            route,
            status,
            // Whole microseconds: `0.092`, not `0.09162600000000001`.
            duration_ms = elapsed.as_micros() as f64 / 1000.0,
            peer = self.peer.map(|p| p.ip().to_string()),
            "request"
        );
    }
}
