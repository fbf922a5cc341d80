//! From the file's shape to typed values: every semantic check of the config.
//!
//! Owns the rules a config must follow (addresses parse, durations parse,
//! keys are described completely, routes are sane, secrets are not weak) and
//! reports every broken rule with its location. It reads no files and binds
//! nothing: it only decides whether the text describes a gateway that can run.
//! One file per section; the checks several sections share (`Checker`, the
//! names of roles and scopes) live here.

pub(super) use std::collections::{BTreeSet, HashSet};
pub(super) use std::net::SocketAddr;
pub(super) use std::ops::Range;
pub(super) use std::path::PathBuf;
pub(super) use std::str::FromStr;
pub(super) use std::time::Duration;

pub(super) use http::{HeaderName, Method};

mod authz;
mod headers;
mod login;
mod routes;
mod server;
mod store;
mod tokens;

pub(super) use super::raw::{OneOrMany, RawConfig, RawKey, RawLimits, RawRoute, RawTrusted, S};
pub(super) use super::*;
pub(super) use crate::path::{NormalizeError, normalize};

/// Headers that carry framing, routing or credentials: never an identity header.
pub(super) const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "set-cookie",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "content-type",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
];

pub(super) struct Checker<'a> {
    map: &'a SourceMap,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Checker<'_> {
    pub(super) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diagnostics.push(self.map.diagnostic(Some(span), message));
    }

    pub(super) fn location<T>(&self, s: &S<T>) -> Location {
        self.map.location(s.span().start)
    }

    pub(super) fn path(&self, s: &S<String>) -> PathBuf {
        let p = PathBuf::from(s.get_ref());
        if p.is_absolute() { p } else { self.map.base_dir().join(p) }
    }

    pub(super) fn duration(&mut self, value: &Option<S<String>>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(s) => match parse_duration(s.get_ref()) {
                Ok(d) => d,
                Err(msg) => {
                    self.error(s.span(), msg);
                    default
                }
            },
        }
    }

    pub(super) fn addr(&mut self, value: &Option<S<String>>, key: &str) -> Option<SocketAddr> {
        let s = value.as_ref()?;
        match SocketAddr::from_str(s.get_ref()) {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    s.span(),
                    format!("`{key}` must be an IP address and port, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\""),
                );
                None
            }
        }
    }

    pub(super) fn non_empty(&mut self, value: &Option<S<String>>, key: &str, default: &str) -> String {
        match value {
            None => default.to_owned(),
            Some(s) if s.get_ref().trim().is_empty() => {
                self.error(s.span(), format!("`{key}` must not be empty"));
                default.to_owned()
            }
            Some(s) => s.get_ref().clone(),
        }
    }

    pub(super) fn audience(&mut self, value: &S<OneOrMany>) -> Vec<String> {
        let list = match value.get_ref() {
            OneOrMany::One(a) => vec![a.clone()],
            OneOrMany::Many(list) => list.clone(),
        };
        if list.is_empty() || list.iter().any(|a| a.is_empty()) {
            self.error(value.span(), "`audience` must be a non-empty string or a list of non-empty strings");
        }
        list
    }

    /// IP addresses or CIDR ranges (`trusted_proxies`, `allow_from`).
    pub(super) fn nets(&mut self, list: &Option<Vec<S<String>>>) -> Vec<ipnet::IpNet> {
        let mut nets = Vec::new();
        for entry in list.iter().flatten() {
            let text = entry.get_ref();
            match ipnet::IpNet::from_str(text).or_else(|_| std::net::IpAddr::from_str(text).map(ipnet::IpNet::from)) {
                Ok(n) => nets.push(n.trunc()),
                Err(_) => self.error(entry.span(), format!("`{text}` is not an IP address or CIDR range")),
            }
        }
        nets
    }

    /// An HTTP method as written: methods are case-sensitive (RFC 9110 §9.1).
    pub(super) fn method(&mut self, value: &S<String>) -> Option<Method> {
        let text = value.get_ref();
        match Method::from_bytes(text.as_bytes()) {
            Ok(method) if !text.bytes().any(|b| b.is_ascii_lowercase()) => Some(method),
            Ok(_) => {
                self.error(value.span(), format!("methods are case-sensitive: write `{}`", text.to_ascii_uppercase()));
                None
            }
            Err(_) => {
                self.error(value.span(), format!("`{text}` is not an HTTP method"));
                None
            }
        }
    }

    pub(super) fn header_name(&mut self, value: &S<String>, key: &str) -> Option<HeaderName> {
        let name = match HeaderName::from_bytes(value.get_ref().as_bytes()) {
            Ok(n) => n,
            Err(_) => {
                self.error(value.span(), format!("`{key}` is not a valid header name"));
                return None;
            }
        };
        if RESERVED_HEADERS.contains(&name.as_str()) {
            self.error(value.span(), format!("`{key}` may not be `{name}`: that header is managed by the gateway"));
            return None;
        }
        Some(name)
    }
}

