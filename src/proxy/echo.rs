//! `builtin:echo`: answers with the request it received, as JSON.
//!
//! For trying the gateway out and for tests: it shows exactly what an
//! upstream would have received (path, query, headers after hygiene and
//! identity injection, body size), so it runs after every other step.

use http::request::Parts;
use http::{HeaderValue, Response, header};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use crate::body::{self, Body};
use crate::error::GatewayError;

/// Largest body the echo reads; a try-out upstream has no use for more.
const MAX_ECHO_BODY: usize = 1024 * 1024;

pub async fn respond(
    parts: Parts,
    path_and_query: &str,
    incoming: Incoming,
    timeout: std::time::Duration,
) -> Result<Response<Body>, GatewayError> {
    let bytes = body::read_capped(incoming, MAX_ECHO_BODY, timeout).await?;
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
