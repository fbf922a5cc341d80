//! The one decision behind every door: given a request's method, target
//! and headers, where does it go, and may it?
//!
//! `decide` is the only place the route, the caller and the verdict are
//! worked out: the proxy path (`proxy::serve`), `authgate explain` and the
//! decision endpoints all ask it, so they cannot disagree. It reads the
//! request (never its body), the route table, the verifier and the
//! denylist copy; it sends nothing anywhere and changes nothing, except that
//! a token with a `kid` a trusted issuer lacks waits for that issuer's
//! shared refetch (docs/configuration.md, `[[tokens.trusted]]`).
//!
//! In order (docs/architecture: "The path of a request"): the method (TRACE
//! refused, a standard method in the wrong case refused), the path
//! normalised, the gateway's own endpoints, the route (host, method,
//! longest prefix), a CORS preflight on a route with CORS, the caller
//! (`auth::authenticate`: token, signature and claims, denylist), and the
//! route's policy (`auth::authorize`).

use http::request::Parts;
use http::{Method, header};

use crate::auth::{self, Authenticated, Authorized, Credentials};
use crate::config::Cors;
use crate::endpoints::{self, Endpoint};
use crate::error::GatewayError;
use crate::router::{RouteError, RouteMatch};
use crate::state::State;

/// Where a request goes, and whether it may.
pub enum Decision<'s> {
    /// One of the gateway's own endpoints, which authenticate their callers
    /// through `auth` like any route.
    Endpoint { path: String, endpoint: Endpoint },
    /// A CORS preflight on a route with `[route.cors]`: answered by the
    /// gateway without credentials, never forwarded.
    Preflight { target: RouteMatch<'s>, cors: &'s Cors },
    /// A route, the caller (when one was authenticated) and the verdict.
    Route { target: RouteMatch<'s>, caller: Option<Authenticated>, verdict: Result<Authorized, GatewayError> },
    /// Refused before a route was found: the method, the path, the host, no route.
    Refused { path: Option<String>, error: GatewayError },
}

impl Decision<'_> {
    /// The normalised path the decision was made on, when it got that far.
    pub fn path(&self) -> Option<&str> {
        match self {
            Decision::Endpoint { path, .. } => Some(path),
            Decision::Preflight { target, .. } | Decision::Route { target, .. } => Some(&target.path),
            Decision::Refused { path, .. } => path.as_deref(),
        }
    }

    /// The error code of a refusal (`None`: allowed, an endpoint or a preflight).
    pub fn refusal(&self) -> Option<&'static str> {
        match self {
            Decision::Route { verdict: Err(e), .. } | Decision::Refused { error: e, .. } => Some(e.code()),
            _ => None,
        }
    }
}

/// Decides on a request's head. Never fails: a refusal is a `Decision`.
pub async fn decide<'s>(parts: &Parts, state: &'s State) -> Decision<'s> {
    // TRACE would reflect the injected identity (and any cookie) back to the client.
    if parts.method == Method::TRACE {
        return Decision::Refused { path: None, error: GatewayError::MethodNotAllowed(parts.method.clone()) };
    }
    // Methods are case-sensitive (RFC 9110 §9.1) and rules match them exactly,
    // but some backends upper-case what they get: `delete` would dodge a
    // DELETE rule and still delete. A known method in another case is refused.
    if miscased_method(&parts.method) {
        return Decision::Refused { path: None, error: GatewayError::BadRequest("a method in the wrong case") };
    }
    // Normalized once: endpoints and routes decide on the same string.
    let path = match crate::path::normalize(parts.uri.path()) {
        Ok(path) => path,
        Err(e) => return Decision::Refused { path: None, error: RouteError::from(e).into() },
    };
    if let Some(endpoint) = endpoints::find(&path, state) {
        return Decision::Endpoint { path, endpoint };
    }
    let target = match state.router.route_request(parts, path.clone()) {
        Ok(target) => target,
        Err(e) => return Decision::Refused { path: Some(path), error: e.into() },
    };
    if let Some(cors) = &target.route.cors
        && is_preflight(parts)
    {
        return Decision::Preflight { target, cors };
    }
    let credentials = Credentials {
        verifier: &state.verifier,
        stores: state.stores.as_deref(),
        cookies: state.config.login.enabled && state.config.login.cookies,
        bare: state.config.tokens.accept_bare_token,
    };
    let caller = match auth::authenticate(&parts.method, &parts.headers, target.route.auth, &credentials).await {
        Ok(caller) => caller,
        Err(e) => return Decision::Route { target, caller: None, verdict: Err(e.into()) },
    };
    let verdict = auth::authorize(target.route, caller.clone()).map_err(GatewayError::from);
    Decision::Route { target, caller, verdict }
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(parts: &Parts) -> bool {
    parts.method == Method::OPTIONS
        && parts.headers.contains_key(header::ORIGIN)
        && parts.headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Whether `method` is a standard method (RFC 9110 §9, RFC 5789) spelled in another case.
fn miscased_method(method: &Method) -> bool {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
    let text = method.as_str();
    KNOWN.iter().any(|known| known.eq_ignore_ascii_case(text) && *known != text)
}

#[cfg(test)]
mod tests {
    use super::miscased_method;

    #[test]
    fn methods_in_the_wrong_case_are_known() {
        for m in ["delete", "Delete", "dELETE", "get", "Patch"] {
            assert!(miscased_method(&http::Method::from_bytes(m.as_bytes()).unwrap()), "{m}");
        }
        for m in ["DELETE", "GET", "PURGE", "purge", "PROPFIND"] {
            assert!(!miscased_method(&http::Method::from_bytes(m.as_bytes()).unwrap()), "{m}");
        }
    }
}
