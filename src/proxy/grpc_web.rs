//! gRPC-Web from browsers, translated to gRPC for an HTTP/2 upstream.
//!
//! Owns the binary gRPC-Web protocol (`application/grpc-web`,
//! `application/grpc-web+proto`; gRPC's PROTOCOL-WEB.md): the request's
//! length-prefixed messages are gRPC's own, so only its content type
//! changes (and `TE: trailers` is said for the upstream); the response's
//! trailers, which a browser cannot read, become the body's last frame
//! (flag `0x80`, then `name: value\r\n` lines), and its content type is the
//! one the client sent. The base64 text variant (`grpc-web-text`) is not
//! translated. Refusals before the upstream are plain HTTP statuses, which
//! gRPC-Web clients map to gRPC codes (401 -> UNAUTHENTICATED, 403 ->
//! PERMISSION_DENIED).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use http::{HeaderName, Response};
use hyper::body::Frame;

use crate::body::{Body, BoxError};

/// A gRPC-Web call being translated: the content type to answer with.
pub struct GrpcWeb {
    content_type: HeaderValue,
}

const X_GRPC_WEB: HeaderName = HeaderName::from_static("x-grpc-web");

/// Recognises a binary gRPC-Web request and turns its head into gRPC's.
pub fn request(headers: &mut HeaderMap) -> Option<GrpcWeb> {
    let sent = headers.get(CONTENT_TYPE)?.clone();
    let grpc = match sent.to_str().ok()?.trim() {
        t if t.eq_ignore_ascii_case("application/grpc-web") => "application/grpc",
        t if t.eq_ignore_ascii_case("application/grpc-web+proto") => "application/grpc+proto",
        _ => return None,
    };
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(grpc));
    headers.remove(X_GRPC_WEB);
    Some(GrpcWeb { content_type: sent })
}

/// The upstream's gRPC response as gRPC-Web: the client's content type, and
/// the trailers moved into the body.
pub fn response(call: GrpcWeb, mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(CONTENT_TYPE, call.content_type);
    response.headers_mut().remove(http::header::CONTENT_LENGTH);
    response.map(|inner| http_body_util::BodyExt::boxed_unsync(TrailersInBody { inner }))
}

struct TrailersInBody {
    inner: Body,
}

impl hyper::body::Body for TrailersInBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_trailers() {
                Ok(trailers) => Poll::Ready(Some(Ok(Frame::data(trailer_frame(&trailers))))),
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// PROTOCOL-WEB.md: `0x80`, the block's length (big-endian u32), then the
/// trailers as an HTTP/1 header block (lower-case names, `\r\n` after each).
fn trailer_frame(trailers: &HeaderMap) -> Bytes {
    let mut block = Vec::new();
    for (name, value) in trailers {
        block.extend_from_slice(name.as_str().as_bytes());
        block.extend_from_slice(b": ");
        block.extend_from_slice(value.as_bytes());
        block.extend_from_slice(b"\r\n");
    }
    let mut frame = BytesMut::with_capacity(5 + block.len());
    frame.put_u8(0x80);
    frame.put_u32(u32::try_from(block.len()).unwrap_or(u32::MAX));
    frame.extend_from_slice(&block);
    frame.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_binary_grpc_web_is_translated() {
        for (sent, becomes) in [
            ("application/grpc-web", Some("application/grpc")),
            ("application/grpc-web+proto", Some("application/grpc+proto")),
            ("Application/gRPC-Web+Proto", Some("application/grpc+proto")),
            ("application/grpc-web-text", None),
            ("application/grpc", None),
            ("application/json", None),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(sent));
            headers.insert(X_GRPC_WEB, HeaderValue::from_static("1"));
            let call = request(&mut headers);
            assert_eq!(call.is_some(), becomes.is_some(), "{sent}");
            if let Some(grpc) = becomes {
                assert_eq!(headers[CONTENT_TYPE], grpc);
                assert!(!headers.contains_key(X_GRPC_WEB));
            }
        }
    }

    #[test]
    fn trailers_become_the_last_frame() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("grpc-message", HeaderValue::from_static("ok"));
        let frame = trailer_frame(&trailers);
        let block = b"grpc-status: 0\r\ngrpc-message: ok\r\n";
        assert_eq!(frame[0], 0x80);
        assert_eq!(&frame[1..5], &(block.len() as u32).to_be_bytes());
        assert_eq!(&frame[5..], block);
    }
}
