//! The life of a proxied request, as one straight line.
//!
//! `handle` is the outer function: it runs `serve` and turns any error into
//! its response (`crate::error`, docs/errors.md), and logs one line.
//! `serve` reads top to bottom like docs/endpoints.md: limits, then
//! `crate::decide` (method, path, endpoint, route, caller, policy), then
//! forward. `forward` takes an `Authorized`, so nothing reaches an upstream
//! without passing policy. Header rules live in `headers`, WebSockets in
//! `upgrade`, the try-out upstream in `echo`, CORS answers in `cors`; the
//! pooled client is `crate::upstream`.

pub mod cors;
pub mod echo;
pub mod grpc_web;
pub mod lifetime;
pub mod upgrade;

use std::borrow::Cow;
use std::time::Instant;

use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Version};
use hyper::body::Incoming;

use crate::auth::{self, Authenticated, Authorized};
use crate::body::{self, Body};
use crate::config::Upstream;
use crate::decide::{Decision, decide};
use crate::downstream::Downstream;
use crate::error::GatewayError;
use crate::headers;
use crate::report::chain;
use crate::router::RouteMatch;
use crate::state::State;
use crate::upstream::Driven;
use crate::upstream::balance::Lease;

/// What the log line and the metrics learn of a request as it goes.
struct Notes<'s> {
    /// The matched route's path, `endpoint`, `authz:<route>` for a decision,
    /// or `-` (borrowed from the config where it can be: no copy a request).
    route: Cow<'s, str>,
    /// The authenticated caller of a route (its `sub` is logged: kept, not copied).
    caller: Option<Authenticated>,
    /// A decision's subject.
    sub: Option<String>,
    /// For a decision request: `allow` or `deny`.
    decision: Option<&'static str>,
}

