//! How many of a connection's requests are being answered, counted from
//! the moment actix hands one to latch until the last of its answer has
//! been handed back: a graceful stop ends an HTTP/2 connection once none
//! is, and a client that keeps far more going than the streams it was
//! told it may open is cut off (`tls_listener`).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::web::Bytes;

/// A connection's requests being answered. Over HTTP/2 a request counts
/// from the moment its stream is accepted (before its handler first runs)
/// until its body has been handed to h2, which can wait for the client's
/// flow-control window: a client that reads no answers leaves them all
/// waiting, each holding its response in memory.
#[derive(Debug, Default)]
pub struct Requests {
    in_flight: AtomicUsize,
}

impl Requests {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts a request as being answered until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Answering {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Answering(Arc::clone(self))
    }
}

/// One request being answered (see `Requests`).
#[derive(Debug)]
pub struct Answering(Arc<Requests>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted until its last byte
/// has been taken, or it is dropped unsent. (A guard in the response's
/// extensions would not do: actix pools response heads with theirs.)
pub struct CountedBody<B> {
    body: B,
    answering: Option<Answering>,
}

impl<B> CountedBody<B> {
    pub fn new(body: B, answering: Option<Answering>) -> CountedBody<B> {
        CountedBody { body, answering }
    }
}

impl<B: MessageBody + Unpin> MessageBody for CountedBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let next = Pin::new(&mut this.body).poll_next(cx);
        if matches!(next, Poll::Ready(None | Some(Err(_)))) {
            this.answering = None;
        }
        next
    }

    fn try_into_bytes(self) -> Result<Bytes, Self> {
        let CountedBody { body, answering } = self;
        // Whole bytes are handed over at once: the count ends with them.
        body.try_into_bytes().map_err(|body| CountedBody { body, answering })
    }
}
