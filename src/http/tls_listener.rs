//! The HTTPS listeners: HTTP/2 and HTTP/1.1 over TLS (ALPN), assembled from
//! actix-web's own parts — the rustls acceptor, then `HttpService` — rather
//! than `HttpServer::listen_rustls`, for what that one cannot do:
//!
//! - `TCP_NODELAY` on every connection before the first response: after a
//!   TLS 1.3 handshake the session ticket and the response are separate
//!   writes, and Nagle would hold the response for the client's delayed
//!   ACK (40 ms on Linux) on every fresh connection.
//! - A deadline on every HTTP/2 frame (`FrameDeadline`): once a frame has
//!   begun, it must be complete within `[http].header_timeout`, as a request
//!   head must over HTTP/1.1; otherwise a client could hold a connection by
//!   trickling a frame forever (slow loris over h2).
//! - A limit on the streams an HTTP/2 client may open at once, told in
//!   the server's first SETTINGS (actix-http sets none), and the
//!   connection closed when a client goes far beyond it (after a GOAWAY
//!   with ENHANCE_YOUR_CALM, when it can be written at once).
//! - latch's own graceful stop (`drain.rs`): every connection counted from
//!   its accept, one not through its handshake cut, an HTTP/2 client sent
//!   a GOAWAY, each connection ended once it has answered.

use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::{HttpService, Protocol, Request, Response, body::MessageBody};
use actix_server::Server;
use actix_service::{IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::conn_limits::ConnectionLimits;
use super::drain::{Accepted, Begun, Drain};
use super::h2_frames::{GOAWAY, GOAWAY_CALM, SERVER_START, Unit, settings_with_stream_limit};
use super::problem::{Kind, PROBLEM_JSON, Problem};
use super::server::{ConnSocket, DRAIN_SECS};

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a handshake may still take once a stop has begun: a client's
/// takes a round trip or two, and one that finishes is answered (with
/// `Connection: close`); one stalled is not waited for.
const HANDSHAKE_AT_STOP: Duration = Duration::from_millis(200);

/// What every HTTPS server shares with the others (see `server_defaults!`).
pub struct Settings {
    pub workers: usize,
    pub header_timeout: Duration,
    pub keep_alive: Duration,
    pub drain: Drain,
    pub limits: Arc<ConnectionLimits>,
}

/// Builds the server of one HTTPS listener around `factory` (the App).
pub fn https_server<F, I, S, B>(
    lst: TcpListener,
    tls: Arc<ServerConfig>,
    factory: F,
    settings: &Settings,
) -> io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let addr = lst.local_addr()?;
    let builder = Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    let (header_timeout, keep_alive) = (settings.header_timeout, settings.keep_alive);
    let ours = settings.drain.clone();
    let admission = Admission { drain: ours.clone(), limits: Arc::clone(&settings.limits) };
    builder
        .workers(settings.workers)
        .disable_signals()
        .shutdown_timeout(DRAIN_SECS)
        .listen(format!("latch-https-{addr}"), lst, move || {
            let (shutdown, theirs, ours) = (shutdown.clone(), shutdown.clone(), ours.clone());
            let admission = admission.clone();
            let app = factory().into_factory().map_err(|e| e.into().error_response());
            let http = HttpService::build()
                .keep_alive(keep_alive)
                .client_request_timeout(header_timeout)
                .client_disconnect_timeout(Duration::from_secs(1))
                .secure()
                .local_addr(addr)
                .graceful_shutdown_signal(move || {
                    let signal = shutdown.clone();
                    async move { signal.notified().await }
                })
                .on_connect_ext(|io: &FrameDeadline<TlsStream<Accepted>>, ext| {
                    ext.insert(io.conn.clone());
                })
                .finish(map_config(app, move |_| AppConfig::__priv_test_new(true, addr.to_string(), addr)));
            let mut acceptor = Acceptor::new((*tls).clone());
            acceptor.set_handshake_timeout(HANDSHAKE_TIMEOUT);
            let stopping = stop_signal(ours.clone(), theirs);
            let handshake_cut = handshake_cut(stopping.clone());
            fn_service(move |tcp| refuse_plain_http(tcp, admission.clone(), handshake_cut()))
                .and_then(
                    acceptor
                        .map_init_err(|_| ())
                        .map_err(|e| tracing::debug!(error = ?e, "TLS handshake failed")),
                )
                .and_then(fn_service(move |io| after_handshake(io, stopping(), header_timeout)))
                .and_then(http.map_err(|e| tracing::debug!(error = ?e, "connection ended with an error")))
        })
        .map(|b| b.run())
}

