//! The real binary: `check` (with `FILE:LINE:COL` errors, all at once),
//! `keygen`, `token`, `explain`, and `run` on the shipped `gateway.toml`
//! exactly as the README's quick start uses it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::client::{get, get_bearer};
use support::process::{BIN, GatewayProcess, free_port};

fn authgate(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("AUTHGATE_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run authgate")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const VALID: &str = r#"[server]
http = "127.0.0.1:0"

[[tokens.keys]]
kid = "k"
algorithm = "ES256"
private_key_file = "k.pem"
generate_if_missing = true

[[route]]
path = "/"
upstream = "builtin:echo"
"#;

#[test]
fn check_reports_every_problem_with_file_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = r#"[server]
http = "127.0.0.1:0"

[server.limits]
header_read_timeout = "10 seconds"

[tokens]
leeway = "30s"

[[tokens.keys]]
kid = "hs"
algorithm = "none"

[[route]]
path = "/api"
uptream = "http://127.0.0.1:9000"

[[route]]
path = "/admin/../x"
upstream = "builtin:echo"
"#;
    std::fs::write(dir.path().join("gateway.toml"), broken).expect("write");
    let out = authgate(dir.path(), &["check"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        "gateway.toml:5:23: invalid duration `10 seconds`",
        "gateway.toml:12:13: algorithm `none` is never accepted",
        "gateway.toml:16:1: unknown field `uptream`",
        "gateway.toml:19:8: route path must be written normalized: `/x`",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

#[test]
fn check_refuses_weak_hmac_secrets_and_missing_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("short.secret"), "too short\n").expect("write");
    let config = r#"[server]
http = "127.0.0.1:0"
[[tokens.keys]]
kid = "a"
algorithm = "HS256"
secret_file = "short.secret"
[[tokens.keys]]
kid = "b"
algorithm = "ES256"
public_key_file = "missing.pem"
[[tokens.keys]]
kid = "c"
algorithm = "HS256"
secret = "also short"
[[route]]
path = "/"
upstream = "builtin:echo"
"#;
    std::fs::write(dir.path().join("gateway.toml"), config).expect("write");
    let out = authgate(dir.path(), &["check"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The file's own problem and the keys' problems, reported together.
    for expected in [
        "gateway.toml:3:1: key `a`: HMAC secret is 9 bytes; at least 32 are required",
        "gateway.toml:7:1: key `b`: cannot read",
        "gateway.toml:14:10: HMAC secret of key `c` is shorter than 32 bytes",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("too short"), "a secret was echoed: {stderr}");
}

#[test]
fn check_accepts_the_shipped_config_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml");
    std::fs::copy(&shipped, dir.path().join("gateway.toml")).expect("copy");
    let out = authgate(dir.path(), &["check"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for expected in
        ["http   127.0.0.1:8080", "https  127.0.0.1:8443", "admin  127.0.0.1:9090", "/admin", "builtin:echo"]
    {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    assert!(!dir.path().join("keys").exists() && !dir.path().join("certs").exists(), "check must not create files");
}

#[test]
fn keygen_writes_private_keys_0600_and_prints_the_public_jwk() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    for alg in ["ES256", "RS256", "EdDSA", "HS256"] {
        let file = format!("{alg}.key");
        let out = authgate(dir.path(), &["keygen", "--alg", alg, "--out", &file]);
        assert!(out.status.success(), "{alg}: {}", text(&out.stderr));
        let mode = std::fs::metadata(dir.path().join(&file)).expect("written").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{alg}");
        if alg == "HS256" {
            assert!(out.stdout.is_empty());
        } else {
            let jwk: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JWK on stdout");
            assert_eq!(jwk["kid"], alg);
            assert!(jwk.get("d").is_none(), "{alg}: private part printed");
        }
        let again = authgate(dir.path(), &["keygen", "--alg", alg, "--out", &file]);
        assert_eq!(again.status.code(), Some(1), "{alg}: overwrote an existing key");
    }
}

#[test]
fn token_and_explain_agree_with_the_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!("{VALID}[[route]]\npath = \"/admin\"\nupstream = \"builtin:echo\"\nroles = [\"admin\"]\n");
    std::fs::write(dir.path().join("gateway.toml"), config).expect("write");
    let out = authgate(dir.path(), &["token", "--sub", "alice", "--roles", "user", "--ttl", "5m"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert_eq!(token.split('.').count(), 3);

    let allowed = authgate(dir.path(), &["explain", "--token", &token, "GET", "http://localhost/orders/1"]);
    let stdout = text(&allowed.stdout);
    assert!(stdout.contains("decision: allow"), "{stdout}");
    assert!(stdout.contains("sub \"alice\""), "{stdout}");

    let denied = authgate(dir.path(), &["explain", "--token", &token, "GET", "/public/../admin/x"]);
    let stdout = text(&denied.stdout);
    assert!(stdout.contains("path:     /admin/x"), "{stdout}");
    assert!(stdout.contains("decision: deny 403 insufficient_role"), "{stdout}");

    let bad = authgate(dir.path(), &["explain", "GET", "/admin%2fx"]);
    assert!(text(&bad.stdout).contains("decision: deny 400 bad_path"), "{}", text(&bad.stdout));
}

/// Regression: a token refused for several reasons named one at a time.
#[test]
fn explain_lists_every_reason_a_token_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("gateway.toml"), VALID).expect("write");
    let minted = authgate(dir.path(), &["token", "--sub", "alice", "--ttl", "5m"]);
    let token = text(&minted.stdout).trim().to_owned();
    // Re-sign nothing: change the claims and keep the signature (explain reads them unverified).
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let claims =
        serde_json::json!({"iss": "someone-else", "aud": "other", "sub": "alice", "exp": 1_000_000, "jti": "j"});
    parts[1] = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims.to_string());
    // And a header that names its `alg` twice (the gateway refuses it whole).
    let header = r#"{"alg":"HS256","typ":"at+jwt","alg":"ES256"}"#;
    parts[0] = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header);
    let out = authgate(dir.path(), &["explain", "--token", &parts.join("."), "GET", "/x"]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("decision: deny 401"), "{stdout}");
    for reason in ["iss \"someone-else\"", "aud [\"other\"]", "expired", "the header repeats a member"] {
        assert!(stdout.contains(reason), "{reason} missing:\n{stdout}");
    }
}

/// `check` shows each route's scopes beside its roles.
#[test]
fn check_shows_route_scopes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        format!("{VALID}[[route]]\npath = \"/orders\"\nupstream = \"builtin:echo\"\nscopes = [\"read:orders\"]\n");
    std::fs::write(dir.path().join("gateway.toml"), config).expect("write");
    let out = authgate(dir.path(), &["check"]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("scopes") && stdout.contains("read:orders"), "{stdout}");
}

