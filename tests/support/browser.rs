//! A real browser: Debian's Chromium, headless, driven over WebDriver
//! (W3C protocol, JSON over HTTP to Debian's chromedriver) with nothing
//! but the test client. Started on a free loopback port, with a fresh
//! profile, and stopped when dropped.
//!
//! Where chromedriver is missing, a test skips with a loud message, except
//! in CI (`CI` set), where it fails.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use super::client::send;

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Browser {
    base: String,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium that accepts the
    /// gateway's self-signed certificate; `None`: skipped.
    pub async fn start(test: &str) -> Option<Browser> {
        if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
            let message =
                format!("SKIPPED {test}: chromium and chromium-driver are not installed (.ci/run installs them)");
            assert!(std::env::var_os("CI").is_none(), "{message}");
            eprintln!("\n*** {message} ***\n");
            return None;
        }
        let port = super::process::free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ];
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let created = call(&base, Method::POST, "/session", &capabilities).await;
        let session =
            created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_owned();
        Some(Browser { base, session, driver, _profile: profile })
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        let path = format!("/session/{}/url", self.session);
        let reply = call(&self.base, Method::POST, &path, &json!({"url": url})).await;
        assert!(reply["value"].is_null(), "navigation failed: {reply}");
    }

    /// Runs `body` as an async function in the page (it may `await`) and
    /// returns what it returns, as JSON.
    pub async fn run(&self, body: &str) -> Value {
        let script = format!(
            "const done = arguments[arguments.length - 1];\n\
             (async () => {{ {body} }})().then(done, e => done({{error: String(e)}}));"
        );
        let path = format!("/session/{}/execute/async", self.session);
        let reply = call(&self.base, Method::POST, &path, &json!({"script": script, "args": []})).await;
        reply["value"].clone()
    }
}

async fn call(base: &str, method: Method, path: &str, body: &Value) -> Value {
    let headers = [("content-type", "application/json")];
    let reply = send(method, &format!("{base}{path}"), &headers, Bytes::from(body.to_string())).await;
    reply.json()
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; the driver goes with it.
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(rt) = runtime {
                rt.block_on(async { send(Method::DELETE, &url, &[], Bytes::new()).await });
            }
        })
        .join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
