//! Resource exhaustion (catalog D01–D05, F12): idle and slow clients,
//! oversized heads and bodies, HTTP/2 abuse and crypto cost. Every loop is
//! bounded, every connection is on loopback, and the catalog's invariants
//! are checked after each case.
//!
//! Not applicable: a per-IP limit on 401s (D05's second half). A rejected
//! token costs at most one signature check (tens of microseconds; measured
//! in `docs/performance.md`); the cheap checks (size, segments, `alg`,
//! known `kid`) run first, tested below. Rate limiting by client is left to
//! the load balancer in front, as with Envoy's jwt_authn.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use std::time::{Duration, Instant};

use support::attack::{Outcome, Rig};
use support::client::{get_bearer, raw_exchange};
use support::gateway::Options;
use support::h2raw::{self, Event, H2};
use support::process::GatewayProcess;
use support::tokens::{claims, sign};
use support::upstream::Upstream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The tests that load the machine (thousands of sockets) run one at a time,
/// so their time bounds measure the gateway, not each other.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The gateway's `authgate_<name>` gauge.
async fn gauge(admin: std::net::SocketAddr, name: &str) -> Option<f64> {
    let text =
        String::from_utf8_lossy(&support::client::get(&format!("http://{admin}/metrics"), &[]).await.body).into_owned();
    let prefix = format!("authgate_{name} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

async fn open_connections(admin: std::net::SocketAddr) -> Option<f64> {
    gauge(admin, "open_connections").await
}

/// Sends `request` on a kept-alive connection and reads one response (with
/// a `Content-Length`); returns its status.
async fn exchange(tcp: &mut TcpStream, request: &[u8]) -> u16 {
    tcp.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tcp.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed before a response: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    while buf.len() < head_end + length {
        let n = tcp.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "closed in a body");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(buf.len(), head_end + length, "more than one response");
    head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

const KEEP_ALIVE_GET: &[u8] = b"GET /public/k HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// F12: 10,000 idle keep-alive connections (one request each) held by one
/// process. The gateway (a separate process, so its memory is its own)
/// accepts them all, parks them (hyper's buffers dropped: see
/// `server::connection`), stays bounded, serves them again, serves fresh
/// requests meanwhile, and frees every one when its client leaves. A
/// request split across a park (its first bytes pipelined behind the
/// previous one) is served whole. (Closing idle connections at the
/// header-read timeout is tested at a smaller scale below and in D01.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f12_ten_thousand_idle_connections_are_bounded_and_freed() {
    const IDLE: usize = 10_000;
    /// `server::connection::AWAKE_LIMIT`, the connections never parked.
    const AWAKE: usize = 512;
    let _heavy = HEAVY.lock().await;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[server]\nhttp = \"{{HTTP}}\"\nadmin = \"{{ADMIN}}\"\n[server.limits]\nmax_connections = 20000\n\
         header_read_timeout = \"60s\"\n[tokens]\nsigning_key = \"main\"\n[[tokens.keys]]\nkid = \"main\"\n\
         algorithm = \"ES256\"\nprivate_key_file = \"main.pem\"\ngenerate_if_missing = true\n\
         [[route]]\npath = \"/public\"\nupstream = \"{}\"\nauth = \"none\"\n",
        up.url()
    );
    let gateway = GatewayProcess::start(dir.path(), "g.toml", &config).await;
    let pid = gateway.pid().expect("pid");
    let before = vm_kib(pid, "VmRSS:");

    let opened = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE / 100 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let addr = gateway.http;
            batch.spawn(async move {
                let mut tcp = TcpStream::connect(addr).await.expect("connect");
                assert_eq!(exchange(&mut tcp, KEEP_ALIVE_GET).await, 200);
                tcp
            });
        }
        while let Some(tcp) = batch.join_next().await {
            idle.push(tcp.expect("connect task"));
        }
    }
    let accepted = support::eventually(Duration::from_secs(30), || async {
        (open_connections(gateway.admin).await? >= IDLE as f64).then_some(())
    })
    .await;
    assert!(
        accepted.is_some(),
        "the gateway did not accept {IDLE} connections: {:?} open",
        open_connections(gateway.admin).await
    );
    let parked = support::eventually(Duration::from_secs(10), || async {
        (gauge(gateway.admin, "parked_connections").await? >= (IDLE - AWAKE) as f64).then_some(())
    })
    .await;
    assert!(parked.is_some(), "parked: {:?}", gauge(gateway.admin, "parked_connections").await);
    let held = vm_kib(pid, "VmRSS:");

    // Fresh requests are still served while they are held.
    let started = Instant::now();
    let control = support::client::get(&gateway.url("/public/x"), &[]).await;
    assert_eq!(control.status, 200);
    let control_took = started.elapsed();
    assert!(control_took < Duration::from_secs(1), "control request took {control_took:?}");

    // A request whose first bytes came pipelined behind the previous one
    // survives its connection being parked in between.
    let mut split = TcpStream::connect(gateway.http).await.expect("connect");
    let first_and_a_half = [KEEP_ALIVE_GET, &KEEP_ALIVE_GET[..20]].concat();
    assert_eq!(exchange(&mut split, &first_and_a_half).await, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(exchange(&mut split, &KEEP_ALIVE_GET[20..]).await, 200);

    // Parked connections are served again (a sample: every 20th).
    for tcp in idle.iter_mut().step_by(20) {
        assert_eq!(exchange(tcp, KEEP_ALIVE_GET).await, 200);
    }

    let peak = vm_kib(pid, "VmHWM:");
    eprintln!(
        "F12: {IDLE} idle keep-alive connections: RSS {before} KiB before, {held} KiB held, peak {peak} KiB; \
         all accepted {:?} after the first connect; control request {control_took:?}",
        started.duration_since(opened),
    );
    // A debug build. The release build's figure (issue: <= 60 MiB for
    // 10,000) is in docs/performance.md.
    assert!(peak < 100 * 1024, "peak RSS {peak} KiB holding {IDLE} idle connections");

    // Every connection is freed when its client goes away.
    drop(idle);
    drop(split);
    let freed = support::eventually(Duration::from_secs(15), || async {
        (open_connections(gateway.admin).await? <= 5.0).then_some(())
    })
    .await;
    assert!(freed.is_some(), "connections were not freed after their clients left");
    assert_eq!(gauge(gateway.admin, "parked_connections").await, Some(0.0));
}

