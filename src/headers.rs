//! Header hygiene: what crosses the gateway, in which order.
//!
//! Pure functions over `HeaderMap`, so every rule is a table test. The
//! order `prepare_request` applies is the security property: hop-by-hop
//! headers (and every header the client named in `Connection`) go first,
//! then every client header with the identity prefix and the configured
//! identity headers, then credentials and routing hints the upstream must
//! not trust; only then are `X-Forwarded-*` and the identity set from what
//! the gateway itself verified (CVE-2024-45410, CVE-2022-31813).
//!
//! Names are compared the way the far side reads them: CGI and WSGI servers
//! (wsgiref, gunicorn before 22, gunicorn with `--header-map dangerous`)
//! turn `X_Auth_User` into `HTTP_X_AUTH_USER`, the same key as
//! `X-Auth-User`, so every name here is matched with `_` folded to `-`
//! (`same_name`). Every other underscore name meets `[server]
//! underscore_headers` first (`apply_underscore_policy`).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use serde_json::Value;

use crate::auth::{Identity, TokenError, claim_path};
use crate::config::{Headers, UnderscoreHeaders};

/// RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones RFC 7230 named.
static HOP_BY_HOP: Names = Names::new(&[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
]);

/// Headers an upstream might route or authorize on, which only a trusted proxy may set.
static ROUTING_HINTS: Names = Names::new(&[
    "forwarded",
    "x-real-ip",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-envoy-original-path",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
]);

/// The `X-Forwarded-*` headers the gateway sets (`set_forwarded`).
static FORWARDED: Names = Names::new(&["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"]);

/// A fixed list of lowercase names, with the set of their lengths worked
/// out at compile time: most of a request's names have a length no listed
/// name has and are passed over without a comparison.
struct Names {
    names: &'static [&'static str],
    lengths: u64,
}

impl Names {
    const fn new(names: &'static [&'static str]) -> Names {
        let mut lengths = 0;
        let mut i = 0;
        while i < names.len() {
            lengths |= length_bit(names[i]);
            i += 1;
        }
        Names { names, lengths }
    }

    /// Whether `name` is listed, in any `_`/`-` spelling (`same_name`).
    fn has(&self, name: &str) -> bool {
        self.lengths & length_bit(name) != 0 && self.names.iter().any(|listed| same_name(listed, name))
    }
}

const fn length_bit(name: &str) -> u64 {
    1 << if name.len() < 63 { name.len() } else { 63 }
}

/// Removes hop-by-hop headers and every header named in `Connection` (RFC 9110 §7.6.1).
/// `Host` and `Content-Length` describe the message itself and are never removed this way.
/// Refuses framing that parsers could read two ways (catalog S01–S03): more
/// than one `Transfer-Encoding`, any coding but `chunked`, or a
/// `Content-Length` that is not one plain number. hyper already refuses
/// unequal lengths and non-final `chunked`; with both CL and TE it drops CL,
/// reads the body as chunked and closes the connection (RFC 9112 §6.1).
pub fn check_framing(headers: &HeaderMap) -> Result<(), &'static str> {
    let mut te = headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = te.next() {
        if te.next().is_some() {
            return Err("more than one Transfer-Encoding header");
        }
        if !first.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err("a Transfer-Encoding other than chunked");
        }
    }
    for cl in headers.get_all(header::CONTENT_LENGTH) {
        let digits = cl.as_bytes();
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return Err("a Content-Length that is not one number");
        }
    }
    Ok(())
}

/// The request's declared body length, if it declared one.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Whether two header names are one to a CGI/WSGI server: equal once case
/// is folded and `_` read as `-`.
pub fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

fn fold(b: u8) -> u8 {
    if b == b'_' { b'-' } else { b.to_ascii_lowercase() }
}

/// Whether `name` starts with `prefix`, read as `same_name` reads names.
fn has_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len() && same_name(&name[..prefix.len()], prefix)
}

