//! `[headers]`: the identity headers and the stripped prefix.

use super::*;

pub(super) fn headers(c: &mut Checker<'_>, raw: Option<&S<super::raw::RawHeaders>>) -> Headers {
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

#[cfg(test)]
mod tests {
    use super::super::check::check;

    #[test]
    fn header_rules() {
        let cases: &[(&str, &[&str])] = &[
            ("[headers]\nuser = \"X-User\"\nclaims = { email = \"X-Email\" }\n", &[]),
            ("[headers]\nuser = \"Authorization\"\n", &["may not be `authorization`"]),
            ("[headers]\nroles = \"bad header\"\n", &["is not a valid header name"]),
            ("[headers]\nclaims = { email = \"X-Forwarded-For\" }\n", &["may not be `x-forwarded-for`"]),
        ];
        for (rest, expected) in cases {
            check(rest, expected);
        }
    }
}