/// The README's quick start: run on the shipped config, mint tokens, see the
/// injected headers come back from the echo route, stop with SIGTERM.
#[tokio::test]
async fn the_quick_start_works_on_the_shipped_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (http, https, admin) = (free_port(), free_port(), free_port());
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.toml")).expect("read");
    let config = shipped
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{http}"))
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{https}"))
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{admin}"));
    std::fs::write(dir.path().join("gateway.toml"), config).expect("write");
    let mut gateway = GatewayProcess::run(dir.path(), "gateway.toml", (http, admin), None, &[]).await;
    let readyz = format!("http://127.0.0.1:{admin}/readyz");
    let ready = support::eventually(Duration::from_secs(10), || async {
        (get(&readyz, &[]).await.status == 200).then_some(())
    });
    assert!(ready.await.is_some(), "the gateway did not become ready");
    assert!(dir.path().join("keys/main.pem").exists(), "the signing key was not generated");

    let mint = |roles: &str| {
        let out = authgate(dir.path(), &["token", "--sub", "alice", "--roles", roles]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    };
    let (user, admin_token) = (mint("user"), mint("admin"));
    let base = format!("http://127.0.0.1:{http}");

    let public = get(&format!("{base}/public/hello"), &[("x-auth-user", "mallory")]).await;
    assert_eq!(public.status, 200);
    assert!(public.json()["headers"].get("x-auth-user").is_none());
    assert_eq!(get(&format!("{base}/anything"), &[]).await.status, 401);
    let echoed = get_bearer(&format!("{base}/anything"), &user).await;
    assert_eq!(echoed.status, 200);
    assert_eq!(echoed.json()["headers"]["x-auth-user"], "alice");
    assert_eq!(echoed.json()["headers"]["x-auth-roles"], "user");
    assert_eq!(get_bearer(&format!("{base}/admin/x"), &user).await.status, 403);
    assert_eq!(get_bearer(&format!("{base}/admin/x"), &admin_token).await.status, 200);

    // The README's token-service tour: register, log in, call, refresh, reuse, log out.
    let body = |v: serde_json::Value| bytes::Bytes::from(v.to_string());
    let post = |path: &str, v: serde_json::Value, auth: Option<&str>| {
        let url = format!("{base}{path}");
        let bearer = auth.map(|t| format!("Bearer {t}"));
        let payload = body(v);
        async move {
            let headers: Vec<(&str, &str)> = bearer.as_deref().map(|b| vec![("authorization", b)]).unwrap_or_default();
            support::client::send(http::Method::POST, &url, &headers, payload).await
        }
    };
    let creds = serde_json::json!({"username": "alice", "password": "correct horse battery"});
    assert_eq!(post("/auth/register", creds.clone(), None).await.status, 201);
    let session = post("/auth/login", creds, None).await.json();
    let (access, refresh) =
        (session["access_token"].as_str().expect("access"), session["refresh_token"].as_str().expect("refresh"));
    assert_eq!(get_bearer(&format!("{base}/orders"), access).await.status, 200);
    let renewed = post("/auth/refresh", serde_json::json!({"refresh_token": refresh}), None).await.json();
    let access2 = renewed["access_token"].as_str().expect("access").to_owned();
    // Again within refresh_reuse_grace (a second tab): a new pair of the same session.
    let again = post("/auth/refresh", serde_json::json!({"refresh_token": refresh}), None).await;
    assert_eq!(again.status, 200);
    let access3 = again.json()["access_token"].as_str().expect("access").to_owned();
    // Logging out ends the session: every access token of it.
    assert_eq!(post("/auth/logout", serde_json::json!({}), Some(&access3)).await.status, 204);
    assert_eq!(get_bearer(&format!("{base}/orders"), &access2).await.code(), "token_revoked");

    // A restart keeps the generated key: old tokens stay valid.
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(10)).expect("exited after SIGTERM");
    assert!(status.success(), "SIGTERM should exit 0, got {status:?}");
    let key_before = std::fs::read(dir.path().join("keys/main.pem")).expect("key");
    let out = authgate(dir.path(), &["explain", "--token", &user, "GET", "/anything"]);
    assert!(text(&out.stdout).contains("decision: allow"), "{}", text(&out.stdout));
    assert_eq!(std::fs::read(dir.path().join("keys/main.pem")).expect("key"), key_before);
}
