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

use std::fmt;

use serde::de::{MapAccess, Visitor};

use super::json::{self, Member, MemberSeed, Skip, Text};

/// The members of our own tokens' payload that verification reads.
#[derive(Debug, Default)]
pub(super) struct Payload<'a> {
    pub iss: Member<'a>,
    pub sub: Member<'a>,
    pub aud: Member<'a>,
    pub exp: Member<'a>,
    pub nbf: Member<'a>,
    pub iat: Member<'a>,
    pub jti: Member<'a>,
    pub roles: Member<'a>,
    pub scope: Member<'a>,
    pub scp: Member<'a>,
    /// The login session, read on every request (the denylist's `sid` entries).
    pub sid: Member<'a>,
}

impl<'a> Payload<'a> {
    /// `None` when `json` is not what a claims map would be parsed from.
    pub fn parse(json: &'a [u8]) -> Option<Payload<'a>> {
        json::object(json, PayloadVisitor)
    }

    fn slot(&mut self, name: &str) -> Option<&mut Member<'a>> {
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
                Some(slot) => *slot = map.next_value_seed(MemberSeed)?,
                None => map.next_value_seed(Skip)?,
            }
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

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
            assert_eq!(*claim, Member::of(map.get(name)), "{name}");
        }
        assert_eq!(payload.sub.as_str(), Some("bob"), "the last of a repeated member");
        assert_eq!(payload.nbf.as_f64(), Some(-1.0));
        assert_eq!(payload.aud, Member::List { strings: vec!["x".into()], only_strings: false });
    }
}
