//! Key material: loaded once, parsed once, looked up by `kid`.
//!
//! Owns reading key files and secrets (`*_file`, `*_env`, inline), creating
//! them when `generate_if_missing` asks, refusing weak or mismatched keys,
//! and the public JWKs of asymmetric keys. Each key is pinned to its one
//! configured algorithm. A `kid` is only ever a key into the in-memory map:
//! it never names a file, a URL or a query.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};

use crate::config::{Diagnostic, KeySource, KeySpec, SecretSource, Tokens};

/// Smallest HMAC secret accepted (RFC 7518 §3.2: at least the hash size of HS256).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;
/// Smallest RSA modulus accepted.
const MIN_RSA_BITS: usize = 2048;

/// Whether loading may create missing key files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// `authgate run`: create what `generate_if_missing` asks for.
    Run,
    /// `authgate check` and dry runs: create nothing.
    CheckOnly,
}

/// A key that verifies tokens.
pub struct VerifyKey {
    pub kid: String,
    pub algorithm: Algorithm,
    pub decoding: DecodingKey,
    /// The public JWK (asymmetric keys only), with `kid`, `alg` and `use`.
    pub jwk: Option<Jwk>,
}

/// The key that signs new tokens.
pub struct SigningKey {
    pub kid: String,
    pub algorithm: Algorithm,
    pub encoding: EncodingKey,
}

pub struct KeySet {
    verify: HashMap<String, Arc<VerifyKey>>,
    signing: Option<SigningKey>,
    /// Keys whose file is missing and will be generated at start (check only).
    pub pending: Vec<String>,
}

impl KeySet {
    /// Loads every configured key; problems are reported per key, all at once.
    pub fn load(tokens: &Tokens, mode: LoadMode) -> Result<KeySet, Vec<Diagnostic>> {
        let mut verify = HashMap::new();
        let mut signing = None;
        let mut pending = Vec::new();
        let mut errors = Vec::new();
        for spec in &tokens.keys {
            match load_key(spec, mode) {
                Ok(Loaded::Ready(v, s)) => {
                    if tokens.signing_key.as_deref() == Some(spec.kid.as_str()) {
                        signing = s;
                    }
                    verify.insert(spec.kid.clone(), Arc::from(v));
                }
                Ok(Loaded::Pending) => pending.push(spec.kid.clone()),
                Err(message) => errors.push(Diagnostic {
                    location: spec.location.clone(),
                    message: format!("key `{}`: {message}", spec.kid),
                }),
            }
        }
        if errors.is_empty() { Ok(KeySet { verify, signing, pending }) } else { Err(errors) }
    }

    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        self.verify.get(kid)
    }

    /// The key to use for a token without `kid`: only when exactly one key exists.
    pub fn sole(&self) -> Option<&Arc<VerifyKey>> {
        match self.verify.len() {
            1 => self.verify.values().next(),
            _ => None,
        }
    }

    pub fn signing(&self) -> Option<&SigningKey> {
        self.signing.as_ref()
    }

    pub fn len(&self) -> usize {
        self.verify.len()
    }

    pub fn is_empty(&self) -> bool {
        self.verify.is_empty()
    }

    /// `{"keys": [...]}` with every asymmetric public key; never an HMAC secret.
    pub fn jwks(&self) -> serde_json::Value {
        let mut keys: Vec<&Jwk> = self.verify.values().filter_map(|k| k.jwk.as_ref()).collect();
        keys.sort_by(|a, b| a.common.key_id.cmp(&b.common.key_id));
        serde_json::json!({ "keys": keys })
    }
}

