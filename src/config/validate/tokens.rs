//! `[tokens]`, `[[tokens.keys]]` and `[[tokens.trusted]]`: issuer, audience,
//! lifetimes, our keys (each pinned to one algorithm), trusted issuers.

use super::*;

pub(super) fn tokens(c: &mut Checker<'_>, raw: Option<&S<super::raw::RawTokens>>) -> Tokens {
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

pub(super) fn algorithm(c: &mut Checker<'_>, s: &S<String>) -> Option<Algorithm> {
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

pub(super) fn key(c: &mut Checker<'_>, k: &S<RawKey>) -> Option<KeySpec> {
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

pub(super) fn trusted_issuer(c: &mut Checker<'_>, t: &S<RawTrusted>) -> Option<TrustedIssuer> {
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

#[cfg(test)]
mod tests {
    use super::super::check::check;

    #[test]
    fn token_rules() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            (
                "[[tokens.keys]]\nkid = \"k\"\nalgorithm = \"HS256\"\nsecret = \"tttttttttttttttttttttttttttttttt\"\n",
                &["duplicate key id `k`"],
            ),
            ("[[tokens.keys]]\nkid = \"n\"\nalgorithm = \"none\"\n", &["algorithm `none` is never accepted"]),
            ("[[tokens.keys]]\nkid = \"h\"\nalgorithm = \"HS256\"\nsecret = \"short\"\n", &["shorter than 32 bytes"]),
            ("[[tokens.keys]]\nalgorithm = \"HS256\"\n", &["needs a `kid`"]),
            ("[tokens]\nleeway = \"10m\"\n", &["`leeway` above 5m"]),
            ("[tokens]\nsigning_key = \"nope\"\n", &["names no [[tokens.keys]] entry"]),
            ("[[tokens.trusted]]\nissuer = \"x\"\n", &["needs `issuer`, `jwks_url` and `audience`"]),
            (
                "[[tokens.trusted]]\nissuer = \"https://idp\"\njwks_url = \"http://idp.example.com/jwks\"\naudience = \"api\"\n",
                &["`jwks_url` must be an https:// URL"],
            ),
            (
                "[[tokens.trusted]]\nissuer = \"https://idp\"\njwks_url = \"https://idp/jwks\"\naudience = \"api\"\nrequire_typ = \"\"\n",
                &["`require_typ` must be a media type"],
            ),
        ];
        for (rest, expected) in cases {
            check(rest, expected);
        }
    }
}
