//! Parsing and smuggling (catalog S01–S08): the gateway never forwards an
//! ambiguous request. Every case is sent byte for byte on a raw socket (an
//! HTTP client would normalise it away), and the catalog's invariants are
//! checked after each.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use std::time::Duration;

use support::attack::{Outcome, Rig};
use support::client::raw_exchange;

const WAIT: Duration = Duration::from_secs(2);

/// A POST to `/public/x` with `headers` and `body`; the smuggled tail asks for `/admin/x`.
fn post(headers: &str, body: &str) -> String {
    format!("POST /public/x HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n{body}")
}

const TAIL: &str = "GET /admin/x HTTP/1.1\r\nHost: localhost\r\nX-Auth-User: spoof\r\n\r\n";

/// Sends `request`; expects 400 (or a close without any response) and nothing forwarded.
async fn refused(rig: &Rig, name: &str, request: &[u8]) {
    let case = rig.begin(name);
    let reply = raw_exchange(rig.gw.http, request, WAIT).await;
    let statuses = reply.statuses();
    assert!(statuses.is_empty() || statuses == [400], "{name}: {statuses:?}\n{}", reply.text);
    assert!(reply.closed, "{name}: the connection stayed open");
    rig.end(case, Outcome::Rejected).await;
}

/// CL+TE. hyper drops the `Content-Length`, reads the body as chunked and
/// closes the connection after the response (RFC 9112 §6.1 allows this in
/// place of a 400), so it cannot be told apart from a plain chunked request
/// here. What the catalog's 400 protects is still guaranteed: the tail is
/// never parsed, the connection is closed, and the upstream receives a
/// request re-framed by the gateway (never the client's CL or TE).
#[tokio::test]
async fn s01_content_length_with_transfer_encoding_never_smuggles() {
    let rig = Rig::start().await;
    for (name, headers) in [
        ("CL then TE", "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n"),
        ("TE then CL", "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n"),
        ("CL 0 with TE", "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n"),
        ("CL 100 with TE", "Content-Length: 100\r\nTransfer-Encoding: chunked\r\n"),
    ] {
        let case = rig.begin(format!("S01 {name}"));
        let reply = raw_exchange(rig.gw.http, post(headers, &format!("0\r\n\r\n{TAIL}")).as_bytes(), WAIT).await;
        assert_eq!(reply.statuses(), [200], "S01 {name}: the tail was answered: {}", reply.text);
        assert!(reply.closed, "S01 {name}: the connection stayed open");
        let seen = rig.up.last();
        assert_eq!((seen.path_and_query.as_str(), seen.body_bytes), ("/public/x", 0), "S01 {name}");
        assert!(!seen.headers.contains_key("transfer-encoding") || !seen.headers.contains_key("content-length"));
        rig.end(case, Outcome::Forwarded).await;
    }
    // With a protected route the same request is authenticated first: 401, nothing forwarded.
    let request = format!(
        "POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{TAIL}"
    );
    let case = rig.begin("S01 on a protected route");
    let reply = raw_exchange(rig.gw.http, request.as_bytes(), WAIT).await;
    assert_eq!(reply.statuses(), [401], "{}", reply.text);
    rig.end(case, Outcome::Rejected).await;
}

#[tokio::test]
async fn s02_obfuscated_transfer_encodings_are_refused() {
    let rig = Rig::start().await;
    // Not in the list: `Transfer-Encoding:\tchunked\t`. Tabs are optional
    // whitespace (RFC 9110 §5.6.3), so that header is plain `chunked`.
    let variants = [
        " Transfer-Encoding: chunked",
        "Transfer-Encoding : chunked",
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding: identity, chunked",
        "Transfer-Encoding: chunked,",
        "Transfer-Encoding: identity",
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
        "Transfer-Encoding: \x0bchunked",
        "Transfer-Encoding: \x0cchunked",
        "Transfer-Encoding\x01: chunked",
        "Transfer-Encoding\x1f: chunked",
        "Transfer-Encoding: chunked\x7f",
        "X: y\r\n Transfer-Encoding: chunked",
        "Transfer-Encoding\r\n: chunked",
        "Transfer_Encoding: chunked\r\nTransfer-Encoding: identity",
    ];
    for te in variants {
        let request = post(&format!("{te}\r\nContent-Length: 5\r\n"), &format!("0\r\n\r\n{TAIL}"));
        refused(&rig, &format!("S02 {te:?}"), request.as_bytes()).await;
        let request = post(&format!("{te}\r\n"), &format!("0\r\n\r\n{TAIL}"));
        refused(&rig, &format!("S02 {te:?} without CL"), request.as_bytes()).await;
    }
    for byte in [0xa0u8, 0xff] {
        for before in [true, false] {
            let mut request = b"POST /public/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: ".to_vec();
            if before {
                request.push(byte);
            }
            request.extend_from_slice(b"chunked");
            if !before {
                request.push(byte);
            }
            request.extend_from_slice(format!("\r\n\r\n0\r\n\r\n{TAIL}").as_bytes());
            refused(&rig, &format!("S02 byte {byte:#x}"), &request).await;
        }
    }
}