enum Loaded {
    Ready(Box<VerifyKey>, Option<SigningKey>),
    Pending,
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn load_key(spec: &KeySpec, mode: LoadMode) -> Result<Loaded, String> {
    let alg = spec.algorithm;
    match &spec.source {
        KeySource::Secret(source) => {
            let secret = source.read()?;
            hmac_key(spec, &secret).map(|(v, s)| Loaded::Ready(Box::new(v), Some(s)))
        }
        KeySource::Private { source, generate_if_missing } => {
            if let SecretSource::File(path) = source
                && *generate_if_missing
                && !path.exists()
            {
                if mode == LoadMode::CheckOnly {
                    return Ok(Loaded::Pending);
                }
                let material = generate(alg)?;
                match write_private_file(path, material.as_bytes()) {
                    Ok(()) => {
                        tracing::warn!(kid = %spec.kid, path = %path.display(), "generated a new key (generate_if_missing)");
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
                }
            }
            let material = source.read()?;
            if is_hmac(alg) {
                return hmac_key(spec, &material).map(|(v, s)| Loaded::Ready(Box::new(v), Some(s)));
            }
            let encoding = match alg {
                Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&material),
                Algorithm::EdDSA => EncodingKey::from_ed_pem(&material),
                _ => EncodingKey::from_rsa_pem(&material),
            }
            .map_err(|e| format!("not a usable {alg:?} private key in PEM: {e}"))?;
            let (decoding, jwk) = public_part(alg, &encoding)?;
            let verify = verify_key(spec, decoding, jwk)?;
            let signing = SigningKey { kid: spec.kid.clone(), algorithm: alg, encoding };
            round_trip(&signing, &verify)?;
            Ok(Loaded::Ready(Box::new(verify), Some(signing)))
        }
        KeySource::Public { path } => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let decoding = match alg {
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                _ => DecodingKey::from_rsa_pem(&pem),
            }
            .map_err(|e| format!("{} is not a {alg:?} public key in PEM: {e}", path.display()))?;
            let jwk = Jwk::from_decoding_key(&decoding, Some(alg))
                .map_err(|e| format!("{} is not a usable {alg:?} public key: {e}", path.display()))?;
            verify_key(spec, decoding, jwk).map(|v| Loaded::Ready(Box::new(v), None))
        }
    }
}

/// The public key of a private one. jsonwebtoken derives it for RSA and EC;
/// for Ed25519 it only reads PKCS#8 v1, so aws-lc (which reads v1 and v2) does it.
fn public_part(alg: Algorithm, encoding: &EncodingKey) -> Result<(DecodingKey, Jwk), String> {
    let decoding = if alg == Algorithm::EdDSA {
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(encoding.as_bytes())
            .map_err(|e| format!("not a usable Ed25519 private key: {e}"))?;
        DecodingKey::from_ed_der(aws_lc_rs::signature::KeyPair::public_key(&pair).as_ref())
    } else {
        let jwk = Jwk::from_encoding_key(encoding, alg)
            .map_err(|e| format!("cannot derive the public key for {alg:?}: {e}"))?;
        DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable public key: {e}"))?
    };
    let jwk = Jwk::from_decoding_key(&decoding, Some(alg)).map_err(|e| format!("unusable public key: {e}"))?;
    Ok((decoding, jwk))
}

fn hmac_key(spec: &KeySpec, secret: &[u8]) -> Result<(VerifyKey, SigningKey), String> {
    if secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(format!("HMAC secret is {} bytes; at least {MIN_HMAC_SECRET_BYTES} are required", secret.len()));
    }
    if let KeySource::Secret(SecretSource::Inline(_)) = spec.source {
        tracing::warn!(kid = %spec.kid, "HMAC secret given inline in the config file; use secret_file or secret_env in production");
    }
    let verify = VerifyKey {
        kid: spec.kid.clone(),
        algorithm: spec.algorithm,
        decoding: DecodingKey::from_secret(secret),
        jwk: None,
    };
    let signing =
        SigningKey { kid: spec.kid.clone(), algorithm: spec.algorithm, encoding: EncodingKey::from_secret(secret) };
    Ok((verify, signing))
}

/// Checks that the key fits its algorithm (curve, RSA size) and fills in the JWK's `kid`, `alg`, `use`.
fn verify_key(spec: &KeySpec, decoding: DecodingKey, mut jwk: Jwk) -> Result<VerifyKey, String> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    let alg = spec.algorithm;
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) if p.curve == EllipticCurve::P256 => {}
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) if p.curve == EllipticCurve::P384 => {}
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) if p.curve == EllipticCurve::Ed25519 => {}
        (AlgorithmParameters::RSA(p), _) if !is_hmac(alg) => {
            let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&p.n)
                .map_err(|_| "malformed RSA modulus".to_owned())?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < MIN_RSA_BITS {
                return Err(format!("RSA key of {bits} bits; at least {MIN_RSA_BITS} are required"));
            }
        }
        _ => {
            return Err(format!("the key does not fit algorithm {alg:?} (wrong key type or curve)"));
        }
    }
    jwk.common.key_id = Some(spec.kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = key_algorithm(alg);
    Ok(VerifyKey { kid: spec.kid.clone(), algorithm: alg, decoding, jwk: Some(jwk) })
}

