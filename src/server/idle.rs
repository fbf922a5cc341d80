//! What a connection is doing, as far as closing or parking it goes: whether
//! bytes move, whether a request is in flight, whether the last response has
//! left in full.
//!
//! [`Tracked`] wraps the socket and counts each read or write that moved
//! bytes (a plain relaxed store, no clock read); [`Activity::enter`] counts a
//! request from its arrival until its response body is dropped, which hyper
//! does once the body has been written; together they tell when hyper
//! holds nothing but its buffers ([`Activity::between_requests`], when
//! `connection` may park it). [`Activity::idle`] samples the counter every
//! quarter of `idle_timeout`, so an idle connection is finished between
//! `idle_timeout` and a quarter more.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::body::{Body, BoxError};

/// Shared by a connection's socket wrapper, its requests and its watcher.
#[derive(Debug, Clone, Default)]
pub struct Activity(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    /// Reads and writes that moved bytes. Only the connection's task writes it.
    moves: AtomicU64,
    /// Bytes were read after the last write: hyper may hold part of a request.
    read_since_write: AtomicBool,
    /// The last write or flush was refused: hyper still holds response bytes.
    unsent: AtomicBool,
    /// Requests whose response body has not been dropped yet.
    in_flight: AtomicUsize,
}

impl Activity {
    pub fn new() -> Activity {
        Activity::default()
    }

    fn moved(&self) {
        let counters = &self.0;
        counters.moves.store(counters.moves.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// Counts a request until the returned guard (held by its response body)
    /// is dropped.
    pub fn enter(&self) -> InFlight {
        self.0.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// No request in flight, every response byte handed to the socket,
    /// nothing read since: hyper holds no request, only its buffers.
    pub fn between_requests(&self) -> bool {
        let counters = &self.0;
        counters.in_flight.load(Ordering::Relaxed) == 0
            && !counters.read_since_write.load(Ordering::Relaxed)
            && !counters.unsent.load(Ordering::Relaxed)
            && counters.moves.load(Ordering::Relaxed) > 0
    }

    /// Resolves once nothing has moved for `idle` (measured in quarters of it).
    pub async fn idle(&self, idle: Duration) {
        let tick = (idle / 4).max(Duration::from_millis(10));
        let mut seen = self.0.moves.load(Ordering::Relaxed);
        let mut quiet = Duration::ZERO;
        loop {
            tokio::time::sleep(tick).await;
            let moves = self.0.moves.load(Ordering::Relaxed);
            if moves != seen {
                seen = moves;
                quiet = Duration::ZERO;
                continue;
            }
            quiet += tick;
            if quiet >= idle {
                return;
            }
        }
    }
}

/// A request in flight, until dropped.
#[derive(Debug)]
pub struct InFlight(Activity);

impl InFlight {
    /// The response body, holding this guard until hyper drops it.
    pub fn hold(self, body: Body) -> CountedBody {
        CountedBody { body, _in_flight: self }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight.
pub struct CountedBody {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A socket that reports its traffic to an [`Activity`].
pub struct Tracked<IO> {
    io: IO,
    activity: Activity,
}

impl<IO> Tracked<IO> {
    pub fn new(io: IO, activity: Activity) -> Tracked<IO> {
        Tracked { io, activity }
    }

    pub fn into_inner(self) -> IO {
        self.io
    }

    fn wrote<T>(&self, polled: &Poll<io::Result<T>>, moved: bool) {
        let counters = &self.activity.0;
        match polled {
            Poll::Pending => counters.unsent.store(true, Ordering::Relaxed),
            Poll::Ready(Ok(_)) => {
                counters.unsent.store(false, Ordering::Relaxed);
                if moved {
                    counters.read_since_write.store(false, Ordering::Relaxed);
                    self.activity.moved();
                }
            }
            Poll::Ready(Err(_)) => {}
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.0.read_since_write.store(true, Ordering::Relaxed);
            self.activity.moved();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        self.wrote(&polled, matches!(polled, Poll::Ready(Ok(n)) if n > 0));
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&polled, matches!(polled, Poll::Ready(Ok(n)) if n > 0));
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.wrote(&polled, false);
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
