//! TLS termination settings: certificate loading and the rustls config.
//!
//! Owns reading the PEM chain and key, generating a self-signed pair when
//! `self_signed = true` and the files are missing (dev only, with a
//! warning), and the protocol choices: TLS 1.2 and 1.3 only (rustls has no
//! older versions), ALPN `h2` then `http/1.1`, no 0-RTT early data (a
//! captured login could be replayed, RFC 8470), no client certificates.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::auth::keys::{LoadMode, write_private_file};
use crate::config::{Diagnostic, Tls};

pub fn acceptor(tls: &Tls, mode: LoadMode) -> Result<TlsAcceptor, Diagnostic> {
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

fn server_config_for((certs, key): Pair) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
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
    Ok(TlsAcceptor::from(Arc::new(config)))
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
