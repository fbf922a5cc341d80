//! The gateway's own endpoints (docs/endpoints.md), matched before any route.
//!
//! Owns deciding whether a request is for an endpoint (a known name under
//! `login.path_prefix`, or `/.well-known/jwks.json`, on the normalized path,
//! only with `[login] enabled`), and what they share: reading small JSON
//! bodies with a size cap, the authenticated caller, the cross-site check
//! of cookie mode, the client IP, JSON answers. Each endpoint lives in its
//! own file; their errors go through `crate::error` like every other.

mod jwks;
mod login;
mod logout;
mod me;
mod refresh;
mod register;
mod revoke;
mod session;

use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::auth::{self, AuthError, Authenticated, Credentials};
use crate::body::{self, Body};
use crate::config::AuthMode;
use crate::downstream::Downstream;
use crate::error::GatewayError;
use crate::state::State;
use crate::store::Stores;

/// Largest JSON body an endpoint reads.
pub const MAX_JSON_BODY: usize = 16 * 1024;
/// Longest user name.
pub const MAX_USERNAME_CHARS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Register,
    Login,
    Refresh,
    Logout,
    Me,
    Revoke,
    Jwks,
}

/// The endpoint a normalized path is for, if any.
pub fn find(path: &str, state: &State) -> Option<Endpoint> {
    let login = &state.config.login;
    if !login.enabled {
        return None;
    }
    if path == "/.well-known/jwks.json" {
        return Some(Endpoint::Jwks);
    }
    match path.strip_prefix(login.path_prefix.as_str())? {
        "/register" => Some(Endpoint::Register),
        "/login" => Some(Endpoint::Login),
        "/refresh" => Some(Endpoint::Refresh),
        "/logout" => Some(Endpoint::Logout),
        "/me" => Some(Endpoint::Me),
        "/revoke" => Some(Endpoint::Revoke),
        _ => None,
    }
}

pub async fn serve(
    endpoint: Endpoint,
    parts: Parts,
    body: Incoming,
    downstream: &Downstream,
    state: &State,
) -> Result<Response<Body>, GatewayError> {
    use Endpoint as E;
    match (endpoint, &parts.method) {
        (E::Register, &Method::POST) => register::register(parts, body, state).await,
        (E::Login, &Method::POST) => login::login(parts, body, downstream, state).await,
        (E::Refresh, &Method::POST) => refresh::refresh(parts, body, downstream, state).await,
        (E::Logout, &Method::POST) => logout::logout(parts, body, downstream, state).await,
        (E::Me, &Method::GET | &Method::HEAD) => me::me(&parts, state).await,
        (E::Revoke, &Method::POST) => revoke::revoke(parts, body, state).await,
        (E::Jwks, &Method::GET | &Method::HEAD) => Ok(jwks::jwks(state)),
        (_, method) => Err(GatewayError::MethodNotAllowed(method.clone())),
    }
}

/// An endpoint's whole body: at most `MAX_JSON_BODY` bytes (413), within `request_body_timeout` (408).
async fn read_body(body: Incoming, state: &State) -> Result<bytes::Bytes, GatewayError> {
    Ok(body::read_capped(body, MAX_JSON_BODY, state.config.server.limits.request_body_timeout).await?)
}

/// Reads a JSON body of at most `MAX_JSON_BODY` bytes: 413 past it, 400 when malformed.
pub async fn read_json<T: DeserializeOwned>(body: Incoming, state: &State) -> Result<T, GatewayError> {
    let bytes = read_body(body, state).await?;
    serde_json::from_slice(&bytes).map_err(|_| GatewayError::BadRequest("the body is not the expected JSON"))
}

/// Like `read_json`, but an empty body is `None`.
pub async fn read_optional_json<T: DeserializeOwned>(body: Incoming, state: &State) -> Result<Option<T>, GatewayError> {
    let bytes = read_body(body, state).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|_| GatewayError::BadRequest("the body is not the expected JSON"))
}

/// The verified, not revoked caller (Bearer header, or cookie with CSRF).
pub async fn caller(parts: &Parts, state: &State) -> Result<Authenticated, GatewayError> {
    let credentials = Credentials {
        verifier: &state.verifier,
        stores: state.stores.as_deref(),
        cookies: state.config.login.cookies,
        bare: state.config.tokens.accept_bare_token,
    };
    let caller = auth::authenticate(&parts.method, &parts.headers, AuthMode::Required, &credentials).await?;
    Ok(caller.ok_or(AuthError::MissingToken)?)
}

pub fn stores(state: &State) -> Result<&Stores, GatewayError> {
    Ok(state.stores.as_deref().ok_or(AuthError::StoreUnavailable)?)
}

/// Cookie mode: a browser's cross-site POST to a session endpoint is login
/// CSRF or session fixation; refuse it (`Sec-Fetch-Site`, else `Origin`).
pub fn refuse_cross_site(parts: &Parts, state: &State) -> Result<(), GatewayError> {
    if !state.config.login.cookies {
        return Ok(());
    }
    let site = parts.headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(site, Some("cross-site" | "same-site")) {
        return Err(AuthError::CsrfFailed.into());
    }
    if let Some(origin) = parts.headers.get(header::ORIGIN) {
        let origin = origin.to_str().ok().and_then(|o| o.parse::<http::Uri>().ok());
        let origin = origin.as_ref().and_then(|u| u.authority());
        // The host as the router reads it: `Host`, or `:authority` over HTTP/2.
        let host = crate::router::request_authority(parts)?;
        let same = match (origin, host.as_ref()) {
            (Some(o), Some(h)) => o.host().eq_ignore_ascii_case(h.host()) && o.port_u16() == h.port_u16(),
            _ => false,
        };
        if !same {
            return Err(AuthError::CsrfFailed.into());
        }
    }
    Ok(())
}

/// The client's address for throttling: the socket peer, unless it is a
/// trusted proxy; then the nearest `X-Forwarded-For` entry that is not one.
pub fn client_ip(parts: &Parts, downstream: &Downstream, state: &State) -> std::net::IpAddr {
    let trusted = |ip: &std::net::IpAddr| state.config.server.is_trusted_proxy(ip);
    let peer = downstream.peer.ip();
    if !trusted(&peer) {
        return peer;
    }
    let chain: Vec<std::net::IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|ip| ip.trim().parse().ok())
        .collect();
    chain.into_iter().rev().find(|ip| !trusted(ip)).unwrap_or(peer)
}

/// A JSON answer that no cache keeps.
pub fn json_response(status: StatusCode, document: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(body::json(document));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

pub fn no_content() -> Response<Body> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