/// What tells one connection that the server is stopping: ours begins
/// first (the daemon's stop); actix's, should anything else stop the
/// server, still ends connections.
fn stop_signal(ours: Drain, theirs: actix_server::GracefulShutdownSignal) -> impl Fn() -> Begun + Clone {
    move || {
        let (begun, theirs) = (ours.signal(), theirs.clone());
        Box::pin(async move {
            tokio::select! { () = begun => {}, () = theirs.notified() => {} }
        })
    }
}

/// When a connection still in its handshake is cut: a moment after the
/// stop begins (`HANDSHAKE_AT_STOP`).
fn handshake_cut(stopping: impl Fn() -> Begun + Clone) -> impl Fn() -> Begun + Clone {
    move || -> Begun {
        let stop = stopping();
        Box::pin(async move {
            stop.await;
            tokio::time::sleep(HANDSHAKE_AT_STOP).await;
        })
    }
}

/// A connection through its handshake, made ready for `HttpService`: the
/// drain told, Nagle off, the protocol ALPN chose, frames under deadline.
async fn after_handshake(
    mut io: TlsStream<Accepted>,
    draining: Begun,
    header_timeout: Duration,
) -> Result<(FrameDeadline<TlsStream<Accepted>>, Protocol, Option<std::net::SocketAddr>), ()> {
    io.get_mut().0.handshake_done();
    let (accepted, tls) = io.get_ref();
    let tcp = accepted.tcp();
    // Before the first response is written (see the module doc).
    let _ = tcp.set_nodelay(true);
    let peer = tcp.peer_addr().ok();
    let conn = ConnSocket::new(std::os::fd::AsRawFd::as_raw_fd(tcp));
    let h2 = tls.alpn_protocol() == Some(b"h2");
    let proto = if h2 { Protocol::Http2 } else { Protocol::Http1 };
    Ok((FrameDeadline::new(io, conn, h2, draining, header_timeout), proto, peer))
}

/// What a new connection goes through before its handshake: the limits
/// (`conn_limits.rs`), then the drain's count.
#[derive(Clone)]
struct Admission {
    drain: Drain,
    limits: Arc<ConnectionLimits>,
}

/// A client speaking plain HTTP to an HTTPS port (`curl http://…:8443`)
/// gets a plain 400 that says so, where a TLS alert would reach it as
/// garbage ("Received HTTP/0.9"). A TLS handshake begins with the byte
/// 0x16, a request line with an uppercase method; all but the latter goes
/// on to the handshake, which has as long again to finish.
///
/// First the connection is admitted (`conn_limits.rs`) or closed at once.
/// From here on it is counted open by the drain, and ended when `cut`
/// resolves before its handshake is done (or its plain answer has been
/// waited out).
async fn refuse_plain_http(tcp: TcpStream, admission: Admission, mut cut: Begun) -> Result<Accepted, ()> {
    let Some(counted) = admission.limits.admit(tcp.peer_addr().ok().map(|a| a.ip())) else { return Err(()) };
    let open = (admission.drain.opened(), counted);
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)) => peeked,
        () = &mut cut => return Err(()),
    };
    match peeked {
        Ok(Ok(1)) if first[0].is_ascii_uppercase() => {}
        Ok(Ok(1)) => return Ok(Accepted::new(tcp, open, cut)),
        _ => return Err(()),
    }
    answer_plain_http(tcp, cut).await;
    Err(())
}

