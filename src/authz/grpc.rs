//! Envoy's gRPC `ext_authz` (`envoy.service.auth.v3.Authorization/Check`),
//! what Istio's `envoyExtAuthzGrpc` provider uses, on a listener of its own
//! (`[authz] grpc`).
//!
//! A unary gRPC call over HTTP/2 is one length-prefixed protobuf message
//! each way and a `grpc-status` trailer; this module speaks exactly that
//! for the one method, with the messages of Envoy's protos written out
//! below (field numbers as in `envoy/service/auth/v3/*.proto`,
//! `envoy/config/core/v3/base.proto`, `envoy/type/v3/http_status.proto` and
//! `google/rpc/status.proto`; fields authgate does not use are left out,
//! which protobuf skips on decoding). The question is answered by the same
//! `decide` as every door (`super::decide_original`).

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use prost::Message;

use crate::body::{Body, BoxError};
use crate::downstream::Downstream;
use crate::error::GatewayError;
use crate::state::State;

/// The one method served.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";
/// A check request larger than this is refused (headers of one HTTP request).
const MAX_MESSAGE: usize = 1024 * 1024;

#[derive(Clone, PartialEq, Message)]
pub struct CheckRequest {
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<AttributeContext>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeContext {
    #[prost(message, optional, tag = "4")]
    pub request: Option<AttributeRequest>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeRequest {
    #[prost(message, optional, tag = "2")]
    pub http: Option<HttpRequest>,
}

#[derive(Clone, PartialEq, Message)]
pub struct HttpRequest {
    #[prost(string, tag = "2")]
    pub method: String,
    #[prost(map = "string, string", tag = "3")]
    pub headers: HashMap<String, String>,
    /// The request target as in the request line: path and query.
    #[prost(string, tag = "4")]
    pub path: String,
    #[prost(string, tag = "5")]
    pub host: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct CheckResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<RpcStatus>,
    #[prost(oneof = "HttpResponse", tags = "2, 3")]
    pub http_response: Option<HttpResponse>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HttpResponse {
    #[prost(message, tag = "2")]
    Denied(DeniedHttpResponse),
    #[prost(message, tag = "3")]
    Ok(OkHttpResponse),
}

#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct DeniedHttpResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<HttpStatus>,
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    #[prost(string, tag = "3")]
    pub body: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct OkHttpResponse {
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    #[prost(string, repeated, tag = "5")]
    pub headers_to_remove: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct HttpStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct HeaderValueOption {
    #[prost(message, optional, tag = "1")]
    pub header: Option<HeaderValueProto>,
    /// `OVERWRITE_IF_EXISTS_OR_ADD` (2): the answer replaces the client's copy.
    #[prost(int32, tag = "3")]
    pub append_action: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct HeaderValueProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

const OVERWRITE_IF_EXISTS_OR_ADD: i32 = 2;
/// gRPC status codes (google.rpc.Code).
const OK: i32 = 0;
const INVALID_ARGUMENT: i32 = 3;
const PERMISSION_DENIED: i32 = 7;
const UNIMPLEMENTED: i32 = 12;
const UNAUTHENTICATED: i32 = 16;

/// Serves one gRPC request on the `[authz] grpc` listener.
pub async fn handle(request: Request<Incoming>, downstream: Downstream, state: &State) -> Response<Body> {
    if request.uri().path() != CHECK_PATH {
        return grpc_error(UNIMPLEMENTED, "only envoy.service.auth.v3.Authorization/Check is served");
    }
    let allow_from = &state.config.authz.allow_from;
    if !allow_from.is_empty() && !allow_from.iter().any(|net| net.contains(&downstream.peer.ip())) {
        return grpc_error(PERMISSION_DENIED, "this address may not ask for decisions");
    }
    let body = match http_body_util::Limited::new(request.into_body(), MAX_MESSAGE + 5).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return grpc_error(INVALID_ARGUMENT, "the check request could not be read"),
    };
    let Some(check) = unframe(body).and_then(|m| CheckRequest::decode(m).ok()) else {
        return grpc_error(INVALID_ARGUMENT, "not a CheckRequest");
    };
    let http = check.attributes.and_then(|a| a.request).and_then(|r| r.http).unwrap_or_default();
    let answer = answer(http, state).await;
    let mut message = BytesMut::new();
    frame(&answer.encode_to_vec(), &mut message);
    grpc_response(message.freeze(), OK, "")
}

/// The decision on the request Envoy describes, as a `CheckResponse`.
async fn answer(http: HttpRequest, state: &State) -> CheckResponse {
    let original = original_request(&http);
    let decided = match original {
        Ok(parts) => {
            let mut outcome = super::Outcome { route: "-".to_owned(), sub: None, allowed: false };
            super::decide_original(&parts, state, &mut outcome).await
        }
        Err(e) => Err(e),
    };
    match decided {
        Ok(identity) => {
            let headers_to_remove = super::identity_header_names(state)
                .into_iter()
                .filter(|n| !identity.contains_key(n.as_str()))
                .map(|n| n.as_str().to_owned())
                .collect();
            let headers = header_options(&identity);
            CheckResponse {
                status: Some(RpcStatus { code: OK, message: String::new() }),
                http_response: Some(HttpResponse::Ok(OkHttpResponse { headers, headers_to_remove })),
            }
        }
        Err(error) => {
            let response = error.into_response();
            let status = response.status();
            let headers = header_options(response.headers());
            let code = if status == StatusCode::UNAUTHORIZED { UNAUTHENTICATED } else { PERMISSION_DENIED };
            let body = denial_body(response).await;
            CheckResponse {
                status: Some(RpcStatus { code, message: String::new() }),
                http_response: Some(HttpResponse::Denied(DeniedHttpResponse {
                    status: Some(HttpStatus { code: i32::from(status.as_u16()) }),
                    headers,
                    body,
                })),
            }
        }
    }
}

/// Headers as Envoy's `HeaderValueOption`s, each overwriting the client's copy.
fn header_options(headers: &HeaderMap) -> Vec<HeaderValueOption> {
    headers
        .iter()
        .filter_map(|(k, v)| {
            let value = v.to_str().ok()?.to_owned();
            Some(HeaderValueOption {
                header: Some(HeaderValueProto { key: k.as_str().to_owned(), value }),
                append_action: OVERWRITE_IF_EXISTS_OR_ADD,
            })
        })
        .collect()
}

async fn denial_body(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The original request's head from Envoy's description.
fn original_request(http: &HttpRequest) -> Result<http::request::Parts, GatewayError> {
    if http.method.is_empty() || !http.path.starts_with('/') {
        return Err(GatewayError::BadRequest("the original request's method or URI is missing"));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &http.headers {
        // HTTP/2 pseudo-headers are described by the fields.
        if name.starts_with(':') {
            continue;
        }
        if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.append(n, v);
        }
    }
    if !http.host.is_empty() {
        let host = HeaderValue::from_str(&http.host)
            .map_err(|_| GatewayError::BadRequest("the original host is malformed"))?;
        headers.insert(http::header::HOST, host);
    }
    super::request_parts(&http.method, &http.path, headers)
}

/// The 5-byte gRPC message prefix: not compressed, then the length.
fn frame(message: &[u8], out: &mut BytesMut) {
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.put_slice(message);
}

/// The one uncompressed message of a unary request.
fn unframe(mut body: Bytes) -> Option<Bytes> {
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    body.advance(1);
    let len = usize::try_from(body.get_u32()).ok()?;
    (len <= MAX_MESSAGE && body.len() == len).then_some(body)
}

fn grpc_error(code: i32, message: &str) -> Response<Body> {
    grpc_response(Bytes::new(), code, message)
}

/// `content-type: application/grpc`, the message, and the status as trailers.
fn grpc_response(message: Bytes, code: i32, text: &str) -> Response<Body> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(text)
        && !text.is_empty()
    {
        trailers.insert("grpc-message", v);
    }
    let frames: Vec<Result<Frame<Bytes>, BoxError>> =
        [(!message.is_empty()).then(|| Ok(Frame::data(message))), Some(Ok(Frame::trailers(trailers)))]
            .into_iter()
            .flatten()
            .collect();
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let mut response = Response::new(body.boxed_unsync());
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_frame_and_unframe() {
        let mut headers = HashMap::new();
        headers.insert("authorization".to_owned(), "Bearer x".to_owned());
        let check = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(AttributeRequest {
                    http: Some(HttpRequest { method: "GET".into(), headers, path: "/a?b=1".into(), host: "h".into() }),
                }),
            }),
        };
        let mut framed = BytesMut::new();
        frame(&check.encode_to_vec(), &mut framed);
        let back = CheckRequest::decode(unframe(framed.freeze()).unwrap()).unwrap();
        assert_eq!(back, check);
        assert!(unframe(Bytes::from_static(&[1, 0, 0, 0, 0])).is_none(), "compressed: refused");
        assert!(unframe(Bytes::from_static(&[0, 0, 0, 0, 9, 1])).is_none(), "short");
        let parts = original_request(&back.attributes.unwrap().request.unwrap().http.unwrap()).unwrap();
        assert_eq!((parts.method.as_str(), parts.uri.to_string().as_str()), ("GET", "/a?b=1"));
        assert_eq!(parts.headers["host"], "h");
    }
}