/// Serves one request; never fails: errors become the spec's responses.
/// Writes one access line (target `access`) and the request metrics.
pub async fn handle(request: Request<Incoming>, downstream: Downstream, state: &State) -> Response<Body> {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    let method = request.method().clone();
    let grpc = crate::error::is_grpc(request.headers());
    // Only the access line needs its own copy of the path.
    let logged = tracing::enabled!(target: crate::logs::ACCESS, tracing::Level::INFO);
    let path = if logged { request.uri().path().to_owned() } else { String::new() };
    let mut notes = Notes { route: Cow::Borrowed("-"), caller: None, sub: None, decision: None };
    let metrics = &state.metrics;
    let (mut response, refused) = match serve(request, &request_id, &downstream, state, &mut notes).await {
        Ok(response) => (response, None),
        Err(error) => {
            let status = error.status();
            if status == http::StatusCode::UNAUTHORIZED || status == http::StatusCode::FORBIDDEN {
                metrics.auth_failure(error.code());
            }
            if matches!(error, GatewayError::Store(_)) {
                metrics.store_errors.inc();
            }
            let refused = (error.code(), chain(&error));
            let response = if grpc { error.into_grpc_response() } else { error.into_response() };
            (response, Some(refused))
        }
    };
    // Unique to the request: HTTP/2's header compression is told not to keep
    // it (entering it in the table would only push out values that repeat).
    let mut echoed = request_id.clone();
    echoed.set_sensitive(true);
    response.headers_mut().insert(REQUEST_ID, echoed);
    let status = response.status().as_u16();
    let latency = started.elapsed();
    metrics.request(&notes.route, status);
    metrics.request_duration.observe(latency.as_secs_f64());
    let (code, cause) = refused.map_or(("", String::new()), |(c, cause)| (c, cause));
    tracing::info!(
        target: crate::logs::ACCESS,
        %method,
        path,
        route = &*notes.route,
        status,
        latency_ms = latency.as_secs_f64() * 1000.0,
        sub = notes.caller.as_ref().map(|c| c.sub.as_str()).or(notes.sub.as_deref()).unwrap_or("-"),
        client_ip = %downstream.peer.ip(),
        request_id = request_id.to_str().unwrap_or("-"),
        error = code,
        cause,
        decision = notes.decision,
    );
    response
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Keeps a sane client `X-Request-Id` (so a trace spans systems), else makes
/// one; either way it goes upstream and back to the client.
fn request_id(headers: &http::HeaderMap) -> HeaderValue {
    let sane = |v: &HeaderValue| {
        (1..=128).contains(&v.len())
            && v.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    };
    let mut sent = headers.get_all(REQUEST_ID).iter();
    match (sent.next(), sent.next()) {
        (Some(v), None) if sane(v) => v.clone(),
        _ => new_request_id(),
    }
}

/// `{prefix}-{n:x}` (a prefix of at most 12 bytes), written by hand:
/// `format!` was most of the cost of making an id.
fn id_text(prefix: &[u8], n: u64) -> HeaderValue {
    let prefix = &prefix[..prefix.len().min(12)];
    let mut id = [0u8; 12 + 1 + 16];
    id[..prefix.len()].copy_from_slice(prefix);
    id[prefix.len()] = b'-';
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
    let start = prefix.len() + 1;
    for (i, byte) in id[start..start + digits].iter_mut().enumerate() {
        let nibble = (n >> (4 * (digits - 1 - i))) & 0xf;
        *byte = b"0123456789abcdef"[nibble as usize];
    }
    // Shared from the start: the id is cloned into the upstream request and
    // the response, and a value copied from a slice would allocate again on
    // its first clone.
    let id = bytes::Bytes::from_owner(IdText { id, len: start + digits });
    HeaderValue::from_maybe_shared(id).unwrap_or(HeaderValue::from_static("-"))
}

/// A request id's bytes, owned by the `Bytes` that holds them.
struct IdText {
    id: [u8; 12 + 1 + 16],
    len: usize,
}

impl AsRef<[u8]> for IdText {
    fn as_ref(&self) -> &[u8] {
        &self.id[..self.len]
    }
}

/// A process-unique id: a random prefix chosen at start and a counter (no
/// system call per request, unlike a random UUID).
fn new_request_id() -> HeaderValue {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_owned());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    id_text(prefix.as_bytes(), n)
}

async fn serve<'s>(
    request: Request<Incoming>,
    request_id: &HeaderValue,
    downstream: &Downstream,
    state: &'s State,
    notes: &mut Notes<'s>,
) -> Result<Response<Body>, GatewayError> {
    let (mut parts, body) = request.into_parts();
    let limits = &state.config.server.limits;
    if parts.headers.len() > limits.max_headers || headers::head_size(&parts.headers) > limits.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    headers::check_framing(&parts.headers).map_err(GatewayError::Framing)?;
    headers::apply_underscore_policy(&mut parts.headers, state.config.server.underscore_headers)
        .map_err(GatewayError::BadRequest)?;
    // Decision mode: an ingress asks about a request it will forward itself.
    if let Some(door) = crate::authz::door(parts.uri.path(), state) {
        let mut outcome = crate::authz::Outcome { route: "-".to_owned(), sub: None, allowed: false };
        let answer = crate::authz::answer(door, &parts, downstream, state, &mut outcome).await;
        notes.route = Cow::Owned(format!("authz:{}", outcome.route));
        notes.sub = outcome.sub;
        notes.decision = Some(if answer.is_ok() && outcome.allowed { "allow" } else { "deny" });
        return answer;
    }
    let (target, authorized) = match decide(&parts, state).await {
        Decision::Refused { error, .. } => return Err(error),
        Decision::Endpoint { endpoint, .. } => {
            notes.route = Cow::Borrowed("endpoint");
            return crate::endpoints::serve(endpoint, parts, body, downstream, state).await;
        }
        Decision::Preflight { target, cors } => {
            notes.route = Cow::Borrowed(&target.route.path);
            // Preflights carry no credentials: answered here, before authentication, never forwarded.
            return Ok(cors::preflight(&parts, cors));
        }
        Decision::Route { target, caller, verdict } => {
            notes.route = Cow::Borrowed(&target.route.path);
            notes.caller = caller;
            (target, verdict?)
        }
    };
    let route = target.route;
    let origin = route.cors.as_ref().and_then(|_| parts.headers.get(header::ORIGIN).cloned());
    let mut response = forward(parts, body, target, authorized, request_id, downstream, state).await?;
    if let Some(cors) = &route.cors {
        cors::decorate(origin.as_ref(), response.headers_mut(), cors);
    }
    Ok(response)
}

