//! `https://` upstreams against a real TLS server (rustls, certificates
//! made by the test): a private CA is refused until `ca_file` names it; the
//! name checked (and sent as SNI) is `server_name` when set; a server that
//! demands a client certificate gets ours with `client_cert_file`; an
//! expired upstream certificate is a 502 with the reason in the log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use support::client::get;
use support::gateway::TestGateway;

struct Pki {
    dir: tempfile::TempDir,
    ca_key: KeyPair,
    ca_params: CertificateParams,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write CA");
        Pki { dir, ca_key, ca_params }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// A certificate for `names` signed by the CA, written as `name.pem` and `name.key`; `expired` in 2020.
    fn issue(&self, name: &str, names: &[&str], expired: bool) -> (Vec<u8>, Vec<u8>) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("params");
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        std::fs::write(self.dir.path().join(format!("{name}.pem")), cert.pem()).expect("write");
        std::fs::write(self.dir.path().join(format!("{name}.key")), key.serialize_pem()).expect("write");
        (cert.der().to_vec(), key.serialize_der())
    }
}

/// A TLS upstream on loopback answering "client-cert: yes|no"; with
/// `require_client`, only clients with a certificate from the CA get in.
async fn tls_upstream(pki: &Pki, cert: (Vec<u8>, Vec<u8>), require_client: bool) -> std::net::SocketAddr {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
    let builder = if require_client {
        let mut roots = rustls::RootCertStore::empty();
        let ca = std::fs::read(pki.dir.path().join("ca.pem")).unwrap();
        use rustls::pki_types::pem::PemObject;
        roots.add(CertificateDer::from_pem_slice(&ca).unwrap()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.1));
    let mut config = builder.with_single_cert(vec![CertificateDer::from(cert.0)], key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let with_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                let service = service_fn(move |_req| async move {
                    let text = format!("client-cert: {}", if with_cert { "yes" } else { "no" });
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    addr
}

fn route(addr: std::net::SocketAddr, tls: &str) -> String {
    format!("[[route]]\npath = \"/\"\nupstream = \"https://{addr}\"\nauth = \"none\"\n{tls}")
}

#[tokio::test]
async fn https_upstreams_verify_the_ca_the_name_and_present_a_client_certificate() {
    let pki = Pki::new();
    let plain = tls_upstream(&pki, pki.issue("server", &["127.0.0.1", "upstream.test"], false), false).await;
    let ca = format!("[route.upstream_tls]\nca_file = \"{}\"\n", pki.path("ca.pem"));

    let gw = TestGateway::start(&route(plain, "")).await;
    let r = get(&gw.url("/x"), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (502, "upstream_unavailable"), "a private CA without ca_file");
    drop(gw);
    let gw = TestGateway::start(&route(plain, &ca)).await;
    let r = get(&gw.url("/x"), &[]).await;
    assert_eq!((r.status, String::from_utf8_lossy(&r.body).as_ref()), (200, "client-cert: no"));
    drop(gw);

    // A certificate for a name only: reached by address, that name is checked (and sent) when given.
    let named = tls_upstream(&pki, pki.issue("named", &["upstream.test"], false), false).await;
    let gw = TestGateway::start(&route(named, &ca)).await;
    assert_eq!(get(&gw.url("/x"), &[]).await.status, 502, "the address is not the certificate's name");
    drop(gw);
    let gw = TestGateway::start(&route(named, &format!("{ca}server_name = \"upstream.test\"\n"))).await;
    assert_eq!(get(&gw.url("/x"), &[]).await.status, 200, "server_name");
    drop(gw);

    // mTLS: refused without our certificate, served with it.
    let mutual = tls_upstream(&pki, pki.issue("mutual", &["127.0.0.1"], false), true).await;
    pki.issue("client", &["authgate.test"], false);
    let gw = TestGateway::start(&route(mutual, &ca)).await;
    assert_eq!(get(&gw.url("/x"), &[]).await.status, 502, "no client certificate");
    drop(gw);
    let with_client = format!(
        "{ca}client_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
        pki.path("client.pem"),
        pki.path("client.key")
    );
    let gw = TestGateway::start(&route(mutual, &with_client)).await;
    let r = get(&gw.url("/x"), &[]).await;
    assert_eq!((r.status, String::from_utf8_lossy(&r.body).as_ref()), (200, "client-cert: yes"));
    drop(gw);

    // An expired upstream certificate: 502, and the log says why (the real
    // binary, its JSON log read back).
    let expired = tls_upstream(&pki, pki.issue("expired", &["127.0.0.1"], true), false).await;
    let config = format!("[server]\nhttp = \"{{HTTP}}\"\nadmin = \"{{ADMIN}}\"\n{}", route(expired, &ca));
    let log = pki.dir.path().join("gateway.log");
    let gw = support::process::GatewayProcess::start_logged(pki.dir.path(), "g.toml", &config, Some(&log)).await;
    let r = get(&gw.url("/x"), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (502, "upstream_unavailable"), "an expired certificate");
    assert!(!String::from_utf8_lossy(&r.body).contains("expired"), "the client is not told why");
    let said = support::eventually(std::time::Duration::from_secs(5), || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .find(|l| l.contains("\"access\"") && l.contains("/x") && l.contains("certificate expired"))
            .map(str::to_owned)
    })
    .await;
    let line = said.unwrap_or_else(|| {
        panic!(
            "no access log line names the expired certificate:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert!(line.contains("upstream_unavailable") && line.contains("certificate"), "{line}");
}

/// `insecure_skip_verify`: a loopback upstream's self-signed certificate
/// is taken without a CA; anywhere but loopback the setting is refused.
#[tokio::test]
async fn insecure_skip_verify_is_for_loopback_only() {
    let pki = Pki::new();
    let upstream = tls_upstream(&pki, pki.issue("self", &["somewhere.else"], false), false).await;
    let gw = TestGateway::start(&route(upstream, "")).await;
    assert_eq!(get(&gw.url("/x"), &[]).await.status, 502, "verified by default");
    drop(gw);
    let gw = TestGateway::start(&route(upstream, "[route.upstream_tls]\ninsecure_skip_verify = true\n")).await;
    assert_eq!(get(&gw.url("/x"), &[]).await.status, 200, "not verified when asked, on loopback");
    drop(gw);

    let dir = tempfile::tempdir().expect("tempdir");
    for (upstream, extra, refusal) in [
        ("https://10.0.0.5:8443", "", "only for loopback endpoints"),
        ("https://backend.example:8443", "", "only for loopback endpoints"),
        ("https://127.0.0.1:8443", "ca_file = \"ca.pem\"\n", "would be ignored"),
    ] {
        let config = format!(
            "[server]\nhttp = \"127.0.0.1:0\"\n[[route]]\npath = \"/\"\nupstream = \"{upstream}\"\nauth = \"none\"\n\
             [route.upstream_tls]\ninsecure_skip_verify = true\n{extra}"
        );
        std::fs::write(dir.path().join("g.toml"), config).expect("write");
        let (ok, _, err) = support::process::cli(dir.path(), &["--config", "g.toml", "check"], None);
        assert!(!ok && err.contains(refusal) && err.contains("g.toml:"), "{upstream}: {err}");
    }
}

#[test]
fn upstream_tls_settings_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = "[server]\nhttp = \"127.0.0.1:0\"\n[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\n\
                  [route.upstream_tls]\nserver_name = \"x\"\n";
    std::fs::write(dir.path().join("g.toml"), config).expect("write");
    let (ok, _, err) = support::process::cli(dir.path(), &["--config", "g.toml", "check"], None);
    assert!(!ok && err.contains("goes with an https:// upstream"), "{err}");
    let config = config
        .replace("http://127.0.0.1:1", "https://127.0.0.1:1")
        .replace("server_name = \"x\"", "ca_file = \"missing.pem\"");
    std::fs::write(dir.path().join("g.toml"), config).expect("write");
    let (ok, _, err) = support::process::cli(dir.path(), &["--config", "g.toml", "check"], None);
    assert!(!ok && err.contains("missing.pem"), "{err}");
}
