//! Reading claims: the roles claim (one shape for our tokens, two for an
//! issuer's), scopes, and a claim by name or dotted path.

use serde_json::{Map, Value};

use super::TokenError;
use super::json::Member;

/// What a roles claim may look like.
#[derive(Clone, Copy)]
pub(super) enum RolesShape {
    /// A list of strings, or no claim at all (our own tokens; `null` is refused).
    List,
    /// A list of strings, or one space-separated string (IdPs send both).
    ListOrWords,
}

/// The roles in a roles claim (absent: none).
pub(super) fn roles(claim: &Member, shape: RolesShape) -> Result<Vec<String>, TokenError> {
    match (claim, shape) {
        (Member::Absent, _) | (Member::Null, RolesShape::ListOrWords) => Ok(Vec::new()),
        (Member::Str(s), RolesShape::ListOrWords) => Ok(s.split_ascii_whitespace().map(str::to_owned).collect()),
        (Member::List { strings, only_strings: true }, _) => Ok(strings.iter().map(|r| r.to_string()).collect()),
        _ => Err(TokenError::Claims("roles is not a list of strings")),
    }
}

/// `scope` ("a b c") or `scp` (["a", "b"] or "a b").
pub(super) fn scopes(scope: &Member, scp: &Member) -> Vec<String> {
    let words = |s: &str| s.split_ascii_whitespace().map(str::to_owned).collect::<Vec<_>>();
    match (scope, scp) {
        (Member::Str(s), _) | (Member::Absent, Member::Str(s)) => words(s),
        (Member::Absent, Member::List { strings, .. }) => strings.iter().map(|s| s.to_string()).collect(),
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
