//! `[[route]]`: path, host, methods, upstream, auth mode, roles, scopes,
//! body limits and `[route.cors]`.

use super::*;

/// Path, host and methods: two routes with the same key would be ambiguous.
type RouteKey = (String, Option<String>, Option<BTreeSet<String>>);

/// `decisions`: `[authz]` is on, so a route may have no upstream.
pub(super) fn routes(
    c: &mut Checker<'_>,
    raw: &[S<RawRoute>],
    tokens: &Tokens,
    limits: &Limits,
    decisions: bool,
) -> Vec<Route> {
    let mut out: Vec<Route> = Vec::new();
    let mut seen: Vec<RouteKey> = Vec::new();
    for r in raw {
        let Some(route) = route(c, r, tokens, limits, decisions) else {
            continue;
        };
        let methods: Option<BTreeSet<String>> =
            route.methods.as_ref().map(|m| m.iter().map(|m| m.as_str().to_owned()).collect());
        let clash = seen.iter().any(|(p, h, m)| {
            p == &route.path
                && h == &route.host
                && match (m, &methods) {
                    (Some(a), Some(b)) => !a.is_disjoint(b),
                    (None, None) => true,
                    _ => false,
                }
        });
        if clash {
            c.error(
                r.span(),
                format!("route `{}` overlaps an earlier route with the same path, host and methods", route.path),
            );
        }
        seen.push((route.path.clone(), route.host.clone(), methods));
        out.push(route);
    }
    out
}

pub(super) fn route(
    c: &mut Checker<'_>,
    r: &S<RawRoute>,
    tokens: &Tokens,
    limits: &Limits,
    decisions: bool,
) -> Option<Route> {
    let location = c.location(r);
    let raw = r.get_ref();
    let Some(path_s) = &raw.path else {
        c.error(r.span(), "[[route]] needs `path` and `upstream`");
        return None;
    };
    if raw.upstream.is_none() && !decisions {
        c.error(
            r.span(),
            "[[route]] needs `path` and `upstream` (only with [authz] enabled may a route serve decisions alone)",
        );
        return None;
    }
    let path = match normalize(path_s.get_ref()) {
        Ok(n) if n == *path_s.get_ref() => {
            let trimmed = n.trim_end_matches('/');
            if trimmed.is_empty() { "/".to_owned() } else { trimmed.to_owned() }
        }
        Ok(n) => {
            c.error(path_s.span(), format!("route path must be written normalized: `{n}`"));
            return None;
        }
        Err(e) => {
            let why = match e {
                NormalizeError::NotAbsolute => "must start with `/`",
                _ => "is not a safe path",
            };
            c.error(path_s.span(), format!("route path `{}` {why}", path_s.get_ref()));
            return None;
        }
    };
    let host = raw.host.as_ref().and_then(|h| {
        let text = h.get_ref().to_ascii_lowercase();
        let valid = !text.is_empty()
            && text.len() <= 253
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if valid {
            Some(text)
        } else {
            c.error(h.span(), "`host` must be a host name without port, e.g. \"api.example.com\"");
            None
        }
    });
    let methods = raw.methods.as_ref().map(|list| {
        let mut methods = Vec::new();
        if list.is_empty() {
            c.error(r.span(), "`methods` must not be empty; leave it out to allow every method");
        }
        methods.extend(list.iter().filter_map(|m| c.method(m)));
        methods
    });
    let mut upstream = match &raw.upstream {
        Some(upstream_s) => upstream(c, upstream_s)?,
        None => Upstream::None,
    };
    match (&mut upstream, &raw.upstream_tls) {
        (Upstream::Http { tls: Some(tls), endpoints, .. }, Some(t)) => *tls = upstream_tls(c, t, endpoints)?,
        (_, Some(t)) => {
            c.error(t.span(), "[route.upstream_tls] goes with an https:// upstream");
            return None;
        }
        _ => {}
    }
    let auth = match raw.auth.as_ref().map(|a| (a.get_ref().as_str(), a.span())) {
        None | Some(("required", _)) => AuthMode::Required,
        Some(("optional", _)) => AuthMode::Optional,
        Some(("none", _)) => AuthMode::None,
        Some((other, span)) => {
            c.error(span, format!("unknown `auth` `{other}`, expected none, optional or required"));
            return None;
        }
    };
    let roles = names(c, raw.roles.as_deref().unwrap_or(&[]), Name::Role);
    if let Some(list) = &raw.roles {
        if list.is_empty() {
            c.error(r.span(), "`roles` must not be empty; leave it out to allow any authenticated caller");
        }
        if auth != AuthMode::Required
            && let Some(first) = list.first()
        {
            c.error(first.span(), format!("`roles` needs auth = \"required\" (this route has auth = \"{auth}\")"));
        }
    }
    let scopes = names(c, raw.scopes.as_deref().unwrap_or(&[]), Name::Scope);
    if let Some(list) = &raw.scopes
        && auth != AuthMode::Required
        && let Some(first) = list.first()
    {
        c.error(first.span(), format!("`scopes` needs auth = \"required\" (this route has auth = \"{auth}\")"));
    }
    let cors = raw.cors.as_ref().and_then(|cors| self::cors(c, cors));
    if auth != AuthMode::None && tokens.keys.is_empty() && tokens.trusted.is_empty() {
        c.error(
            r.span(),
            format!("route `{path}` needs authentication but no [[tokens.keys]] or [[tokens.trusted]] is configured"),
        );
    }
    Some(Route {
        path,
        host,
        methods,
        upstream,
        auth,
        roles,
        scopes,
        strip_prefix: raw.strip_prefix.unwrap_or(false),
        max_body_bytes: raw.max_body_bytes.as_ref().map_or(limits.max_body_bytes, |v| *v.get_ref()),
        body_timeout: c.duration(&raw.body_timeout, limits.request_body_timeout),
        cors,
        location,
    })
}

