//! Token verification: from a compact JWS to a verified `Identity`.
//!
//! Owns every check of docs/endpoints.md step 6, cheapest first: size (before any
//! parsing), framing and base64url, the header (no `crit`, no `b64`, no
//! embedded or remote keys, `typ: at+jwt`), the key by `kid` with its one
//! pinned algorithm, then the signature and the registered claims through
//! jsonwebtoken with every validation flag set explicitly, then the claim
//! types jsonwebtoken is lenient about (`iss` must be a string, `iat` not in
//! the future, `roles` an array of strings). It never fetches anything and
//! never tries a second key.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::keys::{KeySet, VerifyKey};
use super::trusted::Issuer;
use crate::config::Tokens;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest `jti` accepted: it becomes a store key.
const MAX_JTI_BYTES: usize = 256;

/// Why a token was refused. The detail is for logs; clients see only the
/// spec's code (`invalid_token`, `token_expired`, `token_not_yet_valid`).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("refused header: {0}")]
    Header(&'static str),
    #[error("no key for this token's kid")]
    UnknownKey,
    #[error("header alg is not the key's algorithm")]
    AlgorithmMismatch,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("refused claims: {0}")]
    Claims(&'static str),
    #[error("verification failed")]
    Verification(#[source] jsonwebtoken::errors::Error),
    #[error("bad signature")]
    BadSignature,
}

/// A caller whose token verified.
#[derive(Debug, Clone)]
pub struct Identity {
    pub sub: String,
    pub roles: Vec<String>,
    pub jti: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: u64,
    /// `iat`, seconds since the epoch.
    pub issued_at: u64,
    /// OAuth scopes: `scope` (space-separated) or `scp` (a list, as Okta and Azure send it).
    pub scopes: Vec<String>,
    /// Every claim, as verified.
    pub claims: Map<String, Value>,
}

impl Identity {
    /// The login session (`sid`) the token belongs to, when it names one.
    pub fn session(&self) -> Option<&str> {
        self.claims.get("sid").and_then(Value::as_str)
    }
}

struct KeyCheck {
    key: Arc<VerifyKey>,
    validation: Validation,
    /// The key parsed once; `None` leaves the check to jsonwebtoken.
    prepared: Option<super::signature::Prepared>,
}

pub struct Verifier {
    keys: HashMap<String, KeyCheck>,
    /// Own tokens already verified; `None` with `verify_cache = 0`.
    cache: Option<VerifyCache>,
    /// Trusted issuers by their exact `iss`.
    trusted: HashMap<String, Arc<Issuer>>,
    sole: Option<String>,
    issuer: String,
    audience: Vec<String>,
    leeway: u64,
    /// Own tokens' longest lifetime, in seconds.
    max_lifetime: u64,
}

impl Verifier {
    pub fn new(tokens: &Tokens, keys: &KeySet, trusted: &[Arc<Issuer>]) -> Verifier {
        let leeway = tokens.leeway.as_secs();
        let mut checks = HashMap::new();
        for spec in &tokens.keys {
            let Some(key) = keys.get(&spec.kid) else {
                continue;
            };
            // Every flag set explicitly: jsonwebtoken's defaults require only
            // `exp`, skip `nbf` and allow a leeway of 60 s.
            let mut validation = Validation::new(key.algorithm);
            validation.algorithms = vec![key.algorithm];
            validation.leeway = leeway;
            validation.reject_tokens_expiring_in_less_than = 0;
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = true;
            validation.set_audience(&tokens.audience);
            validation.set_issuer(&[&tokens.issuer]);
            validation.sub = None;
            validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
            let prepared = super::signature::Prepared::new(key.algorithm, &key.decoding);
            checks.insert(spec.kid.clone(), KeyCheck { key: key.clone(), validation, prepared });
        }
        Verifier {
            cache: (tokens.verify_cache > 0).then(|| VerifyCache::new(tokens.verify_cache)),
            trusted: trusted.iter().map(|i| (i.config.issuer.clone(), i.clone())).collect(),
            sole: keys.sole().map(|k| k.kid.clone()),
            keys: checks,
            issuer: tokens.issuer.clone(),
            audience: tokens.audience.clone(),
            leeway,
            max_lifetime: tokens.max_lifetime.as_secs(),
        }
    }

    /// Verifies a token: ours, or a trusted issuer's. A token of ours seen
    /// before is answered from the cache while it is unexpired; the caller
    /// still checks the denylist and policy on every request.
    pub fn verify(&self, token: &str) -> Result<Arc<Identity>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(token, now, self.leeway)) {
            return Ok(hit);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three dot-separated parts"));
        };
        if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
            return Err(TokenError::Malformed("empty part"));
        }
        let header_json =
            URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| TokenError::Malformed("header is not base64url"))?;
        let header: Map<String, Value> =
            serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed("header is not a JSON object"))?;
        refuse_dangerous_headers(&header)?;
        // Decoded once, for the issuer choice and the claims.
        let payload =
            URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| TokenError::Malformed("payload is not base64url"))?;
        let claims: Map<String, Value> =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed("payload is not a JSON object"))?;
        // The issuer picks the key set before any key is tried: a token is
        // never checked against another issuer's keys.
        if !self.trusted.is_empty() {
            match claims.get("iss").and_then(Value::as_str) {
                Some(iss) if iss == self.issuer => {}
                Some(iss) => match self.trusted.get(iss) {
                    // Not cached: a trusted issuer's keys change behind our back.
                    Some(issuer) => return self.verify_trusted(token, &header, issuer).map(Arc::new),
                    None => return Err(TokenError::Claims("iss")),
                },
                None => return Err(TokenError::Claims("iss")),
            }
        }
        let check = self.key_for(&header)?;
        let claims = match &check.prepared {
            Some(prepared) => {
                let signature = URL_SAFE_NO_PAD
                    .decode(signature_b64)
                    .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
                let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
                if !prepared.verify(signing_input, &signature) {
                    return Err(TokenError::BadSignature);
                }
                self.check_validity(&claims, now)?;
                claims
            }
            None => {
                jsonwebtoken::decode::<Map<String, Value>>(token, &check.key.decoding, &check.validation)
                    .map_err(decode_error)?
                    .claims
            }
        };
        let identity = Arc::new(self.identity(claims, now)?);
        if let Some(cache) = &self.cache {
            cache.insert(token, &identity, now, self.leeway);
        }
        Ok(identity)
    }

    /// A trusted issuer's token: its `kid` in that issuer's JWKS, the key's algorithm, its audience.
    fn verify_trusted(
        &self,
        token: &str,
        header: &Map<String, Value>,
        issuer: &Issuer,
    ) -> Result<Identity, TokenError> {
        check_trusted_typ(header, issuer.config.require_typ.as_deref())?;
        let kid = header.get("kid").and_then(Value::as_str).ok_or(TokenError::UnknownKey)?;
        let Some((algorithm, key)) = issuer.key(kid) else {
            issuer.unknown_kid();
            return Err(TokenError::UnknownKey);
        };
        let alg = header.get("alg").and_then(Value::as_str).and_then(|a| Algorithm::from_str(a).ok());
        if alg != Some(algorithm) {
            return Err(TokenError::AlgorithmMismatch);
        }
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.leeway = self.leeway;
        validation.reject_tokens_expiring_in_less_than = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_audience(&issuer.config.audience);
        validation.set_issuer(&[&issuer.config.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(decode_error)?.claims;
        let now = jsonwebtoken::get_current_timestamp();
        let sub = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(TokenError::Claims("sub")),
        };
        if !matches!(claims.get("iss"), Some(Value::String(_))) {
            return Err(TokenError::Claims("iss"));
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
        let roles = match claim_path(&claims, &issuer.config.roles_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split_ascii_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|r| r.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(TokenError::Claims("roles claim is not a list of strings"))?,
            Some(_) => return Err(TokenError::Claims("roles claim is not a list of strings")),
        };
        let scopes = scopes(&claims);
        Ok(Identity { sub, roles, jti, expires_at, issued_at, scopes, claims })
    }

    /// The trusted issuer a token names by `iss`, when its `kid` was unknown
    /// there: the caller may wait for that issuer's refetch and try again.
    fn issuer_of(&self, token: &str) -> Option<&Arc<Issuer>> {
        let payload = token.split('.').nth(1)?;
        let claims: Map<String, Value> = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        self.trusted.get(claims.get("iss")?.as_str()?)
    }

    /// `verify`, except that a trusted issuer's token whose `kid` that
    /// issuer's keys lack waits (at most `trusted::UNKNOWN_KID_WAIT`) for the
    /// issuer's next refetch, shared by every such request, and is verified
    /// once more: a key the IdP just rotated in is accepted at once.
    pub async fn verify_waiting(&self, token: &str) -> Result<Arc<Identity>, TokenError> {
        match self.verify(token) {
            Err(TokenError::UnknownKey) => match self.issuer_of(token) {
                Some(issuer) if issuer.wait_for_refetch().await => self.verify(token),
                _ => Err(TokenError::UnknownKey),
            },
            other => other,
        }
    }

    /// The trusted issuer a token's `iss` names, if any (unverified: for `explain`).
    pub fn trusted_issuer_named(&self, token: &str) -> Option<&Arc<Issuer>> {
        self.issuer_of(token)
    }

    /// Every reason the token's claims and header would be refused, read
    /// without the signature (for `explain`: `verify` stops at the first).
    /// Empty when nothing but the signature or the key could be at fault.
    pub fn problems(&self, token: &str) -> Vec<String> {
        let decode = |part: Option<&str>| -> Option<Map<String, Value>> {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part?).ok()?).ok()
        };
        let mut parts = token.split('.');
        let (Some(header), Some(claims)) = (decode(parts.next()), decode(parts.next())) else {
            return vec!["not a JWS: the header or the payload is not base64url JSON".to_owned()];
        };
        let now = jsonwebtoken::get_current_timestamp();
        let trusted = claims.get("iss").and_then(Value::as_str).and_then(|i| self.trusted.get(i));
        let (issuers, audience, max_lifetime): (Vec<&str>, &[String], u64) = match trusted {
            Some(t) => (vec![t.config.issuer.as_str()], &t.config.audience, t.config.max_lifetime.as_secs()),
            None => (vec![self.issuer.as_str()], &self.audience, self.max_lifetime),
        };
        let mut out = Vec::new();
        match trusted {
            Some(t) => {
                if let Err(e) = check_trusted_typ(&header, t.config.require_typ.as_deref()) {
                    out.push(e.to_string());
                }
                if ["nonce", "at_hash", "c_hash", "s_hash"].iter().any(|c| claims.contains_key(*c)) {
                    out.push("it is an OpenID Connect ID token (nonce / at_hash / c_hash), not an access token".into());
                }
            }
            None => {
                let typ = header.get("typ").and_then(Value::as_str).map(str::to_ascii_lowercase);
                if !matches!(typ.as_deref(), Some("at+jwt" | "application/at+jwt")) {
                    out.push("header typ is not at+jwt".into());
                }
            }
        }
        let iss = claims.get("iss").and_then(Value::as_str);
        match iss {
            Some(i) if issuers.contains(&i) => {}
            Some(i) => out.push(format!("iss {i:?} is not {issuers:?}")),
            None => out.push("iss is missing".into()),
        }
        let auds: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(l)) => l.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !auds.iter().any(|a| audience.iter().any(|x| x == a)) {
            out.push(format!("aud {auds:?} names none of {audience:?}"));
        }
        let number = |name: &str| claims.get(name).and_then(Value::as_f64).map(|n| n as u64);
        match number("exp") {
            None => out.push("exp is missing".into()),
            Some(exp) if exp.saturating_add(self.leeway) < now => {
                out.push(format!("expired {} s ago", now - exp));
            }
            Some(exp)
                if number("iat").map_or(exp.saturating_sub(now), |iat| exp.saturating_sub(iat)) > max_lifetime =>
            {
                out.push(format!("lifetime above max_lifetime ({max_lifetime} s)"));
            }
            Some(_) => {}
        }
        if number("nbf").is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            out.push("not valid yet (nbf)".into());
        }
        if !matches!(claims.get("sub"), Some(Value::String(s)) if !s.is_empty()) {
            out.push("sub is missing or empty".into());
        }
        out
    }

    /// Our own keys: `kid` picks the key, `alg` must be its algorithm.
    fn key_for(&self, header: &Map<String, Value>) -> Result<&KeyCheck, TokenError> {
        // RFC 9068 §2.1: own access tokens are typed; media types compare case-insensitively.
        match header.get("typ").and_then(Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt") => {}
            _ => return Err(TokenError::Header("typ is not at+jwt")),
        }
        let alg = match header.get("alg").and_then(Value::as_str).map(Algorithm::from_str) {
            Some(Ok(a)) => a,
            _ => return Err(TokenError::Header("alg missing or not supported")),
        };
        let kid = match header.get("kid") {
            Some(Value::String(k)) => k.as_str(),
            Some(_) => return Err(TokenError::Header("kid is not a string")),
            // Without `kid` only a single configured key may be used.
            None => self.sole.as_deref().ok_or(TokenError::UnknownKey)?,
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
    fn check_validity(&self, claims: &Map<String, Value>, now: u64) -> Result<(), TokenError> {
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
    fn check_times(
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
    fn identity(&self, claims: Map<String, Value>, now: u64) -> Result<Identity, TokenError> {
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
        let roles = match claims.get("roles") {
            None => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|r| r.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(TokenError::Claims("roles is not an array of strings"))?,
            Some(_) => return Err(TokenError::Claims("roles is not an array of strings")),
        };
        let scopes = scopes(&claims);
        Ok(Identity { sub, roles, jti, expires_at, issued_at, scopes, claims })
    }
}

/// Verified own tokens by the whole token string. Bounded: past capacity,
/// expired entries are swept (at most once a second, so a flood of distinct
/// tokens cannot make every request pay for a sweep) and, if still full,
/// nothing new is remembered. An entry is never used past `exp + leeway`.
/// Lives in the `Verifier`, so a reload (new keys) starts it empty.
///
/// Hashed with foldhash (seeded per process), not SipHash: SipHash over a
/// ~200-byte token was ~1,000 instructions a request. Flooding a weaker
/// hash needs chosen keys, and only tokens that passed our own signature
/// check are ever inserted.
struct VerifyCache {
    entries: papaya::HashMap<Box<str>, Arc<Identity>, foldhash::fast::RandomState>,
    capacity: usize,
    /// When the last sweep ran, seconds since the epoch.
    last_sweep: std::sync::atomic::AtomicU64,
}

impl VerifyCache {
    fn new(capacity: usize) -> VerifyCache {
        VerifyCache {
            entries: papaya::HashMap::with_hasher(foldhash::fast::RandomState::default()),
            capacity,
            last_sweep: Default::default(),
        }
    }

    fn get(&self, token: &str, now: u64, leeway: u64) -> Option<Arc<Identity>> {
        let entries = self.entries.pin();
        let hit = entries.get(token)?;
        if hit.expires_at.saturating_add(leeway) < now {
            entries.remove(token);
            return None;
        }
        Some(hit.clone())
    }

    fn insert(&self, token: &str, identity: &Arc<Identity>, now: u64, leeway: u64) {
        use std::sync::atomic::Ordering;
        let entries = self.entries.pin();
        if entries.len() >= self.capacity {
            let last = self.last_sweep.load(Ordering::Relaxed);
            if last == now || self.last_sweep.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_err()
            {
                return;
            }
            entries.retain(|_, id| id.expires_at.saturating_add(leeway) >= now);
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(token.into(), identity.clone());
    }
}

/// A trusted issuer's header `typ`: `required` exactly (case-insensitively,
/// with or without `application/`), else anything an access token is typed
/// as: absent, `JWT`, `at+jwt`. Any other (`id_token+jwt`, `logout+jwt`,
/// `dpop+jwt`, ...) is a token for something else.
fn check_trusted_typ(header: &Map<String, Value>, required: Option<&str>) -> Result<(), TokenError> {
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(t)) => Some(t.as_str()),
        Some(_) => return Err(TokenError::Header("typ is not a string")),
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

/// Headers no token of ours or of a trusted issuer needs, each a known attack:
/// `crit` (RFC 7515 §4.1.11: we understand no extension), `b64` (RFC 7797),
/// keys embedded or fetched from the token (`jku`, `jwk`, `x5u`, `x5c`), JWE.
fn refuse_dangerous_headers(header: &Map<String, Value>) -> Result<(), TokenError> {
    if header.contains_key("crit") {
        return Err(TokenError::Header("crit"));
    }
    if header.contains_key("b64") {
        return Err(TokenError::Header("b64"));
    }
    for remote in ["jku", "jwk", "x5u", "x5c"] {
        if header.contains_key(remote) {
            return Err(TokenError::Header("embedded or remote key reference"));
        }
    }
    if header.contains_key("enc") || header.contains_key("zip") {
        return Err(TokenError::Header("JWE"));
    }
    Ok(())
}

fn decode_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        _ => TokenError::Verification(e),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(expires_at: u64) -> Arc<Identity> {
        Arc::new(Identity {
            sub: "alice".into(),
            roles: vec![],
            jti: "j".into(),
            expires_at,
            issued_at: 0,
            scopes: vec![],
            claims: Map::new(),
        })
    }

    #[test]
    fn the_cache_never_answers_past_exp_plus_leeway() {
        let cache = VerifyCache::new(10);
        cache.insert("t", &identity(1000), 900, 30);
        assert!(cache.get("t", 1000, 30).is_some());
        assert!(cache.get("t", 1030, 30).is_some(), "inside the leeway");
        assert!(cache.get("t", 1031, 30).is_none(), "past exp + leeway");
        assert!(cache.get("t", 900, 30).is_none(), "an expired entry is dropped, not kept");
    }

    #[test]
    fn the_cache_is_bounded_and_sweeps_expired_entries_to_make_room() {
        let cache = VerifyCache::new(2);
        cache.insert("a", &identity(100), 50, 0);
        cache.insert("b", &identity(1000), 50, 0);
        cache.insert("c", &identity(1000), 50, 0);
        assert_eq!(cache.entries.len(), 2, "full: nothing more is remembered");
        assert!(cache.get("c", 50, 0).is_none());
        // Later, "a" has expired: a sweep makes room.
        cache.insert("d", &identity(1000), 200, 0);
        assert!(cache.get("d", 200, 0).is_some());
        assert!(cache.get("a", 200, 0).is_none());
        assert!(cache.entries.len() <= 2);
    }
}
