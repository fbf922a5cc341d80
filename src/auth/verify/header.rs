//! The JOSE header (RFC 7515 §4), read without a map: the members a check
//! looks at, borrowed from the decoded JSON, and whether each refused
//! member is present. Every other member is skipped unread.
//!
//! A member repeated is refused with the whole header: RFC 7515 §4 lets a
//! parser either refuse duplicates or keep the last, and refusing leaves
//! no doubt about which `alg` or `kid` was meant. A member that is not a
//! string where one is expected (`"kid": null`, `"typ": 1`) is kept apart
//! from an absent one: the checks refuse it, never read it as missing.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, de};
use serde_json::Value;

/// The header's members that the checks read.
#[derive(Deserialize)]
pub(super) struct JoseHeader<'a> {
    #[serde(default, borrow)]
    pub alg: Member<'a>,
    #[serde(default, borrow)]
    pub typ: Member<'a>,
    #[serde(default, borrow)]
    pub kid: Member<'a>,
    /// RFC 7515 §4.1.11: we understand no extension.
    #[serde(default, deserialize_with = "present")]
    pub crit: bool,
    /// RFC 7797: an unencoded payload.
    #[serde(default, deserialize_with = "present")]
    pub b64: bool,
    /// Keys embedded in the token or fetched from where it says.
    #[serde(default, deserialize_with = "present")]
    pub jku: bool,
    #[serde(default, deserialize_with = "present")]
    pub jwk: bool,
    #[serde(default, deserialize_with = "present")]
    pub x5u: bool,
    #[serde(default, deserialize_with = "present")]
    pub x5c: bool,
    /// JWE's members.
    #[serde(default, deserialize_with = "present")]
    pub enc: bool,
    #[serde(default, deserialize_with = "present")]
    pub zip: bool,
}

impl<'a> JoseHeader<'a> {
    /// The header in `json`, or `None` when it is not a JSON object with
    /// each member once. (A derived struct would also take an array, its
    /// members by position: only an object is read.)
    pub fn parse(json: &'a [u8]) -> Option<JoseHeader<'a>> {
        if json.trim_ascii_start().first() != Some(&b'{') {
            return None;
        }
        serde_json::from_slice(json).ok()
    }
}

/// One header member as sent.
#[derive(Debug, Default, PartialEq)]
pub(super) enum Member<'a> {
    #[default]
    Absent,
    /// A string (borrowed unless it had escapes).
    Str(Cow<'a, str>),
    /// Any other JSON value, `null` included.
    NotString,
}

impl Member<'_> {
    /// The string, when the member is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Member::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The same reading of a member of a parsed map (`explain`'s header).
    pub fn of(value: Option<&Value>) -> Member<'_> {
        match value {
            None => Member::Absent,
            Some(Value::String(s)) => Member::Str(Cow::Borrowed(s)),
            Some(_) => Member::NotString,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Member<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MemberVisitor(PhantomData))
    }
}

struct MemberVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for MemberVisitor<'a> {
    type Value = Member<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Member<'a>, E> {
        Ok(Member::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Member<'a>, E> {
        Ok(Member::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Member<'a>, E> {
        Ok(Member::Str(Cow::Owned(s)))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Member<'a>, E> {
        Ok(Member::NotString)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Member<'a>, E> {
        Ok(Member::NotString)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Member<'a>, E> {
        Ok(Member::NotString)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Member<'a>, E> {
        Ok(Member::NotString)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Member<'a>, E> {
        Ok(Member::NotString)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Member<'a>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Member::NotString)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Member<'a>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Member::NotString)
    }
}

/// A member that is refused whatever its value (`null` included).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(h.kid, Member::NotString, "{value}");
            assert_eq!(h.typ, Member::NotString, "{value}");
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
        ] {
            assert!(JoseHeader::parse(json.as_bytes()).is_none(), "{json}");
        }
    }
}
