//! A stream lives no longer than the token that opened it.
//!
//! Owns `Caller` (whose token a long exchange runs on) and the moment it
//! ends: the token's `exp`, or its revocation seen in the denylist copy
//! (looked up every 500 ms, no network). A WebSocket tunnel is closed then
//! (`upgrade`); a gRPC call's response is ended the gRPC way, with trailers
//! `grpc-status: 16` (UNAUTHENTICATED) and a `grpc-message`, and the
//! upstream's stream is cancelled (its body dropped).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use hyper::body::Frame;

use crate::body::{Body, BoxError};

/// How often an open stream looks its token up in the denylist copy.
const REVOCATION_CHECK: Duration = Duration::from_millis(500);

/// Whose stream it is: it ends when their token expires or is revoked.
pub struct Caller {
    pub jti: String,
    pub sub: String,
    pub issued_at: u64,
    pub expires_at: u64,
    pub session: Option<String>,
    pub stores: Option<std::sync::Arc<crate::store::Stores>>,
}

/// Why a stream's token ended.
#[derive(Debug, Clone, Copy)]
pub enum Ended {
    Expired,
    Revoked,
}

impl Ended {
    /// For the log: "websocket closed: its token expired".
    pub fn reason(self) -> &'static str {
        match self {
            Ended::Expired => "its token expired",
            Ended::Revoked => "its token was revoked",
        }
    }

    /// The gRPC `grpc-message`.
    fn grpc_message(self) -> &'static str {
        match self {
            Ended::Expired => "the token expired",
            Ended::Revoked => "the token was revoked",
        }
    }
}

impl Caller {
    /// Resolves when the token expires or is revoked.
    pub async fn ended(self) -> Ended {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let expiry = tokio::time::sleep(Duration::from_secs(self.expires_at.saturating_sub(now)));
        let revoked = async {
            let Some(stores) = self.stores.as_ref() else {
                return std::future::pending().await;
            };
            let mut every = tokio::time::interval(REVOCATION_CHECK);
            loop {
                every.tick().await;
                if stores.denylist.is_revoked(&self.jti, &self.sub, self.issued_at, self.session.as_deref()) {
                    return;
                }
            }
        };
        tokio::select! {
            () = expiry => Ended::Expired,
            () = revoked => Ended::Revoked,
        }
    }
}

/// A gRPC response body that ends with UNAUTHENTICATED trailers when the
/// caller's token does.
pub fn grpc_bounded(body: Body, caller: Caller) -> Body {
    http_body_util::BodyExt::boxed_unsync(GrpcBounded { inner: Some(body), end: Box::pin(caller.ended()) })
}

struct GrpcBounded {
    /// `None` once the token ended: the upstream stream is dropped (cancelled).
    inner: Option<Body>,
    end: Pin<Box<dyn Future<Output = Ended> + Send>>,
}

impl hyper::body::Body for GrpcBounded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        // The token's end first: a stream that never pauses still ends on time.
        if let Poll::Ready(why) = this.end.as_mut().poll(cx) {
            tracing::info!("gRPC stream ended: {}", why.reason());
            this.inner = None;
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("16"));
            trailers.insert("grpc-message", HeaderValue::from_static(why.grpc_message()));
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let polled = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.inner = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(hyper::body::Body::is_end_stream)
    }
}