/// Applies the underscore policy to a request's headers; `Err` to refuse it.
pub fn apply_underscore_policy(headers: &mut HeaderMap, policy: UnderscoreHeaders) -> Result<(), &'static str> {
    if policy == UnderscoreHeaders::Allow || !headers.keys().any(|n| n.as_str().contains('_')) {
        return Ok(());
    }
    if policy == UnderscoreHeaders::Reject {
        return Err("a header name with an underscore");
    }
    let underscored: Vec<HeaderName> = headers.keys().filter(|n| n.as_str().contains('_')).cloned().collect();
    for name in underscored {
        headers.remove(name);
    }
    Ok(())
}

pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // `Connection: keep-alive` or `close`, the usual values, name nothing
    // that the fixed list below does not already remove.
    let tokens = || {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|name| !name.is_empty() && !same_name(name, "host") && !same_name(name, "content-length"))
    };
    let listed_anyway = |name: &str| same_name(name, "close") || HOP_BY_HOP.has(name);
    if !tokens().all(listed_anyway) {
        let named: Vec<String> = tokens().map(str::to_ascii_lowercase).collect();
        remove_where(headers, |name| named.iter().any(|n| same_name(name, n)));
    }
    remove_where(headers, |name| HOP_BY_HOP.has(name));
}

/// Removes `name` in any `_`/`-` spelling: before the gateway sets it.
pub fn remove_any_spelling(headers: &mut HeaderMap, name: &HeaderName) {
    headers.remove(name);
    remove_where(headers, |n| n.contains('_') && same_name(n, name.as_str()));
}

/// One name at a time, without collecting them: most requests have none or
/// one to remove, and a `Vec` would be an allocation per call.
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&str) -> bool) {
    while let Some(name) = headers.keys().find(|name| doomed(name.as_str())).cloned() {
        headers.remove(name);
    }
}

/// Removes every client header with the identity prefix, and the configured
/// identity headers, in any `_`/`-` spelling.
pub fn strip_identity(headers: &mut HeaderMap, config: &Headers) {
    let prefix = config.strip_prefix.as_str();
    remove_where(headers, |name| {
        (!prefix.is_empty() && has_prefix(name, prefix))
            || same_name(name, config.user.as_str())
            || same_name(name, config.roles.as_str())
            || config.claims.iter().any(|(_, n)| same_name(name, n.as_str()))
    });
}

/// Removes routing hints an untrusted client could use to steer the upstream.
pub fn strip_routing_hints(headers: &mut HeaderMap) {
    remove_where(headers, |name| ROUTING_HINTS.has(name));
}

/// Sets `X-Forwarded-For/-Proto/-Host`. From a trusted proxy the client's
/// values are kept and the peer appended; from anyone else they are replaced.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: &HeaderValue,
    peer_is_trusted: bool,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    // Constants: `from_static` checks its name when it runs.
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
    // Only the one spelling counts, from anyone: another would reach a WSGI app as a second value.
    remove_where(headers, |name| name.contains('_') && FORWARDED.has(name));
    let previous: Vec<&str> = match peer_is_trusted {
        true => headers.get_all(&XFF).iter().filter_map(|v| v.to_str().ok()).collect(),
        false => Vec::new(),
    };
    let chain = match previous.as_slice() {
        [] => Some(peer.clone()),
        _ => HeaderValue::from_str(&format!("{}, {}", previous.join(", "), peer.to_str().unwrap_or("unknown"))).ok(),
    };
    if let Some(v) = chain {
        headers.insert(XFF, v);
    }
    if !(peer_is_trusted && headers.contains_key(&XFP)) {
        headers.insert(XFP, HeaderValue::from_static(proto));
    }
    if !(peer_is_trusted && headers.contains_key(&XFH)) {
        match host.filter(|h| h.to_str().is_ok()) {
            Some(v) => {
                headers.insert(XFH, v.clone());
            }
            None => {
                headers.remove(XFH);
            }
        }
    }
}

