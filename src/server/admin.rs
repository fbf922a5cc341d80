//! The admin listener: `/healthz` (alive), `/readyz` (ready to serve), `/metrics`.
//!
//! Separate from the data listeners so probes never pass through routing or
//! authentication. Ready means: config and keys loaded, listeners bound,
//! not draining, the denylist copy confirmed current (unless
//! `on_unavailable = "allow"`), and the store able to take writes.

use http::{HeaderValue, Request, Response, StatusCode, header};
use serde_json::json;

use super::Health;
use crate::body::{self, Body};
use crate::config::OnUnavailable;
use crate::state::State;

pub fn handle<B>(request: &Request<B>, health: &Health, state: &State) -> Response<Body> {
    let store = state.stores.as_deref();
    let store_ok = store.is_none_or(|s| s.is_current() || s.on_unavailable == OnUnavailable::Allow);
    // A store that cannot take writes (no master answers) cannot acknowledge a logout or a revocation.
    let writable = store.is_none_or(|s| s.is_writable() || s.on_unavailable == OnUnavailable::Allow);
    let staleness_ms = store.and_then(|s| s.denylist.staleness()).map(|d| d.as_millis() as u64);
    let jwks: Vec<_> = state
        .trusted
        .iter()
        .map(|i| {
            // An issuer whose keys never arrived refuses every one of its tokens: say so.
            let status = if i.key_count() == 0 { "no_keys" } else { "ok" };
            json!({"issuer": i.config.name(), "status": status, "keys": i.key_count(), "age_s": i.keys_age().map(|a| a.as_secs())})
        })
        .collect();
    let (status, document) = match (request.method().as_str(), request.uri().path()) {
        ("GET" | "HEAD", "/healthz") => (StatusCode::OK, json!({"status": "ok"})),
        ("GET" | "HEAD", "/readyz") if health.is_ready() && store_ok && writable => {
            (StatusCode::OK, json!({"status": "ready", "denylist_staleness_ms": staleness_ms, "jwks": jwks}))
        }
        ("GET" | "HEAD", "/readyz") => {
            let reason = match (health.is_draining(), health.is_ready(), store_ok) {
                (true, _, _) => "draining",
                (false, false, _) => "starting",
                (false, true, false) => "store_unavailable",
                (false, true, true) => "store_read_only",
            };
            let body =
                json!({"status": "not_ready", "reason": reason, "denylist_staleness_ms": staleness_ms, "jwks": jwks});
            (StatusCode::SERVICE_UNAVAILABLE, body)
        }
        ("GET", "/metrics") => {
            let observed = crate::metrics::Observed {
                jwks_ages: state.trusted.iter().map(|i| (i.config.name().to_owned(), i.keys_age())).collect(),
                denylist: store.map(|s| (s.denylist.len(), s.denylist.staleness())),
                upstreams: state
                    .upstream
                    .backends()
                    .iter()
                    .map(|b| {
                        let health = b.endpoints.health();
                        crate::metrics::UpstreamObserved {
                            upstream: b.label.clone(),
                            healthy: health.healthy,
                            ejected: health.ejected,
                            in_flight: health.in_flight,
                        }
                    })
                    .collect(),
            };
            let mut response = Response::new(body::full(state.metrics.render(&observed)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            return response;
        }
        _ => (StatusCode::NOT_FOUND, json!({"error": "not_found", "message": "not found"})),
    };
    let mut response = Response::new(body::json(&document));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
