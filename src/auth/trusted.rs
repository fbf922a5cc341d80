//! Trusted external issuers (Keycloak, Auth0, Okta, Dex): their keys, fetched
//! from `jwks_url` and kept fresh.
//!
//! Owns the key set of each issuer and the task that refreshes it: fetched at
//! start, then again after the response's `Cache-Control: max-age` (else
//! every 5 minutes, clamped to 30 s .. 1 day). When a fetch fails, the last
//! good keys keep serving (stale-if-error) and the age is reported; a failed
//! fetch is retried after 1 s, 2 s, 4 s, ... up to 30 s (an IdP down at start
//! is picked up soon after it comes back). A token whose `kid` is unknown
//! asks for a refetch and waits for it (`wait_for_refetch`, at most 2 s);
//! every such request shares one fetch, and fetches for unknown `kid`s are at
//! least `UNKNOWN_KID_REFETCH` apart, so a flood of forged `kid`s costs the
//! IdP one request a second, and a key the IdP really rotated in is accepted
//! within a second or two however many forged ones came first. Only signing keys with
//! a `kid` are taken, never a symmetric (`oct`) key. The fetch goes over
//! rustls with the system's trust store or `ca_file`; plain HTTP only to
//! loopback (config validation enforces it). Nothing here ever follows a URL
//! found in a token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::Notify;

use crate::config::{TrustedIssuer, TrustedKeys};

const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
const MIN_REFRESH: Duration = Duration::from_secs(30);
const MAX_REFRESH: Duration = Duration::from_secs(86_400);
/// The first retry after a failed fetch; doubled per failure up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Fetches asked for by unknown `kid`s are at least this far apart, per issuer.
pub const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(1);
/// How long a request with an unknown `kid` waits for the refetch.
pub const UNKNOWN_KID_WAIT: Duration = Duration::from_secs(2);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("JWKS fetch: {0}")]
    Failed(String),
}

#[derive(Default)]
struct KeySnapshot {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
    fetched_at: Option<Instant>,
}

pub struct Issuer {
    pub config: TrustedIssuer,
    keys: ArcSwap<KeySnapshot>,
    tls: Option<Arc<rustls::ClientConfig>>,
    refetch: Arc<Notify>,
    /// Fetch attempts begun, successful or not.
    pub fetches: AtomicU64,
    /// Fetch attempts finished; waiters watch it.
    finished: tokio::sync::watch::Sender<u64>,
}

