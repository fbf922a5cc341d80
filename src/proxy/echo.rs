//! `builtin:echo`: answers with the request it received, as JSON.
//!
//! For trying the gateway out and for tests: it shows exactly what an
//! upstream would have received (path, query, headers after hygiene and
//! identity injection, body size), so it runs after every other step.

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use crate::body::{self, Body};
use crate::error::GatewayError;

/// Largest body the echo reads; a try-out upstream has no use for more.
const MAX_ECHO_BODY: usize = 1024 * 1024;

pub async fn respond(parts: Parts, path_and_query: &str, incoming: Incoming) -> Result<Response<Body>, GatewayError> {
    let bytes: Bytes = Limited::new(incoming, MAX_ECHO_BODY)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                GatewayError::PayloadTooLarge
            } else {
                GatewayError::BadRequest("request body could not be read")
            }
        })?
        .to_bytes();
    let mut headers = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<Value> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let value = match <[Value; 1]>::try_from(values) {
            Ok([one]) => one,
            Err(many) => Value::Array(many),
        };
        headers.insert(name.as_str().to_owned(), value);
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let document = json!({
        "method": parts.method.as_str(),
        "path": path,
        "query": query,
        "headers": headers,
        "body_bytes": bytes.len(),
        "body": std::str::from_utf8(&bytes).ok(),
    });
    let mut response = Response::new(body::json(&document));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}