async fn answer_plain_http(mut tcp: TcpStream, cut: Begun) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = Problem::new(Kind::InvalidRequest)
        .with_detail("This port speaks HTTPS: call it with https://, not http://.")
        .json();
    // The request is read first and the client's close awaited after: a
    // socket closed with unread bytes resets the connection, and the client
    // may lose the answer to the reset.
    let mut sink = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut sink)).await;
    let request = &sink[..read.ok().and_then(Result::ok).unwrap_or(0)];
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\n{}\
         connection: close\r\n\r\n",
        body.len(),
        super::context::answered_outside(request, tcp.peer_addr().ok(), 400),
    );
    if tcp.write_all(head.as_bytes()).await.is_err() || tcp.write_all(&body).await.is_err() {
        return;
    }
    let _ = tcp.shutdown().await;
    let drained = async { while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {} };
    tokio::select! {
        _ = tokio::time::timeout(Duration::from_secs(1), drained) => {}
        () = cut => {}
    }
}

/// The most streams an HTTP/2 client may have open at once (as nginx
/// allows by default), told in SETTINGS_MAX_CONCURRENT_STREAMS. actix-http
/// tells none, and starts the request of every stream h2 accepts: one
/// connection sending 20,000 HEADERS without reading an answer held 20,000
/// answers waiting for its flow-control window and took latchd from 32 to
/// 136 MB (debug build).
const H2_STREAMS: usize = 128;

/// Requests being answered on one HTTP/2 connection past which it is
/// closed. Twice the limit: a client may cancel a stream (RST_STREAM)
/// whose request is still being answered and open another in its place;
/// one keeping to the limit never comes near it.
const H2_IN_FLIGHT_MAX: usize = 2 * H2_STREAMS;

/// Where the stream limit an HTTP/2 client is told stands.
enum StreamLimit {
    Owed,
    Writing {
        frame: Vec<u8>,
        written: usize,
        stands_for: usize,
    },
    /// Told, or an HTTP/1.1 connection.
    Told,
}

/// How often a draining connection looks whether its last request has
/// been answered.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// An HTTPS connection's stream. Over HTTP/2 it sets a deadline per frame:
/// a frame (or the connection preface) that has begun must be whole within
/// `limit`, or reading fails and the connection closes. Over both it ends
/// the connection at a graceful stop once no request on it is being
/// answered (see `drain.rs`; actix would not end HTTP/2 connections at all
/// before the drain time); over HTTP/2 it first tells the client to open
/// no more streams (GOAWAY, which actix-http cannot send), so that a client
/// with streams back to back lets go too.
pub struct FrameDeadline<IO> {
    inner: IO,
    conn: ConnSocket,
    /// `None` for HTTP/1.1: actix times its request heads itself.
    unit: Option<Unit>,
    /// Where the bytes written stand (`None` for HTTP/1.1), so that the
    /// GOAWAY goes between two frames.
    sent: Option<Unit>,
    /// How much of the GOAWAY has been written.
    goaway_written: usize,
    /// The stream limit told to an HTTP/2 client in the first SETTINGS.
    stream_limit: StreamLimit,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
    armed: bool,
    /// The graceful stop's beginning, then a re-check timer.
    draining: Option<Begun>,
    stopping: bool,
    /// When bytes were last written (responses still going out).
    last_write: Option<Instant>,
    /// When this draining connection was first seen with no request being
    /// answered (`None` while one is).
    idle_since: Option<Instant>,
}