#[tokio::test]
async fn s03_content_length_forms_are_refused() {
    let rig = Rig::start().await;
    // Two equal `Content-Length` lines are merged by hyper before the
    // gateway sees them (RFC 9110 §8.6 allows it); both parties then agree
    // on the length, so the next request is parsed, and authenticated, as one.
    let case = rig.begin("S03 two equal lengths");
    let reply = raw_exchange(
        rig.gw.http,
        post("Content-Length: 5\r\nContent-Length: 5\r\n", &format!("hello{TAIL}")).as_bytes(),
        WAIT,
    )
    .await;
    assert_eq!(reply.statuses(), [200, 401], "{}", reply.text);
    assert_eq!(rig.up.last().body_bytes, 5);
    rig.end(case, Outcome::Forwarded).await;
    for cl in [
        "Content-Length: 5\r\nContent-Length: 6",
        "Content-Length: 5, 5",
        "Content-Length: 5,5",
        "Content-Length: +5",
        "Content-Length: 0x5",
        "Content-Length: -1",
        "Content-Length: 5 5",
        "Content-Length: 1234567890123456789012345",
        "Content-Length: 5\x00",
    ] {
        let request = post(&format!("{cl}\r\n"), &format!("hello{TAIL}"));
        refused(&rig, &format!("S03 {cl:?}"), request.as_bytes()).await;
    }
}