impl Issuer {
    /// An issuer; static keys (`secret_*`, `public_key_file`, `jwks_file`)
    /// are read here, a `jwks_url` is fetched by `spawn_refresh`.
    pub fn new(config: TrustedIssuer) -> Result<Issuer, String> {
        let tls = match &config.keys {
            TrustedKeys::JwksUrl(url) if url.scheme_str() == Some("https") => Some(Arc::new(client_tls(&config)?)),
            _ => None,
        };
        let keys = match &config.keys {
            TrustedKeys::JwksUrl(_) => KeySnapshot::default(),
            other => KeySnapshot { keys: static_keys(other, &config)?, fetched_at: Some(Instant::now()) },
        };
        Ok(Issuer {
            config,
            keys: ArcSwap::from_pointee(keys),
            tls,
            refetch: Arc::new(Notify::new()),
            fetches: AtomicU64::new(0),
            finished: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The key for a token with header `kid` and `alg`, with the algorithm it
    /// verifies: a JWKS key by `kid` and only its own algorithm; a static
    /// single key (secret, PEM) whatever the `kid`, for an `alg` in `algorithms`.
    pub fn key_for(&self, kid: Option<&str>, alg: Option<Algorithm>) -> Result<(Algorithm, DecodingKey), KeyMiss> {
        let pinned = &self.config.algorithms;
        match &self.config.keys {
            TrustedKeys::Secret(_) | TrustedKeys::PublicKeyFile(_) => {
                let alg = alg.filter(|a| pinned.contains(a)).ok_or(KeyMiss::Algorithm)?;
                let (_, key) = self.keys.load().keys.get(SINGLE).cloned().ok_or(KeyMiss::UnknownKid)?;
                Ok((alg, key))
            }
            TrustedKeys::JwksUrl(_) | TrustedKeys::JwksFile(_) => {
                let kid = kid.ok_or(KeyMiss::UnknownKid)?;
                let (key_alg, key) = self.keys.load().keys.get(kid).cloned().ok_or(KeyMiss::UnknownKid)?;
                if alg != Some(key_alg) || (!pinned.is_empty() && !pinned.contains(&key_alg)) {
                    return Err(KeyMiss::Algorithm);
                }
                Ok((key_alg, key))
            }
        }
    }

    /// Whether its keys are fetched (and so may change): a `jwks_url`.
    pub fn fetched(&self) -> bool {
        matches!(self.config.keys, TrustedKeys::JwksUrl(_))
    }

    /// Asks for a refetch because a token named an unknown `kid`. Requests
    /// coalesce: the refresh task fetches once for all that came since its
    /// last fetch, and not sooner than `UNKNOWN_KID_REFETCH` after it.
    pub fn unknown_kid(&self) {
        self.refetch.notify_one();
    }

    /// Asks for a refetch and waits until one that began after this call
    /// has finished (at most `UNKNOWN_KID_WAIT`); `false` if none did.
    pub async fn wait_for_refetch(&self) -> bool {
        if !self.fetched() {
            return false;
        }
        let mut finished = self.finished.subscribe();
        // A fetch under way now may have begun before the key was published: wait for the next.
        let target = self.fetches.load(Ordering::Acquire) + 1;
        self.unknown_kid();
        tokio::time::timeout(UNKNOWN_KID_WAIT, finished.wait_for(|done| *done >= target)).await.is_ok_and(|r| r.is_ok())
    }

    /// Waits (at most `FETCH_TIMEOUT` and a bit) until the first fetch has
    /// finished; whether keys are there then.
    pub async fn wait_for_first_fetch(&self) -> bool {
        if !self.fetched() {
            return self.key_count() > 0;
        }
        let mut finished = self.finished.subscribe();
        let waited = tokio::time::timeout(FETCH_TIMEOUT + Duration::from_secs(1), finished.wait_for(|d| *d >= 1));
        let _ = waited.await;
        self.key_count() > 0
    }

    /// How old the keys in use are (`None`: never fetched).
    pub fn keys_age(&self) -> Option<Duration> {
        self.keys.load().fetched_at.map(|t| t.elapsed())
    }

    pub fn key_count(&self) -> usize {
        self.keys.load().keys.len()
    }

    /// Fetches now, and keeps refreshing until the issuer is dropped (a reload replaces it).
    pub fn spawn_refresh(self: &Arc<Self>) {
        if !self.fetched() {
            return;
        }
        let weak: Weak<Issuer> = Arc::downgrade(self);
        let refetch = self.refetch.clone();
        tokio::spawn(async move {
            let mut retry = FIRST_RETRY;
            loop {
                let Some(issuer) = weak.upgrade() else { return };
                let fetched = issuer.fetch().await;
                let wait = match fetched {
                    Ok((snapshot, max_age)) => {
                        tracing::info!(issuer = %issuer.config.name(), keys = snapshot.keys.len(), "JWKS fetched");
                        issuer.keys.store(Arc::new(snapshot));
                        retry = FIRST_RETRY;
                        max_age.unwrap_or(DEFAULT_REFRESH).clamp(MIN_REFRESH, MAX_REFRESH)
                    }
                    Err(e) => {
                        tracing::error!(issuer = %issuer.config.name(), error = %e, age = ?issuer.keys_age(), retry_in = ?retry, "JWKS fetch failed; keeping the last good keys");
                        let wait = retry;
                        retry = (retry * 2).min(MAX_RETRY);
                        wait
                    }
                };
                issuer.finished.send_modify(|done| *done += 1);
                drop(issuer);
                let began = Instant::now();
                if tokio::time::timeout(wait, refetch.notified()).await.is_ok() {
                    // Asked for by an unknown `kid`: not sooner than UNKNOWN_KID_REFETCH after the last fetch.
                    tokio::time::sleep(UNKNOWN_KID_REFETCH.saturating_sub(began.elapsed())).await;
                }
            }
        });
    }

    async fn fetch(&self) -> Result<(KeySnapshot, Option<Duration>), FetchError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let TrustedKeys::JwksUrl(url) = &self.config.keys else {
            return Err(FetchError::Failed("static keys are not fetched".into()));
        };
        let (body, max_age) = tokio::time::timeout(FETCH_TIMEOUT, get(url, self.tls.clone()))
            .await
            .map_err(|_| FetchError::Failed("timed out".into()))??;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| FetchError::Failed(format!("not a JWKS: {e}")))?;
        Ok((KeySnapshot { keys: usable_keys(&set), fetched_at: Some(Instant::now()) }, max_age))
    }
}

/// Why no key verifies a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMiss {
    UnknownKid,
    /// The header's `alg` is not the key's, or not one the entry pins.
    Algorithm,
}

