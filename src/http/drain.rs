//! latch's own graceful stop of its HTTPS connections, ahead of actix's.
//! An actix worker that still holds a connection when told to stop looks
//! again only once a second, so every stop under traffic took a second
//! more than its requests needed (and a restart was that much longer
//! without a listener). So the stop first ends the connections itself:
//! the servers are paused (new connections wait in the backlog, reset
//! when the stop closes the listening sockets), HTTP/1.1 answers carry
//! `Connection: close` (`context.rs`), and after `begin` every HTTPS
//! connection ends as soon as it has answered what it was asked
//! (`tls_listener::FrameDeadline`), and one still before or in its TLS
//! handshake 0.2 s after `begin` (`Accepted`). Once `settled`, actix's
//! workers hold no HTTPS connection and stop at once.
//!
//! An HTTP/2 connection whose client keeps streams going back to back is
//! never idle, and actix-http's HTTP/2 side has no graceful shutdown to
//! call: `FrameDeadline` writes the GOAWAY itself, between two frames, so
//! the client opens no more streams there. (Shutting the listening
//! sockets at `begin` would refuse new clients at once, but actix's accept
//! thread may still be polling them when a pause returns, and logs each
//! failed accept as an error.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::rt::net::{ActixStream, TcpStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, Ready};
use tokio_util::sync::CancellationToken;

use super::conn_limits::CountedConnection;

/// How often `settled` looks at the count of open connections.
const SETTLE_POLL: Duration = Duration::from_millis(5);

/// Shared by the daemon's HTTPS listeners and its stop.
#[derive(Clone, Default)]
pub struct Drain {
    begun: CancellationToken,
    open: Arc<AtomicUsize>,
}

/// Resolves once the drain has begun (at once if it already has).
pub type Begun = Pin<Box<dyn Future<Output = ()>>>;

impl Drain {
    /// From now on, HTTPS connections end once idle.
    pub fn begin(&self) {
        self.begun.cancel();
    }

    /// Waits until no HTTPS connection is open, at most `within`; whether
    /// none is.
    pub async fn settled(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.open.load(Ordering::SeqCst) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
        true
    }

    /// The signal one connection watches.
    pub(super) fn signal(&self) -> Begun {
        let begun = self.begun.clone();
        Box::pin(async move { begun.cancelled().await })
    }

    /// Counts a connection open until the guard is dropped.
    pub(super) fn opened(&self) -> OpenConnection {
        self.open.fetch_add(1, Ordering::SeqCst);
        OpenConnection(Arc::clone(&self.open))
    }
}

/// One open HTTPS connection, for `Drain::settled`.
pub struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An HTTPS listener's TCP connection from its accept on: counted open for
/// `Drain::settled`, and ended if its TLS handshake is not done shortly
/// after a stop begins. (A client that connected and sent nothing, as a
/// port check does, or stalled in its handshake, held every stop for the
/// handshake's 5 s time limit.)
pub struct Accepted {
    tcp: TcpStream,
    _open: (OpenConnection, CountedConnection),
    /// Resolves when a handshake still going is to be cut; `None` once
    /// it is done.
    cut_at_stop: Option<Begun>,
}

impl Accepted {
    pub(super) fn new(tcp: TcpStream, open: (OpenConnection, CountedConnection), cut: Begun) -> Self {
        Accepted { tcp, _open: open, cut_at_stop: Some(cut) }
    }

    pub(super) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// From now on the connection's own drain (`FrameDeadline`) ends it.
    pub(super) fn handshake_done(&mut self) {
        self.cut_at_stop = None;
    }

    /// Turns a wait for the client during the handshake into an error once
    /// it is to be cut (and has the cut wake this connection).
    fn cut<T>(&mut self, cx: &mut Context<'_>, waiting: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        let Some(stop) = self.cut_at_stop.as_mut() else { return waiting };
        if waiting.is_pending() && stop.as_mut().poll(cx).is_ready() {
            let stopping = io::Error::new(io::ErrorKind::ConnectionAborted, "stopping during the handshake");
            return Poll::Ready(Err(stopping));
        }
        waiting
    }
}

impl AsyncRead for Accepted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = Pin::new(&mut this.tcp).poll_read(cx, buf);
        this.cut(cx, read)
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.tcp).poll_write(cx, buf);
        this.cut(cx, written)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.tcp).poll_write_vectored(cx, bufs);
        this.cut(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

impl ActixStream for Accepted {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_read_ready(&self.tcp, cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_write_ready(&self.tcp, cx)
    }
}
