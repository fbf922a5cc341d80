//! The real gateway, in-process, on free loopback ports, with keys of every family.

use std::net::SocketAddr;

use authgate::Gateway;
use authgate::auth::keys::LoadMode;
use authgate::config::Config;
use tempfile::TempDir;

use super::tokens;

#[derive(Default)]
pub struct Options {
    /// Also listen with TLS (self-signed).
    pub tls: bool,
    /// Extra lines inside `[server]` (e.g. `trusted_proxies = [...]`).
    pub server: String,
    /// Extra lines inside `[server.limits]`.
    pub limits: String,
    /// The `[store]` section's lines (default: embedded, in the test's directory).
    pub store: String,
    /// Serve the gateway endpoints (`[login] enabled = true`).
    pub endpoints: bool,
    /// Extra lines inside `[login]` (implies `endpoints`).
    pub login: String,
    /// `tokens.leeway` (default "30s").
    pub leeway: Option<&'static str>,
    /// Extra lines inside `[tokens]`.
    pub tokens: String,
}

pub struct TestGateway {
    pub http: SocketAddr,
    pub https: Option<SocketAddr>,
    pub admin: SocketAddr,
    /// The `[authz] grpc` listener, when configured.
    pub grpc: Option<SocketAddr>,
    pub dir: TempDir,
    gateway: Option<Gateway>,
}

impl TestGateway {
    /// Starts a gateway with `rest` (routes, `[headers]`, ...) appended to a base config.
    pub async fn start(rest: &str) -> TestGateway {
        Self::start_with(rest, Options::default()).await
    }

    pub async fn start_with(rest: &str, options: Options) -> TestGateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = config_text(&dir, rest, &options);
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, &src).expect("write config");
        let config = Config::from_str(&src, &path).unwrap_or_else(|e| panic!("test config invalid:\n{e}\n---\n{src}"));
        let mut state = authgate::State::build(config, LoadMode::Run).unwrap_or_else(|e| panic!("state: {e}"));
        let stores = authgate::store::Stores::start(&state.config, state.metrics.store_errors.clone())
            .await
            .expect("open the store");
        state.stores = Some(std::sync::Arc::new(stores));
        let gateway = Gateway::start(state).await.expect("start gateway");
        let a = gateway.addresses;
        TestGateway {
            http: a.http.expect("http listener"),
            https: a.https,
            admin: a.admin.expect("admin listener"),
            grpc: a.grpc,
            dir,
            gateway: Some(gateway),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Replaces the config file atomically (write, then rename), as an operator's tooling would.
    pub fn rewrite_config(&self, text: &str) {
        let tmp = self.dir.path().join("gateway.toml.new");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, self.dir.path().join("gateway.toml")).expect("rename config");
    }

    /// Drains and stops; returns whether every connection finished in time.
    pub async fn stop(mut self) -> bool {
        match self.gateway.take() {
            Some(g) => g.shutdown().await,
            None => true,
        }
    }
}

/// The tests' short timeouts, each replaced by the same key in `extra`.
fn limits(extra: &str) -> String {
    let base = [
        ("upstream_connect_timeout", "\"500ms\""),
        ("upstream_timeout", "\"1s\""),
        ("header_read_timeout", "\"2s\""),
        ("tls_handshake_timeout", "\"1s\""),
        ("shutdown_grace", "\"3s\""),
    ];
    let given = |key: &str| extra.lines().any(|l| l.split('=').next().is_some_and(|k| k.trim() == key));
    let mut text: String = base.iter().filter(|(k, _)| !given(k)).map(|(k, v)| format!("{k} = {v}\n")).collect();
    text.push_str(extra);
    text
}

pub fn config_text(dir: &TempDir, rest: &str, options: &Options) -> String {
    let https = if options.tls { "https = \"127.0.0.1:0\"\n" } else { "" };
    let tls = if options.tls { "[server.tls]\nself_signed = true\n" } else { "" };
    let login = if options.endpoints || !options.login.is_empty() {
        format!("[login]\nenabled = true\n{}\n", options.login)
    } else {
        String::new()
    };
    format!(
        r#"[server]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
{https}{server}
[server.limits]
{limits}
{tls}
[tokens]
issuer = "authgate"
audience = "api"
leeway = "{leeway}"
signing_key = "es256"
{tokens}
{keys}
[store]
{store}
{login}
{rest}
"#,
        store = options.store,
        server = options.server,
        limits = limits(&options.limits),
        keys = tokens::keys_toml(dir.path()),
        tokens = options.tokens,
        leeway = options.leeway.unwrap_or("30s"),
    )
}
