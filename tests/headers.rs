//! Header hygiene through the real gateway: spoofed identity headers,
//! `Connection`-named headers, `X-Forwarded-*` from untrusted and trusted
//! peers, credentials kept at the edge, hop-by-hop headers both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use support::client::{get, raw};
use support::gateway::{Options, TestGateway};
use support::tokens::{claims, sign};
use support::upstream::Upstream;

fn routes(up: &Upstream) -> String {
    format!(
        "[headers]\nclaims = {{ email = \"X-Auth-Email\" }}\n\
         [[route]]\npath = \"/public\"\nupstream = \"{u}\"\nauth = \"none\"\n\
         [[route]]\npath = \"/api\"\nupstream = \"{u}\"\n",
        u = up.url()
    )
}

fn x_auth_headers(seen: &support::upstream::Seen) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = seen
        .headers
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("x-auth-"))
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&routes(&up)).await;
    let spoofed = [
        ("x-auth-user", "admin"),
        ("x-auth-roles", "admin"),
        ("X-Auth-Email", "ceo@example.com"),
        ("x-auth-anything", "1"),
    ];

    // Anonymous route: no X-Auth-* at all.
    assert_eq!(get(&gw.url("/public/x"), &spoofed).await.status, 200);
    assert_eq!(x_auth_headers(&up.last()), Vec::<(String, String)>::new());

    // Protected route: only the gateway's values, exactly one of each.
    let mut c = claims("alice", &["user"]);
    c["email"] = "alice@example.com".into();
    let auth = format!("Bearer {}", sign("es256", &c));
    let mut headers = spoofed.to_vec();
    headers.push(("authorization", &auth));
    assert_eq!(get(&gw.url("/api/x"), &headers).await.status, 200);
    let seen = up.last();
    assert_eq!(
        x_auth_headers(&seen),
        [("x-auth-email", "alice@example.com"), ("x-auth-roles", "user"), ("x-auth-user", "alice")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(seen.headers.get_all("x-auth-user").iter().count(), 1);

    // An invalid token with spoofed headers: refused, nothing forwarded.
    let before = up.count();
    let bad = [("authorization", "Bearer a.b.c"), ("x-auth-user", "admin")];
    assert_eq!(get(&gw.url("/api/x"), &bad).await.status, 401);
    assert_eq!(up.count(), before);
}

#[tokio::test]
async fn connection_named_headers_are_removed_before_identity_is_set() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&routes(&up)).await;
    let token = sign("es256", &claims("alice", &["user"]));
    // Raw bytes: an HTTP client might refuse or rewrite these Connection values.
    for connection in ["X-Auth-User", "close, X-Auth-Roles", "X-Forwarded-For, Keep-Alive, X-Auth-User"] {
        let extra = format!(
            "Authorization: Bearer {token}\r\nX-Auth-User: admin\r\nX-Forwarded-For: 6.6.6.6\r\nKeep-Alive: 5\r\nConnection: {connection}\r\n"
        );
        let request = format!("GET /api/x HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n");
        let (status, _) = raw(gw.http, request.as_bytes()).await;
        assert_eq!(status, 200, "{connection}");
        let seen = up.last();
        assert_eq!(seen.headers["x-auth-user"], "alice", "{connection}");
        assert_eq!(seen.headers["x-auth-roles"], "user", "{connection}");
        assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1", "{connection}");
        assert!(seen.headers.get("keep-alive").is_none(), "{connection}");
    }
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_are_replaced() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&routes(&up)).await;
    let spoof = [
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("x-original-url", "/public"),
        ("forwarded", "for=1.2.3.4"),
    ];
    assert_eq!(get(&gw.url("/public/x"), &spoof).await.status, 200);
    let seen = up.last();
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], gw.http.to_string());
    assert!(seen.headers.get("x-original-url").is_none());
    assert!(seen.headers.get("forwarded").is_none());
    assert_eq!(seen.headers["host"], gw.http.to_string(), "the client's Host is kept");
}

#[tokio::test]
async fn forwarded_headers_from_a_trusted_proxy_are_appended_to() {
    let up = Upstream::start().await;
    let options = Options { server: "trusted_proxies = [\"127.0.0.0/8\"]".into(), ..Options::default() };
    let gw = TestGateway::start_with(&routes(&up), options).await;
    let spoof = [("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https")];
    assert_eq!(get(&gw.url("/public/x"), &spoof).await.status, 200);
    let seen = up.last();
    assert_eq!(seen.headers["x-forwarded-for"], "1.2.3.4, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn credentials_stay_at_the_edge_unless_forward_token() {
    let up = Upstream::start().await;
    let token = sign("es256", &claims("alice", &[]));
    let auth = format!("Bearer {token}");

    let gw = TestGateway::start(&routes(&up)).await;
    assert_eq!(get(&gw.url("/api/x"), &[("authorization", &auth)]).await.status, 200);
    assert!(up.last().headers.get("authorization").is_none());
    assert_eq!(get(&gw.url("/public/x"), &[("authorization", &auth)]).await.status, 200);
    assert!(up.last().headers.get("authorization").is_none(), "not on anonymous routes either");

    let forwarding = format!("{}\n", routes(&up)).replace("[headers]\n", "[headers]\nforward_token = true\n");
    let gw = TestGateway::start(&forwarding).await;
    assert_eq!(get(&gw.url("/api/x"), &[("authorization", &auth)]).await.status, 200);
    assert_eq!(up.last().headers["authorization"], auth.as_str());
}

#[tokio::test]
async fn hop_by_hop_headers_of_the_response_do_not_reach_the_client() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&routes(&up)).await;
    let reply = get(&gw.url("/public/x"), &[]).await;
    assert_eq!(reply.status, 200);
    // The test upstream names `x-upstream-hop` in its Connection header.
    assert!(reply.headers.get("x-upstream-hop").is_none());
    assert_eq!(reply.json()["upstream"], true);
}

