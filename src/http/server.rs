//! Binds every `[[listener]]` and builds one actix server per listener, so
//! each knows its own kind (HSTS only over TLS) and whether it serves
//! `/metrics`. Sockets are bound here, before `run`, so the caller learns the
//! real addresses (port 0 works) before it reports ready.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use serde::Serialize;

use super::conn_limits::{Budget, ConnectionLimits, PlainCount};
use super::context::RequestContext;
use super::gate::GateMiddleware;
use super::origin;
use super::tls::{self, CertStore, TlsError};
use super::{AppState, ops};
use crate::config::{Config, ListenAddr, ListenerKind};

/// How long a graceful stop waits for in-flight requests.
pub const DRAIN_SECS: u64 = 10;

/// How long an idle connection is kept (HTTP/1.1), or how often an idle
/// HTTP/2 connection is pinged (and closed when the pong does not come).
pub const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(75);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot bind {what}: {source}")]
    Bind { what: String, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Registers the features' routes and the app data they need.
pub type ApiRoutes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// A bound listener as reported in `ready.json`.
#[derive(Debug, Clone, Serialize)]
pub struct BoundListener {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// The admin socket's server, not yet awaited.
pub struct BoundAdmin {
    pub path: PathBuf,
    pub handle: ServerHandle,
    pub server: Server,
}

/// Settings every server shares: our own signal handling, the drain time
/// and the client timeouts from `[http]`. A macro because `HttpServer`'s
/// bounds name `actix_http` types that actix-web does not re-export.
macro_rules! server_defaults {
    ($server:expr, $cfg:expr) => {
        $server
            .disable_signals()
            .shutdown_timeout($crate::http::server::DRAIN_SECS)
            .client_request_timeout($cfg.http.header_timeout.0)
            .client_disconnect_timeout(std::time::Duration::from_secs(1))
            .keep_alive(actix_web::http::KeepAlive::Timeout($crate::http::server::KEEP_ALIVE))
            .tcp_nodelay(true)
    };
}
pub(super) use server_defaults;

/// The running servers, not yet awaited.
pub struct Servers {
    pub bound: Vec<BoundListener>,
    pub handles: Vec<ServerHandle>,
    pub servers: Vec<Server>,
    /// Present when an HTTPS listener exists; swapped on certificate reload.
    pub certs: Option<Arc<CertStore>>,
    /// The HTTPS listeners' own drain, begun by the daemon's stop.
    pub drain: super::drain::Drain,
}

fn kind_name(kind: ListenerKind) -> &'static str {
    match kind {
        ListenerKind::Https => "https",
        ListenerKind::Http => "http",
        ListenerKind::Unix => "unix",
    }
}

/// Binds every listener of `cfg` and builds its server; `api` registers the
/// features' routes next to the ops routes.
pub fn bind_all(
    cfg: &Config,
    state: web::Data<AppState>,
    api: ApiRoutes,
    gate: Option<Arc<dyn super::Gate>>,
) -> Result<Servers, HttpError> {
    let needs_tls = cfg.listeners.iter().any(|l| l.kind == ListenerKind::Https);
    let tls = if needs_tls { Some(tls::server_config(cfg)?) } else { None };
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let plain = cfg.listeners.iter().filter(|l| l.kind != ListenerKind::Https).count();
    let budget = Budget::now(needs_tls, plain, workers);
    let limits = needs_tls.then(|| ConnectionLimits::new(state.config.clone(), &budget));
    tell_before_binding(cfg, needs_tls, (plain > 0).then(|| budget.per_worker.saturating_mul(workers)));
    let mut out = Servers {
        bound: Vec::new(),
        handles: Vec::new(),
        servers: Vec::new(),
        certs: None,
        drain: super::drain::Drain::default(),
    };
    for listener in &cfg.listeners {
        let is_tls = listener.kind == ListenerKind::Https;
        let is_unix = listener.kind == ListenerKind::Unix;
        let metrics = listener.metrics;
        let st = state.clone();
        let api = Arc::clone(&api);
        let gate = GateMiddleware(gate.clone());
        let factory = move || {
            App::new()
                .app_data(st.clone())
                .wrap(gate.clone())
                .wrap(origin::cors(st.config.clone()))
                .wrap(RequestContext { tls: is_tls, check_host: !is_unix })
                .configure(|c| routes(c, metrics))
                .configure(|c| api(c))
        };
        let https =
            tls.as_ref().zip(limits.as_ref()).map(|((config, _), l)| (Arc::clone(config), Arc::clone(l)));
        let (running, bound) =
            bind_one(listener, factory, https, cfg, (workers, budget.per_worker, &out.drain))?;
        let shown = bound
            .addr
            .map_or_else(|| bound.path.clone().unwrap_or_default().display().to_string(), |a| a.to_string());
        tracing::info!(kind = bound.kind, addr = %shown, metrics, "listening");
        out.handles.push(running.handle());
        out.servers.push(running);
        out.bound.push(bound);
    }
    out.certs = tls.map(|(_, certs)| certs);
    Ok(out)
}

/// What an operator should know of the listeners about to be bound: pages
/// without an HTTPS listener, and how many connections each plain one
/// takes (`plain_each`, when there is one).
fn tell_before_binding(cfg: &Config, needs_tls: bool, plain_each: Option<usize>) {
    if cfg.pages.enabled && !needs_tls {
        tracing::warn!(
            "[pages] is enabled but no listener is https: the pages are served only through a trusted proxy \
             that terminates HTTPS (X-Forwarded-Proto: https)"
        );
    }
    if let Some(each) = plain_each {
        tracing::info!(
            each,
            "plain HTTP and Unix listeners: at most {each} connections each at once; beyond it they stop \
             accepting until one ends"
        );
    }
}

/// Passwords and tokens cross a plain listener in clear: fine on loopback
/// behind a proxy on the same host, worth a warning anywhere else.
fn warn_if_plain_off_loopback(addr: &std::net::SocketAddr) {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            addr = %addr,
            "a plain http listener on a non-loopback address: passwords and tokens cross the network \
             in clear (use kind = \"https\", or keep plain http on 127.0.0.1 behind a proxy on this host)"
        );
    }
}

