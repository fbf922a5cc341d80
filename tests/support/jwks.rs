//! A real JWKS endpoint on loopback: serves a key set that tests can rotate,
//! counts fetches, and can be made to fail.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey};

#[derive(Clone)]
pub struct JwksServer {
    pub addr: SocketAddr,
    keys: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

/// A signing key an IdP would hold: the private half, and its public JWK.
pub struct IdpKey {
    pub kid: String,
    pub algorithm: Algorithm,
    pub private: EncodingKey,
    pub public: Jwk,
}

impl IdpKey {
    pub fn generate(kid: &str, algorithm: Algorithm) -> IdpKey {
        let pem = authgate::auth::keys::generate(algorithm).expect("key");
        let private = match algorithm {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .expect("private key");
        let mut public = authgate::auth::keys::public_jwk(algorithm, kid, &pem).expect("jwk").expect("asymmetric");
        public.common.key_id = Some(kid.to_owned());
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        IdpKey { kid: kid.to_owned(), algorithm, private, public }
    }

    pub fn sign(&self, typ: &str, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(self.algorithm);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.private).expect("sign")
    }
}

impl JwksServer {
    pub async fn start(keys: Vec<Jwk>) -> JwksServer {
        Self::start_with(keys, None).await
    }

    /// Serves over TLS with `acceptor` (an HTTPS JWKS endpoint).
    pub async fn start_with(keys: Vec<Jwk>, tls: Option<tokio_rustls::TlsAcceptor>) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let server = JwksServer {
            addr: listener.local_addr().expect("addr"),
            keys: Arc::new(Mutex::new(keys)),
            fetches: Arc::new(AtomicUsize::new(0)),
            failing: Arc::new(AtomicBool::new(false)),
        };
        let shared = server.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let s = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        let s = s.clone();
                        async move {
                            s.fetches.fetch_add(1, Ordering::SeqCst);
                            let (status, body) = if s.failing.load(Ordering::SeqCst) {
                                (500, "{}".to_owned())
                            } else {
                                let keys = s.keys.lock().expect("lock").clone();
                                (200, serde_json::json!({ "keys": keys }).to_string())
                            };
                            Ok::<_, Infallible>(
                                http::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .expect("response"),
                            )
                        }
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    pub fn add_key(&self, jwk: Jwk) {
        self.keys.lock().expect("lock").push(jwk);
    }

    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

/// A private CA and a server certificate for `localhost` signed by it: (CA PEM, TLS acceptor).
pub fn private_ca_server() -> (String, tokio_rustls::TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf");
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key der");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .expect("server config");
    (ca_cert.pem(), tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
