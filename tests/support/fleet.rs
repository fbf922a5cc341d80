//! Gateway processes sharing one store, as the README's "Several replicas"
//! runs them: one config, keys made by the CLI, tokens minted by the CLI.

use std::path::Path;
use std::time::{Duration, Instant};

use super::client::{get_bearer, send};
use super::process::{GatewayProcess, cli};

/// Routes most process tests use: `/public` (no auth) and `/api` (a token).
pub const PUBLIC_AND_API: &str = r#"[[route]]
path = "/public"
upstream = "builtin:echo"
auth = "none"
[[route]]
path = "/api"
upstream = "builtin:echo"
"#;

/// The one config baseline of the process tests: listeners on `{HTTP}` and
/// `{ADMIN}` (filled by `GatewayProcess`), the signing key `main.pem`, and
/// the lines of each section given (an empty section is left out).
pub struct ConfigText<'a> {
    /// Lines inside `[tokens]`, after `signing_key = "main"`.
    pub tokens: &'a str,
    pub store: &'a str,
    pub login: &'a str,
    pub routes: &'a str,
}

impl Default for ConfigText<'_> {
    fn default() -> Self {
        ConfigText { tokens: "", store: "", login: "enabled = true", routes: PUBLIC_AND_API }
    }
}

impl ConfigText<'_> {
    pub fn text(&self) -> String {
        let section =
            |name: &str, body: &str| if body.is_empty() { String::new() } else { format!("[{name}]\n{body}\n") };
        format!(
            "[server]\nhttp = \"{{HTTP}}\"\nadmin = \"{{ADMIN}}\"\n[tokens]\nsigning_key = \"main\"\n{tokens}\n\
             [[tokens.keys]]\nkid = \"main\"\nalgorithm = \"ES256\"\nprivate_key_file = \"main.pem\"\n{store}{login}{routes}",
            tokens = self.tokens,
            store = section("store", self.store),
            login = section("login", self.login),
            routes = self.routes,
        )
    }
}

/// The baseline with `store` as the `[store]` section's body.
pub fn config(store: &str) -> String {
    ConfigText { store, ..ConfigText::default() }.text()
}

/// A directory with the signing key.
pub fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, _, err) = cli(dir.path(), &["keygen", "--alg", "ES256", "--out", "main.pem"], None);
    assert!(ok, "{err}");
    dir
}

pub fn mint(dir: &Path, config: &str, sub: &str, roles: &str) -> String {
    let (ok, out, err) = cli(dir, &["--config", config, "token", "--sub", sub, "--roles", roles], None);
    assert!(ok, "{err}");
    out.trim().to_owned()
}

/// Polls until `url` with `token` answers `status`; returns how long it took.
pub async fn time_until(url: &str, token: &str, status: u16, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    super::eventually(limit, || async { (get_bearer(url, token).await.status == status).then_some(()) }).await?;
    Some(started.elapsed())
}

pub async fn revoke_via_api(gateway: &GatewayProcess, admin: &str, body: &str) -> u16 {
    let auth = format!("Bearer {admin}");
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    send(http::Method::POST, &gateway.url("/auth/revoke"), &headers, bytes::Bytes::from(body.to_owned())).await.status
}