/// Sets the identity headers from verified claims. A value that cannot be a
/// header value as it is (control bytes, or a role that would change meaning
/// when comma-joined) refuses the token; nothing is escaped or dropped.
pub fn set_identity(headers: &mut HeaderMap, identity: &Identity, config: &Headers) -> Result<(), TokenError> {
    let value = |text: &str| claim_value(text.as_bytes()).map_err(TokenError::Claims);
    let (user, roles) =
        identity.header_values.get_or_init(|| identity_values(identity)).as_ref().map_err(|e| TokenError::Claims(e))?;
    headers.insert(config.user.clone(), user.clone());
    if let Some(roles) = roles {
        headers.insert(config.roles.clone(), roles.clone());
    }
    for (path, name) in &config.claims {
        let text = match claim_path(&identity.claims, path) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(items)) => {
                let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
                match parts {
                    Some(parts) if parts.iter().all(|p| !p.contains(',')) => parts.join(","),
                    _ => {
                        return Err(TokenError::Claims(
                            "a mapped claim array holds something that cannot be comma-joined",
                        ));
                    }
                }
            }
            Some(other) => scalar(other).ok_or(TokenError::Claims("a mapped claim is an object"))?,
        };
        headers.insert(name.clone(), value(&text)?);
    }
    Ok(())
}

/// `sub` and the comma-joined roles as header values (`Identity::header_values`).
fn identity_values(identity: &Identity) -> Result<(HeaderValue, Option<HeaderValue>), &'static str> {
    let user = claim_value(identity.sub.as_bytes())?;
    if identity.roles.iter().any(|r| r.is_empty() || r.contains(',') || r.trim() != r) {
        return Err("a role is empty, has a comma or surrounding spaces");
    }
    // No roles: no header at all (an empty one reads as "a role named ''" to some apps).
    let roles = match identity.roles.as_slice() {
        [] => None,
        roles => Some(claim_value(roles.join(",").as_bytes())?),
    };
    Ok((user, roles))
}

/// A claim's text as a header value, as it is: nothing escaped or dropped.
fn claim_value(text: &[u8]) -> Result<HeaderValue, &'static str> {
    HeaderValue::from_bytes(text).map_err(|_| "a claim is not a valid header value")
}

/// A string, number or boolean as header text; `None` for anything else.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    }
}

/// HTTP/2 splits `Cookie` into several fields; HTTP/1.1 needs one (RFC 9113 §8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if let (Some(_), Some(_)) = (values.next(), values.next()) {
        let joined: Vec<&[u8]> = headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes).collect();
        if let Ok(v) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
            headers.insert(header::COOKIE, v);
        }
    }
}

/// Whether any `name` header lists `token` (comma-separated, case-insensitive).
pub fn connection_token_listed(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(token))
}