fn key_algorithm(alg: Algorithm) -> Option<KeyAlgorithm> {
    Some(match alg {
        Algorithm::HS256 => KeyAlgorithm::HS256,
        Algorithm::HS384 => KeyAlgorithm::HS384,
        Algorithm::HS512 => KeyAlgorithm::HS512,
        Algorithm::ES256 => KeyAlgorithm::ES256,
        Algorithm::ES384 => KeyAlgorithm::ES384,
        Algorithm::RS256 => KeyAlgorithm::RS256,
        Algorithm::RS384 => KeyAlgorithm::RS384,
        Algorithm::RS512 => KeyAlgorithm::RS512,
        Algorithm::PS256 => KeyAlgorithm::PS256,
        Algorithm::PS384 => KeyAlgorithm::PS384,
        Algorithm::PS512 => KeyAlgorithm::PS512,
        Algorithm::EdDSA => KeyAlgorithm::EdDSA,
        _ => return None,
    })
}

/// Signs and verifies a probe: a private key that does not match what it claims fails at load, not at first login.
fn round_trip(signing: &SigningKey, verify: &VerifyKey) -> Result<(), String> {
    let header = Header::new(signing.algorithm);
    let token = jsonwebtoken::encode(&header, &serde_json::json!({"probe": true}), &signing.encoding)
        .map_err(|e| format!("cannot sign with this key: {e}"))?;
    let mut v = jsonwebtoken::Validation::new(verify.algorithm);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(&token, &verify.decoding, &v)
        .map(|_| ())
        .map_err(|e| format!("the private key does not verify its own signature: {e}"))
}

/// New key material for an algorithm: a PKCS#8 PEM private key, or for HMAC a
/// 256-bit random secret as base64url text.
pub fn generate(alg: Algorithm) -> Result<String, String> {
    let rcgen_alg = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let mut secret = [0u8; 32];
            aws_lc_rs::rand::fill(&mut secret).map_err(|_| "the system random generator failed".to_owned())?;
            return Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret) + "\n");
        }
        Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Algorithm::ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        Algorithm::EdDSA => &rcgen::PKCS_ED25519,
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => &rcgen::PKCS_RSA_SHA256,
        Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => &rcgen::PKCS_RSA_SHA256,
        other => return Err(format!("cannot generate keys for {other:?}")),
    };
    let pair = rcgen::KeyPair::generate_for(rcgen_alg).map_err(|e| format!("key generation failed: {e}"))?;
    Ok(pair.serialize_pem())
}

/// Writes a private file: created new with mode 0600, its directory with 0700.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// The public JWK of freshly generated material, for `authgate keygen`.
pub fn public_jwk(alg: Algorithm, kid: &str, material: &str) -> Result<Option<Jwk>, String> {
    if is_hmac(alg) {
        return Ok(None);
    }
    let spec = KeySpec {
        kid: kid.to_owned(),
        algorithm: alg,
        source: KeySource::Private { source: SecretSource::Inline(material.to_owned()), generate_if_missing: false },
        location: crate::config::Location { file: Arc::from(Path::new("-")), line: 1, column: 1 },
    };
    match load_key(&spec, LoadMode::CheckOnly)? {
        Loaded::Ready(v, _) => Ok(v.jwk),
        Loaded::Pending => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_key_loads_signs_and_verifies() {
        for alg in
            [Algorithm::HS256, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA, Algorithm::RS256, Algorithm::PS256]
        {
            let material = generate(alg).unwrap();
            let jwk = public_jwk(alg, "k", &material).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!(jwk.is_some(), !is_hmac(alg), "{alg:?}: JWK only for asymmetric keys");
            if let Some(jwk) = jwk {
                let json = serde_json::to_value(&jwk).unwrap();
                assert_eq!(json["kid"], "k");
                assert_eq!(json["use"], "sig");
                assert!(json.get("d").is_none(), "{alg:?}: private part leaked into the JWK");
            }
        }
    }

    #[test]
    fn a_key_of_the_wrong_curve_is_refused() {
        let p256 = generate(Algorithm::ES256).unwrap();
        assert!(public_jwk(Algorithm::ES384, "k", &p256).is_err());
        let ed = generate(Algorithm::EdDSA).unwrap();
        assert!(public_jwk(Algorithm::ES256, "k", &ed).is_err());
    }
}