impl<IO> FrameDeadline<IO> {
    fn new(inner: IO, conn: ConnSocket, h2: bool, draining: Begun, limit: Duration) -> Self {
        let unit = h2.then_some(Unit::Preface { got: 0 });
        let sent = h2.then_some(SERVER_START);
        let deadline = Box::pin(tokio::time::sleep(limit));
        FrameDeadline {
            inner,
            conn,
            unit,
            sent,
            goaway_written: 0,
            stream_limit: if h2 { StreamLimit::Owed } else { StreamLimit::Told },
            limit,
            deadline,
            armed: false,
            draining: Some(draining),
            stopping: false,
            last_write: None,
            idle_since: None,
        }
    }

    /// Notes a write: a drain waits until responses have gone out.
    fn wrote(&mut self) {
        self.last_write = Some(Instant::now());
    }

    /// True once the server is stopping and no request on this
    /// connection is still being answered: time to end it.
    fn drained(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.stopping {
            let Some(signal) = self.draining.as_mut() else { return false };
            if signal.as_mut().poll(cx).is_pending() {
                return false;
            }
            self.stopping = true;
        }
        // A request counts as answered once its handler returns, but the
        // connection writes the response only after that: end it only when
        // no request has been in flight for a moment and nothing has been
        // written for a moment. (Ending it at the first sight of none in
        // flight cut a response that had not gone out yet.)
        if self.conn.requests.in_flight() > 0 {
            self.idle_since = None;
        } else {
            let idle_since = *self.idle_since.get_or_insert_with(Instant::now);
            let quiet = self.last_write.is_none_or(|t| t.elapsed() >= DRAIN_POLL);
            if quiet && idle_since.elapsed() >= DRAIN_POLL {
                return true;
            }
        }
        let mut recheck: Begun = Box::pin(tokio::time::sleep(DRAIN_POLL));
        let _ = recheck.as_mut().poll(cx);
        self.draining = Some(recheck);
        false
    }

    /// Whether an HTTP/2 client has far more requests being answered than
    /// the streams it was told it may open (`H2_STREAMS`): it is ignoring
    /// the limit, and each request it adds holds memory until answered.
    fn over_stream_limit(&self) -> bool {
        self.unit.is_some() && self.conn.requests.in_flight() > H2_IN_FLIGHT_MAX
    }

    /// Follows the bytes just read; (re)arms the deadline when a unit
    /// begins, disarms it when none is in progress.
    fn track(&mut self, bytes: &[u8]) {
        let Some(unit) = self.unit else { return };
        let (next, completed) = unit.advance(bytes);
        self.unit = Some(next);
        if !next.begun() {
            self.armed = false;
        } else if completed || !self.armed {
            self.armed = true;
            self.deadline.as_mut().reset(Instant::now() + self.limit);
        }
    }
}

impl<IO: AsyncWrite + Unpin> FrameDeadline<IO> {
    /// Whether a GOAWAY is owed: an HTTP/2 connection, stopping.
    fn goaway_due(&self) -> bool {
        self.stopping && self.sent.is_some() && self.goaway_written < GOAWAY.len()
    }

    /// Writes some of `buf`. Once a GOAWAY is owed, a write that begins
    /// inside a frame (or a header block) goes only up to that frame's
    /// end, and the GOAWAY goes before the next frame that may follow.
    fn write_some(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(n) = std::task::ready!(self.write_stream_limit(cx, buf))? {
            return Poll::Ready(Ok(n));
        }
        let mut may = buf.len();
        if self.goaway_due() {
            let at = self.sent.unwrap_or(SERVER_START);
            if at.between_frames() {
                std::task::ready!(self.write_goaway(cx))?;
            } else {
                may = may.min(at.to_boundary());
            }
        }
        let written = Pin::new(&mut self.inner).poll_write(cx, &buf[..may]);
        if let Poll::Ready(Ok(n)) = written {
            self.follow_sent(&buf[..n]);
        }
        written
    }