/// Whether the `Connection` header lists `token`.
pub fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Size of the request head as the limit counts it: names, values and `": "` + CRLF.
pub fn head_size(headers: &HeaderMap) -> usize {
    headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn config(extra: &str) -> Headers {
        let src = format!("[server]\nhttp = \"127.0.0.1:0\"\n{extra}");
        Config::from_str(&src, Path::new("t.toml")).unwrap().headers
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<String> {
        let mut v: Vec<String> = h.keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    fn alice() -> Identity {
        let claims = serde_json::json!({"email": "alice@example.com", "tier": 3, "nested": {"a": 1}});
        Identity {
            sub: "alice".into(),
            roles: vec!["user".into(), "ops".into()],
            jti: "j".into(),
            expires_at: 0,
            issued_at: 0,
            scopes: vec![],
            session: None,
            claims: claims.as_object().unwrap().clone().into(),
            header_values: Default::default(),
        }
    }

    /// `alice()` with `extra`'s claims added (replacing any of the same name).
    fn alice_with(extra: serde_json::Value) -> Identity {
        let mut claims = (*alice().claims).clone();
        claims.extend(extra.as_object().unwrap().clone());
        Identity { claims: claims.into(), ..alice() }
    }

    #[test]
    fn names_are_matched_the_way_wsgi_reads_them() {
        let c = config("");
        let mut h = map(&[
            ("x_auth_user", "admin"),
            ("x-auth_roles", "admin"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x_original_url", "/admin"),
            ("transfer_encoding", "chunked"),
            ("x_custom", "kept under allow"),
            ("accept", "*/*"),
        ]);
        strip_identity(&mut h, &c);
        strip_routing_hints(&mut h);
        remove_hop_by_hop(&mut h);
        set_forwarded(
            &mut h,
            &HeaderValue::from_static("10.0.0.1"),
            false,
            "http",
            Some(&HeaderValue::from_static("example.com")),
        );
        assert_eq!(
            names(&h),
            ["accept", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x_custom"],
            "{h:?}"
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        assert!(same_name("X_Auth_User", "x-auth-user") && !same_name("x-auth-users", "x-auth-user"));
    }

    #[test]
    fn listed_names_are_found_in_any_spelling_and_no_others() {
        for list in [&HOP_BY_HOP, &ROUTING_HINTS, &FORWARDED] {
            for name in list.names {
                assert!(list.has(name) && list.has(&name.to_ascii_uppercase().replace('-', "_")), "{name}");
                assert!(!list.has(&format!("{name}s")) && !list.has(&name[1..]), "{name}");
            }
        }
        assert!(!HOP_BY_HOP.has("user-agent") && !ROUTING_HINTS.has("authorization"));
    }

    #[test]
    fn underscore_policy() {
        let with = || map(&[("x_custom", "1"), ("accept", "*/*")]);
        let mut h = with();
        apply_underscore_policy(&mut h, UnderscoreHeaders::Drop).unwrap();
        assert_eq!(names(&h), ["accept"]);
        assert!(apply_underscore_policy(&mut with(), UnderscoreHeaders::Reject).is_err());
        let mut h = with();
        apply_underscore_policy(&mut h, UnderscoreHeaders::Allow).unwrap();
        assert_eq!(names(&h), ["accept", "x_custom"]);
        assert!(apply_underscore_policy(&mut map(&[("accept", "*/*")]), UnderscoreHeaders::Reject).is_ok());
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: &[Case] = &[
            (&[("connection", "close"), ("x-a", "1")], &["x-a"]),
            (&[("connection", "X-Auth-User"), ("x-auth-user", "admin"), ("x-a", "1")], &["x-a"]),
            (
                &[
                    ("connection", "close, X-Forwarded-For, Keep-Alive"),
                    ("x-forwarded-for", "1.2.3.4"),
                    ("keep-alive", "5"),
                ],
                &[],
            ),
            (&[("te", "trailers"), ("trailer", "x"), ("transfer-encoding", "chunked"), ("upgrade", "h2c")], &[]),
            (&[("proxy-authorization", "Basic x"), ("proxy-connection", "keep-alive")], &[]),
            // The message's own framing and target are never removed via Connection.
            (
                &[("connection", "host, content-length"), ("host", "a"), ("content-length", "3")],
                &["content-length", "host"],
            ),
        ];
        for (input, kept) in cases {
            let mut h = map(input);
            remove_hop_by_hop(&mut h);
            assert_eq!(names(&h), *kept, "{input:?}");
        }
    }

    #[test]
    fn spoofed_identity_headers_never_survive() {
        let cfg = config("[headers]\nclaims = { email = \"X-User-Email\" }");
        let mut h = map(&[
            ("x-auth-user", "admin"),
            ("X-AUTH-ROLES", "admin"),
            ("x-auth-anything", "1"),
            ("x-user-email", "ceo@example.com"),
            ("x-authorization", "kept: only the prefix x-auth- counts"),
        ]);
        strip_identity(&mut h, &cfg);
        assert_eq!(names(&h), ["x-authorization"]);
    }

    #[test]
    fn identity_is_set_from_claims_only() {
        let cfg = config(
            "[headers]\nclaims = { email = \"X-Auth-Email\", tier = \"X-Auth-Tier\", absent = \"X-Auth-Absent\" }",
        );
        let mut h = HeaderMap::new();
        set_identity(&mut h, &alice(), &cfg).unwrap();
        assert_eq!(h["x-auth-user"], "alice");
        assert_eq!(h["x-auth-roles"], "user,ops");
        assert_eq!(h["x-auth-email"], "alice@example.com");
        assert_eq!(h["x-auth-tier"], "3");
        assert!(!h.contains_key("x-auth-absent"));
    }

    /// Regression: a token without roles produced an empty `X-Auth-Roles:`.
    #[test]
    fn no_roles_no_roles_header() {
        let mut h = HeaderMap::new();
        set_identity(&mut h, &Identity { roles: vec![], ..alice() }, &config("")).unwrap();
        assert_eq!(h["x-auth-user"], "alice");
        assert!(!h.contains_key("x-auth-roles"), "{h:?}");
    }

    #[test]
    fn dotted_paths_and_arrays_map_to_headers() {
        let cfg = config(
            "[headers]\nclaims = { \"realm_access.roles\" = \"X-Auth-Realm-Roles\", \"org.id\" = \"X-Auth-Org\" }",
        );
        let id = alice_with(serde_json::json!({"realm_access": {"roles": ["a", "b"]}, "org": {"id": 7}}));
        let mut h = HeaderMap::new();
        set_identity(&mut h, &id, &cfg).unwrap();
        assert_eq!(h["x-auth-realm-roles"], "a,b");
        assert_eq!(h["x-auth-org"], "7");
        let id = alice_with(serde_json::json!({"realm_access": {"roles": ["a,admin"]}}));
        assert!(set_identity(&mut HeaderMap::new(), &id, &cfg).is_err(), "a comma inside an element would split it");
        let id = alice_with(serde_json::json!({"realm_access": {"roles": [{"x": 1}]}}));
        assert!(set_identity(&mut HeaderMap::new(), &id, &cfg).is_err());
    }

    #[test]
    fn a_claim_that_is_not_a_header_value_refuses_the_token() {
        let cfg = config("[headers]\nclaims = { nested = \"X-Auth-Nested\" }");
        let mut bad_sub = alice();
        bad_sub.sub = "alice\r\nX-Auth-Roles: admin".into();
        let mut nul = alice();
        nul.sub = "alice\0".into();
        let mut comma_role = alice();
        comma_role.roles = vec!["user,admin".into()];
        let mut spaced_role = alice();
        spaced_role.roles = vec!["admin ".into()];
        for id in [bad_sub, nul, comma_role, spaced_role] {
            assert!(set_identity(&mut HeaderMap::new(), &id, &config("")).is_err(), "{id:?}");
        }
        assert!(set_identity(&mut HeaderMap::new(), &alice(), &cfg).is_err(), "object claim");
        // Non-ASCII UTF-8 is valid obs-text and passes unchanged.
        let mut utf8 = alice();
        utf8.sub = "josé".into();
        let mut h = HeaderMap::new();
        set_identity(&mut h, &utf8, &config("")).unwrap();
        assert_eq!(h["x-auth-user"].as_bytes(), "josé".as_bytes());
    }

    #[test]
    fn forwarded_headers_trust_only_trusted_proxies() {
        let peer = &HeaderValue::from_static("10.0.0.7");
        let spoof =
            || map(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https"), ("x-forwarded-host", "evil")]);

        let mut h = spoof();
        set_forwarded(&mut h, peer, false, "http", Some(&HeaderValue::from_static("api.example.com")));
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");

        let mut h = spoof();
        set_forwarded(&mut h, peer, true, "http", Some(&HeaderValue::from_static("api.example.com")));
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "evil");

        let mut h = HeaderMap::new();
        set_forwarded(&mut h, peer, true, "https", None);
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn routing_hints_are_dropped() {
        let mut h = map(&[
            ("x-original-url", "/public"),
            ("x-rewrite-url", "/public"),
            ("forwarded", "for=1.2.3.4"),
            ("accept", "*/*"),
        ]);
        strip_routing_hints(&mut h);
        assert_eq!(names(&h), ["accept"]);
    }

    #[test]
    fn cookies_from_http2_are_joined() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
    }
}
