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
    let mut issuers = HashSet::from([Some(issuer.clone())]);
    for t in &raw_ref.trusted {
        if let Some(ti) = trusted_issuer(c, t) {
            if !issuers.insert(ti.issuer.clone()) {
                match &ti.issuer {
                    Some(i) => c.error(t.span(), format!("issuer `{i}` is configured twice")),
                    None => {
                        c.error(t.span(), "only one [[tokens.trusted]] may leave out `issuer` (tokens without `iss`)")
                    }
                }
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
        accept_bare_token: raw_ref.accept_bare_token.unwrap_or(false),
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
    let path = |c: &mut Checker<'_>, p: &S<String>| c.path(p);
    let sources: Vec<(&str, Option<TrustedKeys>)> = [
        ("jwks_url", r.jwks_url.as_ref().map(|u| jwks_url(c, u))),
        ("jwks_file", r.jwks_file.as_ref().map(|p| Some(TrustedKeys::JwksFile(path(c, p))))),
        ("secret_file", r.secret_file.as_ref().map(|p| Some(TrustedKeys::Secret(SecretSource::File(path(c, p)))))),
        (
            "secret_env",
            r.secret_env.as_ref().map(|e| Some(TrustedKeys::Secret(SecretSource::Env(e.get_ref().clone())))),
        ),
        ("public_key_file", r.public_key_file.as_ref().map(|p| Some(TrustedKeys::PublicKeyFile(path(c, p))))),
    ]
    .into_iter()
    .filter_map(|(name, keys)| keys.map(|k| (name, k)))
    .collect();
    let keys = match sources.as_slice() {
        [(_, keys)] => keys.clone(),
        [] => {
            c.error(t.span(), "[[tokens.trusted]] needs its keys: `jwks_url`, `jwks_file`, `secret_file`, `secret_env` or `public_key_file`");
            return None;
        }
        many => {
            let names: Vec<&str> = many.iter().map(|(n, _)| *n).collect();
            c.error(t.span(), format!("[[tokens.trusted]] takes one key source, not {}", names.join(" and ")));
            return None;
        }
    };
    let fetched = r.jwks_url.is_some();
    let issuer = match &r.issuer {
        Some(i) if i.get_ref().is_empty() => {
            c.error(i.span(), "`issuer` must not be empty (leave it out for tokens without `iss`)");
            None
        }
        Some(i) => Some(i.get_ref().clone()),
        None if fetched => {
            c.error(t.span(), "[[tokens.trusted]] with `jwks_url` needs `issuer` and `audience`");
            None
        }
        None => None,
    };
    let audience = match &r.audience {
        Some(aud) => c.audience(aud),
        // Said once, with the issuer, when both are missing.
        None if fetched && r.issuer.is_some() => {
            c.error(t.span(), "[[tokens.trusted]] with `jwks_url` needs `issuer` and `audience`");
            Vec::new()
        }
        None => Vec::new(),
    };
    let mut algorithms = Vec::new();
    for a in r.algorithms.iter().flatten() {
        if let Some(alg) = algorithm(c, a) {
            algorithms.push(alg);
        }
    }
    if !fetched && r.algorithms.as_ref().is_none_or(Vec::is_empty) {
        c.error(t.span(), "[[tokens.trusted]] with static keys needs `algorithms` (they pin what the keys may verify)");
    }
    let secret = matches!(keys, Some(TrustedKeys::Secret(_)));
    let hmac = |a: &Algorithm| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    if let Some(a) = &r.algorithms
        && ((secret && !algorithms.iter().all(hmac)) || (!secret && !fetched && algorithms.iter().any(hmac)))
    {
        let span = a.first().map_or_else(|| t.span(), S::span);
        c.error(span, "`algorithms` must be HS256/384/512 with a secret, and never HMAC with a public key");
    }
    let claim_name = |c: &mut Checker<'_>, v: &Option<S<String>>, key: &str, default: &str| match v {
        None => default.to_owned(),
        Some(s) if s.get_ref().is_empty() => {
            c.error(s.span(), format!("`{key}` must be a claim name or a dotted path"));
            default.to_owned()
        }
        Some(s) => s.get_ref().clone(),
    };
    let subject_claim = claim_name(c, &r.subject_claim, "subject_claim", "sub");
    let roles_claim = claim_name(c, &r.roles_claim, "roles_claim", "roles");
    let mut required_claims = Vec::new();
    if let Some(table) = &r.required_claims {
        for (k, v) in table.get_ref() {
            match serde_json::to_value(v) {
                Ok(value) if !value.is_object() && !value.is_array() => required_claims.push((k.clone(), value)),
                _ => c.error(table.span(), format!("`required_claims.{k}` must be a string, number or boolean")),
            }
        }
    }
    let cookie = match (&r.cookie, &r.csrf_header, &r.csrf_claim) {
        (None, None, None) => None,
        (Some(name), header, claim) => {
            let csrf_header = match header {
                Some(h) => c.header_name(h, "csrf_header"),
                None => Some(http::HeaderName::from_static("x-csrf-token")),
            };
            Some(TrustedCookie {
                name: name.get_ref().clone(),
                csrf_header: csrf_header.unwrap_or(http::HeaderName::from_static("x-csrf-token")),
                csrf_claim: claim.as_ref().map_or_else(|| "csrf".to_owned(), |c| c.get_ref().clone()),
            })
        }
        (None, Some(s), _) | (None, None, Some(s)) => {
            c.error(s.span(), "`csrf_header` and `csrf_claim` go with `cookie`");
            None
        }
    };
    Some(TrustedIssuer {
        issuer,
        keys: keys?,
        audience,
        algorithms,
        subject_claim,
        roles_claim,
        required_claims,
        cookie,
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

fn jwks_url(c: &mut Checker<'_>, url: &S<String>) -> Option<TrustedKeys> {
    match http::Uri::from_str(url.get_ref()) {
        Ok(u) if u.scheme_str() == Some("https") && u.host().is_some() => Some(TrustedKeys::JwksUrl(u)),
        Ok(u) if u.scheme_str() == Some("http") && u.host().is_some_and(is_loopback_host) => {
            Some(TrustedKeys::JwksUrl(u))
        }
        _ => {
            c.error(url.span(), "`jwks_url` must be an https:// URL (http:// only to a loopback address)");
            None
        }
    }
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
            ("[[tokens.trusted]]\nissuer = \"x\"\n", &["needs its keys"]),
            ("[[tokens.trusted]]\njwks_url = \"https://idp/jwks\"\n", &["needs `issuer` and `audience`"]),
            ("[[tokens.trusted]]\nsecret_env = \"S\"\n", &["needs `algorithms`"]),
            (
                "[[tokens.trusted]]\nsecret_env = \"S\"\nalgorithms = [\"RS256\"]\n",
                &["must be HS256/384/512 with a secret"],
            ),
            (
                "[[tokens.trusted]]\nsecret_env = \"S\"\njwks_file = \"j.json\"\nalgorithms = [\"HS256\"]\n",
                &["takes one key source"],
            ),
            (
                "[[tokens.trusted]]\nsecret_env = \"S\"\nalgorithms = [\"HS256\"]\n[[tokens.trusted]]\nsecret_env = \"T\"\nalgorithms = [\"HS256\"]\n",
                &["only one [[tokens.trusted]] may leave out `issuer`"],
            ),
            (
                "[[tokens.trusted]]\nsecret_env = \"S\"\nalgorithms = [\"HS256\"]\nsubject_claim = \"user\"\nrequired_claims = { type = \"access\" }\ncookie = \"access_token_cookie\"\ncsrf_header = \"X-CSRF-TOKEN\"\n[tokens]\naccept_bare_token = true\n",
                &[],
            ),
            (
                "[[tokens.trusted]]\nsecret_env = \"S\"\nalgorithms = [\"HS256\"]\ncsrf_claim = \"csrf\"\n",
                &["go with `cookie`"],
            ),
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
