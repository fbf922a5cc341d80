//! Cookie mode: where the token comes from when there is no Bearer header,
//! and the double-submit CSRF rule that comes with it.
//!
//! The access and CSRF cookies use the `__Host-` prefix (Secure, Path=/, no
//! Domain: a sibling subdomain cannot set them); the refresh cookie uses
//! `__Secure-` and is scoped to the gateway's endpoint prefix. The CSRF
//! value is also a claim of the signed access token, so a cookie tossed by
//! an attacker together with a matching header still fails (RFC 6265bis,
//! OWASP "signed double submit"). A cookie sent twice is refused.

use http::Method;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::{AuthError, Identity, TokenError};

pub const ACCESS_COOKIE: &str = "__Host-authgate-access";
pub const CSRF_COOKIE: &str = "__Host-authgate-csrf";
pub const REFRESH_COOKIE: &str = "__Secure-authgate-refresh";
pub const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");

/// The value of cookie `name`; an error if it is sent more than once.
pub fn get<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, TokenError> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((n, v)) = pair.trim().split_once('=')
                && n == name
            {
                if found.is_some() {
                    return Err(TokenError::Malformed("a credential cookie is sent twice"));
                }
                found = Some(v);
            }
        }
    }
    Ok(found)
}

/// Removes the gateway's own cookies from what goes upstream.
pub fn strip(headers: &mut HeaderMap) {
    let ours = [ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE];
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !ours.iter().any(|name| pair.split('=').next() == Some(*name)))
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if let Ok(value) = HeaderValue::from_str(&kept.join("; "))
        && !kept.is_empty()
    {
        headers.insert(header::COOKIE, value);
    }
}

/// Headers with which some frameworks let a request claim another method;
/// a safe method carrying one is treated as unsafe (the upstream may obey it).
/// (`_method` travels in POST bodies, which are checked anyway.)
const METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// A cookie-authenticated unsafe request must carry `X-CSRF-Token` equal to
/// the CSRF cookie and to the token's `csrf` claim.
pub fn check_csrf(method: &Method, headers: &HeaderMap, identity: &Identity) -> Result<(), AuthError> {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if safe && !METHOD_OVERRIDES.iter().any(|h| headers.contains_key(h)) {
        return Ok(());
    }
    let mut sent = headers.get_all(CSRF_HEADER).iter();
    let header = match (sent.next(), sent.next()) {
        (Some(v), None) => v.as_bytes(),
        _ => return Err(AuthError::CsrfFailed),
    };
    let cookie = get(headers, CSRF_COOKIE).ok().flatten().ok_or(AuthError::CsrfFailed)?;
    let claim = identity.claims.get("csrf").and_then(|c| c.as_str()).ok_or(AuthError::CsrfFailed)?;
    let equal = |a: &[u8], b: &[u8]| aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok();
    if !claim.is_empty() && equal(header, cookie.as_bytes()) && equal(cookie.as_bytes(), claim.as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::CsrfFailed)
    }
}

/// A trusted app's double submit (Flask-JWT-Extended): on unsafe methods,
/// `header` must be sent once and equal the token's `claim`.
pub fn check_double_submit(
    method: &Method,
    headers: &HeaderMap,
    identity: &Identity,
    header: &HeaderName,
    claim: &str,
) -> Result<(), AuthError> {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if safe && !METHOD_OVERRIDES.iter().any(|h| headers.contains_key(h)) {
        return Ok(());
    }
    let mut sent = headers.get_all(header).iter();
    let value = match (sent.next(), sent.next()) {
        (Some(v), None) => v.as_bytes(),
        _ => return Err(AuthError::CsrfFailed),
    };
    let expected = identity.claims.get(claim).and_then(|c| c.as_str()).ok_or(AuthError::CsrfFailed)?;
    let equal = aws_lc_rs::constant_time::verify_slices_are_equal(value, expected.as_bytes()).is_ok();
    if !expected.is_empty() && equal { Ok(()) } else { Err(AuthError::CsrfFailed) }
}

/// A `Set-Cookie` value; `max_age` 0 clears the cookie.
pub fn set_cookie(name: &str, value: &str, path: &str, http_only: bool, max_age: u64) -> Option<HeaderValue> {
    let http_only = if http_only { "; HttpOnly" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; Secure{http_only}; SameSite=Strict"
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(header::COOKIE, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn reads_one_cookie_and_refuses_two() {
        let h = headers(&["a=1; __Host-authgate-access=tok; b=2"]);
        assert_eq!(get(&h, ACCESS_COOKIE).unwrap(), Some("tok"));
        assert_eq!(get(&h, CSRF_COOKIE).unwrap(), None);
        let tossed = headers(&["__Host-authgate-csrf=x", "__Host-authgate-csrf=y"]);
        assert!(get(&tossed, CSRF_COOKIE).is_err());
    }

    #[test]
    fn our_cookies_never_go_upstream() {
        let mut h =
            headers(&["a=1; __Host-authgate-access=tok", "__Secure-authgate-refresh=r; b=2; __Host-authgate-csrf=c"]);
        strip(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(h[header::COOKIE], "a=1; b=2");
        let mut only_ours = headers(&["__Host-authgate-access=tok"]);
        strip(&mut only_ours);
        assert!(only_ours.get(header::COOKIE).is_none());
    }
}
