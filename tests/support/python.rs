//! Python tools from PyPI (Flask, gunicorn, PyJWT, ...), in the venv that
//! `.ci/run` builds from `tests/python/requirements.txt`, and real WSGI
//! backends started from it on free loopback ports.
//!
//! Where the venv is missing, a test skips with a loud message naming the
//! tool, except in CI (`CI` set), where it fails: nothing may skip there.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The venv: `$AUTHGATE_VENV`, else `~/.cache/authgate-venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("AUTHGATE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/authgate-venv"))
}

/// The path of `tool` in the venv's `bin/`, or `None` after saying loudly
/// that the test is skipped (a failure in CI).
pub fn tool(tool: &str, test: &str) -> Option<PathBuf> {
    let path = venv().join("bin").join(tool);
    if path.exists() {
        return Some(path);
    }
    let message = format!(
        "SKIPPED {test}: `{tool}` is not installed in {} (run .ci/run, or pip install -r tests/python/requirements.txt there)",
        venv().display()
    );
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("\n*** {message} ***\n");
    None
}

/// A WSGI app under gunicorn (with `args`), stopped when dropped.
pub struct Wsgi {
    pub addr: SocketAddr,
    child: Option<Child>,
    gunicorn: PathBuf,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

impl Wsgi {
    /// Writes `source` as `app.py` and serves its `app` with gunicorn; `None`: skipped.
    pub fn gunicorn(source: &str, args: &[&str], test: &str) -> Option<Wsgi> {
        Self::gunicorn_at(SocketAddr::from(([127, 0, 0, 1], super::process::free_port())), source, args, test)
    }

    /// Like `gunicorn`, on `addr` (any loopback address).
    pub fn gunicorn_at(addr: SocketAddr, source: &str, args: &[&str], test: &str) -> Option<Wsgi> {
        let gunicorn = tool("gunicorn", test)?;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("app.py"), source).expect("write app.py");
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        let mut wsgi = Wsgi { addr, child: None, gunicorn, args, dir };
        wsgi.restart();
        Some(wsgi)
    }

    /// Kills gunicorn at once, master and workers (SIGKILL to its process
    /// group: its connections reset, nothing drains).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts gunicorn (again) on the same address and waits until it listens.
    pub fn restart(&mut self) {
        use std::os::unix::process::CommandExt;
        self.kill();
        let child = Command::new(&self.gunicorn)
            .process_group(0)
            .args(["--bind", &self.addr.to_string(), "--workers", "1", "--threads", "4"])
            .args(&self.args)
            .arg("app:app")
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gunicorn");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(self.addr).is_err() {
            assert!(Instant::now() < deadline, "gunicorn did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Wsgi {
    fn drop(&mut self) {
        self.kill();
    }
}
