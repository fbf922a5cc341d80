//! One decision behind every door: for a table of requests, what the
//! running gateway answers and what `authgate explain` says are the same
//! verdict (allow, or the same status and error code). Both ask
//! `authgate::decide`; this holds them to it from the outside.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use support::process::{GatewayProcess, cli};

const ROUTES: &str = r#"[[route]]
path = "/public"
upstream = "builtin:echo"
auth = "none"
[[route]]
path = "/admin"
upstream = "builtin:echo"
roles = ["admin"]
[[route]]
path = "/orders"
upstream = "builtin:echo"
scopes = ["read:orders"]
[[route]]
path = "/api"
methods = ["GET", "POST"]
upstream = "builtin:echo"
[[route]]
path = "/cors"
upstream = "builtin:echo"
[route.cors]
allow_origins = ["https://app.example.com"]
"#;

/// What explain printed as its decision: `allow`, or `STATUS code`.
fn explained(dir: &std::path::Path, method: &str, path: &str, token: Option<&str>) -> String {
    let mut args = vec!["--config", "g.toml", "explain"];
    if let Some(t) = token {
        args.extend(["--token", t]);
    }
    args.extend([method, path]);
    let (ok, out, err) = cli(dir, &args, None);
    assert!(ok, "explain failed: {err}");
    let line = out.lines().find(|l| l.starts_with("decision:")).unwrap_or_else(|| panic!("no decision:\n{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.get(1) {
        Some(&"allow") => "allow".to_owned(),
        Some(&"deny") => format!("{} {}", words[2], words[3]),
        _ => panic!("unexpected decision line: {line}"),
    }
}

/// What the gateway answered, in the same form.
async fn served(gateway: &GatewayProcess, method: &str, path: &str, token: Option<&str>) -> String {
    // Raw bytes: a client library would normalise the path or the method's case.
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(t) = token {
        request.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    request.push_str("\r\n");
    let (status, text) = support::client::raw(gateway.http, request.as_bytes()).await;
    if status == 200 {
        return "allow".to_owned();
    }
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let code = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default();
    format!("{status} {code}")
}

#[tokio::test]
async fn explain_and_the_gateway_give_one_answer() {
    let dir = support::fleet::setup();
    let config = support::fleet::ConfigText { login: "", routes: ROUTES, ..Default::default() }.text();
    let gateway = GatewayProcess::start(dir.path(), "g.toml", &config).await;
    let mint = |sub: &str, roles: &str, ttl: &str| {
        let (ok, out, err) =
            cli(dir.path(), &["--config", "g.toml", "token", "--sub", sub, "--roles", roles, "--ttl", ttl], None);
        assert!(ok, "{err}");
        out.trim().to_owned()
    };
    let (user, admin) = (mint("alice", "user", "5m"), mint("root", "admin", "5m"));
    // A token whose signature no key makes.
    let mut forged: Vec<String> = user.split('.').map(str::to_owned).collect();
    forged[2] = "AAAA".repeat(20);
    let forged = forged.join(".");
    let table: [(&str, &str, Option<&str>, &str); 14] = [
        ("GET", "/public/x", None, "allow"),
        ("GET", "/public/x", Some(&forged), "allow"),
        ("GET", "/api/x", None, "401 missing_token"),
        ("GET", "/api/x", Some(&user), "allow"),
        ("GET", "/api/x", Some(&forged), "401 invalid_token"),
        ("GET", "/admin/x", Some(&user), "403 insufficient_role"),
        ("GET", "/admin/x", Some(&admin), "allow"),
        ("GET", "/public/%2e%2e/admin/x", Some(&user), "403 insufficient_role"),
        ("GET", "/admin%2fx", Some(&admin), "400 bad_path"),
        ("GET", "/orders/1", Some(&admin), "403 insufficient_scope"),
        ("DELETE", "/api/x", Some(&user), "404 no_route"),
        ("delete", "/api/x", Some(&user), "400 bad_request"),
        ("TRACE", "/api/x", Some(&user), "405 method_not_allowed"),
        ("GET", "/nowhere", Some(&admin), "404 no_route"),
    ];
    for (method, path, token, expected) in table {
        let said = explained(dir.path(), method, path, token);
        let did = served(&gateway, method, path, token).await;
        assert_eq!(said, did, "{method} {path}: explain said {said}, the gateway did {did}");
        assert_eq!(did, expected, "{method} {path}");
    }
}
