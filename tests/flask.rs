//! Step 1 of the Flask migration (docs/migrating-from-flask.md): authgate
//! verifies the tokens today's apps already issue, minted by the real
//! libraries (Flask-JWT-Extended 4.x and PyJWT, `tests/python/mint.py`):
//! an FJE access token passes with its identity and roles, its refresh
//! token, an expired one and a tampered one are refused with the right
//! codes, its cookie mode works with the `X-CSRF-TOKEN` double submit; a
//! PyJWT decorator's `{"user", "exp"}` sent bare in `Authorization` passes,
//! and `{"username", "role", "exp"}` with a single role; a token signed with
//! the app's secret can never pose as one of authgate's own.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use bytes::Bytes;
use http::Method;
use serde_json::Value;
use support::client::{Reply, get, send};
use support::gateway::{Options, TestGateway};

/// Mints the apps' tokens with the real libraries; `None`: skipped.
fn mint(secret: &str, test: &str) -> Option<Value> {
    let python = support::python::tool("python", test)?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mint.py");
    let out = std::process::Command::new(python).arg(script).env("APP_SECRET", secret).output().expect("run mint.py");
    assert!(out.status.success(), "mint.py: {}", String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).expect("JSON from mint.py"))
}

/// A secret as an app would have it (48 random characters), in a file.
fn secret_file() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut raw = [0u8; 36];
    aws_lc_rs::rand::fill(&mut raw).expect("random");
    let secret = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
    let path = dir.path().join("flask.secret");
    std::fs::write(&path, &secret).expect("write the secret");
    (dir, path, secret)
}

fn routes(entry: &str, path: &std::path::Path) -> String {
    format!(
        "{entry}secret_file = \"{}\"\nalgorithms = [\"HS256\"]\n[[route]]\npath = \"/\"\nupstream = \"builtin:echo\"\n",
        path.display()
    )
}

async fn with_token(gw: &TestGateway, method: Method, authorization: &str, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("authorization", authorization)];
    headers.extend_from_slice(extra);
    send(method, &gw.url("/orders"), &headers, Bytes::new()).await
}

fn seen(reply: &Reply, header: &str) -> Option<String> {
    reply.json()["headers"][header].as_str().map(str::to_owned)
}

#[tokio::test]
async fn flask_jwt_extended_tokens_pass_and_refresh_tokens_do_not() {
    let test = "flask_jwt_extended_tokens_pass_and_refresh_tokens_do_not";
    let (_dir, path, secret) = secret_file();
    let Some(t) = mint(&secret, test) else { return };
    let entry = "[[tokens.trusted]]\nrequired_claims = { type = \"access\" }\ncookie = \"access_token_cookie\"\ncsrf_header = \"X-CSRF-TOKEN\"\n";
    let gw = TestGateway::start(&routes(entry, &path)).await;
    let token = |name: &str| t[name].as_str().expect("a token").to_owned();

    let ok = with_token(&gw, Method::GET, &format!("Bearer {}", token("fje_access")), &[]).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(
        (seen(&ok, "x-auth-user").as_deref(), seen(&ok, "x-auth-roles").as_deref()),
        (Some("alice"), Some("admin"))
    );

    for (name, code) in
        [("fje_refresh", "invalid_token"), ("fje_expired", "token_expired"), ("posing_as_ours", "invalid_token")]
    {
        let r = with_token(&gw, Method::GET, &format!("Bearer {}", token(name)), &[]).await;
        assert_eq!((r.status, r.code().as_str()), (401, code), "{name}");
    }
    let mut tampered = token("fje_access");
    let flip = tampered.find('.').expect("a dot") + 5;
    let c = if tampered.as_bytes()[flip] == b'A' { "B" } else { "A" };
    tampered.replace_range(flip..=flip, c);
    let r = with_token(&gw, Method::GET, &format!("Bearer {tampered}"), &[]).await;
    assert_eq!(r.status, 401, "tampered");

    // FJE's cookie mode: the cookie alone for safe methods, plus X-CSRF-TOKEN for unsafe ones.
    let cookie = format!("access_token_cookie={}", token("fje_access"));
    let csrf = token("fje_access_csrf");
    let safe = get(&gw.url("/orders"), &[("cookie", &cookie)]).await;
    assert_eq!((safe.status, seen(&safe, "x-auth-user").as_deref()), (200, Some("alice")));
    let post = |headers: Vec<(&'static str, String)>| {
        let url = gw.url("/orders");
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            send(Method::POST, &url, &h, Bytes::new()).await
        }
    };
    let refused = post(vec![("cookie", cookie.clone())]).await;
    assert_eq!((refused.status, refused.code().as_str()), (403, "csrf_failed"));
    let wrong = post(vec![("cookie", cookie.clone()), ("x-csrf-token", "nope".into())]).await;
    assert_eq!(wrong.status, 403);
    let accepted = post(vec![("cookie", cookie), ("x-csrf-token", csrf)]).await;
    assert_eq!(accepted.status, 200, "{:?}", accepted.body);
}

