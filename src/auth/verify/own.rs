//! Our own access tokens: the key by `kid` (pinned to its algorithm),
//! `exp`/`nbf` with the leeway, the lifetime cap, and the claims' types.

use serde_json::{Map, Value};

use super::claims::{self, RolesShape};
use super::header::{JoseHeader, Member};
use super::{Identity, KeyCheck, MAX_JTI_BYTES, TokenError, Verifier};
use jsonwebtoken::Algorithm;
use std::str::FromStr;

impl Verifier {
    /// Our own keys: `kid` picks the key, `alg` must be its algorithm.
    pub(super) fn key_for(&self, header: &JoseHeader) -> Result<&KeyCheck, TokenError> {
        // RFC 9068 §2.1: own access tokens are typed; media types compare case-insensitively.
        match header.typ.as_str() {
            Some(t) if t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt") => {}
            _ => return Err(TokenError::Header("typ is not at+jwt")),
        }
        let alg = match header.alg.as_str().map(Algorithm::from_str) {
            Some(Ok(a)) => a,
            _ => return Err(TokenError::Header("alg missing or not supported")),
        };
        let kid = match &header.kid {
            Member::Str(k) => k,
            Member::NotString => return Err(TokenError::Header("kid is not a string")),
            // Without `kid` only a single configured key may be used.
            Member::Absent => self.sole.as_deref().ok_or(TokenError::UnknownKey)?,
        };
        let check = self.keys.get(kid).ok_or(TokenError::UnknownKey)?;
        if check.key.algorithm != alg {
            return Err(TokenError::AlgorithmMismatch);
        }
        Ok(check)
    }

    /// `exp` and `nbf`, both required, against the clock with `leeway`, as
    /// jsonwebtoken's `Validation` does (expired when `exp < now - leeway`,
    /// not yet valid when `nbf > now + leeway`).
    pub(super) fn check_validity(&self, claims: &Map<String, Value>, now: u64) -> Result<(), TokenError> {
        let date = |name: &'static str| match claims.get(name).and_then(Value::as_f64) {
            Some(n) if n.is_finite() => Ok(n),
            _ => Err(TokenError::Claims(name)),
        };
        let (exp, nbf) = (date("exp")?, date("nbf")?);
        let (now, leeway) = (now as f64, self.leeway as f64);
        if exp < now - leeway {
            return Err(TokenError::Expired);
        }
        if nbf > now + leeway {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    /// `iat` not in the future, and a lifetime within `max_lifetime`: by
    /// `exp - iat`, and by `exp - now` (a far-future `exp` without `iat`).
    pub(super) fn check_times(
        &self,
        now: u64,
        expires_at: u64,
        issued_at: Option<u64>,
        max_lifetime: u64,
    ) -> Result<(), TokenError> {
        if issued_at.is_some_and(|iat| iat > now.saturating_add(self.leeway)) {
            return Err(TokenError::Claims("iat is in the future"));
        }
        let too_long = issued_at.is_some_and(|iat| expires_at.saturating_sub(iat) > max_lifetime)
            || expires_at > now.saturating_add(max_lifetime).saturating_add(self.leeway);
        if too_long {
            return Err(TokenError::Claims("lifetime above max_lifetime"));
        }
        Ok(())
    }

    /// Type checks jsonwebtoken does not make, then the identity.
    pub(super) fn identity(&self, claims: Map<String, Value>, now: u64) -> Result<Identity, TokenError> {
        let string = |name: &'static str| match claims.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(TokenError::Claims(name)),
        };
        let numeric_date = |name: &'static str| match claims.get(name).and_then(Value::as_f64) {
            Some(n) if n.is_finite() && n >= 0.0 => Ok(n as u64),
            _ => Err(TokenError::Claims(name)),
        };
        if string("iss")? != self.issuer {
            return Err(TokenError::Claims("iss"));
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => self.audience.contains(a),
            Some(Value::Array(list)) => {
                list.iter().all(Value::is_string)
                    && list.iter().filter_map(Value::as_str).any(|a| self.audience.iter().any(|x| x == a))
            }
            _ => false,
        };
        if !audience_ok {
            return Err(TokenError::Claims("aud"));
        }
        let sub = string("sub")?;
        let jti = string("jti")?;
        if jti.len() > MAX_JTI_BYTES {
            return Err(TokenError::Claims("jti"));
        }
        let expires_at = numeric_date("exp")?;
        numeric_date("nbf")?;
        let issued_at = numeric_date("iat")?;
        self.check_times(now, expires_at, Some(issued_at), self.max_lifetime)?;
        let roles = claims::roles(claims.get("roles"), RolesShape::List)?;
        let scopes = claims::scopes(&claims);
        Ok(Identity { sub, roles, jti, expires_at, issued_at, scopes, claims, header_values: Default::default() })
    }
}