/// Binds one listener and builds (but does not await) its server.
fn bind_one<F, I, S, B>(
    listener: &crate::config::Listener,
    factory: F,
    https: Option<(Arc<rustls::ServerConfig>, Arc<ConnectionLimits>)>,
    cfg: &Config,
    (workers, per_worker, drain): (usize, usize, &super::drain::Drain),
) -> Result<(Server, BoundListener), HttpError>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: actix_service::IntoServiceFactory<S, actix_http::Request>,
    S: actix_service::ServiceFactory<actix_http::Request, Config = actix_web::dev::AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<actix_http::Response<B>> + 'static,
    <S::Service as actix_service::Service<actix_http::Request>>::Future: 'static,
    S::Service: 'static,
    B: actix_web::body::MessageBody + 'static,
{
    let kind = kind_name(listener.kind);
    let what = match &listener.addr {
        ListenAddr::Tcp(addr) => addr.to_string(),
        ListenAddr::Unix(path) => path.display().to_string(),
    };
    let bind_err = |source| HttpError::Bind { what: what.clone(), source };
    // Used by the plain-HTTP and Unix listeners only (`Budget`), each
    // connection counted for the operator, since at the cap it waits.
    let http_server = |shown: &str| {
        let count = PlainCount::new(shown, per_worker.saturating_mul(workers));
        server_defaults!(HttpServer::new(factory.clone()), cfg)
            .workers(workers)
            .max_connections(per_worker)
            .on_connect(move |conn, ext| {
                remember_socket(conn, ext);
                ext.insert(count.opened());
            })
    };
    match (&listener.addr, listener.kind, https) {
        (ListenAddr::Unix(path), _, _) => {
            let lst = bind_unix(path).map_err(bind_err)?;
            let server = http_server(&what).listen_uds(lst).map_err(bind_err)?.run();
            Ok((server, BoundListener { kind, addr: None, path: Some(path.clone()) }))
        }
        (ListenAddr::Tcp(addr), ListenerKind::Http, _) => {
            warn_if_plain_off_loopback(addr);
            let lst = TcpListener::bind(addr).map_err(bind_err)?;
            let local = lst.local_addr().map_err(bind_err)?;
            let server = http_server(&local.to_string()).listen(lst).map_err(bind_err)?.run();
            Ok((server, BoundListener { kind, addr: Some(local), path: None }))
        }
        (ListenAddr::Tcp(addr), _, Some((tls, limits))) => {
            let lst = TcpListener::bind(addr).map_err(bind_err)?;
            let local = lst.local_addr().map_err(bind_err)?;
            let settings = super::tls_listener::Settings {
                workers,
                header_timeout: cfg.http.header_timeout.0,
                keep_alive: KEEP_ALIVE,
                drain: drain.clone(),
                limits,
            };
            let server = super::tls_listener::https_server(lst, tls, factory, &settings).map_err(bind_err)?;
            Ok((server, BoundListener { kind, addr: Some(local), path: None }))
        }
        (ListenAddr::Tcp(_), _, None) => {
            Err(bind_err(std::io::Error::other("https listener without TLS configuration")))
        }
    }
}

