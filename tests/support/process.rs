//! The real binary as a child process: started on free ports, waited for
//! through `/readyz`, stopped with SIGTERM or SIGKILL.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_authgate");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub struct GatewayProcess {
    pub http: SocketAddr,
    pub admin: SocketAddr,
    child: Option<Child>,
}

impl GatewayProcess {
    /// Writes `config` (with `{HTTP}` and `{ADMIN}` replaced by free ports) to
    /// `dir/name` and runs the gateway on it until `/readyz` answers at all.
    pub async fn start(dir: &Path, name: &str, config: &str) -> GatewayProcess {
        Self::start_logged(dir, name, config, None).await
    }

    /// Like `start`, with JSON logs written to `log` when given.
    pub async fn start_logged(dir: &Path, name: &str, config: &str, log: Option<&Path>) -> GatewayProcess {
        Self::launch(dir, name, config, log, &[]).await
    }

    /// Like `start`, with extra environment variables (e.g. `LD_PRELOAD`).
    pub async fn start_with_env(dir: &Path, name: &str, config: &str, env: &[(&str, &str)]) -> GatewayProcess {
        Self::launch(dir, name, config, None, env).await
    }

    /// Like `start_logged`, run through `wrap` (a command that ends by
    /// executing its arguments, e.g. `unshare ... sh -c '...; exec "$@"'`).
    pub async fn start_wrapped(
        dir: &Path,
        name: &str,
        config: &str,
        log: Option<&Path>,
        wrap: &[&str],
    ) -> GatewayProcess {
        let (http, admin) = (free_port(), free_port());
        let text =
            config.replace("{HTTP}", &format!("127.0.0.1:{http}")).replace("{ADMIN}", &format!("127.0.0.1:{admin}"));
        std::fs::write(dir.join(name), text).expect("write config");
        Self::run_wrapped(dir, name, (http, admin), log, &[], wrap).await
    }

    async fn launch(dir: &Path, name: &str, config: &str, log: Option<&Path>, env: &[(&str, &str)]) -> GatewayProcess {
        let (http, admin) = (free_port(), free_port());
        let text =
            config.replace("{HTTP}", &format!("127.0.0.1:{http}")).replace("{ADMIN}", &format!("127.0.0.1:{admin}"));
        std::fs::write(dir.join(name), text).expect("write config");
        Self::run(dir, name, (http, admin), log, env).await
    }

    /// Runs the gateway on the config file `dir/name` as it is, whose http
    /// and admin listeners are on these ports, until `/readyz` answers at all.
    pub async fn run(
        dir: &Path,
        name: &str,
        (http, admin): (u16, u16),
        log: Option<&Path>,
        env: &[(&str, &str)],
    ) -> GatewayProcess {
        Self::run_wrapped(dir, name, (http, admin), log, env, &[]).await
    }

    async fn run_wrapped(
        dir: &Path,
        name: &str,
        (http, admin): (u16, u16),
        log: Option<&Path>,
        env: &[(&str, &str)],
        wrap: &[&str],
    ) -> GatewayProcess {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::null(),
        };
        let (program, wrapped) = match wrap.split_first() {
            Some((first, rest)) => (*first, [rest, &[BIN]].concat()),
            None => (BIN, Vec::new()),
        };
        let child = Command::new(program)
            .args(wrapped)
            .args(["--config", name, "--log-format", "json"])
            .current_dir(dir)
            .env("RUST_LOG", if log.is_some() { "info" } else { "warn" })
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start authgate");
        let process = GatewayProcess {
            http: SocketAddr::from(([127, 0, 0, 1], http)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            child: Some(child),
        };
        let admin_url = format!("http://{}/readyz", process.admin);
        let up = super::eventually(Duration::from_secs(15), || async {
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
            client.get(admin_url.parse().ok()?).await.ok().map(|_| ())
        })
        .await;
        assert!(up.is_some(), "the gateway did not start");
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn signal(&self, name: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status();
        }
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs a CLI command in `dir`; returns (success, stdout, stderr).
pub fn cli(dir: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run authgate");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.unwrap_or_default().as_bytes());
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `jti` claim of a token (read, not verified).
pub fn jti_of(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("payload");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64");
    let claims: serde_json::Value = serde_json::from_slice(&json).expect("json");
    claims["jti"].as_str().expect("jti").to_owned()
}
