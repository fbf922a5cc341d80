//! The JOSE header (RFC 7515 §4), read without a map: the members a check
//! looks at, borrowed from the decoded JSON, and whether each refused
//! member is present. Every other member is parsed as a map would parse it
//! (`json.rs`) and dropped.
//!
//! One of these members repeated is refused with the whole header: RFC 7515 §4 lets a
//! parser either refuse duplicates or keep the last, and refusing leaves
//! no doubt about which `alg` or `kid` was meant. A member that is not a
//! string where one is expected (`"kid": null`, `"typ": 1`) is kept apart
//! from an absent one: the checks refuse it, never read it as missing.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};

use super::json::{self, Member, MemberSeed, Skip, Text};

/// The header's members that the checks read.
#[derive(Default)]
pub(super) struct JoseHeader<'a> {
    pub alg: Member<'a>,
    pub typ: Member<'a>,
    pub kid: Member<'a>,
    /// RFC 7515 §4.1.11: we understand no extension.
    pub crit: bool,
    /// RFC 7797: an unencoded payload.
    pub b64: bool,
    /// Keys embedded in the token or fetched from where it says.
    pub jku: bool,
    pub jwk: bool,
    pub x5u: bool,
    pub x5c: bool,
    /// JWE's members.
    pub enc: bool,
    pub zip: bool,
}

impl<'a> JoseHeader<'a> {
    /// The header in `json`, or `None` when it is not a JSON object with
    /// each of these members once, or a map would refuse it.
    pub fn parse(json: &'a [u8]) -> Option<JoseHeader<'a>> {
        json::object(json, HeaderVisitor)
    }
}

/// The members read, in the order of `HeaderVisitor`'s `seen` bits.
const NAMES: [&str; 11] = ["alg", "typ", "kid", "crit", "b64", "jku", "jwk", "x5u", "x5c", "enc", "zip"];

struct HeaderVisitor;

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = JoseHeader<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JoseHeader<'de>, A::Error> {
        let mut header = JoseHeader::default();
        let mut seen = 0u16;
        while let Some(name) = map.next_key_seed(Text)? {
            let Some(bit) = NAMES.iter().position(|n| *n == name) else {
                map.next_value_seed(Skip)?;
                continue;
            };
            if seen & (1 << bit) != 0 {
                return Err(de::Error::custom("a repeated member"));
            }
            seen |= 1 << bit;
            match &*name {
                "alg" => header.alg = map.next_value_seed(MemberSeed)?,
                "typ" => header.typ = map.next_value_seed(MemberSeed)?,
                "kid" => header.kid = map.next_value_seed(MemberSeed)?,
                refused => {
                    // Refused whatever the value, `null` included.
                    map.next_value_seed(Skip)?;
                    *match refused {
                        "crit" => &mut header.crit,
                        "b64" => &mut header.b64,
                        "jku" => &mut header.jku,
                        "jwk" => &mut header.jwk,
                        "x5u" => &mut header.x5u,
                        "x5c" => &mut header.x5c,
                        "enc" => &mut header.enc,
                        // `NAMES` holds no other.
                        _ => &mut header.zip,
                    } = true;
                }
            }
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn members_are_read_as_sent_and_the_rest_skipped() {
        let json = br#"{"alg":"ES256","typ":"at+jwt","kid":"k\u0031","x":{"y":[1,null]},"cty":"JWT"}"#;
        let h = JoseHeader::parse(json).expect("a header");
        assert_eq!(h.alg, Member::Str(Cow::Borrowed("ES256")));
        assert!(matches!(h.alg, Member::Str(Cow::Borrowed(_))), "no copy without escapes");
        assert_eq!(h.typ.as_str(), Some("at+jwt"));
        assert_eq!(h.kid.as_str(), Some("k1"), "escapes are decoded");
        assert!(!(h.crit || h.b64 || h.jku || h.jwk || h.x5u || h.x5c || h.enc || h.zip));
    }

    #[test]
    fn a_value_that_is_not_a_string_is_not_an_absent_one() {
        for value in ["null", "1", "true", "[]", "{}", "[\"k\"]"] {
            let json = format!(r#"{{"alg":"ES256","kid":{value},"typ":{value}}}"#);
            let h = JoseHeader::parse(json.as_bytes()).expect("a header");
            for member in [&h.kid, &h.typ] {
                assert!(member.as_str().is_none() && *member != Member::Absent, "{value}");
            }
        }
        let h = JoseHeader::parse(br#"{"alg":"ES256"}"#).expect("a header");
        assert_eq!((h.kid, h.typ), (Member::Absent, Member::Absent));
    }

    #[test]
    fn refused_members_count_whatever_their_value() {
        for name in ["crit", "b64", "jku", "jwk", "x5u", "x5c", "enc", "zip"] {
            for value in ["null", "false", "[]", "\"x\""] {
                let json = format!(r#"{{"alg":"ES256","{name}":{value}}}"#);
                let h = JoseHeader::parse(json.as_bytes()).expect("a header");
                let flags = [h.crit, h.b64, h.jku, h.jwk, h.x5u, h.x5c, h.enc, h.zip];
                assert_eq!(flags.iter().filter(|f| **f).count(), 1, "{name}: {value}");
            }
        }
    }

    #[test]
    fn a_repeated_member_or_a_header_that_is_no_object_is_refused() {
        for json in [
            r#"{"alg":"HS256","alg":"ES256"}"#,
            r#"{"kid":"a","kid":"b"}"#,
            r#"{"crit":[],"crit":[]}"#,
            r#"["alg","ES256"]"#,
            r#" ["ES256","at+jwt","k"]"#,
            r#""ES256""#,
            r#"{"alg":"ES256""#,
            r#"{"alg":"ES256"} x"#,
            r#"{"alg":"ES256","x":{"y":1e400}}"#,
            r#"{"alg":"ES256","x":"\udc00"}"#,
        ] {
            assert!(JoseHeader::parse(json.as_bytes()).is_none(), "{json}");
        }
    }
}
