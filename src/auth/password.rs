//! Passwords: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane).
//!
//! Hashing is deliberately slow; callers on the request path run it on
//! tokio's blocking pool. Passwords over 1024 bytes are refused before any
//! work, so a huge password cannot cost more than a normal one.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("password shorter than {0} characters")]
    TooShort(usize),
    #[error("hashing failed: {0}")]
    Hash(String),
}

fn argon2() -> Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: m=19 MiB, t=2, p=1.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks length rules (cheap) before any hashing.
pub fn check_length(password: &str, min_chars: usize) -> Result<(), PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    if password.chars().count() < min_chars {
        return Err(PasswordError::TooShort(min_chars));
    }
    Ok(())
}

/// An argon2id PHC string for `password`.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    let mut raw_salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut raw_salt).map_err(|_| PasswordError::Hash("no randomness".into()))?;
    let salt = SaltString::encode_b64(&raw_salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string; a malformed hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(phc).is_ok_and(|parsed| argon2().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Hashing and verification off the request threads, at most `permits` at
/// a time, so a flood of logins cannot take the cores proxied requests need.
pub struct Hasher {
    permits: tokio::sync::Semaphore,
    /// A real hash with the real parameters: an unknown user costs the same
    /// work as a wrong password.
    dummy: String,
}

impl Hasher {
    pub fn new(permits: usize) -> Result<Hasher, PasswordError> {
        Ok(Hasher { permits: tokio::sync::Semaphore::new(permits.max(1)), dummy: hash("authgate dummy password")? })
    }

    /// One per two cores, at least one.
    pub fn for_this_machine() -> Result<Hasher, PasswordError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Hasher::new(cores / 2)
    }

    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let _permit = self.permits.acquire().await.map_err(|_| PasswordError::Hash("hasher closed".into()))?;
        tokio::task::spawn_blocking(move || hash(&password))
            .await
            .map_err(|_| PasswordError::Hash("hashing task failed".into()))?
    }

    /// Verifies against `phc`, or against the dummy hash when there is no user.
    pub async fn verify(&self, password: String, phc: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else { return false };
        let (target, real) = match phc {
            Some(p) => (p, true),
            None => (self.dummy.clone(), false),
        };
        let matched = tokio::task::spawn_blocking(move || verify(&password, &target)).await.unwrap_or(false);
        matched && real
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify("correct horse", &a));
        assert!(!verify("correct horsE", &a));
        assert!(!verify("x", "not a phc string"));
        assert!(matches!(hash(&"x".repeat(1025)), Err(PasswordError::TooLong)));
        assert!(matches!(check_length("short", 8), Err(PasswordError::TooShort(8))));
    }
}
