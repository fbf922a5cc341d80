//! Passwords: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane).
//!
//! Hashing is deliberately slow; callers on the request path run it on
//! tokio's blocking pool through `Hasher`, which also owns argon2's working
//! memory: a fixed pool of 19 MiB buffers, one per permit, reused by every
//! hash. Allocated per hash, those blocks were freed into the arenas of
//! whichever blocking thread ran it and kept there, so RSS climbed in
//! 19 MiB steps under a login flood (docs/performance.md, "Memory").
//! Passwords over 1024 bytes are refused before any work, so a huge
//! password cannot cost more than a normal one.

use std::sync::Mutex;

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

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

/// OWASP Password Storage Cheat Sheet: m=19 MiB, t=2, p=1.
const MEMORY_KIB: u32 = 19 * 1024;

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Working memory for one hash with our parameters (one `Block` is 1 KiB).
fn new_memory() -> Box<[Block]> {
    vec![Block::default(); MEMORY_KIB as usize].into_boxed_slice()
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
    hash_in(password, &mut new_memory())
}

fn hash_in(password: &str, memory: &mut [Block]) -> Result<String, PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    let mut raw_salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut raw_salt).map_err(|_| PasswordError::Hash("no randomness".into()))?;
    let salt = SaltString::encode_b64(&raw_salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let argon2 = argon2();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(password.as_bytes(), &raw_salt, &mut out, memory)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    let output = Output::new(&out).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let params = argon2.params();
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${output}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        salt.as_str()
    ))
}

/// The password-hash formats a user may come with (docs/migrating-from-flask.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFormat {
    /// `$argon2id$...` (ours), `$argon2i$`, `$argon2d$`: PHC strings.
    Argon2,
    /// `$2a$`, `$2b$`, `$2y$`: the `bcrypt` package, Flask-Bcrypt.
    Bcrypt,
    /// `scrypt:N:r:p$salt$hex`: Werkzeug 3's default.
    WerkzeugScrypt,
    /// `pbkdf2:sha256:N$salt$hex`: Werkzeug's other method.
    WerkzeugPbkdf2,
    /// `$pbkdf2-sha256$rounds$salt$checksum`: passlib.
    PasslibPbkdf2,
}

impl HashFormat {
    /// The format of a stored hash; `None`: not one authgate can verify (refused at import).
    pub fn of(hash: &str) -> Option<HashFormat> {
        let format = if hash.starts_with("$argon2") {
            HashFormat::Argon2
        } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
            HashFormat::Bcrypt
        } else if hash.starts_with("scrypt:") {
            HashFormat::WerkzeugScrypt
        } else if hash.starts_with("pbkdf2:sha256:") {
            HashFormat::WerkzeugPbkdf2
        } else if hash.starts_with("$pbkdf2-sha256$") {
            HashFormat::PasslibPbkdf2
        } else {
            return None;
        };
        // Parsed now, so a malformed hash is refused at import, never at login.
        let parsed = match format {
            HashFormat::Argon2 => PasswordHash::new(hash).is_ok(),
            HashFormat::Bcrypt => hash.len() == 60,
            HashFormat::WerkzeugScrypt => werkzeug_scrypt(hash).is_some(),
            HashFormat::WerkzeugPbkdf2 => werkzeug_pbkdf2(hash).is_some(),
            HashFormat::PasslibPbkdf2 => passlib_pbkdf2(hash).is_some(),
        };
        parsed.then_some(format)
    }

    /// Whether a login should replace it with argon2id.
    pub fn is_ours(hash: &str) -> bool {
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
    }
}

/// Whether `password` matches the stored hash, in any `HashFormat`; a
/// malformed or unknown hash never matches. Comparisons are constant-time.
pub fn verify(password: &str, phc: &str) -> bool {
    verify_in(password, phc, &mut Vec::new())
}

