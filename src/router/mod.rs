//! The route table: which `[[route]]` a request belongs to.
//!
//! Owns reading the request's host and path, normalising the path
//! (`path.rs`), and picking the route: among routes whose `host` and
//! `methods` match, the longest `path` prefix at a segment boundary wins; at
//! equal length a route naming a host beats one that does not, then one
//! naming methods, then file order. The lookup walks the path's own prefixes
//! (one map probe per segment), so its cost does not grow with the number of
//! routes. It decides; it does not authenticate or forward.

use std::collections::HashMap;

use http::request::Parts;
use http::{Method, header};

use crate::config::Route;
pub use crate::path::NormalizeError;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("unsafe path")]
    BadPath(#[from] NormalizeError),
    #[error("bad host: {0}")]
    BadHost(&'static str),
    #[error("no route matches")]
    NoRoute,
}

/// The outcome of routing one request.
#[derive(Debug)]
pub struct RouteMatch<'r> {
    pub route: &'r Route,
    /// Index of the route in the config, for logs and metrics.
    pub index: usize,
    /// The normalized request path, as decided on.
    pub path: String,
    /// What the upstream receives: base path + (path, minus the prefix when `strip_prefix`) + query.
    pub upstream_path_and_query: String,
    /// The request's authority, read once (`request_authority`): routed on,
    /// then `Host` and `X-Forwarded-Host` for the upstream.
    pub authority: Option<http::uri::Authority>,
}

#[derive(Debug)]
pub struct Router {
    routes: Vec<Route>,
    /// Route path -> indices into `routes`, most specific first (foldhash, not
    /// SipHash: the keys are the config's, a client only looks them up).
    by_path: HashMap<String, Vec<usize>, foldhash::fast::FixedState>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Router {
        let mut by_path: HashMap<String, Vec<usize>, _> = HashMap::with_hasher(foldhash::fast::FixedState::default());
        for (i, r) in routes.iter().enumerate() {
            by_path.entry(r.path.clone()).or_default().push(i);
        }
        for list in by_path.values_mut() {
            // Stable sort: file order breaks ties.
            list.sort_by_key(|&i| (routes[i].host.is_none(), routes[i].methods.is_none()));
        }
        Router { routes, by_path }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Routes a request by its head and its already normalized path.
    pub fn route_request(&self, parts: &Parts, path: String) -> Result<RouteMatch<'_>, RouteError> {
        let authority = request_authority(parts)?;
        let host = authority.as_ref().map(host_of);
        let mut found = self.route_normalized(&parts.method, host.as_deref(), path, parts.uri.query())?;
        found.authority = authority;
        Ok(found)
    }

    /// Routes by method, lowercase host without port, raw path and query.
    pub fn route(
        &self,
        method: &Method,
        host: Option<&str>,
        raw_path: &str,
        query: Option<&str>,
    ) -> Result<RouteMatch<'_>, RouteError> {
        self.route_normalized(method, host, crate::path::normalize(raw_path)?, query)
    }

    /// Routes a path that `path::normalize` produced.
    pub fn route_normalized(
        &self,
        method: &Method,
        host: Option<&str>,
        path: String,
        query: Option<&str>,
    ) -> Result<RouteMatch<'_>, RouteError> {
        let index = self.find(method, host, &path).ok_or(RouteError::NoRoute)?;
        let route = &self.routes[index];
        let upstream_path_and_query = upstream_target(route, &path, query);
        Ok(RouteMatch { route, index, path, upstream_path_and_query, authority: None })
    }

    fn find(&self, method: &Method, host: Option<&str>, path: &str) -> Option<usize> {
        let matches = |i: &&usize| {
            let r = &self.routes[**i];
            r.host.as_deref().is_none_or(|h| Some(h) == host) && r.methods.as_ref().is_none_or(|m| m.contains(method))
        };
        // Candidates, longest first: the path itself (without a trailing
        // slash), then each prefix ending before a `/`, then the root.
        let mut candidate = path.trim_end_matches('/');
        loop {
            let key = if candidate.is_empty() { "/" } else { candidate };
            if let Some(found) = self.by_path.get(key).and_then(|list| list.iter().find(matches)) {
                return Some(*found);
            }
            if candidate.is_empty() {
                return None;
            }
            candidate = &candidate[..candidate.rfind('/').unwrap_or(0)];
        }
    }
}

