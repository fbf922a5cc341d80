//! Cookie mode in a real browser: headless Chromium on the https listener,
//! which it speaks HTTP/2 to (ALPN). Register, log in, call, CSRF refused
//! then accepted, two tabs refreshing at once keep the session, logout
//! clears the cookies; the tokens never reach page script.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use serde_json::Value;
use support::browser::Browser;
use support::gateway::{Options, TestGateway};

const ROUTES: &str = r#"[[route]]
path = "/api"
upstream = "builtin:echo"
[[route]]
path = "/"
upstream = "builtin:echo"
auth = "none"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_work_in_chromium_over_http2() {
    let Some(browser) = Browser::start("cookie_sessions_work_in_chromium_over_http2").await else { return };
    let options =
        Options { tls: true, login: "registration = true\ncookies = true\n".to_owned(), ..Options::default() };
    let gw = TestGateway::start_with(ROUTES, options).await;
    let https = gw.https.expect("the https listener");
    browser.goto(&format!("https://127.0.0.1:{}/", https.port())).await;

    let flow = browser
        .run(
            r#"
const out = {};
out.protocol = performance.getEntriesByType('navigation')[0].nextHopProtocol;
const json = {'content-type': 'application/json'};
const body = JSON.stringify({username: 'alice', password: 'correct horse battery'});
const csrf = () => (document.cookie.split('; ').find(c => c.startsWith('__Host-authgate-csrf=')) || '').split('=')[1];
let r = await fetch('/auth/register', {method: 'POST', headers: json, body});
out.register = r.status;
r = await fetch('/auth/login', {method: 'POST', headers: json, body});
out.login = r.status;
out.login_body = await r.json();
out.cookies_seen_by_script = document.cookie;
r = await fetch('/api/orders');
out.call = r.status;
out.call_user = r.status === 200 ? (await r.json()).headers['x-auth-user'] : null;
r = await fetch('/api/orders', {method: 'POST', headers: json, body: '{}'});
out.post_without_csrf = r.status;
out.post_without_csrf_code = (await r.json()).error;
r = await fetch('/api/orders', {method: 'POST', headers: {...json, 'x-csrf-token': csrf()}, body: '{}'});
out.post_with_csrf = r.status;
const tabs = await Promise.all([
  fetch('/auth/refresh', {method: 'POST'}),
  fetch('/auth/refresh', {method: 'POST'}),
]);
out.refreshes = tabs.map(t => t.status);
r = await fetch('/api/orders');
out.after_refresh = r.status;
r = await fetch('/auth/logout', {method: 'POST', headers: {'x-csrf-token': csrf()}});
out.logout = r.status;
out.cookies_after_logout = document.cookie;
r = await fetch('/api/orders');
out.after_logout = r.status;
return out;
"#,
        )
        .await;
    eprintln!("browser flow: {flow}");
    assert_eq!(flow["error"], Value::Null, "the page script failed: {flow}");
    assert_eq!(flow["protocol"], "h2", "Chromium did not speak HTTP/2: {flow}");
    assert_eq!(flow["register"], 201, "register over HTTP/2 (the Origin check read Host): {flow}");
    assert_eq!(flow["login"], 200, "{flow}");
    assert_eq!(flow["login_body"]["access_token"], Value::Null, "the access token reached page script: {flow}");
    assert_eq!(flow["login_body"]["refresh_token"], Value::Null, "the refresh token reached page script: {flow}");
    let visible = flow["cookies_seen_by_script"].as_str().unwrap_or_default();
    assert!(visible.contains("__Host-authgate-csrf="), "{flow}");
    assert!(!visible.contains("authgate-access") && !visible.contains("authgate-refresh"), "HttpOnly: {flow}");
    assert_eq!((flow["call"].as_u64(), flow["call_user"].as_str()), (Some(200), Some("alice")), "{flow}");
    assert_eq!(flow["post_without_csrf"], 403, "{flow}");
    assert_eq!(flow["post_without_csrf_code"], "csrf_failed", "{flow}");
    assert_eq!(flow["post_with_csrf"], 200, "{flow}");
    assert_eq!(flow["refreshes"], serde_json::json!([200, 200]), "two tabs refreshing at once: {flow}");
    assert_eq!(flow["after_refresh"], 200, "the session survived two tabs: {flow}");
    assert_eq!(flow["logout"], 204, "{flow}");
    assert!(!flow["cookies_after_logout"].as_str().unwrap_or("x").contains("authgate"), "{flow}");
    assert_eq!(flow["after_logout"], 401, "{flow}");
}
