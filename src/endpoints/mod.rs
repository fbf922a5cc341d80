//! The gateway's own endpoints (SPEC §4), matched before any route.
//!
//! Owns deciding whether a request is for an endpoint (a known name under
//! `login.path_prefix`, on the normalized path, only with `[login] enabled`),
//! and reading small JSON bodies with a size cap. Each endpoint lives in its
//! own file; their errors go through `crate::error` like every other.

mod revoke;

use http::request::Parts;
use http::{Method, Response};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::body::Body;
use crate::error::GatewayError;
use crate::state::State;

/// Largest JSON body an endpoint reads.
pub const MAX_JSON_BODY: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Revoke,
}

/// The endpoint a request is for, if any.
pub fn find(parts: &Parts, state: &State) -> Option<Endpoint> {
    let login = &state.config.login;
    if !login.enabled {
        return None;
    }
    let path = crate::router::path::normalize(parts.uri.path()).ok()?;
    let name = path.strip_prefix(login.path_prefix.as_str())?;
    match name {
        "/revoke" => Some(Endpoint::Revoke),
        _ => None,
    }
}

pub async fn serve(
    endpoint: Endpoint,
    parts: Parts,
    body: Incoming,
    state: &State,
) -> Result<Response<Body>, GatewayError> {
    match (endpoint, &parts.method) {
        (Endpoint::Revoke, &Method::POST) => revoke::revoke(parts, body, state).await,
        (_, method) => Err(GatewayError::MethodNotAllowed(method.clone())),
    }
}

/// Reads a JSON body of at most `MAX_JSON_BODY` bytes: 413 past it, 400 when malformed.
pub async fn read_json<T: DeserializeOwned>(body: Incoming) -> Result<T, GatewayError> {
    let bytes = crate::body::read_capped(body, MAX_JSON_BODY).await?;
    serde_json::from_slice(&bytes).map_err(|_| GatewayError::BadRequest("the body is not the expected JSON"))
}