/// H01–H06 as classes through the catalog's rig: every spoofed identity or
/// routing header, on every kind of route, with the invariants after each.
#[tokio::test]
async fn h01_to_h06_spoofed_headers_with_the_invariants() {
    use support::attack::{Outcome, Rig};
    let rig = Rig::start().await;
    let spoofed = [
        ("X-Auth-User", "spoof-admin"),
        ("X-Auth-Roles", "spoof,admin"),
        ("x-auth-email", "spoof@example.com"),
        ("X-AUTH-SUB", "spoof"),
        ("X-Forwarded-Uri", "/public/spoof"),
        ("X-Original-URL", "/public/spoof"),
        ("X-Rewrite-URL", "/public/spoof"),
        ("X-Forwarded-Prefix", "/public/spoof"),
        ("X-Envoy-Original-Path", "/public/spoof"),
        ("X-Forwarded-Host", "spoof.example"),
        ("X-Forwarded-Proto", "spoof"),
        ("Forwarded", "for=1.2.3.4;host=spoof.example"),
    ];
    let a = format!("Bearer {}", rig.a);
    let z = format!("Bearer {}", rig.z);
    let bad = format!("Bearer {}x", rig.a);
    for (name, value) in spoofed {
        let connection = format!("close, {name}");
        for (path, auth, outcome) in [
            ("/public/x", None, Outcome::Forwarded),
            ("/api/x", Some(a.as_str()), Outcome::Forwarded),
            ("/api/x", Some(bad.as_str()), Outcome::TokenRejected),
            ("/admin/x", Some(a.as_str()), Outcome::Rejected),
            ("/admin/x", Some(z.as_str()), Outcome::Forwarded),
            ("/admin/x", None, Outcome::Rejected),
        ] {
            let case = rig.begin(format!("H {name} on {path} with {:?}", auth.map(|s| &s[..12])));
            let mut headers = vec![(name, value), ("x-forwarded-for", "1.2.3.4")];
            if let Some(auth) = auth {
                headers.push(("authorization", auth));
            }
            // H03: also named in Connection, which must not make it survive.
            headers.push(("connection", connection.as_str()));
            let reply = get(&rig.url(path), &headers).await;
            if outcome == Outcome::Forwarded {
                assert_eq!(reply.status, 200, "{name} on {path}");
                let seen = rig.up.last();
                assert!(
                    seen.headers.values().all(|v| !v.to_str().unwrap_or_default().contains("spoof")),
                    "{name} on {path} reached the upstream: {:?}",
                    seen.headers
                );
                // H06: the real peer ends the X-Forwarded-For chain (the client's is replaced).
                assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1", "{name} on {path}");
                if path == "/public/x" {
                    assert!(seen.headers.keys().all(|k| !k.as_str().starts_with("x-auth-")), "identity on /public");
                }
            } else {
                assert!(reply.status == 401 || reply.status == 403, "{name} on {path}: {}", reply.status);
            }
            rig.end(case, outcome).await;
        }
    }
}

/// Regression: `Connection: X-Request-Id` removed the gateway's request id
/// from the upstream request. What the gateway adds comes after hop-by-hop removal.
#[tokio::test]
async fn connection_cannot_remove_the_request_id() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&routes(&up)).await;
    for (sent, connection) in [("X-Request-Id: trace-1\r\n", "X-Request-Id"), ("", "x-request-id, keep-alive")] {
        let request = format!(
            "GET /public/x HTTP/1.1\r\nHost: localhost\r\n{sent}Connection: {connection}\r\nConnection: close\r\n\r\n"
        );
        let (status, text) = raw(gw.http, request.as_bytes()).await;
        assert_eq!(status, 200, "{connection}");
        let seen = up.last();
        let id = seen.headers.get("x-request-id").map(|v| v.to_str().unwrap_or("?").to_owned());
        let answered = text
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("x-request-id: ").map(str::to_owned))
            .map(|v| v.trim().to_owned());
        assert!(id.is_some(), "{connection}: the upstream got no request id");
        assert_eq!(id, answered, "{connection}: the upstream and the client got different ids");
        if !sent.is_empty() {
            assert_eq!(id.as_deref(), Some("trace-1"), "a sane client id is kept");
        }
    }
}
