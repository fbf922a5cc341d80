//! A real WSGI backend behind the gateway: Flask under gunicorn with
//! `--header-map dangerous`, which folds `_` into `-` in header names the
//! way wsgiref, older gunicorns and Debian 12's packaged gunicorn do.
//! Whatever the client spells, the app must see only the identity the
//! gateway verified, and only the method the route's rule judged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use support::client::send;
use support::gateway::{Options, TestGateway};
use support::python::Wsgi;
use support::tokens::{claims, sign};

/// Answers every method on every path with what the app saw.
const APP: &str = r#"
from flask import Flask, jsonify, request
app = Flask(__name__)
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]
@app.route("/", defaults={"path": ""}, methods=METHODS)
@app.route("/<path:path>", methods=METHODS)
def seen(path):
    return jsonify(method=request.method, path="/" + path, headers=dict(request.headers))
"#;

fn routes(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"[[route]]
path = "/public"
upstream = "http://{upstream}"
auth = "none"
[[route]]
path = "/items"
methods = ["DELETE"]
roles = ["admin"]
upstream = "http://{upstream}"
[[route]]
path = "/items"
upstream = "http://{upstream}"
"#
    )
}

async fn seen(gateway: &TestGateway, method: Method, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let reply = send(method, &gateway.url(path), headers, Bytes::new()).await;
    let body = if reply.status == 200 { reply.json() } else { Value::Null };
    (reply.status, body)
}

fn header<'v>(seen: &'v Value, name: &str) -> Option<&'v str> {
    seen["headers"][name].as_str()
}

const SPOOFS: [(&str, &str); 5] = [
    ("X_Auth_User", "admin"),
    ("X-Auth_Roles", "admin"),
    ("X_Forwarded_For", "6.6.6.6"),
    ("X_Original_URL", "/admin"),
    ("X_Request_Id", "spoofed"),
];

/// The spoofs reach the app neither on a public route nor beside the
/// verified identity on a protected one, under every `underscore_headers`.
#[tokio::test]
async fn underscore_spellings_never_reach_a_wsgi_app_as_identity() {
    let test = "underscore_spellings_never_reach_a_wsgi_app_as_identity";
    let Some(app) = Wsgi::gunicorn(APP, &["--header-map", "dangerous"], test) else { return };
    let alice = format!("Bearer {}", sign("es256", &claims("alice", &["user"])));
    for policy in ["drop", "allow"] {
        let server = format!("underscore_headers = \"{policy}\"");
        let gw = TestGateway::start_with(&routes(app.addr), Options { server, ..Options::default() }).await;
        let mut headers: Vec<(&str, &str)> = SPOOFS.to_vec();
        headers.push(("X_Custom", "kept"));
        let (status, public) = seen(&gw, Method::GET, "/public/x", &headers).await;
        assert_eq!(status, 200, "{policy}");
        assert_eq!(header(&public, "X-Auth-User"), None, "{policy}: a spoofed identity on a public route: {public}");
        assert_eq!(header(&public, "X-Auth-Roles"), None, "{policy}");
        assert_eq!(header(&public, "X-Original-Url"), None, "{policy}");
        assert_eq!(header(&public, "X-Forwarded-For"), Some("127.0.0.1"), "{policy}");
        assert!(!header(&public, "X-Request-Id").unwrap_or_default().contains("spoofed"), "{policy}: {public}");
        assert_eq!(header(&public, "X-Custom"), (policy == "allow").then_some("kept"), "{policy}");

        headers.push(("authorization", alice.as_str()));
        let (status, protected) = seen(&gw, Method::GET, "/items/1", &headers).await;
        assert_eq!(status, 200, "{policy}");
        assert_eq!(header(&protected, "X-Auth-User"), Some("alice"), "{policy}: {protected}");
        assert_eq!(header(&protected, "X-Auth-Roles"), Some("user"), "{policy}");
        drop(gw);
    }
    let server = "underscore_headers = \"reject\"".to_owned();
    let gw = TestGateway::start_with(&routes(app.addr), Options { server, ..Options::default() }).await;
    let (status, _) = seen(&gw, Method::GET, "/public/x", &[("X_Custom", "1")]).await;
    assert_eq!(status, 400, "reject");
    let (status, _) = seen(&gw, Method::GET, "/public/x", &[("X-Custom", "1")]).await;
    assert_eq!(status, 200, "reject: only underscore names");
}

/// `delete` and `Delete` would fall past a DELETE rule and reach Werkzeug,
/// which upper-cases them: refused, over HTTP/1.1 and HTTP/2 alike.
#[tokio::test]
async fn a_method_in_the_wrong_case_is_refused_before_the_app() {
    let test = "a_method_in_the_wrong_case_is_refused_before_the_app";
    let Some(app) = Wsgi::gunicorn(APP, &[], test) else { return };
    let gw = TestGateway::start(&routes(app.addr)).await;
    let user = format!("Bearer {}", sign("es256", &claims("alice", &["user"])));
    let admin = format!("Bearer {}", sign("es256", &claims("root", &["admin"])));
    let (status, _) = seen(&gw, Method::DELETE, "/items/1", &[("authorization", &user)]).await;
    assert_eq!(status, 403, "the rule");
    let (status, body) = seen(&gw, Method::DELETE, "/items/1", &[("authorization", &admin)]).await;
    assert_eq!((status, body["method"].as_str()), (200, Some("DELETE")));
    for spelling in ["delete", "Delete", "dELETE"] {
        let method = Method::from_bytes(spelling.as_bytes()).expect("a method token");
        let (status, _) = seen(&gw, method.clone(), "/items/1", &[("authorization", &user)]).await;
        assert_eq!(status, 400, "HTTP/1.1 {spelling}");
        assert_eq!(h2_status(gw.http, method, "/items/1", &user).await, 400, "HTTP/2 {spelling}");
    }
    // A method that is not a standard one in another case is the route's business, as before.
    let (status, _) = seen(&gw, Method::from_bytes(b"PURGE").expect("token"), "/public/x", &[]).await;
    assert_eq!(status, 405, "Flask refuses a method it does not serve");
}

/// One request over HTTP/2 with prior knowledge on the plain listener.
async fn h2_status(addr: std::net::SocketAddr, method: Method, path: &str, auth: &str) -> u16 {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.expect("h2 handshake");
    tokio::spawn(conn);
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", auth)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = sender.send_request(request).await.expect("h2 response");
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}
