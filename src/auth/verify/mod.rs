//! Token verification: from a compact JWS to a verified `Identity`.
//!
//! Owns every check of docs/endpoints.md step 6, cheapest first: size (before any
//! parsing), framing and base64url, the header (each member once, no
//! `crit`, no `b64`, no embedded or remote keys, `typ: at+jwt`), the key by `kid` with its one
//! pinned algorithm, then the signature and the registered claims through
//! jsonwebtoken with every validation flag set explicitly, then the claim
//! types jsonwebtoken is lenient about (`iss` must be a string, `iat` not in
//! the future, `roles` an array of strings). It never fetches anything and
//! never tries a second key.
//!
//! Here: the dispatch (`verify`: cache, framing, header, then ours or a
//! trusted issuer's by `iss`) and the types. `header.rs`: the JOSE header's
//! members, read without a map; `payload.rs`: the claims our checks read,
//! likewise (the whole map is built only when a claim is asked for by name);
//! `json.rs`: the value readers both use, which accept what a map would;
//! `own.rs`: our own tokens (the key by `kid`, validity, claims);
//! `issuer.rs`: a trusted issuer's tokens; `claims.rs`: the claim readers
//! both use (roles, scopes, paths); `cache.rs`: the verified-token cache;
//! `problems.rs`: every reason at once, for `explain`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::{DecodeSliceError, Engine};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

mod cache;
mod claims;
mod header;
mod issuer;
mod json;
mod own;
mod payload;
mod problems;

use self::cache::VerifyCache;
pub use self::claims::claim_path;
use self::header::JoseHeader;
use self::json::Member;
use self::payload::Payload;
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
    /// The login session (`sid`) the token belongs to, when it names one.
    pub session: Option<String>,
    /// Every claim, as verified.
    pub claims: Claims,
    /// The identity headers' values (`headers::set_identity`), made on first
    /// use: a cached token's once, not on each request.
    pub header_values: IdentityValues,
}

/// `X-Auth-User` and `X-Auth-Roles` (when there are roles) as header
/// values, or why the claims cannot be sent as headers.
pub type IdentityValues = std::sync::OnceLock<Result<(http::HeaderValue, Option<http::HeaderValue>), &'static str>>;

/// Every claim of a verified token, as a map: a trusted issuer's as
/// jsonwebtoken decoded them; ours parsed from the payload the first time
/// a claim is asked for by name (most requests never do), as `LazyLock`
/// would.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    /// Our token's payload, checked by `Payload::parse`: it parses as a map.
    payload: Box<[u8]>,
    map: OnceLock<Map<String, Value>>,
}

impl Claims {
    /// A token of ours whose `payload` `Payload::parse` accepted.
    fn unparsed(payload: &[u8]) -> Claims {
        Claims { payload: payload.into(), map: OnceLock::new() }
    }
}

impl From<Map<String, Value>> for Claims {
    fn from(map: Map<String, Value>) -> Claims {
        Claims { payload: Box::default(), map: OnceLock::from(map) }
    }
}

impl std::ops::Deref for Claims {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Map<String, Value> {
        // Cannot fail: `Payload::parse` accepts exactly what this does
        // (payload.rs). An empty map would only hide claims, never add one.
        self.map.get_or_init(|| serde_json::from_slice(&self.payload).unwrap_or_default())
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
    /// The trusted entry for tokens without `iss` (static keys, e.g. an app's PyJWT tokens).
    without_iss: Option<Arc<Issuer>>,
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
            let validation = validation(
                key.algorithm,
                leeway,
                &tokens.audience,
                Some(&tokens.issuer),
                &["exp", "nbf", "iss", "aud", "sub"],
            );
            let prepared = super::signature::Prepared::new(key.algorithm, &key.decoding);
            checks.insert(spec.kid.clone(), KeyCheck { key: key.clone(), validation, prepared });
        }
        Verifier {
            cache: (tokens.verify_cache > 0).then(|| VerifyCache::new(tokens.verify_cache)),
            trusted: trusted.iter().filter_map(|i| Some((i.config.issuer.clone()?, i.clone()))).collect(),
            without_iss: trusted.iter().find(|i| i.config.issuer.is_none()).cloned(),
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
        let mut header_buf = [0u8; 512];
        let header_json =
            decode_part(header_b64, &mut header_buf).ok_or(TokenError::Malformed("header is not base64url"))?;
        let header = JoseHeader::parse(&header_json)
            .ok_or(TokenError::Malformed("header is not a JSON object, or repeats a member"))?;
        refuse_dangerous_headers(&header)?;
        // Decoded once, for the issuer choice and the claims.
        let mut payload_buf = [0u8; 2048];
        let payload =
            decode_part(payload_b64, &mut payload_buf).ok_or(TokenError::Malformed("payload is not base64url"))?;
        let claims = Payload::parse(&payload).ok_or(TokenError::Malformed("payload is not a JSON object"))?;
        // The issuer picks the key set before any key is tried: a token is
        // never checked against another issuer's keys. A token without `iss`
        // can only be the no-`iss` entry's, never ours. Not cached: a trusted
        // issuer's keys change behind our back.
        if let Some(issuer) = self.issuer_for(&claims.iss)? {
            return self.verify_trusted(token, &header, issuer).map(Arc::new);
        }
        let check = self.key_for(&header)?;
        match &check.prepared {
            Some(prepared) => {
                // RSA-8192's signature is 1,024 bytes, the longest of any algorithm.
                let mut signature_buf = [0u8; 1024];
                let signature = decode_part(signature_b64, &mut signature_buf)
                    .ok_or(TokenError::Malformed("signature is not base64url"))?;
                let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
                if !prepared.verify(signing_input, &signature) {
                    return Err(TokenError::BadSignature);
                }
                self.check_validity(&claims, now)?;
            }
            None => {
                jsonwebtoken::decode::<serde::de::IgnoredAny>(token, &check.key.decoding, &check.validation)
                    .map_err(decode_error)?;
            }
        }
        let identity = Arc::new(self.identity(&claims, &payload, now)?);
        if let Some(cache) = &self.cache {
            cache.insert(token, &identity, now, self.leeway);
        }
        Ok(identity)
    }