/// `scrypt:N:r:p$salt$hex` -> (log2 N, r, p, salt, derived key).
fn werkzeug_scrypt(hash: &str) -> Option<(u8, u32, u32, &str, Vec<u8>)> {
    let (method, rest) = hash.split_once('$')?;
    let (salt, hex) = rest.split_once('$')?;
    let mut p = method.strip_prefix("scrypt:")?.split(':');
    let (n, r, par): (u64, u32, u32) = (p.next()?.parse().ok()?, p.next()?.parse().ok()?, p.next()?.parse().ok()?);
    if !n.is_power_of_two() || n < 2 {
        return None;
    }
    Some((u8::try_from(n.trailing_zeros()).ok()?, r, par, salt, hex_decode(hex)?))
}

/// `pbkdf2:sha256:N$salt$hex` -> (iterations, salt, derived key).
fn werkzeug_pbkdf2(hash: &str) -> Option<(u32, &str, Vec<u8>)> {
    let (method, rest) = hash.split_once('$')?;
    let (salt, hex) = rest.split_once('$')?;
    let iterations = method.strip_prefix("pbkdf2:sha256:")?.parse().ok()?;
    Some((iterations, salt, hex_decode(hex)?))
}

/// `$pbkdf2-sha256$rounds$salt$checksum`, salt and checksum in passlib's
/// "adapted base64" (`.` for `+`, no padding) -> (rounds, salt, derived key).
fn passlib_pbkdf2(hash: &str) -> Option<(u32, Vec<u8>, Vec<u8>)> {
    let mut parts = hash.strip_prefix("$pbkdf2-sha256$")?.split('$');
    let rounds = parts.next()?.parse().ok()?;
    let ab64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD_NO_PAD.decode(s.replace('.', "+")).ok()
    };
    let (salt, checksum) = (ab64(parts.next()?)?, ab64(parts.next()?)?);
    parts.next().is_none().then_some((rounds, salt, checksum))
}

fn hex_decode(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// PBKDF2-HMAC-SHA256, compared in constant time by aws-lc.
fn pbkdf2_matches(password: &str, iterations: u32, salt: &[u8], expected: &[u8]) -> bool {
    let Some(iterations) = std::num::NonZeroU32::new(iterations) else { return false };
    aws_lc_rs::pbkdf2::verify(aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256, iterations, salt, password.as_bytes(), expected)
        .is_ok()
}

/// The hashes Flask apps have, verified; argon2 is `verify_in`'s.
fn verify_foreign(password: &str, hash: &str) -> bool {
    match HashFormat::of(hash) {
        Some(HashFormat::Bcrypt) => bcrypt::verify(password, hash).unwrap_or(false),
        Some(HashFormat::WerkzeugScrypt) => werkzeug_scrypt(hash).is_some_and(|(log_n, r, p, salt, expected)| {
            let Ok(params) = scrypt::Params::new(log_n, r, p) else { return false };
            let mut out = vec![0u8; expected.len()];
            scrypt::scrypt(password.as_bytes(), salt.as_bytes(), &params, &mut out).is_ok()
                && aws_lc_rs::constant_time::verify_slices_are_equal(&out, &expected).is_ok()
        }),
        Some(HashFormat::WerkzeugPbkdf2) => werkzeug_pbkdf2(hash)
            .is_some_and(|(n, salt, expected)| pbkdf2_matches(password, n, salt.as_bytes(), &expected)),
        Some(HashFormat::PasslibPbkdf2) => {
            passlib_pbkdf2(hash).is_some_and(|(n, salt, expected)| pbkdf2_matches(password, n, &salt, &expected))
        }
        Some(HashFormat::Argon2) | None => false,
    }
}

/// `memory` is used when it is large enough for the hash's parameters,
/// else working memory is allocated for this call (a hash imported with a
/// larger `m` than ours).
fn verify_in(password: &str, phc: &str, memory: &mut [Block]) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    if !phc.starts_with("$argon2") {
        return verify_foreign(password, phc);
    }
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let (Ok(algorithm), Ok(params), Some(expected), Some(salt)) =
        (Algorithm::try_from(parsed.algorithm), Params::try_from(&parsed), parsed.hash, parsed.salt)
    else {
        return false;
    };
    let version = parsed.version.map_or(Ok(Version::V0x13), Version::try_from);
    let Ok(version) = version else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let needed = argon2.params().block_count();
    let computed = if memory.len() >= needed {
        argon2.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory)
    } else {
        argon2.hash_password_into(password.as_bytes(), salt, &mut out)
    };
    // `Output`'s equality is constant-time.
    computed.is_ok() && Output::new(&out).is_ok_and(|o| o == expected)
}

