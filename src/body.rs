//! The one body type that leaves the gateway, in either direction.
//!
//! Upstream and client bodies are streamed through boxed, never collected;
//! the gateway's own answers (errors, echo, health) are small and full.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body with a boxed error.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Boxes a streaming body (an upstream's or a client's) without buffering it.
pub fn stream<B>(body: B) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Boxes a streaming body that keeps `guard` until it ends or is dropped
/// (an upstream response holding its endpoint's connection slot).
pub fn stream_holding<B, G>(body: B, guard: G) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
    G: Send + Unpin + 'static,
{
    Holding { inner: body, guard: Some(guard) }.boxed_unsync()
}

struct Holding<B, G> {
    inner: B,
    guard: Option<G>,
}

impl<B, G> hyper::body::Body for Holding<B, G>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    G: Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx).map_err(Into::into);
        if let std::task::Poll::Ready(None | Some(Err(_))) = &polled {
            self.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A small JSON response body.
pub fn json(value: &serde_json::Value) -> Body {
    full(serde_json::to_vec(value).unwrap_or_default())
}

/// Why `read_capped` gave up; `crate::error` says what the client is told.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the request body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("the request body did not arrive in time")]
    Timeout,
    #[error("the request body could not be read")]
    Malformed(#[source] BoxError),
}

/// Reads a whole body of at most `limit` bytes within `timeout` (a client
/// trickling its body must not hold an endpoint), for the gateway's own
/// small bodies (endpoints, echo); never used on the proxy path.
pub async fn read_capped(
    mut body: hyper::body::Incoming,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ReadError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut kept = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(ReadError::Timeout),
            Ok(None) => return Ok(kept.freeze()),
            Ok(Some(frame)) => frame.map_err(|e| ReadError::Malformed(Box::new(e)))?,
        };
        let Ok(data) = frame.into_data() else { continue };
        if kept.len() + data.len() > limit {
            drain(&mut body, deadline).await;
            return Err(ReadError::TooLarge(limit));
        }
        kept.extend_from_slice(&data);
    }
}

/// What of an over-long body is read and dropped before the 413 goes out.
/// A client still writing its body when the connection closes meets a
/// reset, not the answer (the unread bytes make the close a reset); read
/// to its end, a modestly over-long body gets its 413, as nginx's
/// lingering close gives it. Past this, or the body's deadline, the rest
/// is left unread.
const DRAIN_AFTER_LIMIT: usize = 8 * 1024 * 1024;

/// Reads and drops a body refused for its declared length, within
/// `timeout`, when all of it can be (at most `DRAIN_AFTER_LIMIT`): only a
/// body read to its end spares the client the reset.
pub async fn discard(mut body: hyper::body::Incoming, declared: u64, timeout: std::time::Duration) {
    if declared <= DRAIN_AFTER_LIMIT as u64 {
        drain(&mut body, tokio::time::Instant::now() + timeout).await;
    }
}

async fn drain(body: &mut hyper::body::Incoming, deadline: tokio::time::Instant) {
    let mut left = DRAIN_AFTER_LIMIT;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await {
        match frame.data_ref().map_or(0, Bytes::len) {
            n if n >= left => return,
            n => left -= n,
        }
    }
}

/// Why a request body toward an upstream stopped early; read after a failed
/// exchange, so the client's fault is answered as the client's (413, 400,
/// 408), not as the upstream's (502).
#[derive(Debug, Default)]
pub struct BodyFault(std::sync::atomic::AtomicU8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// More than the route's `max_body_bytes`.
    TooLarge,
    /// The client's framing was broken (a malformed chunk, a short body).
    Malformed,
    /// Not all there within the route's `body_timeout`.
    Slow,
}

impl BodyFault {
    fn set(&self, fault: Fault) {
        let code = match fault {
            Fault::TooLarge => 1,
            Fault::Malformed => 2,
            Fault::Slow => 3,
        };
        self.0.store(code, std::sync::atomic::Ordering::Release);
    }

    pub fn get(&self) -> Option<Fault> {
        match self.0.load(std::sync::atomic::Ordering::Acquire) {
            1 => Some(Fault::TooLarge),
            2 => Some(Fault::Malformed),
            3 => Some(Fault::Slow),
            _ => None,
        }
    }
}

/// The request body toward an upstream, streamed without buffering: cut off
/// once more than `limit` bytes have passed (0 = no limit) or when it is not
/// all there after `timeout` (zero = no bound). `BodyFault` says why it
/// stopped; there is none for an empty body, which cannot stop early.
pub fn guarded<B>(body: B, limit: u64, timeout: std::time::Duration) -> (Body, Option<std::sync::Arc<BodyFault>>)
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    // Most requests have no body: nothing to guard, no timer to set.
    if hyper::body::Body::is_end_stream(&body) {
        return (stream(body), None);
    }
    let fault = std::sync::Arc::new(BodyFault::default());
    let deadline = (!timeout.is_zero()).then(|| Box::pin(tokio::time::sleep(timeout)));
    let left = if limit == 0 { u64::MAX } else { limit };
    (Guarded { inner: body, left, deadline, fault: fault.clone() }.boxed_unsync(), Some(fault))
}

struct Guarded<B> {
    inner: B,
    left: u64,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    fault: std::sync::Arc<BodyFault>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body exceeds the route's max_body_bytes")]
pub struct TooLarge;

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the route's body_timeout")]
pub struct TooSlow;

impl<B> hyper::body::Body for Guarded<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > self.left {
                    self.fault.set(Fault::TooLarge);
                    return Poll::Ready(Some(Err(Box::new(TooLarge))));
                }
                self.left -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.fault.set(Fault::Malformed);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => {
                    self.fault.set(Fault::Slow);
                    Poll::Ready(Some(Err(Box::new(TooSlow))))
                }
                _ => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
