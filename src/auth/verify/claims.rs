//! Reading claims: the roles claim (one shape for our tokens, two for an
//! issuer's), scopes, and a claim by name or dotted path.

use serde_json::{Map, Value};

use super::TokenError;

/// What a roles claim may look like.
#[derive(Clone, Copy)]
pub(super) enum RolesShape {
    /// A list of strings, or no claim at all (our own tokens; `null` is refused).
    List,
    /// A list of strings, or one space-separated string (IdPs send both).
    ListOrWords,
}

/// The roles in `value` (absent or null: none).
pub(super) fn roles(value: Option<&Value>, shape: RolesShape) -> Result<Vec<String>, TokenError> {
    match (value, shape) {
        (None, _) | (Some(Value::Null), RolesShape::ListOrWords) => Ok(Vec::new()),
        (Some(Value::String(s)), RolesShape::ListOrWords) => {
            Ok(s.split_ascii_whitespace().map(str::to_owned).collect())
        }
        (Some(Value::Array(list)), _) => list
            .iter()
            .map(|r| r.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or(TokenError::Claims("roles is not a list of strings")),
        (Some(_), _) => Err(TokenError::Claims("roles is not a list of strings")),
    }
}

/// `scope` ("a b c") or `scp` (["a", "b"] or "a b").
pub fn scopes(claims: &Map<String, Value>) -> Vec<String> {
    let words = |s: &str| s.split_ascii_whitespace().map(str::to_owned).collect::<Vec<_>>();
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) | (None, Some(Value::String(s))) => words(s),
        (None, Some(Value::Array(list))) => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The claim named `name`: the key itself if present (Auth0's namespaced
/// claims are URLs, dots included), else a dotted path (`realm_access.roles`).
pub fn claim_path<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut steps = name.split('.');
    let first = claims.get(steps.next()?)?;
    steps.try_fold(first, |value, step| value.as_object()?.get(step))
}
