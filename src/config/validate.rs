//! From the file's shape to typed values: every semantic check of the config.
//!
//! Owns the rules a config must follow (addresses parse, durations parse,
//! keys are described completely, routes are sane, secrets are not weak) and
//! reports every broken rule with its location. It reads no files and binds
//! nothing: it only decides whether the text describes a gateway that can run.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, Method};

use super::raw::{OneOrMany, RawConfig, RawKey, RawLimits, RawRoute, RawTrusted, S};
use super::*;
use crate::path::{NormalizeError, normalize};

/// Headers that carry framing, routing or credentials: never an identity header.
const RESERVED_HEADERS: &[&str] = &[
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

struct Checker<'a> {
    map: &'a SourceMap,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diagnostics.push(self.map.diagnostic(Some(span), message));
    }

    fn location<T>(&self, s: &S<T>) -> Location {
        self.map.location(s.span().start)
    }

    fn path(&self, s: &S<String>) -> PathBuf {
        let p = PathBuf::from(s.get_ref());
        if p.is_absolute() { p } else { self.map.base_dir().join(p) }
    }

    fn duration(&mut self, value: &Option<S<String>>, default: Duration) -> Duration {
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

    fn addr(&mut self, value: &Option<S<String>>, key: &str) -> Option<SocketAddr> {
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

    fn non_empty(&mut self, value: &Option<S<String>>, key: &str, default: &str) -> String {
        match value {
            None => default.to_owned(),
            Some(s) if s.get_ref().trim().is_empty() => {
                self.error(s.span(), format!("`{key}` must not be empty"));
                default.to_owned()
            }
            Some(s) => s.get_ref().clone(),
        }
    }

    fn audience(&mut self, value: &S<OneOrMany>) -> Vec<String> {
        let list = match value.get_ref() {
            OneOrMany::One(a) => vec![a.clone()],
            OneOrMany::Many(list) => list.clone(),
        };
        if list.is_empty() || list.iter().any(|a| a.is_empty()) {
            self.error(value.span(), "`audience` must be a non-empty string or a list of non-empty strings");
        }
        list
    }

    fn header_name(&mut self, value: &S<String>, key: &str) -> Option<HeaderName> {
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
    let server = server(&mut c, raw.server.as_ref().map(|s| s.get_ref()));
    let tokens = tokens(&mut c, raw.tokens.as_ref());
    let store = store(&mut c, raw.store.as_ref());
    let login = login(&mut c, raw.login.as_ref(), &tokens);
    let headers = headers(&mut c, raw.headers.as_ref());
    let routes = routes(&mut c, &raw.routes, &tokens, &server.limits);

    if server.http.is_none() && server.https.is_none() {
        let span = raw.server.as_ref().map_or(0..0, |s| s.span());
        c.error(span, "no listener configured: set `server.http` and/or `server.https`");
    }
    if let (Some(https), None) = (server.https, &server.tls) {
        let span = raw.server.as_ref().map_or(0..0, |s| s.span());
        c.error(span, format!("`server.https` ({https}) needs a [server.tls] section"));
    }
    Config { source: map.file().to_path_buf(), server, tokens, store, login, headers, routes }
}

fn server(c: &mut Checker<'_>, raw: Option<&super::raw::RawServer>) -> Server {
    let default = super::raw::RawServer::default();
    let raw = raw.unwrap_or(&default);
    let http = c.addr(&raw.http, "http");
    let https = c.addr(&raw.https, "https");
    let admin = c.addr(&raw.admin, "admin");
    let listeners = [(http, &raw.http), (https, &raw.https), (admin, &raw.admin)];
    for (i, (a, s)) in listeners.iter().enumerate() {
        if let (Some(a), Some(s)) = (a, s)
            && a.port() != 0
            && listeners[..i].iter().any(|(b, _)| b.as_ref() == Some(a))
        {
            c.error(s.span(), format!("{a} is already used by another listener"));
        }
    }
    let workers = match raw.workers.as_ref().map(|w| *w.get_ref()) {
        None | Some(0) => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(n) => n,
    };
    let mut trusted_proxies = Vec::new();
    for p in raw.trusted_proxies.iter().flatten() {
        let text = p.get_ref();
        let net = ipnet::IpNet::from_str(text).or_else(|_| std::net::IpAddr::from_str(text).map(ipnet::IpNet::from));
        match net {
            Ok(n) => trusted_proxies.push(n.trunc()),
            Err(_) => c.error(p.span(), format!("`{text}` is not an IP address or CIDR range")),
        }
    }
    let tls = raw.tls.as_ref().and_then(|t| {
        let location = c.location(t);
        let self_signed = t.get_ref().self_signed.unwrap_or(false);
        let (cert, key) = (&t.get_ref().cert_file, &t.get_ref().key_file);
        let (cert_file, key_file) = match (cert, key) {
            (Some(cert), Some(key)) => (c.path(cert), c.path(key)),
            (None, None) if self_signed => {
                let dir = c.map.base_dir().join("certs");
                (dir.join("self-signed.crt"), dir.join("self-signed.key"))
            }
            _ => {
                c.error(t.span(), "[server.tls] needs both `cert_file` and `key_file` (or `self_signed = true`)");
                return None;
            }
        };
        Some(Tls { cert_file, key_file, self_signed, location })
    });
    let underscore_headers = match raw.underscore_headers.as_ref().map(|u| (u.get_ref().as_str(), u.span())) {
        None | Some(("drop", _)) => UnderscoreHeaders::Drop,
        Some(("reject", _)) => UnderscoreHeaders::Reject,
        Some(("allow", _)) => UnderscoreHeaders::Allow,
        Some((other, span)) => {
            c.error(span, format!("unknown `underscore_headers` `{other}`, expected drop, reject or allow"));
            UnderscoreHeaders::Drop
        }
    };
    let limits = limits(c, raw.limits.as_ref());
    Server { http, https, admin, workers, trusted_proxies, tls, limits, underscore_headers }
}

fn limits(c: &mut Checker<'_>, raw: Option<&RawLimits>) -> Limits {
    let d = Limits::default();
    let Some(raw) = raw else { return d };
    let mut bounded = |v: &Option<S<usize>>, key: &str, min: usize, max: usize, default: usize| match v {
        None => default,
        Some(s) if (min..=max).contains(s.get_ref()) => *s.get_ref(),
        Some(s) => {
            c.error(s.span(), format!("`{key}` must be between {min} and {max}"));
            default
        }
    };
    let max_header_bytes = bounded(&raw.max_header_bytes, "max_header_bytes", 1024, 1024 * 1024, d.max_header_bytes);
    let max_headers = bounded(&raw.max_headers, "max_headers", 8, 10_000, d.max_headers);
    let max_connections = bounded(&raw.max_connections, "max_connections", 1, 1_000_000, d.max_connections);
    let h2_streams = bounded(&raw.h2_max_concurrent_streams, "h2_max_concurrent_streams", 1, 10_000, 100);
    Limits {
        max_header_bytes,
        max_headers,
        max_connections,
        header_read_timeout: c.duration(&raw.header_read_timeout, d.header_read_timeout),
        tls_handshake_timeout: c.duration(&raw.tls_handshake_timeout, d.tls_handshake_timeout),
        upstream_connect_timeout: c.duration(&raw.upstream_connect_timeout, d.upstream_connect_timeout),
        upstream_timeout: c.duration(&raw.upstream_timeout, d.upstream_timeout),
        shutdown_grace: c.duration(&raw.shutdown_grace, d.shutdown_grace),
        max_body_bytes: raw.max_body_bytes.as_ref().map_or(d.max_body_bytes, |v| *v.get_ref()),
        request_body_timeout: c.duration(&raw.request_body_timeout, d.request_body_timeout),
        idle_timeout: c.duration(&raw.idle_timeout, d.idle_timeout),
        h2_max_concurrent_streams: u32::try_from(h2_streams).unwrap_or(100),
    }
}

fn tokens(c: &mut Checker<'_>, raw: Option<&S<super::raw::RawTokens>>) -> Tokens {
    let default = super::raw::RawTokens::default();
    let raw_ref = raw.map_or(&default, |r| r.get_ref());
    let issuer = c.non_empty(&raw_ref.issuer, "issuer", "authgate");
    let audience = match &raw_ref.audience {
        Some(a) => c.audience(a),
        None => vec!["api".to_owned()],
    };
    let mut keys = Vec::new();
    let mut kids = HashSet::new();
    for k in &raw_ref.keys {
        if let Some(spec) = key(c, k) {
            if !kids.insert(spec.kid.clone()) {
                c.error(k.span(), format!("duplicate key id `{}`", spec.kid));
            }
            keys.push(spec);
        }
    }
    let signing_key = match &raw_ref.signing_key {
        Some(s) => match keys.iter().find(|k| &k.kid == s.get_ref()) {
            Some(k) if matches!(k.source, KeySource::Public { .. }) => {
                c.error(s.span(), format!("`signing_key` `{}` is verify-only: it has no private key", k.kid));
                None
            }
            Some(k) => Some(k.kid.clone()),
            None if keys.len() != raw_ref.keys.len() => None, // the key itself is already reported
            None => {
                c.error(s.span(), format!("`signing_key` `{}` names no [[tokens.keys]] entry", s.get_ref()));
                None
            }
        },
        None => {
            let signers: Vec<_> = keys.iter().filter(|k| !matches!(k.source, KeySource::Public { .. })).collect();
            match signers.as_slice() {
                [only] => Some(only.kid.clone()),
                _ => None,
            }
        }
    };
    let mut trusted = Vec::new();
    let mut issuers = HashSet::from([issuer.clone()]);
    for t in &raw_ref.trusted {
        if let Some(ti) = trusted_issuer(c, t) {
            if !issuers.insert(ti.issuer.clone()) {
                c.error(t.span(), format!("issuer `{}` is configured twice", ti.issuer));
            }
            trusted.push(ti);
        }
    }
    let leeway = c.duration(&raw_ref.leeway, Duration::from_secs(30));
    if leeway > Duration::from_secs(300)
        && let Some(s) = &raw_ref.leeway
    {
        c.error(s.span(), "`leeway` above 5m defeats expiry; it is for clock skew only");
    }
    let access_ttl = c.duration(&raw_ref.access_ttl, Duration::from_secs(15 * 60));
    // Default: a day (as for trusted issuers), or access_ttl if longer. It
    // refuses far-future `exp`s without breaking apps that share the key and
    // mint day-long tokens themselves.
    let max_lifetime = c.duration(&raw_ref.max_lifetime, access_ttl.max(Duration::from_secs(24 * 3600)));
    if max_lifetime < access_ttl
        && let Some(s) = &raw_ref.max_lifetime
    {
        c.error(s.span(), "`max_lifetime` is shorter than `access_ttl`: the gateway's own tokens would be refused");
    }
    Tokens {
        issuer,
        audience,
        access_ttl,
        refresh_ttl: c.duration(&raw_ref.refresh_ttl, Duration::from_secs(14 * 86_400)),
        leeway,
        signing_key,
        verify_cache: raw_ref.verify_cache.as_ref().map_or(10_000, |v| *v.get_ref()),
        max_lifetime,
        keys,
        trusted,
    }
}

fn algorithm(c: &mut Checker<'_>, s: &S<String>) -> Option<Algorithm> {
    let text = s.get_ref();
    if text.eq_ignore_ascii_case("none") {
        c.error(s.span(), "algorithm `none` is never accepted");
        return None;
    }
    match Algorithm::from_str(text) {
        Ok(a) => Some(a),
        Err(_) => {
            c.error(
                s.span(),
                format!("unknown algorithm `{text}`, expected one of: HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA"),
            );
            None
        }
    }
}

fn key(c: &mut Checker<'_>, k: &S<RawKey>) -> Option<KeySpec> {
    let location = c.location(k);
    let r = k.get_ref();
    let kid = match &r.kid {
        Some(s) if !s.get_ref().is_empty() => s.get_ref().clone(),
        Some(s) => {
            c.error(s.span(), "`kid` must not be empty");
            return None;
        }
        None => {
            c.error(k.span(), "[[tokens.keys]] entry needs a `kid`");
            return None;
        }
    };
    let Some(alg_s) = &r.algorithm else {
        c.error(k.span(), format!("key `{kid}` needs an `algorithm`"));
        return None;
    };
    let algorithm = algorithm(c, alg_s)?;
    let is_hmac = matches!(algorithm, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    let given: Vec<(&str, &S<String>)> = [
        ("private_key_file", &r.private_key_file),
        ("private_key_env", &r.private_key_env),
        ("public_key_file", &r.public_key_file),
        ("secret_file", &r.secret_file),
        ("secret_env", &r.secret_env),
        ("secret", &r.secret),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.as_ref().map(|v| (name, v)))
    .collect();
    let allowed: &[&str] = if is_hmac {
        &["secret_file", "secret_env", "secret"]
    } else {
        &["private_key_file", "private_key_env", "public_key_file"]
    };
    let mut ok = true;
    for (name, v) in &given {
        if !allowed.contains(name) {
            c.error(
                v.span(),
                format!("`{name}` does not fit algorithm {algorithm:?}; use one of: {}", allowed.join(", ")),
            );
            ok = false;
        }
    }
    let usable: Vec<_> = given.iter().filter(|(n, _)| allowed.contains(n)).collect();
    match usable.as_slice() {
        [] if ok => {
            c.error(k.span(), format!("key `{kid}` needs one of: {}", allowed.join(", ")));
            return None;
        }
        [_, second, ..] => {
            c.error(
                second.1.span(),
                format!("key `{kid}` names its material twice; keep one of: {}", allowed.join(", ")),
            );
            return None;
        }
        _ => {}
    }
    if !ok {
        return None;
    }
    let (name, value) = *usable[0];
    let generate_if_missing = r.generate_if_missing.as_ref().is_some_and(|g| *g.get_ref());
    if let Some(g) = &r.generate_if_missing
        && *g.get_ref()
        && !matches!(name, "private_key_file" | "secret_file")
    {
        c.error(g.span(), "`generate_if_missing` needs `private_key_file` or `secret_file`");
    }
    let source = match name {
        "secret_file" => KeySource::Secret(SecretSource::File(c.path(value))),
        "secret_env" => KeySource::Secret(SecretSource::Env(value.get_ref().clone())),
        "secret" => {
            if value.get_ref().len() < 32 {
                c.error(value.span(), format!("HMAC secret of key `{kid}` is shorter than 32 bytes"));
            }
            KeySource::Secret(SecretSource::Inline(value.get_ref().clone()))
        }
        "private_key_file" => KeySource::Private { source: SecretSource::File(c.path(value)), generate_if_missing },
        "private_key_env" => {
            KeySource::Private { source: SecretSource::Env(value.get_ref().clone()), generate_if_missing: false }
        }
        _ => KeySource::Public { path: c.path(value) },
    };
    // An HMAC secret file may be generated too.
    let source = match source {
        KeySource::Secret(SecretSource::File(p)) if generate_if_missing => {
            KeySource::Private { source: SecretSource::File(p), generate_if_missing: true }
        }
        other => other,
    };
    Some(KeySpec { kid, algorithm, source, location })
}

fn trusted_issuer(c: &mut Checker<'_>, t: &S<RawTrusted>) -> Option<TrustedIssuer> {
    let location = c.location(t);
    let r = t.get_ref();
    let (Some(issuer), Some(url), Some(aud)) = (&r.issuer, &r.jwks_url, &r.audience) else {
        c.error(t.span(), "[[tokens.trusted]] needs `issuer`, `jwks_url` and `audience`");
        return None;
    };
    if issuer.get_ref().is_empty() {
        c.error(issuer.span(), "`issuer` must not be empty");
    }
    let jwks_url = match http::Uri::from_str(url.get_ref()) {
        Ok(u) if u.scheme_str() == Some("https") && u.host().is_some() => Some(u),
        Ok(u) if u.scheme_str() == Some("http") && u.host().is_some_and(is_loopback_host) => Some(u),
        _ => {
            c.error(url.span(), "`jwks_url` must be an https:// URL (http:// only to a loopback address)");
            None
        }
    };
    let audience = c.audience(aud);
    let roles_claim = match &r.roles_claim {
        None => "roles".to_owned(),
        Some(s) if s.get_ref().is_empty() => {
            c.error(s.span(), "`roles_claim` must be a claim name or a dotted path like `realm_access.roles`");
            "roles".to_owned()
        }
        Some(s) => s.get_ref().clone(),
    };
    Some(TrustedIssuer {
        issuer: issuer.get_ref().clone(),
        jwks_url: jwks_url?,
        audience,
        roles_claim,
        ca_file: r.ca_file.as_ref().map(|p| c.path(p)),
        max_lifetime: c.duration(&r.max_lifetime, Duration::from_secs(24 * 3600)),
        require_typ: r.require_typ.as_ref().and_then(|t| {
            if t.get_ref().is_empty() || !t.get_ref().is_ascii() {
                c.error(t.span(), "`require_typ` must be a media type such as `at+jwt`");
                return None;
            }
            Some(t.get_ref().clone())
        }),
        location,
    })
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn store(c: &mut Checker<'_>, raw: Option<&S<super::raw::RawStore>>) -> Store {
    let default = super::raw::RawStore::default();
    let r = raw.map_or(&default, |r| r.get_ref());
    let backend = r.backend.as_ref().map_or("embedded", |b| b.get_ref().as_str());
    let redis_only: [(&str, Option<Range<usize>>); 7] = [
        ("ack_replicas", r.ack_replicas.as_ref().map(S::span)),
        ("timeout", r.timeout.as_ref().map(S::span)),
        ("url", r.url.as_ref().map(S::span)),
        ("url_env", r.url_env.as_ref().map(S::span)),
        ("key_prefix", r.key_prefix.as_ref().map(S::span)),
        ("on_unavailable", r.on_unavailable.as_ref().map(S::span)),
        ("max_staleness", r.max_staleness.as_ref().map(S::span)),
    ];
    match backend {
        "embedded" => {
            for (key, span) in redis_only {
                if let Some(span) = span {
                    c.error(span, format!("`{key}` applies to backend = \"redis\" only"));
                }
            }
            let path = r.path.as_ref().map_or_else(|| c.map.base_dir().join("data/authgate.db"), |p| c.path(p));
            Store::Embedded { path }
        }
        "redis" => {
            if let Some(p) = &r.path {
                c.error(p.span(), "`path` applies to backend = \"embedded\" only");
            }
            let url = match (&r.url, &r.url_env) {
                (Some(u), None) => {
                    let scheme_ok = ["redis://", "rediss://", "redis+sentinel://", "rediss+sentinel://"]
                        .iter()
                        .any(|s| u.get_ref().starts_with(s));
                    if !scheme_ok {
                        c.error(u.span(), "`url` must start with redis://, rediss:// or redis+sentinel://");
                    }
                    SecretSource::Inline(u.get_ref().clone())
                }
                (None, Some(e)) => SecretSource::Env(e.get_ref().clone()),
                (Some(_), Some(e)) => {
                    c.error(e.span(), "give `url` or `url_env`, not both");
                    SecretSource::Env(e.get_ref().clone())
                }
                (None, None) => {
                    let span = raw.map_or(0..0, S::span);
                    c.error(span, "backend = \"redis\" needs `url` or `url_env`");
                    SecretSource::Env(String::new())
                }
            };
            let on_unavailable = match r.on_unavailable.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
                None | Some(("deny", _)) => OnUnavailable::Deny,
                Some(("allow", _)) => OnUnavailable::Allow,
                Some((other, span)) => {
                    c.error(span, format!("unknown `on_unavailable` `{other}`, expected deny or allow"));
                    OnUnavailable::Deny
                }
            };
            Store::Redis {
                url,
                key_prefix: r.key_prefix.as_ref().map_or_else(|| "authgate:".to_owned(), |p| p.get_ref().clone()),
                on_unavailable,
                max_staleness: c.duration(&r.max_staleness, Duration::from_secs(2)),
                timeout: c.duration(&r.timeout, Duration::from_millis(500)),
                ack_replicas: r.ack_replicas.as_ref().and_then(|n| match u32::try_from(*n.get_ref()) {
                    Ok(n) if n <= 16 => Some(n),
                    _ => {
                        c.error(n.span(), "`ack_replicas` must be a whole number from 0 to 16");
                        None
                    }
                }),
            }
        }
        other => {
            if let Some(b) = &r.backend {
                c.error(b.span(), format!("unknown store backend `{other}`, expected embedded or redis"));
            }
            Store::Embedded { path: c.map.base_dir().join("data/authgate.db") }
        }
    }
}

fn login(c: &mut Checker<'_>, raw: Option<&S<super::raw::RawLogin>>, tokens: &Tokens) -> Login {
    let default = super::raw::RawLogin::default();
    let r = raw.map_or(&default, |r| r.get_ref());
    let enabled = r.enabled.unwrap_or(false);
    let path_prefix = match &r.path_prefix {
        None => "/auth".to_owned(),
        Some(p) => match normalize(p.get_ref()) {
            Ok(n) if n != "/" && n.trim_end_matches('/') == p.get_ref().trim_end_matches('/') => {
                n.trim_end_matches('/').to_owned()
            }
            _ => {
                c.error(p.span(), "`path_prefix` must be a normalized absolute path other than `/`, e.g. \"/auth\"");
                "/auth".to_owned()
            }
        },
    };
    let default_roles = roles(c, r.default_roles.as_deref().unwrap_or(&[]));
    let default_roles = if r.default_roles.is_none() { vec!["user".to_owned()] } else { default_roles };
    let min_password_length = r.min_password_length.as_ref().map_or(8, |v| *v.get_ref());
    if let Some(v) = &r.min_password_length
        && !(1..=1024).contains(v.get_ref())
    {
        c.error(v.span(), "`min_password_length` must be between 1 and 1024");
    }
    let max_attempts = r.max_attempts.as_ref().map_or(5, |v| *v.get_ref());
    if let Some(v) = &r.max_attempts
        && *v.get_ref() == 0
    {
        c.error(v.span(), "`max_attempts` must be at least 1");
    }
    if enabled && tokens.signing_key.is_none() {
        let span = raw.map_or(0..0, S::span);
        c.error(span, "[login] is enabled but no key can sign tokens: set `tokens.signing_key` to a key with a private key or secret");
    }
    Login {
        enabled,
        path_prefix,
        registration: r.registration.unwrap_or(false),
        default_roles,
        admin_role: c.non_empty(&r.admin_role, "admin_role", "admin"),
        users_file: r.users_file.as_ref().map(|p| c.path(p)),
        cookies: r.cookies.unwrap_or(false),
        min_password_length,
        max_attempts,
        attempt_window: c.duration(&r.attempt_window, Duration::from_secs(15 * 60)),
        refresh_reuse_grace: c.duration(&r.refresh_reuse_grace, Duration::from_secs(10)),
        tokens_in_body: r.tokens_in_body.unwrap_or(false),
    }
}

fn roles(c: &mut Checker<'_>, raw: &[S<String>]) -> Vec<String> {
    let mut out = Vec::new();
    for r in raw {
        let role = r.get_ref();
        if role.is_empty() || role.contains(',') || role.trim() != role {
            c.error(r.span(), format!("role `{role}` must be non-empty, without commas or surrounding spaces"));
        } else {
            out.push(role.clone());
        }
    }
    out
}

fn headers(c: &mut Checker<'_>, raw: Option<&S<super::raw::RawHeaders>>) -> Headers {
    let default = super::raw::RawHeaders::default();
    let r = raw.map_or(&default, |r| r.get_ref());
    let named = |c: &mut Checker<'_>, v: &Option<S<String>>, key: &str, default: &'static str| match v {
        Some(s) => c.header_name(s, key).unwrap_or(HeaderName::from_static(default)),
        None => HeaderName::from_static(default),
    };
    let user = named(c, &r.user, "user", "x-auth-user");
    let roles = named(c, &r.roles, "roles", "x-auth-roles");
    let mut claims = Vec::new();
    let mut seen = HashSet::from([user.clone(), roles.clone()]);
    for (claim, header) in &r.claims {
        if claim.is_empty() {
            c.error(header.span(), "a claim name must not be empty");
            continue;
        }
        if let Some(name) = c.header_name(header, claim) {
            if !seen.insert(name.clone()) {
                c.error(header.span(), format!("header `{name}` is set from two places"));
            }
            claims.push((claim.clone(), name));
        }
    }
    if user == roles
        && let Some(s) = &r.roles
    {
        c.error(s.span(), "`roles` and `user` name the same header");
    }
    let strip_prefix = match &r.strip_prefix {
        None => "x-auth-".to_owned(),
        Some(s) => {
            let p = s.get_ref().to_ascii_lowercase();
            if !p.is_empty() && HeaderName::from_bytes(p.as_bytes()).is_err() {
                c.error(s.span(), "`strip_prefix` must be the start of a header name, e.g. \"X-Auth-\"");
            }
            p
        }
    };
    Headers { user, roles, claims, strip_prefix, forward_token: r.forward_token.unwrap_or(false) }
}

/// Path, host and methods: two routes with the same key would be ambiguous.
type RouteKey = (String, Option<String>, Option<BTreeSet<String>>);

fn routes(c: &mut Checker<'_>, raw: &[S<RawRoute>], tokens: &Tokens, limits: &Limits) -> Vec<Route> {
    let mut out: Vec<Route> = Vec::new();
    let mut seen: Vec<RouteKey> = Vec::new();
    for r in raw {
        let Some(route) = route(c, r, tokens, limits) else {
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

fn route(c: &mut Checker<'_>, r: &S<RawRoute>, tokens: &Tokens, limits: &Limits) -> Option<Route> {
    let location = c.location(r);
    let raw = r.get_ref();
    let (Some(path_s), Some(upstream_s)) = (&raw.path, &raw.upstream) else {
        c.error(r.span(), "[[route]] needs `path` and `upstream`");
        return None;
    };
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
        for m in list {
            let text = m.get_ref();
            match Method::from_bytes(text.as_bytes()) {
                Ok(method) if text.bytes().all(|b| !b.is_ascii_lowercase()) => methods.push(method),
                Ok(_) => {
                    c.error(m.span(), format!("methods are case-sensitive: write `{}`", text.to_ascii_uppercase()))
                }
                Err(_) => c.error(m.span(), format!("`{text}` is not an HTTP method")),
            }
        }
        methods
    });
    let upstream = upstream(c, upstream_s)?;
    let auth = match raw.auth.as_ref().map(|a| (a.get_ref().as_str(), a.span())) {
        None | Some(("required", _)) => AuthMode::Required,
        Some(("optional", _)) => AuthMode::Optional,
        Some(("none", _)) => AuthMode::None,
        Some((other, span)) => {
            c.error(span, format!("unknown `auth` `{other}`, expected none, optional or required"));
            return None;
        }
    };
    let roles = roles(c, raw.roles.as_deref().unwrap_or(&[]));
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
    let scopes = roles_like(c, raw.scopes.as_deref().unwrap_or(&[]), "scope");
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

fn roles_like(c: &mut Checker<'_>, raw: &[S<String>], what: &str) -> Vec<String> {
    let mut out = Vec::new();
    for r in raw {
        let v = r.get_ref();
        if v.is_empty() || v.contains([',', ' ']) {
            c.error(r.span(), format!("{what} `{v}` must be non-empty, without commas or spaces"));
        } else {
            out.push(v.clone());
        }
    }
    out
}

fn cors(c: &mut Checker<'_>, raw: &S<super::raw::RawCors>) -> Option<Cors> {
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
        Some(list) => list
            .iter()
            .filter_map(|m| match Method::from_bytes(m.get_ref().as_bytes()) {
                Ok(method) if !m.get_ref().bytes().any(|b| b.is_ascii_lowercase()) => Some(method),
                _ => {
                    c.error(m.span(), format!("`{}` is not an upper-case HTTP method", m.get_ref()));
                    None
                }
            })
            .collect(),
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

fn upstream(c: &mut Checker<'_>, s: &S<String>) -> Option<Upstream> {
    let text = s.get_ref();
    if text == "builtin:echo" {
        return Some(Upstream::Echo);
    }
    let uri = match http::Uri::from_str(text) {
        Ok(u) => u,
        Err(_) => {
            c.error(s.span(), "`upstream` must be an http:// URL or builtin:echo");
            return None;
        }
    };
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(authority)) if uri.query().is_none() && !authority.as_str().contains('@') => {
            let base_path = uri.path().trim_end_matches('/').to_owned();
            Some(Upstream::Http { authority: authority.clone(), base_path })
        }
        (Some("https"), _) => {
            c.error(s.span(), "https:// upstreams are not supported yet: use http:// to a local or private address");
            None
        }
        _ => {
            c.error(
                s.span(),
                "`upstream` must be http://HOST[:PORT][/BASE] (no credentials, no query) or builtin:echo",
            );
            None
        }
    }
}
