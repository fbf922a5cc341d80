//! Where the token comes from: the `Authorization: Bearer` header.
//!
//! Owns the syntax of RFC 6750 §2.1: one `Authorization` header, the scheme
//! `Bearer` (case-insensitive), exactly one space, then a b64token. Anything
//! else is a malformed credential, never "no credential": a client that sent
//! something is not treated as anonymous. (Cookie mode adds a second source
//! in the token-service work; a request with a header never falls back.)

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::verify::TokenError;

/// The bearer token, `None` when no `Authorization` header was sent. With
/// `bare` (`[tokens] accept_bare_token`), a value without a scheme that is
/// a compact JWS (`xxx.yyy.zzz` in base64url) is read as one too: the way
/// hand-written PyJWT decorators read the header.
pub fn token(headers: &HeaderMap, bare: bool) -> Result<Option<&str>, TokenError> {
    if bare
        && let Some(value) = headers.get(AUTHORIZATION)
        && headers.get_all(AUTHORIZATION).iter().count() == 1
    {
        let v = value.as_bytes();
        let base64url = |part: &[u8]| {
            !part.is_empty() && part.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        };
        if !v.contains(&b' ') && v.split(|b| *b == b'.').count() == 3 && v.split(|b| *b == b'.').all(base64url) {
            return std::str::from_utf8(v)
                .map(Some)
                .map_err(|_| TokenError::Malformed("non-ASCII Authorization header"));
        }
    }
    bearer_token(headers)
}

/// The bearer token, `None` when no `Authorization` header was sent.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, TokenError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(TokenError::Malformed("more than one Authorization header"));
    }
    // Bytes, not `to_str`: the b64token check below admits only ASCII, so
    // one pass over the token validates it (the header is ~300 bytes).
    let value = value.as_bytes();
    let space = value.iter().position(|b| *b == b' ').ok_or(TokenError::Malformed("no Bearer scheme"))?;
    let (scheme, token) = (&value[..space], &value[space + 1..]);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(TokenError::Malformed("not a Bearer credential"));
    }
    if !is_b64token(token) {
        return Err(TokenError::Malformed("bearer token has characters outside b64token"));
    }
    std::str::from_utf8(token).map(Some).map_err(|_| TokenError::Malformed("non-ASCII Authorization header"))
}

/// The b64token alphabet of RFC 6750 §2.1, as comparisons the compiler can
/// run on many bytes at once.
fn in_b64token(b: u8) -> bool {
    let lower = b | 0x20;
    lower.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

/// RFC 6750 §2.1: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
/// Checked 32 bytes at a time without a branch per byte (it ran at 11
/// instructions a byte with one).
fn is_b64token(token: &[u8]) -> bool {
    let end = token.iter().rposition(|b| *b != b'=').map_or(0, |i| i + 1);
    let body = &token[..end];
    !body.is_empty() && body.chunks(32).all(|chunk| chunk.iter().fold(true, |ok, b| ok & in_b64token(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_jws_only_when_allowed() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, http::HeaderValue::from_static("aGVhZA.cGF5bG9hZA.c2ln"));
        assert_eq!(token(&headers, true).unwrap(), Some("aGVhZA.cGF5bG9hZA.c2ln"));
        assert!(token(&headers, false).is_err(), "strict RFC 6750 without the setting");
        headers.insert(AUTHORIZATION, http::HeaderValue::from_static("Basic dXNlcjpwdw=="));
        assert!(token(&headers, true).is_err(), "another scheme is still refused");
        headers.insert(AUTHORIZATION, http::HeaderValue::from_static("a.b"));
        assert!(token(&headers, true).is_err(), "two parts is no JWS");
    }

    fn extract(values: &[&[u8]]) -> Result<Option<String>, ()> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(AUTHORIZATION, http::HeaderValue::from_bytes(v).unwrap());
        }
        bearer_token(&headers).map(|t| t.map(str::to_owned)).map_err(|_| ())
    }

    #[test]
    fn the_alphabet_is_rfc_6750s_for_every_byte() {
        for b in 0..=255u8 {
            let rfc = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            assert_eq!(in_b64token(b), rfc, "byte {b:#04x}");
        }
    }

    #[test]
    fn accepts_only_one_well_formed_bearer() {
        assert_eq!(extract(&[]), Ok(None));
        assert_eq!(extract(&[b"Bearer a.b.c"]), Ok(Some("a.b.c".into())));
        assert_eq!(extract(&[b"bearer a.b.c"]), Ok(Some("a.b.c".into())));
        assert_eq!(extract(&[b"BEARER a.b-c_d"]), Ok(Some("a.b-c_d".into())));
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer  a.b.c",
            b"Bearer a b",
            b"Bearer,a.b.c",
            b"Basic dXNlcjpwYXNz",
            b"Bearer a.b.c ",
            b"Bearer \ta.b.c",
            b"Bearer a.b.c\xff",
            b"Bearer =",
        ] {
            assert_eq!(extract(&[bad]), Err(()), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(extract(&[b"Bearer a.b.c", b"Bearer a.b.c"]), Err(()));
    }
}
