//! Decision mode: the doors an ingress asks through ("may this request
//! pass, and as whom?") before it forwards the request itself
//! (docs/decisions.md).
//!
//! Each door rebuilds the original request's head from what its ingress
//! sends, then asks `decide` exactly as the proxy path does: same routes,
//! normaliser, token sources, verification, denylist and policy. Allow: 200,
//! no body, the identity headers for the ingress to copy. Deny: the status,
//! JSON body and `WWW-Authenticate` the proxy path would give.
//!
//! - `{prefix}/auth-request`: nginx `auth_request`, ingress-nginx `auth-url`:
//!   `X-Original-Method`, `X-Original-URL` (absolute) or `X-Original-URI`.
//! - `{prefix}/forward-auth`: Traefik `forwardAuth`, Caddy `forward_auth`:
//!   `X-Forwarded-Method`, `-Uri`, `-Host`, `-Proto`.
//! - `{prefix}/ext-authz/...`: Envoy's HTTP `ext_authz`: the check
//!   request's own method, the path after the prefix, its `Host`.
//! - Envoy's gRPC `ext_authz`, on the `[authz] grpc` listener: `grpc.rs`.

pub mod grpc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode, Uri, Version};

use crate::body::{self, Body};
use crate::decide::{Decision, decide};
use crate::downstream::Downstream;
use crate::error::GatewayError;
use crate::state::State;

/// Which ingress protocol a decision request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    AuthRequest,
    ForwardAuth,
    /// The original path is what follows this many bytes of the check request's path.
    ExtAuthz {
        prefix_len: usize,
    },
}

/// What a decision found, for the access log and metrics.
pub struct Outcome {
    /// The original request's route (`-` when none matched).
    pub route: String,
    pub sub: Option<String>,
    pub allowed: bool,
}

/// The decision door a request's raw path names, if decision mode is on.
pub fn door(raw_path: &str, state: &State) -> Option<Door> {
    let authz = &state.config.authz;
    if !authz.enabled {
        return None;
    }
    let rest = raw_path.strip_prefix(authz.path_prefix.as_str())?;
    match rest {
        "/auth-request" => Some(Door::AuthRequest),
        "/forward-auth" => Some(Door::ForwardAuth),
        _ => {
            let after = rest.strip_prefix("/ext-authz")?;
            (after.starts_with('/')).then_some(Door::ExtAuthz { prefix_len: raw_path.len() - after.len() })
        }
    }
}

/// Answers one decision request.
pub async fn answer(
    door: Door,
    parts: &Parts,
    downstream: &Downstream,
    state: &State,
    outcome: &mut Outcome,
) -> Result<Response<Body>, GatewayError> {
    let allow_from = &state.config.authz.allow_from;
    if !allow_from.is_empty() && !allow_from.iter().any(|net| net.contains(&downstream.peer.ip())) {
        return Err(GatewayError::Forbidden);
    }
    let original = original_request(door, parts)?;
    let identity = decide_original(&original, state, outcome).await?;
    Ok(allowed(door, identity, state))
}

/// `decide` on the original request: the identity headers to set when it
/// may pass (none on an anonymous route), else the refusal.
pub async fn decide_original(
    original: &Parts,
    state: &State,
    outcome: &mut Outcome,
) -> Result<HeaderMap, GatewayError> {
    match decide(original, state).await {
        Decision::Refused { error, .. } => Err(error),
        // The gateway's own endpoints and CORS preflights carry no caller to judge.
        Decision::Endpoint { .. } | Decision::Preflight { .. } => {
            outcome.allowed = true;
            Ok(HeaderMap::new())
        }
        Decision::Route { target, caller, verdict } => {
            outcome.route.clone_from(&target.route.path);
            outcome.sub = caller.as_ref().map(|c| c.sub.clone());
            let authorized = verdict?;
            let mut identity = HeaderMap::new();
            if let Some(id) = authorized.identity() {
                crate::headers::set_identity(&mut identity, id, &state.config.headers)
                    .map_err(crate::auth::AuthError::from)?;
            }
            outcome.allowed = true;
            Ok(identity)
        }
    }
}

/// Every identity header `[headers]` names: user, roles, mapped claims.
pub fn identity_header_names(state: &State) -> Vec<HeaderName> {
    let config = &state.config.headers;
    [config.user.clone(), config.roles.clone()]
        .into_iter()
        .chain(config.claims.iter().map(|(_, n)| n.clone()))
        .collect()
}

/// Envoy removes the headers this response header names from the request
/// it forwards: the client's copies of the identity headers, which Envoy
/// would otherwise pass on where the answer sets none (an anonymous route).
const ENVOY_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");

fn allowed(door: Door, identity: HeaderMap, state: &State) -> Response<Body> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::OK;
    if matches!(door, Door::ExtAuthz { .. }) {
        let names: Vec<HeaderName> =
            identity_header_names(state).into_iter().filter(|n| !identity.contains_key(n)).collect();
        let names: Vec<&str> = names.iter().map(HeaderName::as_str).collect();
        if let Ok(value) = HeaderValue::from_str(&names.join(",")) {
            response.headers_mut().insert(ENVOY_REMOVE, value);
        }
    }
    response.headers_mut().extend(identity);
    response
}