#[tokio::test]
async fn s04_bad_chunk_syntax_is_refused_and_nothing_follows() {
    let rig = Rig::start().await;
    for body in [
        "FFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "5;ext\nhello\r\n0\r\n\r\n",
        "5\nhello\n0\n\n",
        "5\r\nhello0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",
    ] {
        let name = format!("S04 {body:?}");
        let case = rig.begin(&name);
        let request = post("Transfer-Encoding: chunked\r\n", &format!("{body}{TAIL}"));
        let reply = raw_exchange(rig.gw.http, request.as_bytes(), WAIT).await;
        // The head is valid, so the request may already be on its way when
        // the body turns out broken: the upstream then sees an aborted body,
        // never a completed request, and the smuggled tail is never parsed.
        let statuses = reply.statuses();
        assert!(statuses.len() <= 1, "{name}: the tail was parsed as a request: {statuses:?}");
        assert!(statuses.iter().all(|s| *s == 400 || *s == 502), "{name}: {statuses:?}");
        assert!(reply.closed, "{name}: the connection stayed open");
        assert!(rig.up.all().iter().all(|s| s.path_and_query != "/admin/x"), "{name}: the tail reached the upstream");
        rig.end(case, Outcome::Checked).await;
    }
}
#[tokio::test]
async fn s06_bad_header_syntax_is_refused() {
    let rig = Rig::start().await;
    for (name, head) in [
        ("obs-fold", "GET /public/x HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n X-Auth-User: spoof\r\n\r\n"),
        ("NUL in a value", "GET /public/x HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n"),
        ("CR in a value", "GET /public/x HTTP/1.1\r\nHost: localhost\r\nX-A: a\rX-Auth-User: spoof\r\n\r\n"),
        ("space before colon", "GET /public/x HTTP/1.1\r\nHost: localhost\r\nX-Auth-User : spoof\r\n\r\n"),
        ("non-token name", "GET /public/x HTTP/1.1\r\nHost: localhost\r\nX(A): b\r\n\r\n"),
        ("bare LF request line", "GET /public/x HTTP/1.1\nHost: localhost\nX-Auth-User: spoof\n\n"),
        ("no version", "GET /public/x\r\nHost: localhost\r\n\r\n"),
        ("HTTP/2.0 over h1", "GET /public/x HTTP/2.0\r\nHost: localhost\r\n\r\n"),
        ("two spaces", "GET  /public/x HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        ("space in target", "GET /public/x /admin HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    ] {
        let case = rig.begin(format!("S06 {name}"));
        let reply = raw_exchange(rig.gw.http, head.as_bytes(), WAIT).await;
        let statuses = reply.statuses();
        // A bare-LF line ending is tolerated by RFC 9112 §2.2; what matters
        // is that the spoofed identity never reaches the upstream.
        if name == "bare LF request line" {
            assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{name}: {statuses:?}");
            rig.end(case, Outcome::Checked).await;
            continue;
        }
        assert!(statuses.is_empty() || statuses.iter().all(|s| *s == 400 || *s == 505), "{name}: {}", reply.text);
        assert!(reply.closed, "{name}: the connection stayed open");
        rig.end(case, Outcome::Rejected).await;
    }
}

/// S07: malformed HTTP/2 requests are reset or refused, never downgraded to
/// HTTP/1.1 for the upstream. Sent on a raw prior-knowledge h2 connection.
#[tokio::test]
async fn s07_malformed_http2_requests_never_reach_the_upstream() {
    use support::h2raw::{self, Event, H2};
    let rig = Rig::start().await;
    let post = |path: &str, extra: &[(&[u8], &[u8])]| {
        let mut fields: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", b"localhost"),
            (b":path", path.as_bytes()),
        ];
        fields.extend_from_slice(extra);
        h2raw::block(&fields)
    };
    /// (case, header block, DATA sent after it)
    type H2Case<'a> = (&'a str, Vec<u8>, Option<&'a [u8]>);
    let cases: Vec<H2Case> = vec![
        ("content-length above the DATA", post("/public/x", &[(b"content-length", b"10")]), Some(b"abc")),
        ("content-length below the DATA", post("/public/x", &[(b"content-length", b"1")]), Some(b"abc")),
        ("transfer-encoding", post("/public/x", &[(b"transfer-encoding", b"chunked")]), Some(b"0\r\n\r\n")),
        ("connection header", h2raw::get("/public/x", &[(b"connection", b"keep-alive")]), None),
        ("CRLF in a value", h2raw::get("/public/x", &[(b"x-a", b"a\r\nx-auth-user: spoof")]), None),
        ("NUL in a value", h2raw::get("/public/x", &[(b"x-a", b"a\0b")]), None),
        ("uppercase name", h2raw::get("/public/x", &[(b"X-Auth-User", b"spoof")]), None),
        ("space in a name", h2raw::get("/public/x", &[(b"x auth", b"spoof")]), None),
        ("path without a slash", h2raw::get("public/x", &[]), None),
        ("empty path", h2raw::get("", &[]), None),
        ("authority differs from host", h2raw::get("/public/x", &[(b"host", b"evil.example")]), None),
        (
            "no method",
            h2raw::block(&[(b":scheme", b"http"), (b":authority", b"localhost"), (b":path", b"/public/x")]),
            None,
        ),
        ("unknown pseudo-header", h2raw::get("/public/x", &[(b":protocol", b"websocket")]), None),
        (
            "pseudo-header after a regular one",
            h2raw::block(&[
                (b":method", b"GET"),
                (b"x-a", b"b"),
                (b":scheme", b"http"),
                (b":authority", b"localhost"),
                (b":path", b"/public/x"),
            ]),
            None,
        ),
    ];
    // The raw client itself works: a well-formed request is answered 200 and
    // reaches the upstream as HTTP/1.1.
    let mut h2 = H2::connect(rig.gw.http).await;
    h2.request(1, &h2raw::get("/public/x", &[(b"x-auth-user", b"spoof")]), true).await;
    let events = h2.events_until(WAIT, |e| e.iter().any(|e| matches!(e, Event::Response { .. }))).await;
    assert!(events.contains(&Event::Response { stream: 1, ok: true }), "{events:?}");
    assert!(rig.up.last().headers.get("x-auth-user").is_none());
    rig.assert_upstream_clean("S07 control");
    for (name, block, data) in cases {
        let case = rig.begin(format!("S07 {name}"));
        let mut h2 = H2::connect(rig.gw.http).await;
        h2.request(1, &block, data.is_none()).await;
        if let Some(data) = data {
            h2.frame(h2raw::DATA, h2raw::END_STREAM, 1, data).await;
        }
        let events = h2
            .events_until(WAIT, |e| {
                e.iter().any(|e| matches!(e, Event::Reset { .. } | Event::GoAway { .. } | Event::Response { .. }))
            })
            .await;
        assert!(!events.contains(&Event::Response { stream: 1, ok: true }), "S07 {name}: answered 200: {events:?}");
        assert!(
            events.iter().any(|e| matches!(
                e,
                Event::Reset { stream: 1, .. } | Event::GoAway { .. } | Event::Response { stream: 1, ok: false }
            )) || h2.closed,
            "S07 {name}: neither reset nor refused: {events:?}"
        );
        // The length mismatches are found only when the DATA arrives, after
        // the head went upstream: the upstream then sees an aborted body.
        let outcome = if name.starts_with("content-length") { Outcome::Checked } else { Outcome::Rejected };
        if outcome == Outcome::Checked {
            assert!(
                rig.up.all().iter().all(|s| s.body_bytes <= 1),
                "S07 {name}: a mismatched body was forwarded whole"
            );
        }
        rig.end(case, outcome).await;
    }
}

