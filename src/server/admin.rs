//! The admin listener: `/healthz` (alive) and `/readyz` (ready to serve).
//!
//! Separate from the data listeners so probes never pass through routing or
//! authentication. Ready means: config and keys loaded, listeners bound,
//! and not draining.

use http::{HeaderValue, Request, Response, StatusCode, header};
use serde_json::json;

use super::Health;
use crate::body::{self, Body};
use crate::state::State;

pub fn handle<B>(request: &Request<B>, health: &Health, _state: &State) -> Response<Body> {
    let (status, document) = match (request.method().as_str(), request.uri().path()) {
        ("GET" | "HEAD", "/healthz") => (StatusCode::OK, json!({"status": "ok"})),
        ("GET" | "HEAD", "/readyz") if health.is_ready() => (StatusCode::OK, json!({"status": "ready"})),
        ("GET" | "HEAD", "/readyz") => {
            let reason = if health.is_draining() { "draining" } else { "starting" };
            (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "not_ready", "reason": reason}))
        }
        _ => (StatusCode::NOT_FOUND, json!({"error": "not_found", "message": "not found"})),
    };
    let mut response = Response::new(body::json(&document));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
