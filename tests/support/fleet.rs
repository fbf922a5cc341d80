//! Gateway processes sharing one store, as the README's "Several replicas"
//! runs them: one config, keys made by the CLI, tokens minted by the CLI.

use std::path::Path;
use std::time::{Duration, Instant};

use super::client::{get_bearer, send};
use super::process::{GatewayProcess, cli};

/// A config with a public route (`/public`), a protected one (`/api`), the
/// token service on, and `store` as the `[store]` section's body.
pub fn config(store: &str) -> String {
    format!(
        r#"[server]
http = "{{HTTP}}"
admin = "{{ADMIN}}"
[tokens]
signing_key = "main"
[[tokens.keys]]
kid = "main"
algorithm = "ES256"
private_key_file = "main.pem"
[store]
{store}
[login]
enabled = true
[[route]]
path = "/public"
upstream = "builtin:echo"
auth = "none"
[[route]]
path = "/api"
upstream = "builtin:echo"
"#
    )
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