/// The kid under which a single static key (secret, PEM) is kept.
const SINGLE: &str = "";

/// An entry's static keys: one secret or PEM key, or a JWKS file's keys.
fn static_keys(
    keys: &TrustedKeys,
    config: &TrustedIssuer,
) -> Result<HashMap<String, (Algorithm, DecodingKey)>, String> {
    let first = config.algorithms.first().copied().ok_or("no `algorithms` for static keys")?;
    let key = match keys {
        TrustedKeys::JwksUrl(_) => return Ok(HashMap::new()),
        TrustedKeys::JwksFile(path) => {
            let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let set: JwkSet =
                serde_json::from_slice(&text).map_err(|e| format!("{} is not a JWKS: {e}", path.display()))?;
            return Ok(usable_keys(&set));
        }
        TrustedKeys::Secret(source) => {
            let secret = source.read()?;
            if secret.len() < 32 {
                return Err(format!(
                    "the secret of trusted issuer {} is shorter than 32 bytes (rotate the app's key first: docs/migrating-from-flask.md)",
                    config.name()
                ));
            }
            DecodingKey::from_secret(&secret)
        }
        TrustedKeys::PublicKeyFile(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let parsed = match first.family() {
                jsonwebtoken::AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
                jsonwebtoken::AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
                jsonwebtoken::AlgorithmFamily::Ed => DecodingKey::from_ed_pem(&pem),
                jsonwebtoken::AlgorithmFamily::Hmac => return Err("an HMAC algorithm for a public key".into()),
            };
            parsed.map_err(|e| format!("{} is not a {first:?} public key: {e}", path.display()))?
        }
    };
    Ok(HashMap::from([(SINGLE.to_owned(), (first, key))]))
}

/// Signing keys with a `kid`, each pinned to its algorithm; symmetric keys never.
fn usable_keys(set: &JwkSet) -> HashMap<String, (Algorithm, DecodingKey)> {
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = &jwk.common.key_id else { continue };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let inferred = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Some(Algorithm::ES256),
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => Some(Algorithm::ES384),
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Some(Algorithm::EdDSA),
            _ => None,
        };
        let Some(family_alg) = inferred else { continue };
        let named = jwk
            .common
            .key_algorithm
            .and_then(|a| serde_json::to_value(a).ok())
            .and_then(|v| v.as_str().and_then(|name| name.parse::<Algorithm>().ok()));
        let alg = match named {
            Some(a) if jsonwebtoken::Algorithm::family(a) == family_alg.family() => a,
            Some(_) => continue,
            None => family_alg,
        };
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.insert(kid.clone(), (alg, key));
        }
    }
    keys
}

fn client_tls(config: &TrustedIssuer) -> Result<rustls::ClientConfig, String> {
    crate::client_tls::client_config(config.ca_file.as_deref(), None, false)
}

/// One GET, HTTP/1.1, body capped; returns the body and `Cache-Control: max-age`.
async fn get(url: &http::Uri, tls: Option<Arc<rustls::ClientConfig>>) -> Result<(Bytes, Option<Duration>), FetchError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| FetchError::Failed(format!("{what}: {e}"));
    let host = url.host().ok_or_else(|| FetchError::Failed("no host".into()))?;
    let port = url.port_u16().unwrap_or(if tls.is_some() { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .map_err(|e| fail("connect", &e))?;
    let request = http::Request::get(url.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, url.authority().map_or(host, |a| a.as_str()))
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail("request", &e))?;
    let response = match tls {
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| fail("server name", &e))?;
            let stream =
                tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| fail("TLS", &e))?;
            send(TokioIo::new(stream), request).await?
        }
        None => send(TokioIo::new(tcp), request).await?,
    };
    if !response.status().is_success() {
        return Err(FetchError::Failed(format!("status {}", response.status())));
    }
    let max_age = response
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(|d| d.trim().strip_prefix("max-age=")?.parse::<u64>().ok()))
        .map(Duration::from_secs);
    let body =
        Limited::new(response.into_body(), MAX_JWKS_BYTES).collect().await.map_err(|e| fail("body", &e))?.to_bytes();
    Ok((body, max_age))
}

async fn send<IO>(
    io: IO,
    request: http::Request<Empty<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, FetchError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(io).await.map_err(|e| FetchError::Failed(format!("handshake: {e}")))?;
    tokio::spawn(conn);
    sender.send_request(request).await.map_err(|e| FetchError::Failed(format!("request: {e}")))
}
