//! CORS per route (Fetch standard, "CORS protocol").
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`,
//! recognised by `decide`) on a route with `[route.cors]` is answered here, without authentication,
//! and never forwarded: 204 with the CORS headers when the origin, method and
//! headers are allowed, else 403 with none. Actual responses get
//! `Access-Control-Allow-Origin` (the exact origin, never `*` with
//! credentials) only for a listed origin; `Vary: Origin` always.

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};

use crate::body::{self, Body};
use crate::config::Cors;

/// The listed origin this request comes from, as sent.
fn allowed_origin<'h>(origin: Option<&'h HeaderValue>, cors: &Cors) -> Option<&'h HeaderValue> {
    let origin = origin?;
    let text = origin.to_str().ok()?.to_ascii_lowercase();
    let listed = cors.allow_origins.iter().any(|o| o == &text || (o == "*" && !cors.allow_credentials));
    (listed && text != "null").then_some(origin)
}

pub fn preflight(parts: &Parts, cors: &Cors) -> Response<Body> {
    let mut response = Response::new(body::empty());
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
    let method_ok = parts
        .headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .is_some_and(|m| cors.allow_methods.contains(&m));
    let headers_ok = parts
        .headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .all(|h| cors.allow_headers.iter().any(|a| a.as_str() == h));
    let origin = allowed_origin(parts.headers.get(header::ORIGIN), cors);
    let (Some(origin), true, true) = (origin, method_ok, headers_ok) else {
        *response.status_mut() = StatusCode::FORBIDDEN;
        return response;
    };
    *response.status_mut() = StatusCode::NO_CONTENT;
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    let join = |items: Vec<&str>| HeaderValue::from_str(&items.join(", ")).ok();
    if let Some(v) = join(cors.allow_methods.iter().map(Method::as_str).collect()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    if let Some(v) =
        join(cors.allow_headers.iter().map(|n| n.as_str()).collect()).filter(|_| !cors.allow_headers.is_empty())
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    if cors.allow_credentials {
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    if let Some(age) = cors.max_age {
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age.as_secs()));
    }
    response
}

/// Adds the CORS headers of an actual response (after the upstream's are removed).
pub fn decorate(origin: Option<&HeaderValue>, response_headers: &mut HeaderMap, cors: &Cors) {
    for name in [
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
    ] {
        response_headers.remove(name);
    }
    response_headers.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = allowed_origin(origin, cors) else { return };
    response_headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if cors.allow_credentials {
        response_headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    let expose: Vec<&str> = cors.expose_headers.iter().map(|n| n.as_str()).collect();
    if let Ok(v) = HeaderValue::from_str(&expose.join(", "))
        && !expose.is_empty()
    {
        response_headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
}
