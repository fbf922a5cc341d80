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

/// Reads a whole body of at most `limit` bytes, for the gateway's own small
/// bodies (endpoints, echo); never used on the proxy path.
pub async fn read_capped(body: hyper::body::Incoming, limit: usize) -> Result<Bytes, crate::error::GatewayError> {
    use crate::error::GatewayError;
    let collected = http_body_util::Limited::new(body, limit).collect().await.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            GatewayError::PayloadTooLarge
        } else {
            GatewayError::BadRequest("the request body could not be read")
        }
    })?;
    Ok(collected.to_bytes())
}
