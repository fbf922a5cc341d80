//! The sidecar form end to end: the config from the sidecar ConfigMap
//! (deploy/kubernetes/sidecar/configmap.yaml), run as a process beside a
//! real application server on loopback, with the Secret's layout for the key.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use support::client::{get, get_bearer};
use support::process::{GatewayProcess, cli};
use support::upstream::Upstream;

/// The `gateway.toml: |` block of a ConfigMap, unindented.
fn embedded_config(yaml: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "gateway.toml: |").skip(1);
    let mut out = String::new();
    for line in lines.by_ref() {
        if !line.is_empty() && !line.starts_with("    ") {
            break;
        }
        out.push_str(line.strip_prefix("    ").unwrap_or(line));
        out.push('\n');
    }
    out
}

#[tokio::test]
async fn the_sidecar_configmap_protects_an_app_on_loopback() {
    let app = Upstream::start().await;
    let yaml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes/sidecar/configmap.yaml"))
            .expect("sidecar ConfigMap");
    let config = embedded_config(&yaml);
    assert!(config.contains("[[route]]") && config.contains("127.0.0.1:8000"), "config not found in the ConfigMap");
    // Only what a Pod would differ in: ports, the app's address, the volume's path.
    let config = config
        .replace("0.0.0.0:8080", "{HTTP}")
        .replace("0.0.0.0:9090", "{ADMIN}")
        .replace("127.0.0.1:8000", &app.addr.to_string())
        .replace("/var/lib/authgate/authgate.db", "../data/authgate.db");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("config")).expect("mkdir");
    let (ok, _, err) = cli(dir.path(), &["keygen", "--alg", "ES256", "--out", "keys/main.pem"], None);
    assert!(ok, "{err}");
    let gateway = GatewayProcess::start(dir.path(), "config/gateway.toml", &config).await;
    let mint = |roles: &str| {
        let (ok, out, err) =
            cli(dir.path(), &["--config", "config/gateway.toml", "token", "--sub", "alice", "--roles", roles], None);
        assert!(ok, "{err}");
        out.trim().to_owned()
    };

    assert_eq!(get(&gateway.url("/healthz"), &[("x-auth-user", "admin")]).await.status, 200);
    assert!(app.last().headers.get("x-auth-user").is_none(), "a spoofed identity reached the app");
    let before = app.count();
    assert_eq!(get(&gateway.url("/orders"), &[]).await.status, 401);
    assert_eq!(app.count(), before, "an unauthenticated request reached the app");
    let user = mint("user");
    assert_eq!(get_bearer(&gateway.url("/orders/7"), &user).await.status, 200);
    let seen = app.last();
    assert_eq!((seen.path_and_query.as_str(), seen.headers["x-auth-user"].to_str().ok()), ("/orders/7", Some("alice")));
    assert_eq!(get_bearer(&gateway.url("/admin/x"), &user).await.status, 403);
    assert_eq!(get_bearer(&gateway.url("/admin/x"), &mint("admin")).await.status, 200);
    let ready = get(&format!("http://{}/readyz", gateway.admin), &[]).await;
    assert_eq!(ready.status, 200);
}
