//! Our own token's payload, read without building a map: the claims the
//! checks and the identity need, borrowed from the decoded bytes.
//!
//! `Payload::parse` accepts and refuses exactly the JSON that
//! `serde_json::from_slice::<Map<String, Value>>` does: an object, every
//! member's value parsed as a `Value` would be (a number out of range such
//! as `1e400` refuses the token even in a claim no one reads), the last of
//! a repeated member kept. It only keeps less: the members named below; the
//! rest are checked and dropped. The map itself is built from the same
//! bytes when something asks for a claim by name (`Identity::claims`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One claim's value, as far as the checks care.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) enum Claim<'a> {
    /// The member is not there.
    #[default]
    Absent,
    Null,
    Str(Cow<'a, str>),
    /// Any JSON number (`Value::as_f64`).
    Number(f64),
    /// An array: its strings, and whether it held nothing else.
    List {
        strings: Vec<Cow<'a, str>>,
        only_strings: bool,
    },
    /// A boolean or an object.
    Other,
}

impl<'a> Claim<'a> {
    /// A claim of a map already parsed (a trusted issuer's tokens).
    pub fn of(value: Option<&'a Value>) -> Claim<'a> {
        match value {
            None => Claim::Absent,
            Some(Value::Null) => Claim::Null,
            Some(Value::String(s)) => Claim::Str(Cow::Borrowed(s)),
            Some(Value::Number(n)) => n.as_f64().map_or(Claim::Other, Claim::Number),
            Some(Value::Array(list)) => Claim::List {
                strings: list.iter().filter_map(Value::as_str).map(Cow::Borrowed).collect(),
                only_strings: list.iter().all(Value::is_string),
            },
            Some(Value::Bool(_) | Value::Object(_)) => Claim::Other,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Claim::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Claim::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// The members of our own tokens' payload that verification reads.
#[derive(Debug, Default)]
pub(super) struct Payload<'a> {
    pub iss: Claim<'a>,
    pub sub: Claim<'a>,
    pub aud: Claim<'a>,
    pub exp: Claim<'a>,
    pub nbf: Claim<'a>,
    pub iat: Claim<'a>,
    pub jti: Claim<'a>,
    pub roles: Claim<'a>,
    pub scope: Claim<'a>,
    pub scp: Claim<'a>,
    /// The login session, read on every request (the denylist's `sid` entries).
    pub sid: Claim<'a>,
}

impl<'a> Payload<'a> {
    /// `None` when `json` is not what a claims map would be parsed from.
    pub fn parse(json: &'a [u8]) -> Option<Payload<'a>> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let payload = de.deserialize_map(PayloadVisitor).ok()?;
        de.end().ok()?;
        Some(payload)
    }

    fn slot(&mut self, name: &str) -> Option<&mut Claim<'a>> {
        Some(match name {
            "iss" => &mut self.iss,
            "sub" => &mut self.sub,
            "aud" => &mut self.aud,
            "exp" => &mut self.exp,
            "nbf" => &mut self.nbf,
            "iat" => &mut self.iat,
            "jti" => &mut self.jti,
            "roles" => &mut self.roles,
            "scope" => &mut self.scope,
            "scp" => &mut self.scp,
            "sid" => &mut self.sid,
            _ => return None,
        })
    }
}

struct PayloadVisitor;

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = Payload<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Payload<'de>, A::Error> {
        let mut payload = Payload::default();
        while let Some(name) = map.next_key_seed(Text)? {
            match payload.slot(&name) {
                // A repeated member: the last one counts, as in the map.
                Some(slot) => *slot = map.next_value_seed(ClaimSeed)?,
                None => map.next_value_seed(Skip)?,
            }
        }
        Ok(payload)
    }
}

/// A string, borrowed unless it had escapes.
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}

/// A claim the checks read.
struct ClaimSeed;

impl<'de> DeserializeSeed<'de> for ClaimSeed {
    type Value = Claim<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ClaimSeed {
    type Value = Claim<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Claim::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Claim::Other)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Claim::Number(n as f64))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Claim::Number(n as f64))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        Ok(Claim::Number(n))
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Claim::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Claim::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (mut strings, mut only_strings) = (Vec::new(), true);
        while let Some(element) = seq.next_element_seed(ClaimSeed)? {
            match element {
                Claim::Str(s) => strings.push(s),
                _ => only_strings = false,
            }
        }
        Ok(Claim::List { strings, only_strings })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Skip.visit_map(map).map(|()| Claim::Other)
    }
}

/// Any JSON value, parsed as a `Value` would be and dropped. Unlike
/// `IgnoredAny`, which only scans, it refuses what `Value` refuses (a
/// number out of range).
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    /// Accepted and refused exactly as the claims map is.
    #[test]
    fn accepts_what_the_map_accepts_and_nothing_else() {
        let cases: &[&str] = &[
            r#"{"sub":"a","exp":1}"#,
            r#"{}"#,
            r#" {"sub":"a"} "#,
            r#"{"x":1e400}"#,
            r#"{"x":[1,{"y":-1e400}]}"#,
            r#"{"exp":1e400}"#,
            r#"{"x":1e308,"y":-9223372036854775809,"z":18446744073709551616}"#,
            r#"{"x":"\ud800"}"#,
            r#"{"x":"\ud83d\ude00","sub":"\u0061"}"#,
            r#"{"x":"\q"}"#,
            r#"[{"sub":"a"}]"#,
            r#""sub""#,
            r#"null"#,
            r#"{"sub":"a"} x"#,
            r#"{"sub":"a",}"#,
            r#"{"sub":"a""#,
            r#"{"sub":"a","sub":"b"}"#,
            r#"{"roles":["a",1,null],"aud":["x"],"scp":"a b","nested":{"a":[true,false,null]}}"#,
        ];
        for case in cases {
            let map = serde_json::from_str::<Map<String, Value>>(case).is_ok();
            assert_eq!(Payload::parse(case.as_bytes()).is_some(), map, "{case}");
        }
        let deep = format!("{{\"x\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert!(serde_json::from_str::<Map<String, Value>>(&deep).is_err());
        assert!(Payload::parse(deep.as_bytes()).is_none(), "nesting beyond serde_json's limit");
    }

    #[test]
    fn reads_the_claims_as_the_map_would() {
        let json = r#"{"iss":"me","sub":"\u0061lice","aud":["x",2],"exp":10,"nbf":-1,"iat":1.5,
            "jti":"j","roles":["a","b"],"scope":null,"scp":["r",true],"sid":"s1","other":{"sub":"no"},"sub":"bob"}"#;
        let payload = Payload::parse(json.as_bytes()).expect("parses");
        let map: Map<String, Value> = serde_json::from_str(json).expect("map");
        for (name, claim) in [
            ("iss", &payload.iss),
            ("sub", &payload.sub),
            ("aud", &payload.aud),
            ("exp", &payload.exp),
            ("nbf", &payload.nbf),
            ("iat", &payload.iat),
            ("jti", &payload.jti),
            ("roles", &payload.roles),
            ("scope", &payload.scope),
            ("scp", &payload.scp),
            ("sid", &payload.sid),
        ] {
            assert_eq!(*claim, Claim::of(map.get(name)), "{name}");
        }
        assert_eq!(payload.sub.as_str(), Some("bob"), "the last of a repeated member");
        assert_eq!(payload.nbf.as_f64(), Some(-1.0));
        assert_eq!(payload.aud, Claim::List { strings: vec!["x".into()], only_strings: false });
    }
}
