//! Reading JSON the way a `serde_json::Value` would, without building one:
//! a member's value as far as the checks care (`Member`), and the seeds
//! that read it. The JOSE header (`header.rs`) and our payload
//! (`payload.rs`) are both read with them, so both accept and refuse the
//! same text a map would: a number out of range (`1e400`) or an unpaired
//! surrogate anywhere refuses, even in a member no check reads.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The object in `json` read by `visitor`, or `None` when it is not one
/// JSON object with nothing but whitespace after it.
pub(super) fn object<'de, V: Visitor<'de>>(json: &'de [u8], visitor: V) -> Option<V::Value> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let value = de.deserialize_map(visitor).ok()?;
    de.end().ok()?;
    Some(value)
}

/// One member's value (a claim, a header parameter), as far as the checks care.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) enum Member<'a> {
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

impl<'a> Member<'a> {
    /// A member of a map already parsed (a trusted issuer's claims, `explain`'s header).
    pub fn of(value: Option<&'a Value>) -> Member<'a> {
        match value {
            None => Member::Absent,
            Some(Value::Null) => Member::Null,
            Some(Value::String(s)) => Member::Str(Cow::Borrowed(s)),
            Some(Value::Number(n)) => n.as_f64().map_or(Member::Other, Member::Number),
            Some(Value::Array(list)) => Member::List {
                strings: list.iter().filter_map(Value::as_str).map(Cow::Borrowed).collect(),
                only_strings: list.iter().all(Value::is_string),
            },
            Some(Value::Bool(_) | Value::Object(_)) => Member::Other,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Member::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Member::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// A string, borrowed unless it had escapes.
pub(super) struct Text;

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

/// A member the checks read.
pub(super) struct MemberSeed;

impl<'de> DeserializeSeed<'de> for MemberSeed {
    type Value = Member<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MemberSeed {
    type Value = Member<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Member::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Member::Other)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Member::Number(n as f64))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Member::Number(n as f64))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
        Ok(Member::Number(n))
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Member::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (mut strings, mut only_strings) = (Vec::new(), true);
        while let Some(element) = seq.next_element_seed(MemberSeed)? {
            match element {
                Member::Str(s) => strings.push(s),
                _ => only_strings = false,
            }
        }
        Ok(Member::List { strings, only_strings })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Skip.visit_map(map).map(|()| Member::Other)
    }
}

/// Any JSON value, parsed as a `Value` would be and dropped. Unlike
/// `IgnoredAny`, which only scans, it refuses what `Value` refuses (a
/// number out of range).
pub(super) struct Skip;

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