/// The original request's head as the ingress describes it: method, target,
/// host, and the check request's own headers (credentials, cookies,
/// `Origin`, CSRF header) without the ingress's description.
fn original_request(door: Door, parts: &Parts) -> Result<Parts, GatewayError> {
    let text = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let missing = || GatewayError::BadRequest("the original request's method or URI is missing");
    let (method, target, host): (String, String, Option<String>) = match door {
        Door::AuthRequest => {
            let method = text("x-original-method").ok_or_else(missing)?;
            match (text("x-original-url"), text("x-original-uri")) {
                (Some(url), _) => {
                    let uri: Uri = url.parse().map_err(|_| GatewayError::BadRequest("X-Original-URL is not a URL"))?;
                    let host = uri.authority().map(|a| a.to_string());
                    let target = uri.path_and_query().map_or("/".to_owned(), |p| p.to_string());
                    (method, target, host.or_else(|| text("x-forwarded-host")))
                }
                (None, Some(uri)) => (method, uri, text("x-forwarded-host")),
                (None, None) => return Err(missing()),
            }
        }
        Door::ForwardAuth => {
            let method = text("x-forwarded-method").ok_or_else(missing)?;
            let uri = text("x-forwarded-uri").ok_or_else(missing)?;
            (method, uri, text("x-forwarded-host"))
        }
        Door::ExtAuthz { prefix_len } => {
            let path = parts.uri.path().get(prefix_len..).unwrap_or("/");
            let target = match parts.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_owned(),
            };
            (parts.method.as_str().to_owned(), target, None)
        }
    };
    let mut headers = parts.headers.clone();
    for name in &DESCRIPTION {
        headers.remove(name);
    }
    let host = host.or_else(|| crate::router::request_authority(parts).ok().flatten().map(|a| a.to_string()));
    match host.map(|h| HeaderValue::from_str(&h)) {
        Some(Ok(value)) => {
            headers.insert(header::HOST, value);
        }
        Some(Err(_)) => return Err(GatewayError::BadRequest("the original host is malformed")),
        None => {
            headers.remove(header::HOST);
        }
    }
    request_parts(&method, &target, headers)
}

/// A request head from its method, target (path and query) and headers.
pub fn request_parts(method: &str, target: &str, headers: HeaderMap) -> Result<Parts, GatewayError> {
    if !target.starts_with('/') {
        return Err(GatewayError::BadRequest("the original URI is not a path"));
    }
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| GatewayError::BadRequest("not an HTTP method"))?;
    let uri: Uri = target.parse().map_err(|_| GatewayError::BadRequest("the original URI is malformed"))?;
    let mut request = http::Request::builder().method(method).uri(uri).version(Version::HTTP_11);
    if let Some(h) = request.headers_mut() {
        *h = headers;
    }
    let request = request.body(()).map_err(|_| GatewayError::BadRequest("the original request is malformed"))?;
    Ok(request.into_parts().0)
}

/// The ingress's description of the original request: read above, then
/// removed, so nothing but the client's own headers reaches the decision.
static DESCRIPTION: [HeaderName; 8] = [
    HeaderName::from_static("x-original-method"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-original-uri"),
    HeaderName::from_static("x-forwarded-method"),
    HeaderName::from_static("x-forwarded-uri"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-prefix"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, path: &str, headers: &[(&str, &str)]) -> Parts {
        let mut r = http::Request::builder().method(method).uri(path).header("host", "authgate:8080");
        for (n, v) in headers {
            r = r.header(*n, *v);
        }
        r.body(()).unwrap().into_parts().0
    }

    #[test]
    fn each_door_reads_its_ingress() {
        let nginx = parts(
            "GET",
            "/authz/auth-request",
            &[("x-original-method", "POST"), ("x-original-url", "https://api.example.com/orders/1?x=1")],
        );
        let o = original_request(Door::AuthRequest, &nginx).unwrap();
        assert_eq!((o.method.as_str(), o.uri.to_string().as_str()), ("POST", "/orders/1?x=1"));
        assert_eq!(o.headers["host"], "api.example.com");
        assert!(o.headers.get("x-original-url").is_none());

        let hand = parts("GET", "/authz/auth-request", &[("x-original-method", "GET"), ("x-original-uri", "/a/b")]);
        let o = original_request(Door::AuthRequest, &hand).unwrap();
        assert_eq!((o.uri.path(), o.headers["host"].to_str().unwrap()), ("/a/b", "authgate:8080"));

        let traefik = parts(
            "GET",
            "/authz/forward-auth",
            &[("x-forwarded-method", "DELETE"), ("x-forwarded-uri", "/items/1"), ("x-forwarded-host", "shop")],
        );
        let o = original_request(Door::ForwardAuth, &traefik).unwrap();
        assert_eq!(
            (o.method.as_str(), o.uri.path(), o.headers["host"].to_str().unwrap()),
            ("DELETE", "/items/1", "shop")
        );

        let envoy = parts("PUT", "/authz/ext-authz/v1/x?y=2", &[]);
        let o = original_request(Door::ExtAuthz { prefix_len: "/authz/ext-authz".len() }, &envoy).unwrap();
        assert_eq!((o.method.as_str(), o.uri.to_string().as_str()), ("PUT", "/v1/x?y=2"));

        for (door, p) in [
            (Door::AuthRequest, parts("GET", "/authz/auth-request", &[("x-original-uri", "/x")])),
            (Door::AuthRequest, parts("GET", "/authz/auth-request", &[("x-original-method", "GET")])),
            (Door::ForwardAuth, parts("GET", "/authz/forward-auth", &[("x-forwarded-method", "GET")])),
        ] {
            assert!(matches!(original_request(door, &p), Err(GatewayError::BadRequest(_))), "{door:?}");
        }
    }
}