/// One working-memory buffer per permit, made on first use and kept.
struct MemoryPool {
    free: Mutex<Vec<Box<[Block]>>>,
}

impl MemoryPool {
    /// Runs `f` with a buffer from the pool; the caller holds a permit, so
    /// the pool never holds more buffers than there are permits.
    fn with<T>(&self, f: impl FnOnce(&mut [Block]) -> T) -> T {
        let taken = self.free.lock().map(|mut free| free.pop()).unwrap_or(None);
        let mut memory = taken.unwrap_or_else(new_memory);
        let result = f(&mut memory);
        if let Ok(mut free) = self.free.lock() {
            free.push(memory);
        }
        result
    }
}

/// Hashing and verification off the request threads, at most `permits` at
/// a time, so a flood of logins cannot take the cores proxied requests need.
pub struct Hasher {
    permits: tokio::sync::Semaphore,
    /// A real hash with the real parameters: an unknown user costs the same
    /// work as a wrong password.
    dummy: String,
    memory: std::sync::Arc<MemoryPool>,
}

impl Hasher {
    pub fn new(permits: usize) -> Result<Hasher, PasswordError> {
        // The pool starts empty: an idle gateway that never sees a login holds no
        // buffer (the dummy's memory is returned to the system when it is freed).
        let memory = std::sync::Arc::new(MemoryPool { free: Mutex::new(Vec::new()) });
        Ok(Hasher {
            permits: tokio::sync::Semaphore::new(permits.max(1)),
            dummy: hash("authgate dummy password")?,
            memory,
        })
    }

    /// One per two cores, at least one.
    pub fn for_this_machine() -> Result<Hasher, PasswordError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Hasher::new(cores / 2)
    }

    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let _permit = self.permits.acquire().await.map_err(|_| PasswordError::Hash("hasher closed".into()))?;
        let memory = self.memory.clone();
        tokio::task::spawn_blocking(move || memory.with(|m| hash_in(&password, m)))
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
        let memory = self.memory.clone();
        let matched = tokio::task::spawn_blocking(move || memory.with(|m| verify_in(&password, &target, m)))
            .await
            .unwrap_or(false);
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

    #[test]
    fn hashes_made_elsewhere_verify_and_tampered_ones_do_not() {
        use argon2::password_hash::PasswordHasher;
        // The argon2 crate's own PHC output, with other parameters (m=8 MiB, t=3, argon2i).
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let params = Params::new(8 * 1024, 3, 1, None).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2i, Version::V0x13, params)
            .hash_password(b"open sesame", &salt)
            .unwrap()
            .to_string();
        assert!(verify("open sesame", &theirs));
        assert!(!verify("open sesamE", &theirs));
        // Ours, checked by the crate's own verifier.
        let ours = hash("open sesame").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon2::password_hash::PasswordVerifier::verify_password(&argon2(), b"open sesame", &parsed).is_ok());
        // One character of the output changed.
        let mut tampered = ours.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(!verify("open sesame", &tampered));
        // A pooled buffer too small for the hash's parameters is not used.
        let params = Params::new(32 * 1024, 1, 1, None).unwrap();
        let big =
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password(b"x", &salt).unwrap().to_string();
        assert!(verify_in("x", &big, &mut new_memory()));
    }

    #[tokio::test]
    async fn the_pool_holds_one_buffer_per_permit() {
        let hasher = Hasher::new(2).unwrap();
        let hashes: Vec<_> = (0..6).map(|i| hasher.hash(format!("password {i}"))).collect();
        let hashes = futures_util::future::join_all(hashes).await;
        for (i, h) in hashes.into_iter().enumerate() {
            let h = h.unwrap();
            assert!(hasher.verify(format!("password {i}"), Some(h)).await);
        }
        assert!(!hasher.verify("whatever".into(), None).await, "no user never matches");
        assert!(hasher.memory.free.lock().unwrap().len() <= 2, "more buffers than permits");
    }
}