pub(super) fn cors(c: &mut Checker<'_>, raw: &S<super::raw::RawCors>) -> Option<Cors> {
    let r = raw.get_ref();
    let credentials = r.allow_credentials.unwrap_or(false);
    let mut origins = Vec::new();
    if r.allow_origins.is_empty() {
        c.error(raw.span(), "[route.cors] needs `allow_origins`");
    }
    for o in &r.allow_origins {
        let text = o.get_ref();
        if text == "*" {
            if credentials {
                c.error(o.span(), "`*` cannot be used with allow_credentials = true: list the origins");
            }
            origins.push(text.clone());
            continue;
        }
        let valid = http::Uri::from_str(text).ok().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.authority().is_some_and(|a| !a.as_str().contains('@'))
                && u.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
                && !text.ends_with('/')
        });
        if valid {
            origins.push(text.to_ascii_lowercase());
        } else {
            c.error(
                o.span(),
                format!("origin `{text}` must be exactly scheme://host[:port], e.g. \"https://app.example.com\""),
            );
        }
    }
    let methods = match &r.allow_methods {
        None => vec![Method::GET, Method::HEAD, Method::POST],
        Some(list) => list.iter().filter_map(|m| c.method(m)).collect(),
    };
    let mut names = |list: &Option<Vec<S<String>>>| -> Vec<HeaderName> {
        list.iter()
            .flatten()
            .filter_map(|h| match HeaderName::from_bytes(h.get_ref().as_bytes()) {
                Ok(name) => Some(name),
                Err(_) => {
                    c.error(h.span(), format!("`{}` is not a header name", h.get_ref()));
                    None
                }
            })
            .collect()
    };
    let allow_headers = names(&r.allow_headers);
    let expose_headers = names(&r.expose_headers);
    let max_age = r.max_age.as_ref().map(|m| c.duration(&Some(m.clone()), Duration::ZERO));
    Some(Cors {
        allow_origins: origins,
        allow_methods: methods,
        allow_headers,
        expose_headers,
        allow_credentials: credentials,
        max_age,
    })
}

