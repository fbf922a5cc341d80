//! JWS signature checks with keys parsed once, at load (aws-lc-rs).
//!
//! jsonwebtoken's verifier hands the raw key bytes to aws-lc on every call,
//! which parses (and for RSA, sets up) the key again per request. Here an
//! own key becomes an HMAC key or an aws-lc `ParsedPublicKey` when the key
//! set is built, and a token's signature is checked against the JWS
//! signing input (`header.payload`, RFC 7515 §5.2) directly. Keys that
//! arrive as RSA components (a JWKS) have no such form and stay with
//! jsonwebtoken.

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

/// A key ready to check signatures of one algorithm.
pub enum Prepared {
    /// Boxed: aws-lc's HMAC key holds its precomputed state inline (over 1 KiB).
    Hmac(Box<hmac::Key>),
    Public(ParsedPublicKey),
}

impl Prepared {
    /// `None` when the key has no pre-parsable form (RSA components).
    pub fn new(algorithm: Algorithm, key: &DecodingKey) -> Option<Prepared> {
        let DecodingKeyKind::SecretOrDer(bytes) = key.kind() else {
            return None;
        };
        let hmac = |alg| Some(Prepared::Hmac(Box::new(hmac::Key::new(alg, bytes))));
        let public =
            |alg: &'static dyn VerificationAlgorithm| ParsedPublicKey::new(alg, bytes).ok().map(Prepared::Public);
        match algorithm {
            Algorithm::HS256 => hmac(hmac::HMAC_SHA256),
            Algorithm::HS384 => hmac(hmac::HMAC_SHA384),
            Algorithm::HS512 => hmac(hmac::HMAC_SHA512),
            Algorithm::RS256 => public(&signature::RSA_PKCS1_2048_8192_SHA256),
            Algorithm::RS384 => public(&signature::RSA_PKCS1_2048_8192_SHA384),
            Algorithm::RS512 => public(&signature::RSA_PKCS1_2048_8192_SHA512),
            Algorithm::PS256 => public(&signature::RSA_PSS_2048_8192_SHA256),
            Algorithm::PS384 => public(&signature::RSA_PSS_2048_8192_SHA384),
            Algorithm::PS512 => public(&signature::RSA_PSS_2048_8192_SHA512),
            Algorithm::ES256 => public(&signature::ECDSA_P256_SHA256_FIXED),
            Algorithm::ES384 => public(&signature::ECDSA_P384_SHA384_FIXED),
            Algorithm::EdDSA => public(&signature::ED25519),
            // A future algorithm: jsonwebtoken checks it (or refuses it).
            _ => None,
        }
    }

    /// Whether `signature` is valid for `signing_input` (HMAC compared in constant time).
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        match self {
            Prepared::Hmac(key) => hmac::verify(key, signing_input, signature).is_ok(),
            Prepared::Public(key) => key.verify_sig(signing_input, signature).is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    #[test]
    fn every_family_is_prepared_and_checks_signatures() {
        for alg in
            [Algorithm::HS256, Algorithm::RS256, Algorithm::PS384, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA]
        {
            let private = crate::auth::keys::generate(alg).expect("key");
            let (encoding, decoding) = match alg {
                Algorithm::HS256 => {
                    (EncodingKey::from_secret(private.as_bytes()), DecodingKey::from_secret(private.as_bytes()))
                }
                _ => {
                    let public = rcgen::KeyPair::from_pem(&private).expect("pem").public_key_pem();
                    match alg {
                        Algorithm::ES256 | Algorithm::ES384 => (
                            EncodingKey::from_ec_pem(private.as_bytes()).expect("ec"),
                            DecodingKey::from_ec_pem(public.as_bytes()).expect("ec"),
                        ),
                        Algorithm::EdDSA => (
                            EncodingKey::from_ed_pem(private.as_bytes()).expect("ed"),
                            DecodingKey::from_ed_pem(public.as_bytes()).expect("ed"),
                        ),
                        _ => (
                            EncodingKey::from_rsa_pem(private.as_bytes()).expect("rsa"),
                            DecodingKey::from_rsa_pem(public.as_bytes()).expect("rsa"),
                        ),
                    }
                }
            };
            let token = jsonwebtoken::encode(&Header::new(alg), &serde_json::json!({"a": 1}), &encoding).expect("sign");
            let (input, sig) = token.rsplit_once('.').expect("three parts");
            use base64::Engine;
            let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).expect("b64");
            let prepared = Prepared::new(alg, &decoding).unwrap_or_else(|| panic!("{alg:?} was not prepared"));
            assert!(prepared.verify(input.as_bytes(), &sig), "{alg:?}: a good signature failed");
            let mut tampered = input.as_bytes().to_vec();
            tampered[0] ^= 1;
            assert!(!prepared.verify(&tampered, &sig), "{alg:?}: a tampered input passed");
            assert!(!prepared.verify(input.as_bytes(), &sig[..sig.len() - 1]), "{alg:?}: a short signature passed");
        }
    }
}
