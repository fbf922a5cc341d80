//! Operations: reload under traffic (good, bad, certificate swap), drain
//! with an upload in flight, metrics that move, and the access log line.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::client::{get, get_bearer};
use support::gateway::{Options, TestGateway, config_text};
use support::process::{GatewayProcess, cli};
use support::tokens::{claims, sign};
use support::upstream::Upstream;

fn routes(up: &Upstream, extra: &str) -> String {
    format!("[[route]]\npath = \"/a\"\nupstream = \"{}\"\nauth = \"none\"\n{extra}", up.url())
}

/// Requests `/a` in a loop until stopped; counts the answers that were not 200.
fn traffic(url: String, stop: Arc<AtomicBool>) -> (tokio::task::JoinHandle<()>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s, f) = (sent.clone(), failed.clone());
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) && s.load(Ordering::Relaxed) < 5000 {
            if get(&url, &[]).await.status != 200 {
                f.fetch_add(1, Ordering::Relaxed);
            }
            s.fetch_add(1, Ordering::Relaxed);
        }
    });
    (task, sent, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_change_applies_under_traffic_and_a_bad_one_is_refused() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&routes(&up, "")).await;
    assert_eq!(get(&gw.url("/b/x"), &[]).await.status, 404);
    let stop = Arc::new(AtomicBool::new(false));
    let (task, sent, failed) = traffic(gw.url("/a/x"), stop.clone());

    let with_b = routes(&up, &format!("[[route]]\npath = \"/b\"\nupstream = \"{}\"\nauth = \"none\"\n", up.url()));
    gw.rewrite_config(&config_text(&gw.dir, &with_b, &Options::default()));
    let applied = support::eventually(Duration::from_secs(5), || async {
        (get(&gw.url("/b/x"), &[]).await.status == 200).then_some(())
    })
    .await;
    assert!(applied.is_some(), "the new route was not applied");

    // A broken file: refused, counted, and the running config keeps serving.
    gw.rewrite_config("[server]\nhttp = \"127.0.0.1:0\"\n[[route]]\npath = \"/a\"\nuptream = \"nowhere\"\n");
    let metrics_url = format!("http://{}/metrics", gw.admin);
    let refused = support::eventually(Duration::from_secs(5), || async {
        let text = String::from_utf8_lossy(&get(&metrics_url, &[]).await.body).into_owned();
        text.contains("authgate_config_reloads_total{outcome=\"failed\"} 1").then_some(())
    })
    .await;
    assert!(refused.is_some(), "the bad config was not counted as refused");
    assert_eq!(get(&gw.url("/b/x"), &[]).await.status, 200, "the old config keeps serving");

    stop.store(true, Ordering::Relaxed);
    task.await.expect("traffic");
    assert!(sent.load(Ordering::Relaxed) > 20, "too little traffic to mean anything");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "a request failed during the reloads");
    let text = String::from_utf8_lossy(&get(&metrics_url, &[]).await.body).into_owned();
    assert!(text.contains("authgate_config_reloads_total{outcome=\"ok\"} 1"), "{text}");
}