/// What latch keeps of a connection, recorded when it is accepted: its raw
/// socket (a debug-build route reports its options, `/debug/tcp`) and how
/// many of its requests are being answered (an HTTP/2 connection closes at
/// a graceful stop only once that is zero, and at once if it is far above
/// the streams its client was told it may open).
#[derive(Clone, Debug)]
pub struct ConnSocket {
    /// Read only by the debug-build route.
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub fd: std::os::fd::RawFd,
    pub requests: Arc<super::answering::Requests>,
}

impl ConnSocket {
    pub fn new(fd: std::os::fd::RawFd) -> ConnSocket {
        ConnSocket { fd, requests: Arc::default() }
    }
}

fn remember_socket(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    use std::os::fd::AsRawFd;
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        ext.insert(ConnSocket::new(tcp.as_raw_fd()));
    }
}

/// Binds a Unix socket, replacing a stale socket file left by a crash but
/// never one another process still answers on, nor anything that is not a
/// socket (a typo in the config must not delete a file).
pub(super) fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is there; latchd will not delete it",
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another process is listening there",
            ));
        }
        fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        create_socket_dirs(dir)?;
    }
    let lst = UnixListener::bind(path)?;
    // Apps on the host connect as other users; the directory's permissions
    // (or the group) decide who may.
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))?;
    Ok(lst)
}

/// Makes the directories a socket's path lacks, each 0750: latchd's
/// umask (0077) would make them its own alone, and the socket's group —
/// the apps it is for — could not reach the socket whatever its mode.
/// Directories already there keep theirs, also one made by another
/// process between the look and the mkdir (systemd's tmpfiles, a second
/// latchd's start): its mode is its maker's.
fn create_socket_dirs(dir: &Path) -> std::io::Result<()> {
    let missing: Vec<&Path> =
        dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.exists()).collect();
    for dir in missing.iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o750))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn routes(cfg: &mut web::ServiceConfig, metrics: bool) {
    let mut r = super::Routes::new();
    ops::routes(&mut r, metrics);
    r.register(cfg);
    // Tests read the options of the server's side of their connection.
    // Debug builds only, so not in the OpenAPI document.
    #[cfg(debug_assertions)]
    cfg.service(web::resource("/debug/tcp").route(web::get().to(ops::debug_tcp)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads making the same socket directories at once (as two
    /// processes could) all succeed: the one that loses the race to a
    /// mkdir takes the directory the other made.
    #[test]
    fn socket_directories_made_at_once_by_two_makers_both_succeed() {
        let root = tempfile::tempdir().unwrap();
        for round in 0..200 {
            let dir = root.path().join(format!("r{round}/run/latch/apps"));
            let start = std::sync::Arc::new(std::sync::Barrier::new(4));
            let makers: Vec<_> = (0..4)
                .map(|_| {
                    let (dir, start) = (dir.clone(), std::sync::Arc::clone(&start));
                    std::thread::spawn(move || {
                        start.wait();
                        create_socket_dirs(&dir)
                    })
                })
                .collect();
            for maker in makers {
                maker.join().unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
            let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o750, "round {round}");
        }
    }
}
