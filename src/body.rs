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

/// A small JSON response body.
pub fn json(value: &serde_json::Value) -> Body {
    full(serde_json::to_vec(value).unwrap_or_default())
}

/// Reads a whole body of at most `limit` bytes within `timeout` (a client
/// trickling its body must not hold an endpoint: 408), for the gateway's own
/// small bodies (endpoints, echo); never used on the proxy path.
pub async fn read_capped(
    body: hyper::body::Incoming,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, crate::error::GatewayError> {
    use crate::error::GatewayError;
    let collecting = http_body_util::Limited::new(body, limit).collect();
    let collected = tokio::time::timeout(timeout, collecting).await.map_err(|_| GatewayError::BodyTimeout)?;
    let collected = collected.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            GatewayError::PayloadTooLarge
        } else {
            GatewayError::BadRequest("the request body could not be read")
        }
    })?;
    Ok(collected.to_bytes())
}

/// The request body toward an upstream, cut off once more than `limit` bytes
/// have passed (0 = no limit), without buffering. The flag tells whether
/// it was cut, so the failed exchange is answered 413, not 502.
pub fn capped<B>(body: B, limit: u64) -> (Body, std::sync::Arc<std::sync::atomic::AtomicBool>)
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let tripped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if limit == 0 {
        return (stream(body), tripped);
    }
    (Capped { inner: body, left: limit, tripped: tripped.clone() }.boxed_unsync(), tripped)
}

struct Capped<B> {
    inner: B,
    left: u64,
    tripped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body exceeds the route's max_body_bytes")]
pub struct TooLarge;

impl<B> hyper::body::Body for Capped<B>
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
                    self.tripped.store(true, std::sync::atomic::Ordering::Release);
                    return Poll::Ready(Some(Err(Box::new(TooLarge))));
                }
                self.left -= len;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            other => other.map(|o| o.map(|r| r.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
