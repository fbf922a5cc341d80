//! A real OpenID Provider: the npm package `oidc-provider`, run by Node
//! from `tests/node/idp.mjs`, installed by `.ci/run` from
//! `tests/node/package.json` (and its lock) into a cached folder. Listens on
//! a loopback port; can be stopped and started again with other keys (an
//! IdP rotating its signing key publishes a new JWKS).
//!
//! Where the package is missing, a test skips with a loud message, except in
//! CI (`CI` set), where it fails.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Method;

use super::client::send;

/// The folder holding `node_modules`: `$AUTHGATE_NODE_DIR`, else `~/.cache/authgate-node`.
pub fn node_dir() -> PathBuf {
    std::env::var_os("AUTHGATE_NODE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/authgate-node"))
}

pub const AUDIENCE: &str = "urn:authgate:api";
pub const CLIENT_ID: &str = "api-client";

pub struct Idp {
    pub port: u16,
    /// The script beside a link to `node_modules` (ES modules resolve from the script's folder).
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Idp {
    /// A provider whose signing keys are new keys with these `kid`s (the first signs); `None`: skipped.
    pub fn start(kids: &[&str], test: &str) -> Option<Idp> {
        let modules = node_dir().join("node_modules");
        if !modules.join("oidc-provider").exists() {
            let message = format!(
                "SKIPPED {test}: oidc-provider is not installed in {} (.ci/run installs it)",
                modules.display()
            );
            assert!(std::env::var_os("CI").is_none(), "{message}");
            eprintln!("\n*** {message} ***\n");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/idp.mjs"), dir.path().join("idp.mjs"))
            .expect("copy idp.mjs");
        std::os::unix::fs::symlink(&modules, dir.path().join("node_modules")).expect("link node_modules");
        let mut idp = Idp { port: super::process::free_port(), dir, child: None };
        idp.serve(kids);
        Some(idp)
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer())
    }

    /// A new P-256 key as a private JWK, made by Node, kept in the test's folder.
    fn key(&self, kid: &str) -> String {
        let path = self.dir.path().join(format!("{kid}.jwk"));
        if let Ok(jwk) = std::fs::read_to_string(&path) {
            return jwk;
        }
        let out = Command::new("node").arg("idp.mjs").args(["genkey", kid]).current_dir(self.dir.path()).output();
        let jwk = String::from_utf8(out.expect("run node").stdout).expect("a JWK");
        std::fs::write(&path, &jwk).expect("keep the key");
        jwk
    }

    /// (Re)starts the provider on its port with the keys `kids` (the first signs).
    pub fn serve(&mut self, kids: &[&str]) {
        self.stop();
        let keys: Vec<String> = kids.iter().map(|k| self.key(k)).collect();
        let keys_file = self.dir.path().join("keys.json");
        std::fs::write(&keys_file, format!("{{\"keys\":[{}]}}", keys.join(","))).expect("write keys");
        let mut child = Command::new("node")
            .args(["idp.mjs", "serve"])
            .current_dir(self.dir.path())
            .env("PORT", self.port.to_string())
            .env("KEYS_FILE", &keys_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node must be installed");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Read to the end: the provider logs to stdout, and a closed pipe would kill it.
        std::thread::spawn(move || {
            let mut said = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !said && line == "ready" {
                    said = tx.send(true).is_ok();
                }
            }
            let _ = tx.send(false);
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(20)), Ok(true), "oidc-provider did not start");
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn helper(&self, path: &str) -> String {
        let reply = send(Method::GET, &format!("{}{path}", self.issuer()), &[], Bytes::new()).await;
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        assert_eq!(reply.status, 200, "{path}: {text}");
        text
    }

    /// A JWT access token for `AUDIENCE` (client credentials, resource indicator).
    pub async fn access_token(&self) -> String {
        self.helper("/test/access-token").await
    }

    /// An ID token for `CLIENT_ID` (authorization code flow through the dev interactions).
    pub async fn id_token(&self) -> String {
        self.helper("/test/id-token").await
    }

    /// How many times the JWKS was fetched since this provider process started.
    pub async fn jwks_fetches(&self) -> u64 {
        self.helper("/test/jwks-fetches").await.trim().parse().expect("a count")
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}