/// S08: upgrades. No tunnel without authentication; an upgrade the upstream
/// declines leaves an HTTP connection on which the next request is
/// authenticated again; `h2c` is never honoured.
#[tokio::test]
async fn s08_upgrades_open_no_unauthenticated_tunnel() {
    let rig = Rig::start().await;
    let upgrade = |path: &str, auth: &str, key: bool| {
        let key = if key { "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" } else { "" };
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\n{key}\r\n"
        )
    };
    let bearer = format!("Authorization: Bearer {}\r\n", rig.a);

    let case = rig.begin("S08 unauthenticated upgrade, bytes pipelined behind it");
    let request = format!("{}GET /admin/x HTTP/1.1\r\nHost: localhost\r\n\r\n", upgrade("/api/ws", "", true));
    let reply = raw_exchange(rig.gw.http, request.as_bytes(), WAIT).await;
    assert_eq!(reply.first_status(), 401, "{}", reply.text);
    assert!(reply.statuses().iter().all(|s| *s == 401), "{}", reply.text);
    assert!(!reply.text.contains("101 Switching"));
    rig.end(case, Outcome::Rejected).await;

    let case = rig.begin("S08 missing Sec-WebSocket-Key");
    let reply = raw_exchange(rig.gw.http, upgrade("/api/ws", &bearer, false).as_bytes(), WAIT).await;
    assert_eq!(reply.first_status(), 400, "{}", reply.text);
    rig.end(case, Outcome::Rejected).await;

    // The recording upstream answers 200, not 101: the connection stays HTTP
    // and the next request on it, without a token, is refused.
    let case = rig.begin("S08 upgrade declined by the upstream");
    let request = format!(
        "{}GET /admin/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        upgrade("/api/ws", &bearer, true)
    );
    let reply = raw_exchange(rig.gw.http, request.as_bytes(), WAIT).await;
    let statuses = reply.statuses();
    assert!(statuses.len() == 2 && statuses[0] != 101 && statuses[1] == 401, "{}", reply.text);
    rig.end(case, Outcome::Checked).await;

    let case = rig.begin("S08 h2c upgrade");
    let request = "GET /public/x HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
                   HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nX-Auth-User: spoof\r\nConnection: close\r\n\r\n";
    let reply = raw_exchange(rig.gw.http, request.as_bytes(), WAIT).await;
    assert_eq!(reply.first_status(), 200, "{}", reply.text);
    let seen = rig.up.last();
    assert!(seen.headers.get("upgrade").is_none() && seen.headers.get("http2-settings").is_none(), "{seen:?}");
    rig.end(case, Outcome::Forwarded).await;
}

/// S08: an upstream's 101 without the right `Sec-WebSocket-Accept` is a 502.
#[tokio::test]
async fn s08_a_101_with_a_wrong_accept_is_502() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bogus\r\n\r\n")
                .await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    let rig = Rig::start_with(
        &format!("[[route]]\npath = \"/ws\"\nupstream = \"http://{addr}\"\n"),
        support::gateway::Options::default(),
    )
    .await;
    let case = rig.begin("S08 bad accept");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        rig.a
    );
    let reply = raw_exchange(rig.gw.http, request.as_bytes(), WAIT).await;
    assert_eq!(reply.first_status(), 502, "{}", reply.text);
    rig.end(case, Outcome::Rejected).await;
}