async fn server_certificate(gw: &TestGateway) -> Vec<u8> {
    {
        use tokio_rustls::TlsConnector;
        #[derive(Debug)]
        struct AcceptAny;
        impl rustls::client::danger::ServerCertVerifier for AcceptAny {
            fn verify_server_cert(
                &self,
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &[rustls::pki_types::CertificateDer<'_>],
                _: &rustls::pki_types::ServerName<'_>,
                _: &[u8],
                _: rustls::pki_types::UnixTime,
            ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            fn verify_tls12_signature(
                &self,
                _: &[u8],
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn verify_tls13_signature(
                &self,
                _: &[u8],
                _: &rustls::pki_types::CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.supported_schemes()
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny))
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(gw.https.expect("https")).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("handshake");
        tls.get_ref().1.peer_certificates().expect("certificate")[0].to_vec()
    }
}

#[tokio::test]
async fn a_new_certificate_is_seen_by_new_handshakes() {
    let up = Upstream::start().await;
    let options = Options { tls: true, ..Options::default() };
    let gw = TestGateway::start_with(&routes(&up, ""), options).await;
    let before = server_certificate(&gw).await;
    // Replace the pair as a certificate manager would: key, then certificate, each by rename.
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let dir = gw.dir.path().join("certs");
    for (name, pem) in
        [("self-signed.key", certified.signing_key.serialize_pem()), ("self-signed.crt", certified.cert.pem())]
    {
        std::fs::write(dir.join(format!("{name}.new")), pem).expect("write");
        std::fs::rename(dir.join(format!("{name}.new")), dir.join(name)).expect("rename");
    }
    let swapped = support::eventually(Duration::from_secs(5), || async {
        let now = server_certificate(&gw).await;
        (now != before).then_some(now)
    })
    .await;
    assert_eq!(swapped.as_deref(), Some(certified.cert.der().as_ref()), "new handshakes still get the old certificate");
}

#[tokio::test]
async fn metrics_move_with_requests() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!("[[route]]\npath = \"/api\"\nupstream = \"{}\"\n", up.url())).await;
    let token = sign("es256", &claims("alice", &[]));
    for _ in 0..3 {
        assert_eq!(get_bearer(&gw.url("/api/x"), &token).await.status, 200);
    }
    assert_eq!(get_bearer(&gw.url("/api/x"), "a.b.c").await.status, 401);
    assert_eq!(get(&gw.url("/nowhere"), &[]).await.status, 404);
    let reply = get(&format!("http://{}/metrics", gw.admin), &[]).await;
    assert_eq!(reply.status, 200);
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    for line in [
        "authgate_requests_total{route=\"/api\",status=\"200\"} 3",
        "authgate_requests_total{route=\"/api\",status=\"401\"} 1",
        "authgate_requests_total{route=\"-\",status=\"404\"} 1",
        "authgate_auth_failures_total{reason=\"invalid_token\"} 1",
        "authgate_request_duration_seconds_count 5",
        "authgate_upstream_duration_seconds_count 3",
        "authgate_denylist_entries 0",
        "authgate_open_connections",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

fn config() -> String {
    r#"[server]
http = "{HTTP}"
admin = "{ADMIN}"
[server.limits]
shutdown_grace = "10s"
[tokens]
signing_key = "main"
[[tokens.keys]]
kid = "main"
algorithm = "ES256"
private_key_file = "main.pem"
generate_if_missing = true
[login]
enabled = true
registration = true
[[route]]
path = "/api"
upstream = "UPSTREAM"
"#
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_in_flight_at_sigterm_completes_and_the_process_exits_0() {
    use bytes::Bytes;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gateway = GatewayProcess::start(dir.path(), "g.toml", &config().replace("UPSTREAM", &up.url())).await;
    let (ok, token, err) = cli(dir.path(), &["--config", "g.toml", "token", "--sub", "alice"], None);
    assert!(ok, "{err}");
    // 40 chunks of 64 KiB over ~2 s: still sending when SIGTERM arrives.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
    let body = StreamBody::new(tokio_stream_from(rx));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let request = http::Request::post(gateway.url("/api/upload"))
        .header("authorization", format!("Bearer {}", token.trim()))
        .body(body)
        .expect("request");
    let upload = tokio::spawn(async move { client.request(request).await.map(|r| r.status().as_u16()) });
    let sender = tokio::spawn(async move {
        for _ in 0..40 {
            if tx.send(Ok(Frame::data(Bytes::from(vec![b'u'; 64 * 1024])))).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway.signal("TERM");
    // Draining: no new connections on the data port, and /readyz says why.
    let readyz = format!("http://{}/readyz", gateway.admin);
    let draining = support::eventually(Duration::from_secs(2), || async {
        let r = get(&readyz, &[]).await;
        (r.status == 503 && r.json()["reason"] == "draining").then_some(())
    })
    .await;
    assert!(draining.is_some(), "readyz did not report draining");
    sender.await.expect("sender");
    assert_eq!(upload.await.expect("upload task").expect("upload answered"), 200, "the in-flight upload was cut");
    assert_eq!(up.last().body_bytes, 40 * 64 * 1024);
    let status = tokio::task::spawn_blocking(move || gateway.wait_exit(Duration::from_secs(10))).await.expect("join");
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "exit status after drain");
}

fn tokio_stream_from<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn each_request_logs_one_line_with_its_fields_and_no_secret() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("gateway.log");
    let gateway =
        GatewayProcess::start_logged(dir.path(), "g.toml", &config().replace("UPSTREAM", &up.url()), Some(&log)).await;
    let (ok, token, _) = cli(dir.path(), &["--config", "g.toml", "token", "--sub", "alice"], None);
    assert!(ok);
    let token = token.trim().to_owned();
    let auth = format!("Bearer {token}");
    let reply =
        get(&gateway.url("/api/orders?secret=1"), &[("authorization", auth.as_str()), ("x-request-id", "trace-42")])
            .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["x-request-id"], "trace-42");
    assert_eq!(up.last().headers["x-request-id"], "trace-42", "the request id goes upstream");
    let generated = get(&gateway.url("/api/x"), &[("x-request-id", "bad id with spaces")]).await;
    assert_ne!(generated.headers["x-request-id"], "bad id with spaces");
    // A login with a password, and a refused token: neither may reach the log.
    let body = bytes::Bytes::from(r#"{"username":"alice","password":"hunter2 secret words"}"#);
    support::client::send(http::Method::POST, &gateway.url("/auth/login"), &[], body).await;
    get(&gateway.url("/api/x"), &[("authorization", &format!("Bearer {token}x")), ("x-request-id", "last-one")]).await;

    // Access lines may gather for a moment (docs/performance.md): wait for the last one.
    let text = support::eventually(Duration::from_secs(3), || async {
        let text = std::fs::read_to_string(&log).ok()?;
        (text.contains("trace-42") && text.contains("last-one")).then_some(text)
    })
    .await
    .expect("the access line was written");
    let line: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["request_id"] == "trace-42")
        .expect("a JSON line for the request");
    assert_eq!(line["target"], "access");
    let f = &line["fields"];
    assert_eq!(
        (f["method"].as_str(), f["path"].as_str(), f["route"].as_str()),
        (Some("GET"), Some("/api/orders"), Some("/api"))
    );
    assert_eq!(
        (f["status"].as_u64(), f["sub"].as_str(), f["client_ip"].as_str()),
        (Some(200), Some("alice"), Some("127.0.0.1"))
    );
    assert!(f["latency_ms"].as_f64().is_some());
    for secret in [token.as_str(), &token[token.len() - 20..], "hunter2", "secret=1"] {
        assert!(!text.contains(secret), "the log contains {secret:?}");
    }
}

#[tokio::test]
async fn a_mismatched_certificate_and_key_keep_the_old_pair() {
    let up = Upstream::start().await;
    let gw = TestGateway::start_with(&routes(&up, ""), Options { tls: true, ..Options::default() }).await;
    let before = server_certificate(&gw).await;
    let (one, two) = (
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert"),
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert"),
    );
    let dir = gw.dir.path().join("certs");
    std::fs::write(dir.join("self-signed.crt"), one.cert.pem()).expect("write");
    std::fs::write(dir.join("self-signed.key"), two.signing_key.serialize_pem()).expect("write");
    let metrics_url = format!("http://{}/metrics", gw.admin);
    let refused = support::eventually(Duration::from_secs(5), || async {
        let text = String::from_utf8_lossy(&get(&metrics_url, &[]).await.body).into_owned();
        text.contains("authgate_config_reloads_total{outcome=\"failed\"}").then_some(())
    })
    .await;
    assert!(refused.is_some(), "the mismatched pair was not refused");
    assert_eq!(server_certificate(&gw).await, before, "a mismatched pair replaced the certificate");
}

#[tokio::test]
async fn sighup_reloads_the_config() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = config().replace("UPSTREAM", &up.url());
    let route_b = format!("[[route]]\npath = \"/b\"\nupstream = \"{}\"\nauth = \"none\"\n", up.url());
    // Padded so the rewrite below keeps the file's size.
    let text = format!("{base}# {}\n", "x".repeat(route_b.len()));
    let gateway = GatewayProcess::start(dir.path(), "g.toml", &text).await;
    assert_eq!(get(&gateway.url("/b/x"), &[]).await.status, 404, "no /b route yet");

    // Rewrite in place with the same size and modification time: only SIGHUP can notice.
    let path = dir.path().join("g.toml");
    let on_disk = std::fs::read_to_string(&path).expect("read");
    let mtime = std::fs::metadata(&path).expect("meta").modified().expect("mtime");
    let changed = on_disk.replace(&format!("# {}\n", "x".repeat(route_b.len())), &format!("{route_b}# \n"));
    assert_eq!(changed.len(), on_disk.len());
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all(changed.as_bytes()).expect("write");
        file.set_modified(mtime).expect("keep mtime");
    }
    tokio::time::sleep(Duration::from_millis(1200)).await; // the file watcher had its chance
    assert_eq!(get(&gateway.url("/b/x"), &[]).await.status, 404, "the watcher saw an invisible change");
    gateway.signal("HUP");
    let applied = support::eventually(Duration::from_secs(3), || async {
        (get(&gateway.url("/b/x"), &[]).await.status == 200).then_some(())
    })
    .await;
    assert!(applied.is_some(), "SIGHUP did not apply the new route");
}
