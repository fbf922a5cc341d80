//! CORS per route: preflights answered by the gateway without
//! authentication and never forwarded; exact origins only; never `*` with
//! credentials; an origin not listed gets no CORS headers.

mod support;

use bytes::Bytes;
use http::Method;
use support::client::{get, send};
use support::gateway::TestGateway;
use support::tokens::{claims, sign};
use support::upstream::Upstream;

async fn gateway(up: &Upstream) -> TestGateway {
    let rest = format!(
        r#"[[route]]
path = "/api"
upstream = "{u}"
[route.cors]
allow_origins = ["https://app.example.com"]
allow_methods = ["GET", "POST", "DELETE"]
allow_headers = ["authorization", "content-type"]
expose_headers = ["x-request-id"]
allow_credentials = true
max_age = "10m"

[[route]]
path = "/plain"
upstream = "{u}"
"#,
        u = up.url()
    );
    TestGateway::start(&rest).await
}

async fn preflight(gw: &TestGateway, path: &str, origin: &str, method: &str, headers: &str) -> support::client::Reply {
    let mut h = vec![("origin", origin), ("access-control-request-method", method)];
    if !headers.is_empty() {
        h.push(("access-control-request-headers", headers));
    }
    send(Method::OPTIONS, &gw.url(path), &h, Bytes::new()).await
}

#[tokio::test]
async fn preflights_are_answered_by_the_gateway_and_never_forwarded() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let ok = preflight(&gw, "/api/orders", "https://app.example.com", "POST", "Authorization, Content-Type").await;
    assert_eq!(ok.status, 204);
    assert_eq!(ok.headers["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(ok.headers["access-control-allow-credentials"], "true");
    assert_eq!(ok.headers["access-control-allow-methods"], "GET, POST, DELETE");
    assert_eq!(ok.headers["access-control-max-age"], "600");
    for (origin, method, headers) in [
        ("https://evil.example", "POST", ""),
        ("null", "POST", ""),
        ("https://app.example.com.evil.com", "GET", ""),
        ("https://evilapp.example.com", "GET", ""),
        ("https://app.example.com", "PUT", ""),
        ("https://app.example.com", "GET", "x-secret"),
    ] {
        let r = preflight(&gw, "/api/orders", origin, method, headers).await;
        assert_eq!(r.status, 403, "{origin} {method} {headers}");
        assert!(r.headers.get("access-control-allow-origin").is_none(), "{origin}");
    }
    assert_eq!(up.count(), 0, "a preflight reached the upstream");
    // A route without [route.cors] does not answer preflights: it authenticates them.
    assert_eq!(preflight(&gw, "/plain/x", "https://app.example.com", "GET", "").await.status, 401);
}

#[tokio::test]
async fn actual_responses_carry_cors_headers_only_for_listed_origins() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let auth = format!("Bearer {}", sign("es256", &claims("alice", &[])));
    let ok = get(&gw.url("/api/x"), &[("authorization", auth.as_str()), ("origin", "https://app.example.com")]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(ok.headers["access-control-allow-credentials"], "true");
    assert_eq!(ok.headers["access-control-expose-headers"], "x-request-id");
    assert!(ok.headers.get_all("vary").iter().any(|v| v == "Origin"));
    let evil = get(&gw.url("/api/x"), &[("authorization", auth.as_str()), ("origin", "https://evil.example")]).await;
    assert_eq!(evil.status, 200);
    assert!(evil.headers.get("access-control-allow-origin").is_none());
    // A non-OPTIONS request carrying preflight headers is fully authenticated.
    let sneaky = send(
        Method::POST,
        &gw.url("/api/x"),
        &[("origin", "https://app.example.com"), ("access-control-request-method", "POST")],
        Bytes::new(),
    )
    .await;
    assert_eq!(sneaky.status, 401);
}

#[test]
fn a_wildcard_with_credentials_is_refused_at_load() {
    let src = "[server]\nhttp = \"127.0.0.1:0\"\n[[route]]\npath = \"/\"\nupstream = \"builtin:echo\"\nauth = \"none\"\n[route.cors]\nallow_origins = [\"*\"]\nallow_credentials = true\n";
    let errors = authgate::config::Config::from_str(src, std::path::Path::new("g.toml")).expect_err("must be refused");
    assert!(errors.to_string().contains("g.toml:8:18: `*` cannot be used with allow_credentials = true"), "{errors}");
}