fn upstream_target(route: &Route, path: &str, query: Option<&str>) -> String {
    let rest = if route.strip_prefix && route.path != "/" {
        match &path[route.path.len()..] {
            "" => "/",
            rest => rest,
        }
    } else {
        path
    };
    let base = match &route.upstream {
        crate::config::Upstream::Http { base_path, .. } => base_path.as_str(),
        crate::config::Upstream::Echo | crate::config::Upstream::None => "",
    };
    let mut out = String::with_capacity(base.len() + rest.len() + query.map_or(0, |q| q.len() + 1));
    out.push_str(base);
    out.push_str(rest);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// An authority's host as routes match it: lowercase, without port or
/// trailing dot (copied only when it has an uppercase letter).
fn host_of(authority: &http::uri::Authority) -> std::borrow::Cow<'_, str> {
    let host = authority.host().trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// The request's authority (host and port) as the client addressed it: the
/// one place the gateway reads it from, for routing, the same-origin check
/// and `X-Forwarded-Host`. RFC 9112 §3.2: exactly one `Host` on HTTP/1.1; an
/// absolute-form target's authority wins and must agree with `Host`; HTTP/2
/// uses `:authority` (RFC 9113 §8.3.1), which hyper puts in the URI.
pub fn request_authority(parts: &Parts) -> Result<Option<http::uri::Authority>, RouteError> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return Err(RouteError::BadHost("more than one Host header"));
    }
    let header_host = match host_header {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<http::uri::Authority>().ok())
                .ok_or(RouteError::BadHost("malformed Host header"))?,
        ),
        None => None,
    };
    let authority = match (parts.uri.authority(), header_host) {
        (Some(target), Some(h)) if !target.host().eq_ignore_ascii_case(h.host()) => {
            return Err(RouteError::BadHost("request target and Host disagree"));
        }
        (Some(target), _) => Some(target.clone()),
        (None, Some(h)) => Some(h),
        (None, None) if parts.version == http::Version::HTTP_11 => {
            return Err(RouteError::BadHost("HTTP/1.1 request without Host"));
        }
        (None, None) => None,
    };
    match authority {
        Some(a) if a.as_str().contains('@') => Err(RouteError::BadHost("Host with user info")),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn router(toml: &str) -> Router {
        let src = format!(
            "[server]\nhttp = \"127.0.0.1:0\"\n[[tokens.keys]]\nkid = \"k\"\nalgorithm = \"HS256\"\nsecret = \"{}\"\n{toml}",
            "s".repeat(32)
        );
        Router::new(Config::from_str(&src, Path::new("t.toml")).expect("valid config").routes)
    }

    fn routed(r: &Router, method: &str, host: Option<&str>, path: &str) -> Result<(String, String), String> {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        r.route(&method, host, path, None)
            .map(|m| (m.route.path.clone() + m.route.host.as_deref().unwrap_or(""), m.upstream_path_and_query))
            .map_err(|e| match e {
                RouteError::BadPath(_) => "bad_path".to_owned(),
                RouteError::NoRoute => "no_route".to_owned(),
                RouteError::BadHost(_) => "bad_host".to_owned(),
            })
    }

    const TABLE: &str = r#"
[[route]]
path = "/public"
upstream = "builtin:echo"
auth = "none"
[[route]]
path = "/admin"
upstream = "http://127.0.0.1:1/base"
strip_prefix = true
[[route]]
path = "/admin"
host = "api.example.com"
upstream = "builtin:echo"
[[route]]
path = "/api/orders"
methods = ["POST"]
upstream = "builtin:echo"
[[route]]
path = "/api"
upstream = "builtin:echo"
"#;

    #[test]
    fn longest_prefix_at_segment_boundaries() {
        let r = router(TABLE);
        let ok = |p: &str, up: &str| Ok((p.to_owned(), up.to_owned()));
        assert_eq!(routed(&r, "GET", None, "/public"), ok("/public", "/public"));
        assert_eq!(routed(&r, "GET", None, "/public/x"), ok("/public", "/public/x"));
        assert_eq!(routed(&r, "GET", None, "/publicity"), Err("no_route".into()));
        assert_eq!(routed(&r, "GET", None, "/public-admin"), Err("no_route".into()));
        assert_eq!(routed(&r, "GET", None, "/public/../admin"), ok("/admin", "/base/"));
        assert_eq!(routed(&r, "GET", None, "/public/%2e%2e/admin/x"), ok("/admin", "/base/x"));
        assert_eq!(routed(&r, "GET", None, "//admin"), ok("/admin", "/base/"));
        assert_eq!(routed(&r, "GET", None, "/admin%2fx"), Err("bad_path".into()));
        assert_eq!(routed(&r, "GET", None, "/administrator"), Err("no_route".into()));
        assert_eq!(routed(&r, "GET", None, "/ADMIN/x"), Err("no_route".into()));
    }

    #[test]
    fn host_and_method_narrow_the_match() {
        let r = router(TABLE);
        let ok = |p: &str, up: &str| Ok((p.to_owned(), up.to_owned()));
        assert_eq!(routed(&r, "GET", Some("api.example.com"), "/admin/x"), ok("/adminapi.example.com", "/admin/x"));
        assert_eq!(routed(&r, "GET", Some("other.example.com"), "/admin/x"), ok("/admin", "/base/x"));
        assert_eq!(routed(&r, "POST", None, "/api/orders/1"), ok("/api/orders", "/api/orders/1"));
        assert_eq!(routed(&r, "GET", None, "/api/orders/1"), ok("/api", "/api/orders/1"));
    }

    #[test]
    fn query_is_carried_but_never_routed_on() {
        let r = router(TABLE);
        let m = r.route(&Method::GET, None, "/admin/x", Some("/public")).unwrap();
        assert_eq!(m.route.path, "/admin");
        assert_eq!(m.upstream_path_and_query, "/base/x?/public");
    }

    fn parts(req: http::Request<()>) -> Parts {
        req.into_parts().0
    }

    #[test]
    fn host_rules_follow_rfc_9112() {
        let h = |req| {
            let authority = request_authority(&parts(req)).map_err(|e| e.to_string())?;
            Ok::<_, String>(authority.as_ref().map(|a| host_of(a).into_owned()))
        };
        let get = || http::Request::get("/x");
        assert_eq!(
            h(get().header("host", "Api.Example.com:8443").body(()).unwrap()),
            Ok(Some("api.example.com".into()))
        );
        assert!(h(get().body(()).unwrap()).is_err(), "HTTP/1.1 without Host");
        assert!(h(get().header("host", "a").header("host", "b").body(()).unwrap()).is_err());
        assert!(h(get().header("host", "a@b").body(()).unwrap()).is_err());
        let absolute = http::Request::get("http://a.example/x").header("host", "b.example").body(()).unwrap();
        assert!(h(absolute).is_err(), "absolute-form authority must agree with Host");
        let h2 = http::Request::get("https://a.example/x").version(http::Version::HTTP_2).body(()).unwrap();
        assert_eq!(h(h2), Ok(Some("a.example".into())));
    }
}