    /// Writes the server's first SETTINGS frame (the start of the first
    /// `buf` h2 writes) with `H2_STREAMS` added as the most streams a
    /// client may have open. `Some(n)`: the frame went out in place of the
    /// first `n` bytes of `buf`.
    fn write_stream_limit(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<Option<usize>>> {
        if let StreamLimit::Owed = self.stream_limit {
            let limit = u32::try_from(H2_STREAMS).unwrap_or(u32::MAX);
            self.stream_limit = match settings_with_stream_limit(buf, limit) {
                Some((frame, stands_for)) => StreamLimit::Writing { frame, written: 0, stands_for },
                None => {
                    tracing::warn!("HTTP/2: the first bytes written were not a whole SETTINGS frame");
                    StreamLimit::Told
                }
            };
        }
        let StreamLimit::Writing { frame, written, stands_for } = &mut self.stream_limit else {
            return Poll::Ready(Ok(None));
        };
        while *written < frame.len() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &frame[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let stands_for = *stands_for;
        self.stream_limit = StreamLimit::Told;
        self.follow_sent(&buf[..stands_for]);
        Poll::Ready(Ok(Some(stands_for)))
    }

    fn write_goaway(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.goaway_written < GOAWAY.len() {
            let n =
                std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &GOAWAY[self.goaway_written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.goaway_written += n;
        }
        tracing::debug!("stopping: asked an HTTP/2 client to open no more streams (GOAWAY)");
        Poll::Ready(Ok(()))
    }

    /// Tells a client cut off for ignoring the stream limit why (GOAWAY
    /// ENHANCE_YOUR_CALM), if that can be done at once: between two of the
    /// server's frames, after its first SETTINGS (which must come first),
    /// not inside the stop's GOAWAY, and with room to write. A client
    /// reading nothing may have filled its window and the socket; it then
    /// sees only the close.
    fn tell_why_cut(&mut self, cx: &mut Context<'_>) {
        let begun_goaway = self.goaway_written > 0 && self.goaway_written < GOAWAY.len();
        let settings_out = matches!(self.stream_limit, StreamLimit::Told);
        if begun_goaway || !settings_out || !self.sent.is_some_and(Unit::between_frames) {
            return;
        }
        if let Poll::Ready(Ok(n)) = Pin::new(&mut self.inner).poll_write(cx, &GOAWAY_CALM) {
            self.follow_sent(&GOAWAY_CALM[..n]);
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
        }
    }

    fn follow_sent(&mut self, bytes: &[u8]) {
        if let Some(at) = self.sent {
            self.sent = Some(at.advance(bytes).0);
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for FrameDeadline<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.over_stream_limit() {
            tracing::info!(
                limit = H2_STREAMS,
                "HTTP/2 client opened streams far beyond the limit it was told; closing the connection"
            );
            this.tell_why_cut(cx);
            metrics::counter!("latch_http_connections_cut_total", "reason" => "stream_limit").increment(1);
            return Poll::Ready(Err(io::Error::other("HTTP/2 stream limit ignored")));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.track(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.armed && this.deadline.as_mut().poll(cx).is_ready() => {
                tracing::info!("HTTP/2 frame not completed within header_timeout; closing the connection");
                metrics::counter!("latch_http_connections_cut_total", "reason" => "frame_timeout")
                    .increment(1);
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "HTTP/2 frame too slow")))
            }
            // End of stream: the client sees the connection close.
            Poll::Pending if this.drained(cx) => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FrameDeadline<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.wrote();
        this.write_some(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.wrote();
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.wrote();
        if this.goaway_due() || !matches!(this.stream_limit, StreamLimit::Told) {
            // Rarely, and once: one slice at a time is simpler to cut.
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
            return this.write_some(cx, first);
        }
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let (Poll::Ready(Ok(n)), Some(_)) = (&written, this.sent) {
            let mut left = *n;
            for slice in bufs {
                let part = left.min(slice.len());
                this.follow_sent(&slice[..part]);
                left -= part;
            }
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
