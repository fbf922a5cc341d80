//! Trusted external issuers (Keycloak, Auth0, Okta, Dex): their keys, fetched
//! from `jwks_url` and kept fresh.
//!
//! Owns the key set of each issuer and the task that refreshes it: fetched at
//! start, then again after the response's `Cache-Control: max-age` (else
//! every 5 minutes, clamped to 30 s .. 1 day). When a fetch fails, the last
//! good keys keep serving (stale-if-error) and the age is reported. A token
//! whose `kid` is unknown asks for a refetch, granted at most once per 30 s
//! per issuer, so forged `kid`s cannot hammer the IdP. Only signing keys with
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

use crate::config::TrustedIssuer;

const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
const MIN_REFRESH: Duration = Duration::from_secs(30);
const MAX_REFRESH: Duration = Duration::from_secs(86_400);
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(30);
/// At most one refetch for unknown `kid`s in this long, per issuer.
pub const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(30);
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
    started: Instant,
    /// Milliseconds since `started` of the last forced refetch, +1 (0: never).
    last_forced_ms: AtomicU64,
    refetch: Arc<Notify>,
    /// Fetch attempts, successful or not.
    pub fetches: AtomicU64,
}

impl Issuer {
    pub fn new(config: TrustedIssuer) -> Result<Issuer, String> {
        let tls = match config.jwks_url.scheme_str() {
            Some("https") => Some(Arc::new(client_tls(&config)?)),
            _ => None,
        };
        Ok(Issuer {
            config,
            keys: ArcSwap::default(),
            tls,
            started: Instant::now(),
            last_forced_ms: AtomicU64::new(0),
            refetch: Arc::new(Notify::new()),
            fetches: AtomicU64::new(0),
        })
    }

    /// The key for `kid`, with its pinned algorithm.
    pub fn key(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        self.keys.load().keys.get(kid).cloned()
    }

    /// Asks for a refetch because a token named an unknown `kid`; granted at most once per 30 s.
    pub fn unknown_kid(&self) {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX) + 1;
        let last = self.last_forced_ms.load(Ordering::Acquire);
        let window = UNKNOWN_KID_REFETCH.as_millis() as u64;
        if (last == 0 || now_ms.saturating_sub(last) >= window)
            && self.last_forced_ms.compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            self.refetch.notify_one();
        }
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
        let weak: Weak<Issuer> = Arc::downgrade(self);
        let refetch = self.refetch.clone();
        tokio::spawn(async move {
            loop {
                let Some(issuer) = weak.upgrade() else { return };
                let wait = match issuer.fetch().await {
                    Ok((snapshot, max_age)) => {
                        tracing::info!(issuer = %issuer.config.issuer, keys = snapshot.keys.len(), "JWKS fetched");
                        issuer.keys.store(Arc::new(snapshot));
                        max_age.unwrap_or(DEFAULT_REFRESH).clamp(MIN_REFRESH, MAX_REFRESH)
                    }
                    Err(e) => {
                        tracing::error!(issuer = %issuer.config.issuer, error = %e, age = ?issuer.keys_age(), "JWKS fetch failed; keeping the last good keys");
                        RETRY_AFTER_ERROR
                    }
                };
                drop(issuer);
                let _ = tokio::time::timeout(wait, refetch.notified()).await;
            }
        });
    }

    async fn fetch(&self) -> Result<(KeySnapshot, Option<Duration>), FetchError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let (body, max_age) = tokio::time::timeout(FETCH_TIMEOUT, get(&self.config.jwks_url, self.tls.clone()))
            .await
            .map_err(|_| FetchError::Failed("timed out".into()))??;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| FetchError::Failed(format!("not a JWKS: {e}")))?;
        Ok((KeySnapshot { keys: usable_keys(&set), fetched_at: Some(Instant::now()) }, max_age))
    }
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
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            for cert in
                CertificateDer::pem_file_iter(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
            {
                let cert = cert.map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("unusable CA in {}: {e}", path.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
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
