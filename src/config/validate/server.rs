//! `[server]`, `[server.tls]` and `[server.limits]`: listeners, TLS files, limits.

use super::*;

pub(super) fn server(c: &mut Checker<'_>, raw: Option<&super::raw::RawServer>) -> Server {
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
    let trusted_proxies = c.nets(&raw.trusted_proxies);
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

pub(super) fn limits(c: &mut Checker<'_>, raw: Option<&RawLimits>) -> Limits {
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
    let upstream_max_connections =
        bounded(&raw.upstream_max_connections, "upstream_max_connections", 1, 1_000_000, d.upstream_max_connections);
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
        upstream_max_connections,
        upstream_resolve_interval: match c.duration(&raw.upstream_resolve_interval, d.upstream_resolve_interval) {
            zero if zero.is_zero() => {
                if let Some(s) = &raw.upstream_resolve_interval {
                    c.error(s.span(), "`upstream_resolve_interval` must be longer than 0s");
                }
                d.upstream_resolve_interval
            }
            interval => interval,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::check_full;

    #[test]
    fn server_rules() {
        let key =
            "[[tokens.keys]]\nkid = \"k\"\nalgorithm = \"HS256\"\nsecret = \"ssssssssssssssssssssssssssssssss\"\n";
        let cases: &[(&str, &[&str])] = &[
            ("[server]\nhttp = \"127.0.0.1:0\"\n", &[]),
            ("[server]\n", &["no listener configured"]),
            ("[server]\nhttp = \"nope\"\n", &["no listener configured", "`http` must be an IP address and port"]),
            ("[server]\nhttps = \"127.0.0.1:0\"\n", &["needs a [server.tls] section"]),
            ("[server]\nhttp = \"127.0.0.1:9\"\nadmin = \"127.0.0.1:9\"\n", &["already used by another listener"]),
            ("[server]\nhttp = \"127.0.0.1:0\"\nunderscore_headers = \"maybe\"\n", &["unknown `underscore_headers`"]),
            (
                "[server]\nhttp = \"127.0.0.1:0\"\n[server.limits]\nupstream_max_connections = 0\nupstream_resolve_interval = \"0s\"\n",
                &[
                    "`upstream_max_connections` must be between 1 and",
                    "`upstream_resolve_interval` must be longer than 0s",
                ],
            ),
            (
                "[server]\nhttp = \"127.0.0.1:0\"\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
                &["is not an IP address or CIDR"],
            ),
            (
                "[server]\nhttp = \"127.0.0.1:0\"\n[server.limits]\nheader_read_timeout = \"10 seconds\"\n",
                &["10 seconds"],
            ),
        ];
        for (server, expected) in cases {
            check_full(&format!("{server}{key}"), expected);
        }
    }
}