#[tokio::test]
async fn pyjwt_decorator_tokens_pass_bare_and_with_a_single_role() {
    let test = "pyjwt_decorator_tokens_pass_bare_and_with_a_single_role";
    let (_dir, path, secret) = secret_file();
    let Some(t) = mint(&secret, test) else { return };
    let token = |name: &str| t[name].as_str().expect("a token").to_owned();

    let bare = "[[tokens.trusted]]\nsubject_claim = \"user\"\n";
    let options = Options { tokens: "accept_bare_token = true".into(), ..Options::default() };
    let gw = TestGateway::start_with(&routes(bare, &path), options).await;
    let r = with_token(&gw, Method::GET, &token("pyjwt_user"), &[]).await;
    assert_eq!((r.status, seen(&r, "x-auth-user").as_deref()), (200, Some("bob")), "{:?}", r.body);
    assert_eq!(seen(&r, "x-auth-roles"), None, "no roles, no header");
    let r = with_token(&gw, Method::GET, &format!("Bearer {}", token("pyjwt_user")), &[]).await;
    assert_eq!(r.status, 200, "the Bearer form still works");
    drop(gw);

    let strict = "[[tokens.trusted]]\nsubject_claim = \"user\"\n";
    let gw = TestGateway::start(&routes(strict, &path)).await;
    let r = with_token(&gw, Method::GET, &token("pyjwt_user"), &[]).await;
    assert_eq!(r.status, 401, "bare tokens only with accept_bare_token");
    drop(gw);

    let single = "[[tokens.trusted]]\nsubject_claim = \"username\"\nroles_claim = \"role\"\n";
    let gw = TestGateway::start(&routes(single, &path)).await;
    let r = with_token(&gw, Method::GET, &format!("Bearer {}", token("pyjwt_username_role")), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (seen(&r, "x-auth-user").as_deref(), seen(&r, "x-auth-roles").as_deref()),
        (Some("carol"), Some("admin"))
    );
}

/// Step 2: users keep their passwords. Hashes made by Werkzeug (scrypt,
/// pbkdf2), bcrypt and passlib are imported by `authgate user import`;
/// each user logs in, a wrong password is refused, and the stored hash is
/// argon2id afterwards; a file with a malformed entry imports nothing.
#[tokio::test]
async fn imported_users_log_in_and_their_hashes_become_argon2id() {
    let test = "imported_users_log_in_and_their_hashes_become_argon2id";
    let Some(python) = support::python::tool("python", test) else { return };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/hashes.py");
    let out = std::process::Command::new(python).arg(script).output().expect("run hashes.py");
    assert!(out.status.success(), "hashes.py: {}", String::from_utf8_lossy(&out.stderr));
    let lines = String::from_utf8(out.stdout).expect("utf-8");

    let dir = support::fleet::setup();
    let config = support::fleet::ConfigText {
        store: "backend = \"embedded\"\npath = \"data/authgate.db\"",
        // Three wrong attempts per user below, all from one client address.
        login: "enabled = true\nmax_attempts = 50",
        ..Default::default()
    }
    .text();
    let gateway = support::process::GatewayProcess::start(dir.path(), "g.toml", &config).await;
    let import = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).expect("write");
        support::process::cli(dir.path(), &["--config", "g.toml", "user", "import", name], None)
    };
    let (ok, _, err) = import(
        "bad.jsonl",
        &format!("{lines}{{\"username\":\"md5\",\"password_hash\":\"5f4dcc3b5aa765d61d8327deb882cf99\"}}\n"),
    );
    assert!(!ok && err.contains("line 5") && err.contains("nothing imported"), "{err}");
    let (ok, _, err) = import("users.jsonl", &lines);
    assert!(ok, "{err}");

    let login = |user: &str, password: &str| {
        let body = serde_json::json!({"username": user, "password": password}).to_string();
        let url = gateway.url("/auth/login");
        async move { send(Method::POST, &url, &[], Bytes::from(body)).await.status }
    };
    let db = rusqlite::Connection::open(dir.path().join("data/authgate.db")).expect("open the store");
    let stored = |user: &str| -> String {
        db.query_row("SELECT password_hash FROM users WHERE name = ?1", [user], |r| r.get(0)).expect("a user")
    };
    for user in ["wz-scrypt", "wz-pbkdf2", "bcrypt", "passlib"] {
        assert!(!stored(user).starts_with("$argon2id$"), "{user} was imported as it was");
        // The slowest of three wrong attempts, so that one attempt slowed by a busy machine
        // does not decide; a refusal without the hash work is fast all three times.
        let mut wrong = std::time::Duration::ZERO;
        for _ in 0..3 {
            let started = std::time::Instant::now();
            assert_eq!(login(user, &format!("{user} wrong")).await, 401, "{user}: a wrong password");
            wrong = wrong.max(started.elapsed());
        }
        let started = std::time::Instant::now();
        assert_eq!(login(user, &format!("{user} password")).await, 200, "{user}: the right password");
        let right = started.elapsed();
        // The same hash work either way (the right one also rehashes): no early exit on a wrong password.
        assert!(wrong * 4 > right, "{user}: the slowest wrong password took {wrong:?}, the right one {right:?}");
        assert!(stored(user).starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{user}: not upgraded: {}", stored(user));
        assert_eq!(login(user, &format!("{user} password")).await, 200, "{user}: after the upgrade");
    }
    assert_eq!(login("md5", "password").await, 401, "the malformed file imported nothing");
}
