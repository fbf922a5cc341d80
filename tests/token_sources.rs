//! Where the token comes from, CSRF and CORS (catalog K02–K07).
//!
//! K02–K05 run in cookie mode against real sessions (alice and bob log in),
//! with the catalog's invariants after each case. K06/K07: CORS per route,
//! preflights answered by the gateway without authentication and never
//! forwarded; exact origins only; never `*` with credentials; an origin not
//! listed gets no CORS headers. (K04's cookie tossing and the login-CSRF
//! checks of L10 are also in `login.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use support::attack::{Outcome, Rig};

use bytes::Bytes;
use http::Method;
use support::client::{cookie_value, get, send};
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
        ("null", "GET", ""),
        ("http://app.example.com", "GET", ""),
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

/// Logs `user` in (cookie mode); returns (access cookie, CSRF cookie).
async fn session(rig: &Rig, user: &str) -> (String, String) {
    let body = Bytes::from(format!(r#"{{"username":"{user}","password":"correct horse battery"}}"#));
    let json = [("content-type", "application/json")];
    let registered = send(Method::POST, &rig.url("/auth/register"), &json, body.clone()).await;
    assert_eq!(registered.status, 201);
    let login = send(Method::POST, &rig.url("/auth/login"), &json, body).await;
    assert_eq!(login.status, 200);
    let cookies = login.set_cookies();
    (cookie_value(&cookies, "__Host-authgate-access"), cookie_value(&cookies, "__Host-authgate-csrf"))
}

#[tokio::test]
async fn k02_to_k05_token_sources_and_double_submit_csrf() {
    let options =
        support::gateway::Options { login: "registration = true\ncookies = true".into(), ..Default::default() };
    let rig = Rig::start_with("", options).await;
    let (access, csrf) = session(&rig, "alice").await;
    let (bob_access, bob_csrf) = session(&rig, "bob").await;
    let jar = format!("__Host-authgate-access={access}; __Host-authgate-csrf={csrf}");
    let url = rig.url("/api/x");
    let request = |method: Method, headers: Vec<(&'static str, String)>| {
        let url = url.clone();
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            send(method, &url, &h, Bytes::new()).await
        }
    };

    // K02: the scheme is case-insensitive; anything else is a 401, never a fallback to the cookie.
    assert_eq!(request(Method::GET, vec![("authorization", format!("bearer {}", rig.a))]).await.status, 200);
    for bad in
        ["Bearer".to_owned(), "Basic YTpi".to_owned(), format!("Bearer a {}", rig.a), format!("Bearer,{}", rig.a)]
    {
        let case = rig.begin(format!("K02 {}", &bad[..bad.len().min(12)]));
        let reply = request(Method::GET, vec![("authorization", bad.clone()), ("cookie", jar.clone())]).await;
        assert_eq!(reply.status, 401, "K02 {bad}");
        rig.end(case, Outcome::TokenRejected).await;
    }

    // K03: an invalid bearer with a valid cookie on POST: 401, not the cookie (which would skip CSRF).
    let case = rig.begin("K03 invalid bearer, valid cookie");
    let reply = request(
        Method::POST,
        vec![("authorization", format!("Bearer {}x", rig.a)), ("cookie", jar.clone()), ("x-csrf-token", csrf.clone())],
    )
    .await;
    assert_eq!(reply.status, 401);
    rig.end(case, Outcome::TokenRejected).await;

    // K04: double submit, bound to the session.
    let unsafe_cases: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        ("no header", vec![("cookie", jar.clone())]),
        ("header differs", vec![("cookie", jar.clone()), ("x-csrf-token", "nope".into())]),
        (
            "cookie and header tossed to x",
            vec![
                ("cookie", format!("__Host-authgate-access={access}; __Host-authgate-csrf=x")),
                ("x-csrf-token", "x".into()),
            ],
        ),
        (
            "bob's CSRF on alice's session",
            vec![
                ("cookie", format!("__Host-authgate-access={access}; __Host-authgate-csrf={bob_csrf}")),
                ("x-csrf-token", bob_csrf.clone()),
            ],
        ),
        (
            "two CSRF headers",
            vec![("cookie", jar.clone()), ("x-csrf-token", csrf.clone()), ("x-csrf-token", csrf.clone())],
        ),
    ];
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        for (name, headers) in &unsafe_cases {
            let case = rig.begin(format!("K04 {method} {name}"));
            let reply = request(method.clone(), headers.clone()).await;
            assert_eq!((reply.status, reply.code().as_str()), (403, "csrf_failed"), "K04 {method} {name}");
            rig.end(case, Outcome::Rejected).await;
        }
    }
    for over in ["x-http-method-override", "x-http-method", "x-method-override"] {
        let case = rig.begin(format!("K04 GET with {over}"));
        let reply = request(Method::GET, vec![("cookie", jar.clone()), (over, "DELETE".into())]).await;
        assert_eq!(reply.status, 403, "K04 {over}: a safe method claiming DELETE skipped CSRF");
        rig.end(case, Outcome::Rejected).await;
    }
    let case = rig.begin("K04 the right header");
    assert_eq!(request(Method::POST, vec![("cookie", jar.clone()), ("x-csrf-token", csrf.clone())]).await.status, 200);
    assert_eq!(request(Method::GET, vec![("cookie", jar.clone())]).await.status, 200, "GET needs no CSRF header");
    assert_eq!(request(Method::HEAD, vec![("cookie", jar.clone())]).await.status, 200, "HEAD needs no CSRF header");
    rig.end(case, Outcome::Forwarded).await;

    // K05: a bearer and a different valid cookie: refused; each alone works as its kind.
    let case = rig.begin("K05 bearer and a different cookie");
    let bob_jar = format!("__Host-authgate-access={bob_access}; __Host-authgate-csrf={bob_csrf}");
    let reply = request(Method::GET, vec![("authorization", format!("Bearer {access}")), ("cookie", bob_jar)]).await;
    assert_eq!(reply.status, 401);
    rig.end(case, Outcome::TokenRejected).await;
    assert_eq!(
        request(Method::POST, vec![("authorization", format!("Bearer {access}"))]).await.status,
        200,
        "a bearer alone needs no CSRF header"
    );
    assert_eq!(
        request(Method::GET, vec![("authorization", format!("Bearer {access}")), ("cookie", jar.clone())]).await.status,
        200,
        "the same token as bearer and cookie"
    );
}
