//! Host, TLS and connection (catalog T01–T04) with real handshakes: HTTP/2
//! negotiated by ALPN, HTTP/1.1 when the client offers only that, a silent
//! client dropped by the handshake timeout (T04), plaintext and TLS 1.1 on
//! the TLS port refused and 0-RTT never accepted (T03), hosts (T01).
//! (T01's missing, doubled and `a@b` hosts and absolute-form targets are
//! in `paths.rs`, `request_target_forms_and_hosts`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

async fn tls_gateway(up: &Upstream) -> TestGateway {
    let routes = format!("[[route]]\npath = \"/api\"\nupstream = \"{}\"\n", up.url());
    TestGateway::start_with(&routes, Options { tls: true, ..Options::default() }).await
}

/// Trust in the gateway's generated self-signed certificate, and nothing else.
fn gateway_roots(gw: &TestGateway) -> rustls::RootCertStore {
    let cert_path = gw.dir.path().join("certs/self-signed.crt");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&cert_path).expect("generated certificate") {
        roots.add(cert.expect("cert")).expect("add root");
    }
    roots
}

/// Connects trusting only the gateway's generated self-signed certificate.
async fn connect(gw: &TestGateway, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let roots = gateway_roots(gw);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    handshake(gw, config).await
}

/// A TLS handshake with the gateway's https listener as `localhost`.
async fn handshake(gw: &TestGateway, config: rustls::ClientConfig) -> TlsStream<TcpStream> {
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

/// A keep-alive HTTP/1 connection over TLS parked between requests (while
/// 520 plain connections in the middle of a head crowd the gateway) is
/// served again on the same TLS session: parking waits on the TCP socket
/// and keeps rustls' state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_tls_connection_is_served_again() {
    let up = Upstream::start().await;
    let gw = tls_gateway(&up).await;
    let mut crowd = Vec::new();
    for _ in 0..520 {
        let mut tcp = TcpStream::connect(gw.http).await.expect("connect");
        tcp.write_all(b"GET /api/x HTTP/1.1\r\n").await.expect("write");
        crowd.push(tcp);
    }
    let tls = connect(&gw, &[b"http/1.1"]).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.expect("h1 handshake");
    let conn = tokio::spawn(conn);
    let token = sign("es256", &claims("alice", &[]));
    let first = sender.send_request(request(&token, http::Version::HTTP_11)).await.expect("response");
    assert_eq!(first.status(), 200);
    first.into_body().collect().await.expect("body");
    let metrics = format!("http://{}/metrics", gw.admin);
    let parked = support::eventually(Duration::from_secs(1), || async {
        let text = String::from_utf8_lossy(&support::client::get(&metrics, &[]).await.body).into_owned();
        text.lines().any(|l| l.starts_with("authgate_parked_connections ") && !l.ends_with(" 0")).then_some(())
    })
    .await;
    assert!(parked.is_some(), "the TLS connection was not parked");
    // The client side must have seen the first exchange end before it can send again.
    sender.ready().await.expect("the client connection is ready again");
    let second = sender.send_request(request(&token, http::Version::HTTP_11)).await.expect("response after parking");
    assert_eq!(second.status(), 200);
    assert_eq!(up.count(), 2);
    assert!(!conn.is_finished(), "the client connection ended");
    drop(crowd);
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

/// T01: a host-bound route is reached only through its host, compared
/// case-insensitively and without the port; anything else is not routed.
#[tokio::test]
async fn t01_hosts_select_routes_and_unknown_hosts_get_nothing() {
    use support::attack::{Outcome, Rig};
    let up = Upstream::start().await;
    let rig = Rig::start_with(
        &format!(
            "[[route]]\npath = \"/vh\"\nhost = \"api.example.com\"\nupstream = \"{}\"\nauth = \"none\"\n",
            up.url()
        ),
        Options::default(),
    )
    .await;
    for host in ["api.example.com", "API.Example.COM", "api.example.com:8080"] {
        let (status, text) = support::client::raw(
            rig.gw.http,
            format!("GET /vh/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(status, 200, "T01 {host}: {text}");
    }
    for (host, expected) in [
        ("other.example.com", 404),
        ("api.example.com.evil.com", 404),
        ("evil-api.example.com", 404),
        ("api.example.com@evil.com", 400),
        ("api.example.com:80:80", 400),
        ("api.example.com/x", 400),
        ("", 400),
    ] {
        let case = rig.begin(format!("T01 Host {host:?}"));
        let (status, text) = support::client::raw(
            rig.gw.http,
            format!("GET /vh/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(status, expected, "T01 {host:?}: {text}");
        rig.end(case, Outcome::Rejected).await;
    }
    assert!(up.count() >= 3);
}

/// A TLS 1.1 ClientHello (no `supported_versions`): the legacy protocols
/// are not offered at all, so the answer is an alert, never a ServerHello.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, AES128-SHA
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, (handshake.len() >> 8) as u8, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn t03_tls_1_1_and_0_rtt_are_refused() {
    use tokio::io::AsyncWriteExt;
    let up = Upstream::start().await;
    let gw = tls_gateway(&up).await;
    let mut tcp = TcpStream::connect(gw.https.expect("https")).await.expect("connect");
    tcp.write_all(&tls11_client_hello()).await.expect("hello");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut answer)).await;
    assert_eq!(answer.first(), Some(&0x15), "expected an alert record, got {answer:02x?}");
    assert!(!answer.windows(2).any(|w| w == [0x16, 0x03]), "a handshake record (ServerHello) came back");

    // 0-RTT: a client holding a resumption ticket asks for early data; it is never accepted.
    let roots = gateway_roots(&gw);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.enable_early_data = true;
    let config = Arc::new(config);
    let addr = gw.https.expect("https");
    let token = sign("es256", &claims("alice", &[]));
    let offered_early_data = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let name = ServerName::try_from("localhost").expect("name");
        // First connection: a full handshake and a request, so the ticket arrives.
        let mut conn = rustls::ClientConnection::new(config.clone(), name.clone()).expect("client");
        let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        let request = format!(
            "GET /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        tls.write_all(request.as_bytes()).expect("write");
        let mut reply = Vec::new();
        let _ = tls.read_to_end(&mut reply);
        assert!(reply.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&reply));
        // Second connection resumes: would the ticket let it send early data?
        let mut resumed = rustls::ClientConnection::new(config, name).expect("client");
        let offered = resumed.early_data().is_some();
        // And it did resume (so a ticket was there to be judged).
        let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
        while resumed.is_handshaking() {
            resumed.complete_io(&mut tcp).expect("resumed handshake");
        }
        assert_eq!(resumed.handshake_kind(), Some(rustls::HandshakeKind::Resumed), "no session was resumed");
        offered
    })
    .await
    .expect("blocking client");
    assert!(!offered_early_data, "the server's tickets allow 0-RTT early data");
}

/// Handshakes with a client offering `suites` in this order over `version`,
/// trusting the gateway's certificate; the suite the gateway chose.
async fn negotiated(
    gw: &TestGateway,
    suites: &[rustls::SupportedCipherSuite],
    version: &'static rustls::SupportedProtocolVersion,
) -> rustls::CipherSuite {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = suites.to_vec();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_root_certificates(gateway_roots(gw))
        .with_no_client_auth();
    let tls = handshake(gw, config).await;
    tls.get_ref().1.negotiated_cipher_suite().expect("a suite").suite()
}

/// AES-128-GCM is chosen over the client's own first choice (cheaper with
/// AES instructions, and a SHA-256 key schedule), except for a client that
/// lists ChaCha20-Poly1305 first; a client without AES-128 gets what it
/// offers. OpenSSL's default order (AES-256 first) is the first case.
#[tokio::test]
async fn aes_128_gcm_is_chosen_unless_the_client_leads_with_chacha20() {
    use rustls::CipherSuite as Suite;
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    use rustls::version::{TLS12, TLS13};
    let up = Upstream::start().await;
    let gw = tls_gateway(&up).await;

    let openssl_order = [TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256, TLS13_AES_128_GCM_SHA256];
    assert_eq!(negotiated(&gw, &openssl_order, &TLS13).await, Suite::TLS13_AES_128_GCM_SHA256);
    let chacha_first = [TLS13_CHACHA20_POLY1305_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_AES_128_GCM_SHA256];
    assert_eq!(negotiated(&gw, &chacha_first, &TLS13).await, Suite::TLS13_CHACHA20_POLY1305_SHA256);
    assert_eq!(negotiated(&gw, &[TLS13_AES_256_GCM_SHA384], &TLS13).await, Suite::TLS13_AES_256_GCM_SHA384);
    // TLS 1.2, with the generated ECDSA certificate.
    let tls12 = [
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ];
    assert_eq!(negotiated(&gw, &tls12, &TLS12).await, Suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
    let tls12_chacha = [TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256];
    assert_eq!(negotiated(&gw, &tls12_chacha, &TLS12).await, Suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256);

    // A real OpenSSL client (Python's ssl module) in its default order.
    let Some(python) = support::python::tool("python", "aes_128_gcm_is_chosen_unless_the_client_leads_with_chacha20")
    else {
        return;
    };
    let script = "import socket, ssl, sys\n\
        ctx = ssl.create_default_context(cafile=sys.argv[1])\n\
        with socket.create_connection(('127.0.0.1', int(sys.argv[2]))) as s:\n\
        \x20   with ctx.wrap_socket(s, server_hostname='localhost') as t:\n\
        \x20       print(ctx.get_ciphers()[0]['name'], t.version(), t.cipher()[0])\n";
    let port = gw.https.expect("https").port().to_string();
    let cert = gw.dir.path().join("certs/self-signed.crt");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python).args(["-c", script, &cert.to_string_lossy(), &port]).output()
    })
    .await
    .expect("join")
    .expect("python");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.trim(), "TLS_AES_256_GCM_SHA384 TLSv1.3 TLS_AES_128_GCM_SHA256", "first offered, version, chosen");
}