/// F12, parked: a keep-alive connection parked between requests (here while
/// 520 connections in the middle of a head crowd the gateway) keeps hyper's
/// deadline for the next request: it is closed at `header_read_timeout`,
/// like a connection that was not parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f12_parked_connections_keep_the_header_read_timeout() {
    let _heavy = HEAVY.lock().await;
    let rig = Rig::start().await; // header_read_timeout = 2s
    let case = rig.begin("F12 parked keep-alive");
    let mut crowd = Vec::new();
    for _ in 0..520 {
        let mut tcp = TcpStream::connect(rig.gw.http).await.expect("connect");
        tcp.write_all(b"GET /public/x HTTP/1.1\r\n").await.expect("write");
        crowd.push(tcp);
    }
    let mut tcp = TcpStream::connect(rig.gw.http).await.expect("connect");
    assert_eq!(exchange(&mut tcp, KEEP_ALIVE_GET).await, 200);
    let parked = support::eventually(Duration::from_secs(1), || async {
        (gauge(rig.gw.admin, "parked_connections").await? >= 1.0).then_some(())
    })
    .await;
    assert!(parked.is_some(), "not parked: {:?}", gauge(rig.gw.admin, "parked_connections").await);
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "a parked connection stayed open: {read:?}");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "closed {took:?} after it was parked");
    assert_eq!(gauge(rig.gw.admin, "parked_connections").await, Some(0.0));
    drop(crowd);
    rig.end(case, Outcome::Forwarded).await;
}

