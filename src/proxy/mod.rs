//! The life of a proxied request, as one straight line.
//!
//! `handle` is the outer function: it runs `serve` and turns any error into
//! the spec's response (`crate::error`), and logs one line. `serve` reads
//! top to bottom like SPEC §3: limits, route, authenticate, authorize,
//! forward. `forward` takes an `Authorized`, so nothing reaches an upstream
//! without passing policy. Header rules live in `headers`, the pooled
//! client in `client`, WebSockets in `upgrade`, the try-out upstream in `echo`.

pub mod client;
pub mod echo;
pub mod headers;
pub mod upgrade;

use std::time::Instant;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;

use crate::auth::{self, Authorized};
use crate::body::{self, Body};
use crate::config::Upstream;
use crate::error::{GatewayError, chain};
use crate::router::RouteMatch;
use crate::server::Downstream;
use crate::state::State;

/// Serves one request; never fails: errors become the spec's responses.
pub async fn handle(request: Request<Incoming>, downstream: Downstream, state: &State) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = match serve(request, &downstream, state).await {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(
                %method, path, peer = %downstream.peer.ip(), code = error.code(), cause = %chain(&error),
                "request refused"
            );
            error.into_response()
        }
    };
    tracing::debug!(%method, path, status = response.status().as_u16(), latency_us = started.elapsed().as_micros() as u64, "request");
    response
}

async fn serve(
    request: Request<Incoming>,
    downstream: &Downstream,
    state: &State,
) -> Result<Response<Body>, GatewayError> {
    let (parts, body) = request.into_parts();
    let limits = &state.config.server.limits;
    if parts.headers.len() > limits.max_headers || headers::head_size(&parts.headers) > limits.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    // TRACE would reflect the injected identity (and any cookie) back to the client.
    if parts.method == http::Method::TRACE {
        return Err(GatewayError::MethodNotAllowed(parts.method));
    }
    if let Some(endpoint) = crate::endpoints::find(&parts, state) {
        return crate::endpoints::serve(endpoint, parts, body, downstream, state).await;
    }
    let target = state.router.route_request(&parts)?;
    let cookie_mode = state.config.login.enabled && state.config.login.cookies;
    let identity = auth::authenticate(&parts.method, &parts.headers, target.route.auth, &state.verifier, cookie_mode)?;
    if let Some(identity) = &identity {
        auth::check_revocation(identity, state.stores.as_deref())?;
    }
    let authorized = auth::authorize(target.route, identity)?;
    forward(parts, body, target, authorized, downstream, state).await
}

/// Sends the request on to the route's upstream and streams the answer back.
async fn forward(
    mut parts: Parts,
    body: Incoming,
    target: RouteMatch<'_>,
    authorized: Authorized,
    downstream: &Downstream,
    state: &State,
) -> Result<Response<Body>, GatewayError> {
    let websocket = upgrade::websocket_request(&mut parts)?;
    let host = parts
        .headers
        .get(header::HOST)
        .cloned()
        .or_else(|| parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
    prepare_headers(&mut parts, &authorized, downstream, state, host.as_ref())?;
    if websocket.is_some() {
        upgrade::restore_upgrade_headers(&mut parts.headers);
    }

    let authority = match &target.route.upstream {
        Upstream::Echo => return echo::respond(parts, &target.upstream_path_and_query, body).await,
        Upstream::Http { authority, .. } => authority,
    };
    parts.uri = Uri::builder()
        .scheme("http")
        .authority(authority.clone())
        .path_and_query(target.upstream_path_and_query.as_str())
        .build()
        .map_err(|_| GatewayError::BadRequest("request target cannot be forwarded"))?;
    parts.version = Version::HTTP_11;
    if let Some(host) = host {
        parts.headers.insert(header::HOST, host);
    }

    let mut response = state.upstream.send(Request::from_parts(parts, body::stream(body))).await?;
    if let Some(websocket) = websocket {
        let expires_at = authorized.identity().map(|id| id.expires_at);
        if let Some(switched) = upgrade::splice(websocket, &mut response, expires_at)? {
            return Ok(switched);
        }
    }
    let (mut head, upstream_body) = response.into_parts();
    headers::remove_hop_by_hop(&mut head.headers);
    Ok(Response::from_parts(head, body::stream(upstream_body)))
}

/// SPEC §3 steps 3 and 8, in the order that makes injection impossible.
fn prepare_headers(
    parts: &mut Parts,
    authorized: &Authorized,
    downstream: &Downstream,
    state: &State,
    host: Option<&HeaderValue>,
) -> Result<(), GatewayError> {
    let config = &state.config.headers;
    let headers = &mut parts.headers;
    headers::remove_hop_by_hop(headers);
    headers::strip_identity(headers, config);
    if !config.forward_token {
        headers.remove(header::AUTHORIZATION);
        auth::cookies::strip(headers);
    }
    let peer = downstream.peer.ip();
    let trusted = state.config.server.trusted_proxies.iter().any(|net| net.contains(&peer));
    if !trusted {
        headers::strip_routing_hints(headers);
    }
    headers::join_cookies(headers);
    let proto = if downstream.tls { "https" } else { "http" };
    headers::set_forwarded(headers, peer, trusted, proto, host.and_then(|h| h.to_str().ok()));
    if let Some(identity) = authorized.identity() {
        headers::set_identity(headers, identity, config).map_err(auth::AuthError::from)?;
    }
    Ok(())
}
