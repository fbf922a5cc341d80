//! gRPC through authgate: a real grpcio service behind an `h2c://`
//! upstream, a real grpcio client on the plain listener (HTTP/2 with prior
//! knowledge). Unary and bidirectional streaming with a valid token (the
//! service sees our identity metadata, never the client's); without a token
//! the client gets UNAUTHENTICATED, with the wrong role PERMISSION_DENIED
//! (gRPC clients read no HTTP status or body: the refusal is a grpc-status).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::gateway::TestGateway;
use support::tokens::{claims, sign};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/grpc_echo.py");

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(python: &std::path::Path, port: u16) -> Service {
    let mut child = Command::new(python)
        .args([SCRIPT, "serve", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the gRPC service");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let ready = BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l == "ready");
        let _ = tx.send(ready);
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(true), "the gRPC service did not start");
    Service(child)
}

async fn call(python: std::path::PathBuf, target: String, method: &str, token: Option<&str>, mode: &str) -> Value {
    let args = [SCRIPT.to_owned(), "call".into(), target, method.into(), token.unwrap_or("-").into(), mode.into()];
    let out = tokio::task::spawn_blocking(move || Command::new(python).args(&args).output())
        .await
        .expect("join")
        .expect("run the gRPC client");
    assert!(out.status.success(), "client: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON from the client")
}

#[tokio::test]
async fn grpc_unary_and_bidi_streaming_through_authgate() {
    let test = "grpc_unary_and_bidi_streaming_through_authgate";
    let Some(python) = support::python::tool("python", test) else { return };
    let port = support::process::free_port();
    let _service = serve(&python, port);
    let routes = format!(
        "[[route]]\npath = \"/test.Echo/Admin\"\nupstream = \"h2c://127.0.0.1:{port}\"\nroles = [\"admin\"]\n\
         [[route]]\npath = \"/test.Echo\"\nupstream = \"h2c://127.0.0.1:{port}\"\n"
    );
    let gw = TestGateway::start(&routes).await;
    let target = gw.http.to_string();
    let alice = sign("es256", &claims("alice", &["user"]));

    let ok = call(python.clone(), target.clone(), "Unary", Some(&alice), "unary").await;
    assert_eq!(ok["code"], "OK", "{ok}");
    assert_eq!(ok["replies"][0], "alice|user|hello", "the service saw our identity: {ok}");

    let none = call(python.clone(), target.clone(), "Unary", None, "unary").await;
    assert_eq!(none["code"], "UNAUTHENTICATED", "{none}");

    let denied = call(python.clone(), target.clone(), "Admin", Some(&alice), "unary").await;
    assert_eq!(denied["code"], "PERMISSION_DENIED", "{denied}");

    let bidi = call(python.clone(), target.clone(), "Bidi", Some(&alice), "bidi").await;
    assert_eq!(bidi["code"], "OK", "{bidi}");
    assert_eq!(bidi["replies"], serde_json::json!(["alice|user|one", "alice|user|two", "alice|user|three"]));

    let bidi_none = call(python, target, "Bidi", None, "bidi").await;
    assert_eq!(bidi_none["code"], "UNAUTHENTICATED", "{bidi_none}");
}

/// A stream lives no longer than its token: a bidi call whose token expires
/// after ~2 s is ended then with UNAUTHENTICATED ("the token expired"),
/// after replies flowed; a token with plenty of time left is not cut.
#[tokio::test]
async fn a_grpc_stream_ends_when_its_token_expires() {
    let test = "a_grpc_stream_ends_when_its_token_expires";
    let Some(python) = support::python::tool("python", test) else { return };
    let port = support::process::free_port();
    let _service = serve(&python, port);
    let gw =
        TestGateway::start(&format!("[[route]]\npath = \"/test.Echo\"\nupstream = \"h2c://127.0.0.1:{port}\"\n")).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut short = claims("alice", &["user"]);
    short["iat"] = serde_json::json!(now);
    short["exp"] = serde_json::json!(now + 3);
    let short = sign("es256", &short);
    let ended = call(python.clone(), gw.http.to_string(), "Bidi", Some(&short), "long").await;
    assert_eq!(ended["code"], "UNAUTHENTICATED", "{ended}");
    assert_eq!(ended["details"], "the token expired", "{ended}");
    let replies = ended["replies"].as_array().map_or(0, Vec::len);
    assert!(replies >= 5, "the stream flowed before the token expired: {ended}");
    let seconds = ended["seconds"].as_f64().unwrap_or(f64::MAX);
    assert!((1.0..5.0).contains(&seconds), "ended at the token's exp: {ended}");
    // (the long mode sends for 20 s: a stream that was not cut would end OK after that)
}

/// gRPC-Web from a real browser (Chromium over WebDriver, `fetch` with the
/// binary framing a gRPC-Web client sends) to the grpcio service behind an
/// `h2c://` upstream: the reply arrives as a message frame and a trailer
/// frame (`grpc-status: 0`), the service saw our identity; without a token
/// the call is a 401, which gRPC-Web clients read as UNAUTHENTICATED.
#[tokio::test]
async fn grpc_web_from_chromium_reaches_a_grpc_service() {
    let test = "grpc_web_from_chromium_reaches_a_grpc_service";
    let Some(python) = support::python::tool("python", test) else { return };
    let Some(browser) = support::browser::Browser::start(test).await else { return };
    let port = support::process::free_port();
    let _service = serve(&python, port);
    let routes = format!(
        "[[route]]\npath = \"/test.Echo\"\nupstream = \"h2c://127.0.0.1:{port}\"\n\
         [[route]]\npath = \"/page\"\nupstream = \"builtin:echo\"\nauth = \"none\"\n"
    );
    let gw = TestGateway::start(&routes).await;
    let alice = sign("es256", &claims("alice", &["user"]));
    browser.goto(&gw.url("/page")).await;
    let script = r#"
        const message = new TextEncoder().encode("hello");
        const framed = new Uint8Array(5 + message.length);
        new DataView(framed.buffer).setUint32(1, message.length);
        framed.set(message, 5);
        const call = async (token) => {
            const headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1"};
            if (token) headers["authorization"] = "Bearer " + token;
            const r = await fetch("/test.Echo/Unary", {method: "POST", headers, body: framed});
            const bytes = new Uint8Array(await r.arrayBuffer());
            const messages = [];
            let trailers = "";
            for (let i = 0; i + 5 <= bytes.length;) {
                const length = new DataView(bytes.buffer, i + 1, 4).getUint32(0);
                const text = new TextDecoder().decode(bytes.slice(i + 5, i + 5 + length));
                if (bytes[i] & 0x80) trailers += text; else messages.push(text);
                i += 5 + length;
            }
            return {status: r.status, type: r.headers.get("content-type"), messages, trailers};
        };
        return {ok: await call("TOKEN"), none: await call(null)};
    "#
    .replace("TOKEN", &alice);
    let got = browser.run(&script).await;
    assert_eq!(got["ok"]["status"], 200, "{got}");
    assert_eq!(got["ok"]["type"], "application/grpc-web+proto", "{got}");
    assert_eq!(got["ok"]["messages"], serde_json::json!(["alice|user|hello"]), "{got}");
    assert!(got["ok"]["trailers"].as_str().is_some_and(|t| t.contains("grpc-status: 0\r\n")), "{got}");
    assert_eq!(got["none"]["status"], 401, "{got}");
}