/// D01: a slowloris (one header byte every 100 ms, 500 connections) is cut
/// at the header-read timeout however steadily it trickles; the control
/// request's latency is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d01_slowloris_is_cut_at_the_header_read_timeout() {
    let _heavy = HEAVY.lock().await;
    // The rig's header_read_timeout is 2 s.
    let rig = Rig::start().await;
    let case = rig.begin("D01 slowloris");
    let head =
        b"GET /public/x HTTP/1.1\r\nHost: localhost\r\nX-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..500 {
        let addr = rig.gw.http;
        tasks.spawn(async move {
            let started = Instant::now();
            let Ok(mut tcp) = TcpStream::connect(addr).await else { return None };
            for byte in head {
                if tcp.write_all(&[*byte]).await.is_err() {
                    return Some(started.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                if started.elapsed() > Duration::from_secs(8) {
                    return None;
                }
            }
            None
        });
    }
    // Every slowloris connection is open before the control request.
    let metrics = format!("http://{}/metrics", rig.gw.admin);
    let open = support::eventually(Duration::from_secs(5), || async {
        let text = String::from_utf8_lossy(&support::client::get(&metrics, &[]).await.body).into_owned();
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("authgate_open_connections "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        (n >= 500).then_some(())
    })
    .await;
    assert!(open.is_some(), "the slowloris connections did not all open");
    let started = Instant::now();
    assert_eq!(get_bearer(&rig.url("/api/x"), &rig.a).await.status, 200);
    assert!(started.elapsed() < Duration::from_millis(500), "control under slowloris took {:?}", started.elapsed());
    let mut cut = 0;
    while let Some(result) = tasks.join_next().await {
        if let Ok(Some(after)) = result {
            assert!(after < Duration::from_secs(5), "a trickling connection lived {after:?}");
            cut += 1;
        }
    }
    assert_eq!(cut, 500, "some trickling connections were never cut");
    assert!(rig.up.all().iter().all(|s| s.path_and_query == "/api/x"), "a trickled request was forwarded");
    rig.end(case, Outcome::Checked).await;
}

/// D02: a login body trickled at one byte per 100 ms is answered 408 at
/// `request_body_timeout`; other logins are not held up meanwhile.
#[tokio::test]
async fn d02_a_slow_login_body_is_408_at_the_body_timeout() {
    let rig = Rig::start_with(
        "",
        Options {
            limits: "request_body_timeout = \"1s\"\n".into(),
            login: "registration = true\n".into(),
            ..Options::default()
        },
    )
    .await;
    let case = rig.begin("D02 slow body");
    let started = Instant::now();
    let mut tcp = TcpStream::connect(rig.gw.http).await.expect("connect");
    tcp.write_all(b"POST /auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{")
        .await
        .expect("head");
    let trickle = async {
        for _ in 0..50 {
            if tcp.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // Meanwhile a normal login attempt is answered.
    let other = async {
        let body = bytes::Bytes::from(r#"{"username":"nobody","password":"wrong-password"}"#);
        support::client::send(
            http::Method::POST,
            &rig.url("/auth/login"),
            &[("content-type", "application/json")],
            body,
        )
        .await
    };
    let ((), reply) = tokio::join!(trickle, other);
    assert_eq!(reply.status, 401);
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_string(&mut text)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(6));
    rig.end(case, Outcome::Rejected).await;
}

/// D03: oversized heads are 431 and closed; bodies above the route's cap are
/// 413, declared (nothing forwarded) or streamed (cut at the cap, never buffered).
#[tokio::test]
async fn d03_oversized_heads_and_bodies() {
    let rig = Rig::start().await;
    let big = "a".repeat(1024 * 1024);
    let heads = [
        ("one 1 MB header", format!("X-Big: {big}\r\n")),
        ("200 headers of 8 KB", (0..200).map(|i| format!("X-H{i}: {}\r\n", &big[..8192])).collect()),
        ("10,000 tiny headers", (0..10_000).map(|i| format!("X{i}: a\r\n")).collect()),
        ("200 cookie lines", (0..200).map(|i| format!("Cookie: c{i}=v\r\n")).collect()),
    ];
    for (name, headers) in heads {
        let case = rig.begin(format!("D03 {name}"));
        let request = format!("GET /public/x HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n");
        let reply = raw_exchange(rig.gw.http, request.as_bytes(), Duration::from_secs(3)).await;
        assert_eq!(reply.first_status(), 431, "D03 {name}: {}", &reply.text[..reply.text.len().min(200)]);
        assert!(reply.closed, "D03 {name}: the connection stayed open");
        rig.end(case, Outcome::Rejected).await;
    }

    // A declared 10 GB body: 413 before anything is forwarded.
    let case = rig.begin("D03 declared 10 GB");
    let request = "POST /public/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10737418240\r\n\r\nabc";
    let reply = raw_exchange(rig.gw.http, request.as_bytes(), Duration::from_secs(3)).await;
    assert_eq!(reply.first_status(), 413, "{}", reply.text);
    assert!(reply.text.contains("payload_too_large"));
    rig.end(case, Outcome::Rejected).await;

    // A chunked body streamed past the default 10 MiB cap: cut there with 413.
    let case = rig.begin("D03 chunked past the cap");
    let mut tcp = TcpStream::connect(rig.gw.http).await.expect("connect");
    tcp.write_all(b"POST /public/upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .expect("head");
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "b".repeat(64 * 1024));
    let mut sent = 0usize;
    for _ in 0..400 {
        if tcp.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
        sent += 64 * 1024;
    }
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_string(&mut text)).await;
    assert!(text.starts_with("HTTP/1.1 413"), "after {sent} bytes: {}", &text[..text.len().min(200)]);
    assert!(sent < 20 * 1024 * 1024, "the gateway kept reading {sent} bytes past the cap");
    for seen in rig.up.all() {
        assert!(seen.body_bytes <= 10 * 1024 * 1024, "the upstream received {} bytes", seen.body_bytes);
    }
    rig.end(case, Outcome::Checked).await;
}

/// D04: HTTP/2 abuse. Rapid reset, a CONTINUATION flood, a PING flood and
/// streams beyond the concurrency limit end in GOAWAY, a close or refused
/// streams; the gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d04_http2_abuse_is_bounded() {
    let _heavy = HEAVY.lock().await;
    let rig =
        Rig::start_with("", Options { limits: "h2_max_concurrent_streams = 10\n".into(), ..Options::default() }).await;
    let wait = Duration::from_secs(5);

    // Rapid reset: HEADERS then RST_STREAM, 5,000 times.
    let case = rig.begin("D04 rapid reset");
    let mut h2 = H2::connect(rig.gw.http).await;
    let block = h2raw::get("/public/x", &[]);
    for i in 0..5_000u32 {
        let stream = 1 + 2 * i;
        h2.request(stream, &block, true).await;
        h2.frame(h2raw::RST_STREAM, 0, stream, &8u32.to_be_bytes()).await;
        if h2.closed {
            break;
        }
    }
    let events = h2.events_until(wait, |e| e.iter().any(|e| matches!(e, Event::GoAway { .. }))).await;
    let forwarded = rig.up.count();
    eprintln!("D04 rapid reset: closed {}, {} events, {forwarded} forwarded", h2.closed, events.len());
    assert!(h2.closed || events.iter().any(|e| matches!(e, Event::GoAway { .. })), "5,000 resets went unanswered");
    assert!(forwarded < 1_000, "{forwarded} reset streams were still forwarded");
    rig.end(case, Outcome::Checked).await;

    // CONTINUATION flood: a header block that never ends.
    let case = rig.begin("D04 CONTINUATION flood");
    let mut h2 = H2::connect(rig.gw.http).await;
    h2.frame(h2raw::HEADERS, 0, 1, &h2raw::get("/public/x", &[])).await;
    let filler = h2raw::block(&[(b"x-flood", &[b'a'; 1000])]);
    let mut frames = 0;
    while !h2.closed && frames < 10_000 {
        h2.frame(h2raw::CONTINUATION, 0, 1, &filler).await;
        frames += 1;
    }
    let events = h2.events_until(wait, |e| e.iter().any(|e| matches!(e, Event::GoAway { .. }))).await;
    assert!(
        h2.closed || events.iter().any(|e| matches!(e, Event::GoAway { .. })),
        "a 10 MB header block was accepted: {events:?}"
    );
    rig.end(case, Outcome::Rejected).await;

    // PING flood without reading the answers: bounded, then the gateway still serves.
    let case = rig.begin("D04 PING flood");
    let mut h2 = H2::connect(rig.gw.http).await;
    let flood = tokio::time::timeout(Duration::from_secs(3), async {
        for i in 0..100_000u64 {
            h2.frame(h2raw::PING, 0, 0, &i.to_be_bytes()).await;
            if h2.closed {
                break;
            }
        }
    })
    .await;
    eprintln!("D04 PING flood: finished {}, closed {}", flood.is_ok(), h2.closed);
    drop(h2);
    rig.end(case, Outcome::Rejected).await;

    // Streams beyond h2_max_concurrent_streams (10) are refused.
    let case = rig.begin("D04 streams beyond the limit");
    let mut h2 = H2::connect(rig.gw.http).await;
    // Let the server's SETTINGS (with the limit) arrive first.
    let _ = h2.events_until(Duration::from_millis(200), |_| false).await;
    let slow = h2raw::get("/public/slow", &[]);
    for i in 0..20u32 {
        h2.request(1 + 2 * i, &slow, true).await;
    }
    let events = h2.events_until(wait, |e| e.iter().filter(|e| matches!(e, Event::Reset { .. })).count() >= 10).await;
    let refused = events.iter().filter(|e| matches!(e, Event::Reset { code: 7, .. })).count();
    assert!(refused >= 10, "streams beyond the limit were not refused: {events:?}");
    rig.end(case, Outcome::Checked).await;
}

/// D05: forged tokens are rejected by the cheap checks before any
/// signature work where possible, and every rejection is fast (I5), so a
/// flood cannot monopolise the CPU.
#[tokio::test]
async fn d05_forged_tokens_are_rejected_cheaply() {
    let rig = Rig::start().await;
    let valid = sign("rs256", &claims("alice", &["admin"]));
    let (head, rest) = valid.split_once('.').expect("parts");
    let payload = rest.split('.').next().expect("payload");
    let forgeries = [
        ("garbage RS256 signature", format!("{head}.{payload}.{}", "A".repeat(342))),
        ("unknown kid", sign("rs256", &claims("alice", &[])).replace(head, &tokens_header("nope"))),
        ("too large", format!("{head}.{}.sig", "A".repeat(9000))),
    ];
    for (name, token) in forgeries {
        let case = rig.begin(format!("D05 {name}"));
        let started = Instant::now();
        for _ in 0..200 {
            assert_eq!(get_bearer(&rig.url("/api/x"), &token).await.status, 401, "D05 {name}");
        }
        let each = started.elapsed() / 200;
        assert!(each < support::attack::FAST, "D05 {name}: {each:?} per rejection");
        rig.end(case, Outcome::Rejected).await;
    }
}

fn tokens_header(kid: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": kid}).to_string())
}

/// F12 for HTTP/2: a connection that answers pings but opens no stream is
/// finished at `idle_timeout` (GOAWAY, then close); one that never sent a
/// byte is closed at the header-read timeout (2 s in the rig).
#[tokio::test]
async fn f12_idle_http2_and_silent_connections_are_closed() {
    let rig = Rig::start_with("", Options { limits: "idle_timeout = \"1s\"\n".into(), ..Options::default() }).await;
    let case = rig.begin("F12 idle h2");
    let started = Instant::now();
    let mut h2 = H2::connect(rig.gw.http).await;
    let events = h2.events_until(Duration::from_secs(5), |e| e.iter().any(|e| matches!(e, Event::GoAway { .. }))).await;
    assert!(events.iter().any(|e| matches!(e, Event::GoAway { .. })) || h2.closed, "{events:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "idle h2 closed after {took:?}");
    rig.end(case, Outcome::Rejected).await;

    let case = rig.begin("F12 silent TCP");
    let started = Instant::now();
    let mut tcp = TcpStream::connect(rig.gw.http).await.expect("connect");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "a silent connection stayed open: {read:?}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "closed after {took:?}");
    rig.end(case, Outcome::Rejected).await;
}