    /// Which key set a token's claims choose: `None` for ours, else the
    /// trusted issuer its `iss` names, or the no-`iss` entry for a token
    /// without one.
    fn issuer_for(&self, iss: &Member) -> Result<Option<&Arc<Issuer>>, TokenError> {
        match iss {
            Member::Str(iss) if *iss == self.issuer => Ok(None),
            Member::Str(iss) => self.trusted.get(iss.as_ref()).map(Some).ok_or(TokenError::Claims("iss")),
            Member::Absent => match &self.without_iss {
                Some(issuer) => Ok(Some(issuer)),
                // Ours always carry `iss`: refused by the claim checks.
                None => Ok(None),
            },
            _ => Err(TokenError::Claims("iss")),
        }
    }

    /// The trusted issuer a token's claims choose (unverified), when its
    /// `kid` was unknown there: the caller may wait for that issuer's
    /// refetch and try again.
    fn issuer_of(&self, token: &str) -> Option<&Arc<Issuer>> {
        let payload = token.split('.').nth(1)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        self.issuer_for(&Payload::parse(&payload)?.iss).ok().flatten()
    }

    /// The trusted entries whose tokens may come in a cookie (Flask-JWT-Extended's cookie mode).
    pub fn trusted_cookies(&self) -> impl Iterator<Item = &Arc<Issuer>> {
        self.trusted.values().chain(self.without_iss.iter()).filter(|i| i.config.cookie.is_some())
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
}

/// jsonwebtoken's checks with every flag set explicitly: its defaults
/// require only `exp`, skip `nbf` and allow a leeway of 60 s. The one
/// place a `Validation` is made, for our keys and for trusted issuers'.
/// An empty `audience` (a static-key entry without one) leaves `aud`
/// unchecked; a `None` issuer (the no-`iss` entry), `iss`.
fn validation(
    algorithm: Algorithm,
    leeway: u64,
    audience: &[String],
    issuer: Option<&str>,
    required: &[&str],
) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.algorithms = vec![algorithm];
    validation.leeway = leeway;
    validation.reject_tokens_expiring_in_less_than = 0;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = !audience.is_empty();
    if !audience.is_empty() {
        validation.set_audience(audience);
    }
    if let Some(issuer) = issuer {
        validation.set_issuer(&[issuer]);
    }
    validation.sub = None;
    validation.set_required_spec_claims(required);
    validation
}

/// Headers no token of ours or of a trusted issuer needs, each a known attack:
/// `crit` (RFC 7515 §4.1.11: we understand no extension), `b64` (RFC 7797),
/// keys embedded or fetched from the token (`jku`, `jwk`, `x5u`, `x5c`), JWE.
fn refuse_dangerous_headers(header: &JoseHeader) -> Result<(), TokenError> {
    if header.crit {
        return Err(TokenError::Header("crit"));
    }
    if header.b64 {
        return Err(TokenError::Header("b64"));
    }
    if header.jku || header.jwk || header.x5u || header.x5c {
        return Err(TokenError::Header("embedded or remote key reference"));
    }
    if header.enc || header.zip {
        return Err(TokenError::Header("JWE"));
    }
    Ok(())
}

/// A base64url part of a token, decoded into `buf` when it fits there (no
/// allocation on the request's path), else onto the heap; `None` when it
/// is not base64url.
fn decode_part<'b>(part: &str, buf: &'b mut [u8]) -> Option<Cow<'b, [u8]>> {
    match URL_SAFE_NO_PAD.decode_slice(part, buf) {
        Ok(n) => Some(Cow::Borrowed(&buf[..n])),
        Err(DecodeSliceError::OutputSliceTooSmall) => URL_SAFE_NO_PAD.decode(part).ok().map(Cow::Owned),
        Err(DecodeSliceError::DecodeError(_)) => None,
    }
}

fn decode_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        _ => TokenError::Verification(e),
    }
}
