//! TLS termination with a real handshake: HTTP/2 negotiated by ALPN,
//! HTTP/1.1 when the client offers only that, and a silent client dropped
//! by the handshake timeout.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use support::gateway::{Options, TestGateway};
use support::tokens::{claims, sign};
use support::upstream::Upstream;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

async fn tls_gateway(up: &Upstream) -> TestGateway {
    let routes = format!("[[route]]\npath = \"/api\"\nupstream = \"{}\"\n", up.url());
    TestGateway::start_with(&routes, Options { tls: true, ..Options::default() }).await
}

/// Connects trusting only the gateway's generated self-signed certificate.
async fn connect(gw: &TestGateway, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let cert_path = gw.dir.path().join("certs/self-signed.crt");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&cert_path).expect("generated certificate") {
        roots.add(cert.expect("cert")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(gw.https.expect("https listener")).await.expect("connect");
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

fn request(token: &str, version: http::Version) -> Request<Empty<Bytes>> {
    Request::builder()
        .uri("https://localhost/api/x")
        .version(version)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::new())
        .expect("request")
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn_and_proxied() {
    let up = Upstream::start().await;
    let gw = tls_gateway(&up).await;
    let tls = connect(&gw, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.expect("h2 handshake");
    tokio::spawn(conn);
    let token = sign("es256", &claims("alice", &["user"]));
    let response = sender.send_request(request(&token, http::Version::HTTP_2)).await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let seen = up.last();
    assert_eq!(seen.headers["x-auth-user"], "alice");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    assert_eq!(seen.headers["host"], "localhost");

    let refused = sender.send_request(request("a.b.c", http::Version::HTTP_2)).await.expect("response");
    assert_eq!(refused.status(), 401);
    let body = refused.into_body().collect().await.expect("body").to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("invalid_token"));
}

#[tokio::test]
async fn http1_is_served_when_the_client_offers_only_http1() {
    let up = Upstream::start().await;
    let gw = tls_gateway(&up).await;
    let tls = connect(&gw, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.expect("h1 handshake");
    tokio::spawn(conn);
    let token = sign("es256", &claims("alice", &[]));
    let response = sender.send_request(request(&token, http::Version::HTTP_11)).await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(up.last().headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_dropped() {
    let up = Upstream::start().await;
    let gw = tls_gateway(&up).await;
    let mut tcp = TcpStream::connect(gw.https.expect("https")).await.expect("connect");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    // tls_handshake_timeout is 1 s in the test config.
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the gateway kept a silent TLS client: {read:?}");
    assert!(started.elapsed() >= Duration::from_millis(800), "closed before the timeout");

    // The listener is unharmed.
    let _ = connect(&gw, &[b"h2"]).await;
}

#[tokio::test]
async fn plaintext_http_on_the_tls_port_gets_no_answer() {
    let up = Upstream::start().await;
    let gw = tls_gateway(&up).await;
    let (status, _) =
        support::client::raw(gw.https.expect("https"), b"GET /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_ne!(status, 200);
    assert_eq!(up.count(), 0);
}
