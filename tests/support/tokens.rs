//! Keys of every family (generated once per test process, never committed)
//! and tokens: valid ones, and every kind of forgery the tests need.

use std::path::Path;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub struct Material {
    pub hmac: String,
    pub rsa: String,
    pub p256: String,
    pub p384: String,
    pub ed25519: String,
}

pub fn material() -> &'static Material {
    static MATERIAL: OnceLock<Material> = OnceLock::new();
    MATERIAL.get_or_init(|| {
        let generate = |alg| authgate::auth::keys::generate(alg).expect("generate key");
        Material {
            hmac: generate(Algorithm::HS256),
            rsa: generate(Algorithm::RS256),
            p256: generate(Algorithm::ES256),
            p384: generate(Algorithm::ES384),
            ed25519: generate(Algorithm::EdDSA),
        }
    })
}

/// Every configured key: kid, algorithm, and which material it uses.
pub const KEYS: &[(&str, Algorithm)] = &[
    ("hs256", Algorithm::HS256),
    ("hs384", Algorithm::HS384),
    ("hs512", Algorithm::HS512),
    ("rs256", Algorithm::RS256),
    ("rs384", Algorithm::RS384),
    ("rs512", Algorithm::RS512),
    ("ps256", Algorithm::PS256),
    ("ps384", Algorithm::PS384),
    ("ps512", Algorithm::PS512),
    ("es256", Algorithm::ES256),
    ("es384", Algorithm::ES384),
    ("eddsa", Algorithm::EdDSA),
];

/// A verify-only key: the P-256 public key, under another kid (key rotation).
pub const VERIFY_ONLY_KID: &str = "es256-old";

fn private_pem(alg: Algorithm) -> &'static str {
    let m = material();
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => &m.hmac,
        Algorithm::ES256 => &m.p256,
        Algorithm::ES384 => &m.p384,
        Algorithm::EdDSA => &m.ed25519,
        _ => &m.rsa,
    }
}

/// The public key of an asymmetric algorithm's material, as SPKI PEM.
pub fn public_pem(alg: Algorithm) -> String {
    rcgen::KeyPair::from_pem(private_pem(alg)).expect("parse generated key").public_key_pem()
}

/// Writes the key files into `dir` and returns the `[[tokens.keys]]` TOML.
pub fn keys_toml(dir: &Path) -> String {
    let mut out = String::new();
    for (name, pem) in [
        ("hmac.secret", private_pem(Algorithm::HS256).to_owned()),
        ("rsa.pem", private_pem(Algorithm::RS256).to_owned()),
        ("p256.pem", private_pem(Algorithm::ES256).to_owned()),
        ("p384.pem", private_pem(Algorithm::ES384).to_owned()),
        ("ed25519.pem", private_pem(Algorithm::EdDSA).to_owned()),
        ("p256.pub.pem", public_pem(Algorithm::ES256)),
    ] {
        std::fs::write(dir.join(name), pem).expect("write key");
    }
    for (kid, alg) in KEYS {
        let (field, file) = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => ("secret_file", "hmac.secret"),
            Algorithm::ES256 => ("private_key_file", "p256.pem"),
            Algorithm::ES384 => ("private_key_file", "p384.pem"),
            Algorithm::EdDSA => ("private_key_file", "ed25519.pem"),
            _ => ("private_key_file", "rsa.pem"),
        };
        out.push_str(&format!("[[tokens.keys]]\nkid = \"{kid}\"\nalgorithm = \"{alg:?}\"\n{field} = \"{file}\"\n"));
    }
    out.push_str(&format!(
        "[[tokens.keys]]\nkid = \"{VERIFY_ONLY_KID}\"\nalgorithm = \"ES256\"\npublic_key_file = \"p256.pub.pem\"\n"
    ));
    out
}

pub fn encoding_key(alg: Algorithm) -> EncodingKey {
    let pem = private_pem(alg);
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => EncodingKey::from_secret(pem.trim_end().as_bytes()),
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()).expect("ec key"),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()).expect("ed key"),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).expect("rsa key"),
    }
}

pub fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// Valid access-token claims for `sub` with `roles`.
pub fn claims(sub: &str, roles: &[&str]) -> Value {
    let now = now();
    json!({
        "iss": "authgate", "sub": sub, "aud": "api",
        "iat": now, "nbf": now, "exp": now + 600,
        "jti": format!("jti-{sub}-{now}-{}", rand_suffix()),
        "roles": roles,
    })
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A correctly signed token from key `kid`, with `typ: at+jwt`.
pub fn sign(kid: &str, claims: &Value) -> String {
    let alg = KEYS.iter().find(|(k, _)| *k == kid).map(|(_, a)| *a).unwrap_or(Algorithm::ES256);
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.into());
    sign_with(&header, claims, &encoding_key(alg))
}

pub fn sign_with(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).expect("sign")
}

/// A compact JWS with an arbitrary header, payload and signature segment.
pub fn assemble(header: &Value, claims: &Value, signature: &str) -> String {
    format!("{}.{}.{signature}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
}

/// HS256 over `header.payload` with an arbitrary secret (alg-confusion forgeries).
pub fn hs256_forgery(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let unsigned = assemble(header, claims, "");
    let signing_input = unsigned.trim_end_matches('.');
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}
