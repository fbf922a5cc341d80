//! A trusted issuer's tokens: the issuer's key (a JWKS key by `kid`, or its
//! one static key) and pinned algorithm, its issuer and audience when it has
//! them, the subject claim, required claims, the header `typ` an access
//! token may have, and never an OpenID Connect ID token.

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use std::str::FromStr;

use super::claims::{self, RolesShape};
use super::header::JoseHeader;
use super::json::Member;
use super::{Identity, MAX_JTI_BYTES, TokenError, Verifier, decode_error, validation};
use crate::auth::trusted::{Issuer, KeyMiss};

impl Verifier {
    /// A trusted issuer's token: its `kid` in that issuer's JWKS, the key's algorithm, its audience.
    pub(super) fn verify_trusted(
        &self,
        token: &str,
        header: &JoseHeader,
        issuer: &Issuer,
    ) -> Result<Identity, TokenError> {
        let config = &issuer.config;
        check_trusted_typ(&header.typ, config.require_typ.as_deref())?;
        let kid = header.kid.as_str();
        let alg = header.alg.as_str().and_then(|a| Algorithm::from_str(a).ok());
        let (algorithm, key) = match issuer.key_for(kid, alg) {
            Ok(found) => found,
            Err(KeyMiss::UnknownKid) => {
                issuer.unknown_kid();
                return Err(TokenError::UnknownKey);
            }
            Err(KeyMiss::Algorithm) => return Err(TokenError::AlgorithmMismatch),
        };
        let mut required = vec!["exp"];
        if config.issuer.is_some() {
            required.push("iss");
        }
        if !config.audience.is_empty() {
            required.push("aud");
        }
        let validation = validation(algorithm, self.leeway, &config.audience, config.issuer.as_deref(), &required);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(decode_error)?.claims;
        let now = jsonwebtoken::get_current_timestamp();
        // The caller's name: `sub`, or the claim the app puts it in (`user`, `username`).
        let sub = match claims::claim_path(&claims, &config.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(TokenError::Claims("the subject claim is missing or not a string")),
        };
        if config.issuer.is_some() && !matches!(claims.get("iss"), Some(Value::String(_))) {
            return Err(TokenError::Claims("iss"));
        }
        // Exact values the entry demands (`type = "access"` keeps FJE's refresh tokens out).
        if config.required_claims.iter().any(|(name, value)| claims.get(name) != Some(value)) {
            return Err(TokenError::Claims("a required claim is missing or has another value"));
        }
        let date = |name: &'static str| match claims.get(name) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n as u64)),
                _ => Err(TokenError::Claims(name)),
            },
        };
        let expires_at = date("exp")?.ok_or(TokenError::Claims("exp"))?;
        let issued_at = date("iat")?;
        self.check_times(now, expires_at, issued_at, issuer.config.max_lifetime.as_secs())?;
        let issued_at = issued_at.unwrap_or(0);
        // An OpenID Connect ID token proves a login to a client; it is not an
        // access token for this API, even when the client id is an accepted
        // audience. Keycloak marks it `typ: ID`; oidc-provider and others
        // only by the claims an ID token has and an access token never needs.
        let id_token_sign = ["nonce", "at_hash", "c_hash", "s_hash"].iter().any(|c| claims.contains_key(*c))
            || claims.get("typ").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("id"));
        if id_token_sign {
            return Err(TokenError::Claims("an ID token is not an access token"));
        }
        let jti = match claims.get("jti") {
            None => String::new(),
            Some(Value::String(j)) if j.len() <= MAX_JTI_BYTES => j.clone(),
            Some(_) => return Err(TokenError::Claims("jti")),
        };
        let roles = claims::roles(
            &Member::of(claims::claim_path(&claims, &issuer.config.roles_claim)),
            RolesShape::ListOrWords,
        )?;
        let scopes = claims::scopes(&Member::of(claims.get("scope")), &Member::of(claims.get("scp")));
        let session = claims.get("sid").and_then(Value::as_str).map(str::to_owned);
        let claims = claims.into();
        Ok(Identity {
            sub,
            roles,
            jti,
            expires_at,
            issued_at,
            scopes,
            session,
            claims,
            header_values: Default::default(),
        })
    }
}

/// A trusted issuer's header `typ`: `required` exactly (case-insensitively,
/// with or without `application/`), else anything an access token is typed
/// as: absent, `JWT`, `at+jwt`. Any other (`id_token+jwt`, `logout+jwt`,
/// `dpop+jwt`, ...) is a token for something else.
pub(super) fn check_trusted_typ(typ: &Member, required: Option<&str>) -> Result<(), TokenError> {
    let typ = match typ {
        Member::Absent => None,
        Member::Str(t) => Some(t.as_ref()),
        _ => return Err(TokenError::Header("typ is not a string")),
    };
    let bare = |t: &str| {
        let lower = t.to_ascii_lowercase();
        lower.strip_prefix("application/").map_or(lower.clone(), str::to_owned)
    };
    let ok = match (required, typ) {
        (Some(want), Some(got)) => bare(got) == bare(want),
        (Some(_), None) => false,
        (None, None) => true,
        (None, Some(got)) => matches!(bare(got).as_str(), "jwt" | "at+jwt"),
    };
    if ok { Ok(()) } else { Err(TokenError::Header("typ is not an access token's")) }
}