/// `upstream = "URL"` or a list of URLs (endpoints of one upstream: one
/// scheme, one base path), or `builtin:echo`.
pub(super) fn upstream(c: &mut Checker<'_>, s: &S<OneOrMany>) -> Option<Upstream> {
    let texts = match s.get_ref() {
        OneOrMany::One(text) if text == "builtin:echo" => return Some(Upstream::Echo),
        OneOrMany::One(text) => std::slice::from_ref(text),
        OneOrMany::Many(list) if list.is_empty() => {
            c.error(s.span(), "`upstream` lists no endpoint");
            return None;
        }
        OneOrMany::Many(list) => list.as_slice(),
    };
    let mut endpoints: Vec<http::uri::Authority> = Vec::new();
    let mut first: Option<(String, String)> = None;
    for text in texts {
        let parsed = http::Uri::from_str(text).ok().and_then(|uri| match (uri.scheme_str(), uri.authority()) {
            (Some(scheme @ ("http" | "h2c" | "https")), Some(authority))
                if uri.query().is_none() && !authority.as_str().contains('@') && authority.port_u16() != Some(0) =>
            {
                Some((scheme.to_owned(), authority.clone(), uri.path().trim_end_matches('/').to_owned()))
            }
            _ => None,
        });
        let Some((scheme, authority, base_path)) = parsed else {
            c.error(
                s.span(),
                format!(
                    "`{text}`: an upstream must be http://, https:// or h2c://HOST[:PORT][/BASE] (no credentials, no query) or builtin:echo"
                ),
            );
            return None;
        };
        match &first {
            None => first = Some((scheme, base_path)),
            Some(f) if *f != (scheme.clone(), base_path.clone()) => {
                c.error(s.span(), "the endpoints of one upstream share one scheme and one base path");
                return None;
            }
            Some(_) => {}
        }
        if endpoints.contains(&authority) {
            c.error(s.span(), format!("endpoint `{authority}` is listed twice"));
            return None;
        }
        endpoints.push(authority);
    }
    let (scheme, base_path) = first?;
    let tls = (scheme == "https").then(UpstreamTls::default);
    Some(Upstream::Http { endpoints, base_path, h2: scheme == "h2c", tls })
}

fn upstream_tls(
    c: &mut Checker<'_>,
    t: &S<super::raw::RawUpstreamTls>,
    endpoints: &[http::uri::Authority],
) -> Option<UpstreamTls> {
    let r = t.get_ref();
    let client_cert = match (&r.client_cert_file, &r.client_key_file) {
        (Some(cert), Some(key)) => Some((c.path(cert), c.path(key))),
        (None, None) => None,
        _ => {
            c.error(t.span(), "`client_cert_file` and `client_key_file` go together");
            return None;
        }
    };
    let server_name = match &r.server_name {
        Some(n) if rustls::pki_types::ServerName::try_from(n.get_ref().as_str()).is_err() => {
            c.error(n.span(), "`server_name` is not a DNS name or IP address");
            return None;
        }
        other => other.as_ref().map(|n| n.get_ref().clone()),
    };
    let insecure_skip_verify = match &r.insecure_skip_verify {
        Some(skip) if *skip.get_ref() => {
            if !endpoints.iter().all(|a| is_loopback(a.host())) {
                c.error(
                    skip.span(),
                    "`insecure_skip_verify` is only for loopback endpoints (127.0.0.1, ::1, localhost): anywhere else, give `ca_file`",
                );
                return None;
            }
            if r.ca_file.is_some() || r.server_name.is_some() {
                c.error(
                    skip.span(),
                    "`insecure_skip_verify` checks nothing: `ca_file` and `server_name` would be ignored",
                );
                return None;
            }
            true
        }
        _ => false,
    };
    Some(UpstreamTls { ca_file: r.ca_file.as_ref().map(|p| c.path(p)), server_name, client_cert, insecure_skip_verify })
}