/// Sends the request on to the route's upstream and streams the answer back.
async fn forward(
    mut parts: Parts,
    body: Incoming,
    target: RouteMatch<'_>,
    authorized: Authorized,
    request_id: &HeaderValue,
    downstream: &Downstream,
    state: &State,
) -> Result<Response<Body>, GatewayError> {
    // Asked before the headers are prepared for the next hop.
    let may_drain = parts.version < Version::HTTP_2 && !parts.headers.contains_key(header::EXPECT);
    let websocket = upgrade::websocket_request(&mut parts)?;
    // gRPC-Web is translated for an HTTP/2 upstream (h2c://, or https:// where ALPN picks h2).
    let web = match &target.route.upstream {
        Upstream::Http { h2, tls, .. } if *h2 || tls.is_some() => grpc_web::request(&mut parts.headers),
        _ => None,
    };
    let grpc = web.is_some() || crate::error::is_grpc(&parts.headers);
    // The client's own `Host` value when it is the authority (no copy).
    let host = target.authority.as_ref().and_then(|a| match parts.headers.get(header::HOST) {
        Some(sent) if sent.as_bytes() == a.as_str().as_bytes() => Some(sent.clone()),
        _ => HeaderValue::from_str(a.as_str()).ok(),
    });
    // `TE: trailers` is hop-by-hop, but gRPC needs it said again on the next hop.
    let wants_trailers = web.is_some() || headers::connection_token_listed(&parts.headers, header::TE, "trailers");
    prepare_headers(&mut parts, &authorized, request_id, downstream, state, host.as_ref())?;
    if websocket.is_some() {
        upgrade::restore_upgrade_headers(&mut parts.headers);
    }

    let h2 = match &target.route.upstream {
        Upstream::Echo => {
            let timeout = state.config.server.limits.request_body_timeout;
            return echo::respond(parts, &target.upstream_path_and_query, body, timeout).await;
        }
        Upstream::Http { h2, tls, .. } => {
            // TLS: the version is ALPN's to choose.
            parts.version = if *h2 { Version::HTTP_2 } else { Version::HTTP_11 };
            if (*h2 || tls.is_some()) && wants_trailers {
                parts.headers.insert(header::TE, HeaderValue::from_static("trailers"));
            }
            *h2
        }
        // A route for decisions only: nothing to forward to.
        Upstream::None => return Err(crate::router::RouteError::NoRoute.into()),
    };
    if let Some(host) = host {
        parts.headers.insert(header::HOST, host);
    }

    let limit = target.route.max_body_bytes;
    if let Some(declared) = headers::content_length(&parts.headers).filter(|&n| limit > 0 && n > limit) {
        // Read to its end, a modest body gets its 413, not a reset (HTTP/1
        // only: an HTTP/2 stream is reset alone; a client that waits for
        // `100 Continue` is not invited to send it).
        if may_drain {
            body::discard(body, declared, state.config.server.limits.request_body_timeout).await;
        }
        return Err(GatewayError::PayloadTooLarge);
    }
    // An h2c upstream's streams (gRPC client and bidi streaming) live as long
    // as the call: the route's body timeout is for trickled uploads, not them.
    let body_timeout = if h2 { std::time::Duration::ZERO } else { target.route.body_timeout };
    let (body, fault) = body::guarded(body, limit, body_timeout);
    let asked = Instant::now();
    let sent = state.upstream.send(target.index, parts, &target.upstream_path_and_query, body, &state.metrics).await;
    // A failed exchange whose request body stopped early failed on the client's side.
    if sent.is_err() {
        match fault.as_deref().and_then(body::BodyFault::get) {
            Some(body::Fault::TooLarge) => return Err(GatewayError::PayloadTooLarge),
            Some(body::Fault::Malformed) => return Err(GatewayError::BadRequest("the request body is malformed")),
            Some(body::Fault::Slow) => return Err(GatewayError::BodyTimeout),
            None => {}
        }
    }
    let crate::upstream::Exchange { mut response, lease } = sent?;
    state.metrics.upstream_duration.observe(asked.elapsed().as_secs_f64());
    // Only a stream that may outlive its token needs to know whose it is.
    let caller = (websocket.is_some() || grpc).then(|| authorized.identity()).flatten().map(|id| lifetime::Caller {
        jti: id.jti.clone(),
        sub: id.sub.clone(),
        issued_at: id.issued_at,
        expires_at: id.expires_at,
        session: id.session.clone(),
        stores: state.stores.clone(),
    });
    if let Some(websocket) = websocket {
        if let Some(switched) = upgrade::splice(websocket, &mut response, caller)? {
            return Ok(switched);
        }
        return Ok(plain(response, lease));
    }
    let mut response = plain(response, lease);
    // A gRPC call (a stream, perhaps for hours) ends with its token.
    if let Some(caller) = caller.filter(|_| grpc) {
        response = response.map(|body| lifetime::grpc_bounded(body, caller));
    }
    if let Some(call) = web {
        response = grpc_web::response(call, response);
    }
    Ok(response)
}

