//! Our own access tokens: the key by `kid` (pinned to its algorithm),
//! `exp`/`nbf` with the leeway, the lifetime cap, and the claims' types.

use super::claims::{self, RolesShape};
use super::header::JoseHeader;
use super::json::Member;
use super::payload::Payload;
use super::{Claims, Identity, KeyCheck, MAX_JTI_BYTES, TokenError, Verifier};
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
            // Without `kid` only a single configured key may be used.
            Member::Absent => self.sole.as_deref().ok_or(TokenError::UnknownKey)?,
            _ => return Err(TokenError::Header("kid is not a string")),
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
    pub(super) fn check_validity(&self, claims: &Payload, now: u64) -> Result<(), TokenError> {
        let date = |claim: &Member, name: &'static str| match claim.as_f64() {
            Some(n) if n.is_finite() => Ok(n),
            _ => Err(TokenError::Claims(name)),
        };
        let (exp, nbf) = (date(&claims.exp, "exp")?, date(&claims.nbf, "nbf")?);
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

    /// Type checks jsonwebtoken does not make, then the identity; `payload`
    /// is the JSON `claims` were read from, kept for `Identity::claims`.
    pub(super) fn identity(&self, claims: &Payload, payload: &[u8], now: u64) -> Result<Identity, TokenError> {
        let string = |claim: &Member, name: &'static str| match claim.as_str() {
            Some(s) if !s.is_empty() => Ok(s.to_owned()),
            _ => Err(TokenError::Claims(name)),
        };
        let numeric_date = |claim: &Member, name: &'static str| match claim.as_f64() {
            Some(n) if n.is_finite() && n >= 0.0 => Ok(n as u64),
            _ => Err(TokenError::Claims(name)),
        };
        if claims.iss.as_str().is_none_or(|iss| iss.is_empty() || iss != self.issuer) {
            return Err(TokenError::Claims("iss"));
        }
        let audience_ok = match &claims.aud {
            Member::Str(a) => self.audience.iter().any(|x| x == a),
            Member::List { strings, only_strings } => {
                *only_strings && strings.iter().any(|a| self.audience.iter().any(|x| x == a))
            }
            _ => false,
        };
        if !audience_ok {
            return Err(TokenError::Claims("aud"));
        }
        let sub = string(&claims.sub, "sub")?;
        let jti = string(&claims.jti, "jti")?;
        if jti.len() > MAX_JTI_BYTES {
            return Err(TokenError::Claims("jti"));
        }
        let expires_at = numeric_date(&claims.exp, "exp")?;
        numeric_date(&claims.nbf, "nbf")?;
        let issued_at = numeric_date(&claims.iat, "iat")?;
        self.check_times(now, expires_at, Some(issued_at), self.max_lifetime)?;
        let roles = claims::roles(&claims.roles, RolesShape::List)?;
        let scopes = claims::scopes(&claims.scope, &claims.scp);
        Ok(Identity {
            sub,
            roles,
            jti,
            expires_at,
            issued_at,
            scopes,
            session: claims.sid.as_str().map(str::to_owned),
            claims: Claims::unparsed(payload),
            header_values: Default::default(),
        })
    }
}
