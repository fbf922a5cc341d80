//! The TLS client set-up for the gateway's outbound connections: trusted
//! issuers' JWKS fetches and `https://` upstreams.
//!
//! Owns which CAs are trusted (a PEM file, else the system's), the client
//! certificate for mTLS, and the one unchecked mode (`insecure_skip_verify`,
//! which config validation allows for loopback upstreams only).

/// A TLS client configuration: the CAs of `ca_file` (else the system's
/// trust store) and, for mTLS, a client certificate chain and key. Used for
/// trusted issuers' JWKS and for `https://` upstreams.
pub fn client_config(
    ca_file: Option<&std::path::Path>,
    client_cert: Option<(&std::path::Path, &std::path::Path)>,
    skip_verify: bool,
) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
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
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if skip_verify {
        builder.dangerous().with_custom_certificate_verifier(std::sync::Arc::new(NoVerification(provider)))
    } else {
        builder.with_root_certificates(roots)
    };
    match client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("cannot parse {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("unusable client certificate: {e}"))
        }
    }
}

/// `insecure_skip_verify` (loopback upstreams only, see config validation):
/// any certificate is taken; the handshake's signatures are still checked,
/// so the peer holds the key of the certificate it showed.
#[derive(Debug)]
struct NoVerification(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