pub(super) fn validate(raw: RawConfig, map: &SourceMap, diagnostics: &mut Vec<Diagnostic>) -> Config {
    let mut c = Checker { map, diagnostics };
    let server = server::server(&mut c, raw.server.as_ref().map(|s| s.get_ref()));
    let tokens = tokens::tokens(&mut c, raw.tokens.as_ref());
    let store = store::store(&mut c, raw.store.as_ref());
    let login = login::login(&mut c, raw.login.as_ref(), &tokens);
    let headers = headers::headers(&mut c, raw.headers.as_ref());
    let authz = authz::authz(&mut c, raw.authz.as_ref(), &login);
    let routes = routes::routes(&mut c, &raw.routes, &tokens, &server.limits, authz.enabled);

    if server.http.is_none() && server.https.is_none() {
        let span = raw.server.as_ref().map_or(0..0, |s| s.span());
        c.error(span, "no listener configured: set `server.http` and/or `server.https`");
    }
    if let (Some(https), None) = (server.https, &server.tls) {
        let span = raw.server.as_ref().map_or(0..0, |s| s.span());
        c.error(span, format!("`server.https` ({https}) needs a [server.tls] section"));
    }
    Config { source: map.file().to_path_buf(), server, tokens, store, login, headers, authz, routes }
}

pub(super) fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What a list of names holds: roles are joined with commas for the
/// upstream (`X-Auth-Roles`), scopes are space-separated in tokens.
#[derive(Clone, Copy)]
pub(super) enum Name {
    Role,
    Scope,
}

/// Roles or scopes: non-empty, no comma, no surrounding spaces (a role),
/// no space at all (a scope). The one validator both use.
pub(super) fn names(c: &mut Checker<'_>, raw: &[S<String>], what: Name) -> Vec<String> {
    let mut out = Vec::new();
    for r in raw {
        let v = r.get_ref();
        let ok = !v.is_empty()
            && !v.contains(',')
            && match what {
                Name::Role => v.trim() == v,
                Name::Scope => !v.contains(' '),
            };
        match (ok, what) {
            (true, _) => out.push(v.clone()),
            (false, Name::Role) => {
                c.error(r.span(), format!("role `{v}` must be non-empty, without commas or surrounding spaces"))
            }
            (false, Name::Scope) => {
                c.error(r.span(), format!("scope `{v}` must be non-empty, without commas or spaces"))
            }
        }
    }
    out
}

#[cfg(test)]
pub(super) mod check {
    //! `check(toml, expected)`: the section's table tests.
    use super::super::Config;
    use std::path::Path;

    /// A config with a listener and a key, then `rest`.
    pub fn config(rest: &str) -> String {
        format!(
            "[server]\nhttp = \"127.0.0.1:0\"\n[[tokens.keys]]\nkid = \"k\"\nalgorithm = \"HS256\"\nsecret = \"{}\"\n{rest}",
            "s".repeat(32)
        )
    }

    /// Asserts that `config(rest)` is refused with exactly these messages
    /// (each a part of one message, in order), or accepted when none.
    pub fn check(rest: &str, expected: &[&str]) {
        check_full(&config(rest), expected);
    }

    /// `check` on a whole config text.
    pub fn check_full(src: &str, expected: &[&str]) {
        let rest = src;
        let messages: Vec<String> = match Config::from_str(src, Path::new("t.toml")) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.iter().map(|d| d.message.clone()).collect(),
        };
        assert_eq!(messages.len(), expected.len(), "for\n{rest}\ngot {messages:#?}");
        for (got, want) in messages.iter().zip(expected) {
            assert!(got.contains(want), "for\n{rest}\nexpected {want:?} in {got:?}");
        }
    }
}
