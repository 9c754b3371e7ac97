//! latch's own graceful stop of its HTTPS connections, ahead of actix's.
//! An actix worker that still holds a connection when told to stop looks
//! again only once a second, so every stop under traffic took a second
//! more than its requests needed (and a restart was that much longer
//! without a listener). So the stop first ends the connections itself:
//! the servers are paused (new connections wait in the backlog, reset
//! when the stop closes the listening sockets), HTTP/1.1 answers carry
//! `Connection: close` (`context.rs`), and after `begin` every HTTPS
//! connection ends as soon as it has answered what it was asked
//! (`tls_listener::FrameDeadline`). Once `settled`, actix's workers hold
//! no HTTPS connection and stop at once.
//!
//! An HTTP/2 connection whose client keeps streams going back to back is
//! never idle, and actix-http's HTTP/2 side has no graceful shutdown to
//! call: `FrameDeadline` writes the GOAWAY itself, between two frames, so
//! the client opens no more streams there. (Shutting the
//! listening sockets at `begin` would refuse new clients at once, but
//! actix's accept thread may still be polling them when a pause returns,
//! and logs each failed accept as an error.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

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