/// `127.0.0.0/8`, `::1` or `localhost`: the only hosts a certificate may go unchecked for.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::super::check::check;

    #[test]
    fn route_rules() {
        let route = |extra: &str| format!("[[route]]\npath = \"/api\"\nupstream = \"builtin:echo\"\n{extra}");
        let cases: Vec<(String, &[&str])> = vec![
            (route("methods = [\"GET\"]\nroles = [\"a\"]\nscopes = [\"read:x\"]\nbody_timeout = \"0s\"\n"), &[]),
            (route("methods = [\"get\"]\n"), &["methods are case-sensitive: write `GET`"]),
            (route("methods = []\n"), &["`methods` must not be empty"]),
            (route("roles = [\" admin\"]\n"), &["role ` admin` must be non-empty"]),
            (route("scopes = [\"a b\"]\n"), &["scope `a b` must be non-empty"]),
            (route("auth = \"maybe\"\n"), &["unknown `auth` `maybe`"]),
            (route("body_timeout = \"later\"\n"), &["later"]),
            (
                route("[route.cors]\nallow_origins = [\"https://a.example\"]\nallow_methods = [\"post\"]\n"),
                &["methods are case-sensitive"],
            ),
            ("[[route]]\npath = \"/x\"\n".to_owned(), &["needs `path` and `upstream`"]),
            (
                "[[route]]\npath = \"/x/../y\"\nupstream = \"builtin:echo\"\n".to_owned(),
                &["must be written normalized"],
            ),
        ];
        let upstream = |u: &str| format!("[[route]]\npath = \"/x\"\nauth = \"none\"\nupstream = {u}\n");
        let upstreams: Vec<(String, &[&str])> = vec![
            (upstream("[\"http://a:1\", \"http://b:1\", \"http://10.0.0.5:8080\"]"), &[]),
            (upstream("[\"https://a:1/v1\", \"https://b:1/v1\"]"), &[]),
            (upstream("[]"), &["`upstream` lists no endpoint"]),
            (upstream("[\"http://a:1\", \"h2c://b:1\"]"), &["share one scheme and one base path"]),
            (upstream("[\"http://a:1/v1\", \"http://b:1/v2\"]"), &["share one scheme and one base path"]),
            (upstream("[\"http://a:1\", \"http://a:1\"]"), &["endpoint `a:1` is listed twice"]),
            (upstream("[\"http://a:1\", \"builtin:echo\"]"), &["`builtin:echo`: an upstream must be"]),
            (upstream("\"ftp://a:1\""), &["`ftp://a:1`: an upstream must be"]),
            (upstream("\"http://user:pw@a:1\""), &["no credentials"]),
            (upstream("\"http://a:0\""), &["an upstream must be"]),
        ];
        for (rest, expected) in cases.iter().chain(&upstreams) {
            check(rest, expected);
        }
    }

    #[test]
    fn upstream_tls_rules() {
        let https = |u: &str, tls: &str| {
            format!("[[route]]\npath = \"/x\"\nauth = \"none\"\nupstream = {u}\n[route.upstream_tls]\n{tls}")
        };
        let skip = "insecure_skip_verify = true\n";
        let cases: Vec<(String, &[&str])> = vec![
            (https("[\"https://127.0.0.1:1\", \"https://[::1]:2\", \"https://localhost:3\"]", skip), &[]),
            (https("\"https://127.0.0.1:1\"", "insecure_skip_verify = false\n"), &[]),
            (https("[\"https://127.0.0.1:1\", \"https://10.1.1.1:1\"]", skip), &["only for loopback endpoints"]),
            (https("\"https://localhost.example:1\"", skip), &["only for loopback endpoints"]),
            (https("\"https://127.0.0.1:1\"", "insecure_skip_verify = true\nserver_name = \"a\"\n"), &["ignored"]),
            (https("\"https://a:1\"", "client_cert_file = \"c.pem\"\n"), &["go together"]),
            (https("\"https://a:1\"", "server_name = \"not a name\"\n"), &["not a DNS name"]),
            (https("\"http://a:1\"", "server_name = \"a\"\n"), &["goes with an https:// upstream"]),
        ];
        for (rest, expected) in &cases {
            check(rest, expected);
        }
    }
}
