//! TLS termination settings: certificate loading and the rustls config.
//!
//! Owns reading the PEM chain and key, generating a self-signed pair when
//! `self_signed = true` and the files are missing (dev only, with a
//! warning), and the protocol choices: TLS 1.2 and 1.3 only (rustls has no
//! older versions), ALPN `h2` then `http/1.1`, no 0-RTT early data (a
//! captured login could be replayed, RFC 8470), no client certificates, and
//! the cipher suite: AES-128-GCM first whatever the client's order, unless
//! the client lists ChaCha20-Poly1305 first (docs/configuration.md,
//! `[server.tls]`).

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::CipherSuite;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{Acceptor, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::auth::keys::{LoadMode, write_private_file};
use crate::config::{Diagnostic, Tls};

/// A TLS listener's handshakes: the config a client gets depends on the
/// cipher suites its hello lists.
#[derive(Clone)]
pub struct Terminator {
    /// The gateway's order, AES-128-GCM first: with AES instructions it is
    /// the cheapest suite, and its SHA-256 key schedule is cheaper than
    /// AES-256-GCM's SHA-384 one (docs/performance.md).
    ours: Arc<ServerConfig>,
    /// The client's order, for a client that lists ChaCha20-Poly1305 first:
    /// the sign of a device without AES instructions, for which ChaCha20 is
    /// the fast suite.
    theirs: Arc<ServerConfig>,
}

impl Terminator {
    /// Reads the client's hello, then completes the handshake with the config it calls for.
    pub async fn accept<IO>(&self, io: IO) -> io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let start = LazyConfigAcceptor::new(Acceptor::default(), io).await?;
        let config = if prefers_chacha(start.client_hello().cipher_suites()) { &self.theirs } else { &self.ours };
        start.into_stream(config.clone()).await
    }
}

/// Whether the first suite of the client's list with a bulk cipher the
/// gateway offers is a ChaCha20 one (GREASE values and unknown suites are
/// passed over).
fn prefers_chacha(offered: &[CipherSuite]) -> bool {
    offered.iter().map(|suite| bulk(*suite)).find(|bulk| *bulk != Bulk::Other) == Some(Bulk::ChaCha20)
}

/// The bulk ciphers of the gateway's suites, in its order of preference
/// (for TLS 1.3 and TLS 1.2 alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Bulk {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20,
    /// Anything else: GREASE, unknown or unoffered suites.
    Other,
}

fn bulk(suite: CipherSuite) -> Bulk {
    match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => Bulk::Aes128Gcm,
        CipherSuite::TLS13_AES_256_GCM_SHA384
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Bulk::Aes256Gcm,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => Bulk::ChaCha20,
        _ => Bulk::Other,
    }
}

pub fn terminator(tls: &Tls, mode: LoadMode) -> Result<Terminator, Diagnostic> {
    let error = |message: String| Diagnostic { location: tls.location.clone(), message };
    if tls.self_signed && !(tls.cert_file.exists() && tls.key_file.exists()) {
        if mode == LoadMode::CheckOnly {
            // Nothing to check yet: it will be generated at start.
            return server_config_for(generate_self_signed().map_err(error)?).map_err(error);
        }
        let (cert, key) = generate_self_signed_pem().map_err(error)?;
        write_private_file(&tls.key_file, key.as_bytes())
            .and_then(|()| write_private_file(&tls.cert_file, cert.as_bytes()))
            .map_err(|e| error(format!("cannot write the self-signed certificate: {e}")))?;
        tracing::warn!(
            cert = %tls.cert_file.display(),
            "self_signed = true: generated a self-signed certificate for localhost; for development only"
        );
    }
    let pair = load_pair(&tls.cert_file, &tls.key_file).map_err(error)?;
    server_config_for(pair).map_err(error)
}

type Pair = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn load_pair(cert_file: &Path, key_file: &Path) -> Result<Pair, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot parse certificate {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("cannot read private key {}: {e}", key_file.display()))?;
    Ok((certs, key))
}

fn server_config_for((certs, key): Pair) -> Result<Terminator, String> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(|suite| bulk(suite.suite()));
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not form a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.max_early_data_size = 0;
    // Resumption without server state: a returning client skips the
    // certificate signature and key exchange. Ticket keys are random per
    // process and rotated every 6 hours (rustls' aws-lc ticketer).
    config.ticketer =
        rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| format!("cannot set up session tickets: {e}"))?;
    let theirs = Arc::new(config.clone());
    config.ignore_client_order = true;
    Ok(Terminator { ours: Arc::new(config), theirs })
}

fn self_signed_names() -> Vec<String> {
    vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()]
}

fn generate_self_signed_pem() -> Result<(String, String), String> {
    let certified = rcgen::generate_simple_self_signed(self_signed_names())
        .map_err(|e| format!("cannot generate a self-signed certificate: {e}"))?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

fn generate_self_signed() -> Result<Pair, String> {
    let certified = rcgen::generate_simple_self_signed(self_signed_names())
        .map_err(|e| format!("cannot generate a self-signed certificate: {e}"))?;
    let key = PrivateKeyDer::try_from(certified.signing_key.serialize_der())
        .map_err(|e| format!("cannot encode the generated key: {e}"))?;
    Ok((vec![certified.cert.der().clone()], key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_first_supported_suite_decides_and_grease_is_passed_over() {
        let grease = CipherSuite::Unknown(0x0a0a);
        let chacha = CipherSuite::TLS13_CHACHA20_POLY1305_SHA256;
        let aes256 = CipherSuite::TLS13_AES_256_GCM_SHA384;
        assert!(prefers_chacha(&[grease, chacha, aes256]));
        assert!(prefers_chacha(&[CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256]));
        assert!(!prefers_chacha(&[grease, aes256, chacha]));
        assert!(!prefers_chacha(&[]));
        // A suite the gateway does not offer is passed over too.
        assert!(prefers_chacha(&[CipherSuite::TLS_RSA_WITH_AES_128_CBC_SHA, chacha]));
        // Every suite the gateway offers is one of the three it ranks.
        for suite in rustls::crypto::aws_lc_rs::default_provider().cipher_suites {
            assert_ne!(bulk(suite.suite()), Bulk::Other, "{:?}", suite.suite());
        }
    }
}
