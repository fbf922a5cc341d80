//! `[store]`: the embedded store or Redis, and the Redis-only keys.

use super::*;

pub(super) fn store(c: &mut Checker<'_>, raw: Option<&S<super::raw::RawStore>>) -> Store {
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

#[cfg(test)]
mod tests {
    use super::super::check::check;

    #[test]
    fn store_rules() {
        let cases: &[(&str, &[&str])] = &[
            ("[store]\nbackend = \"embedded\"\n", &[]),
            ("[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nack_replicas = 1\n", &[]),
            ("[store]\nbackend = \"mongo\"\n", &["unknown store backend `mongo`"]),
            ("[store]\nbackend = \"redis\"\n", &["needs `url` or `url_env`"]),
            ("[store]\nbackend = \"redis\"\nurl = \"http://x\"\n", &["must start with redis://"]),
            ("[store]\nack_replicas = 1\n", &["`ack_replicas` applies to backend = \"redis\" only"]),
            ("[store]\nbackend = \"redis\"\nurl = \"redis://x:1\"\nack_replicas = 99\n", &["`ack_replicas` must be"]),
            (
                "[store]\nbackend = \"redis\"\nurl = \"redis://x:1\"\non_unavailable = \"pray\"\n",
                &["unknown `on_unavailable`"],
            ),
        ];
        for (rest, expected) in cases {
            check(rest, expected);
        }
    }
}