/// The upstream's response for the client: hop-by-hop headers out, the body
/// streamed, holding its endpoint's slot until it ends.
fn plain(response: Response<Driven>, lease: Lease) -> Response<Body> {
    let (mut head, upstream_body) = response.into_parts();
    headers::remove_hop_by_hop(&mut head.headers);
    Response::from_parts(head, body::stream_holding(upstream_body, lease))
}

/// docs/headers.md, "Removed before forwarding" and "Set for the upstream", in the order that makes injection impossible.
fn prepare_headers(
    parts: &mut Parts,
    authorized: &Authorized,
    request_id: &HeaderValue,
    downstream: &Downstream,
    state: &State,
    host: Option<&HeaderValue>,
) -> Result<(), GatewayError> {
    let config = &state.config.headers;
    let headers = &mut parts.headers;
    headers::remove_hop_by_hop(headers);
    // Everything the gateway sets comes after hop-by-hop removal (a client's
    // `Connection: X-Request-Id` cannot take the request's id away).
    headers::remove_any_spelling(headers, &REQUEST_ID);
    headers.insert(REQUEST_ID, request_id.clone());
    headers::strip_identity(headers, config);
    if !config.forward_token {
        headers.remove(header::AUTHORIZATION);
        auth::cookies::strip(headers);
    }
    let peer = downstream.peer.ip();
    let trusted = state.config.server.is_trusted_proxy(&peer);
    if !trusted {
        headers::strip_routing_hints(headers);
    }
    headers::join_cookies(headers);
    let proto = if downstream.tls { "https" } else { "http" };
    headers::set_forwarded(headers, &downstream.peer_text, trusted, proto, host);
    if let Some(identity) = authorized.identity() {
        headers::set_identity(headers, identity, config).map_err(auth::AuthError::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::id_text;

    #[test]
    fn request_ids_read_as_formatted() {
        for n in [0, 1, 9, 10, 15, 16, 255, 4096, 0xdead_beef, u64::MAX] {
            assert_eq!(id_text(b"0123456789ab", n), format!("0123456789ab-{n:x}").as_str());
        }
    }
}
