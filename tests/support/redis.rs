//! A real `redis-server` on a free loopback port, which tests can stop,
//! restart (with or without its data), pause and flush.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts with append-only persistence, so a restart keeps the data.
    pub fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut server = RedisServer { port, dir: tempfile::tempdir().expect("tempdir"), child: None };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Starts (again) on the same port, with whatever data the directory holds.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .arg("--dir")
            .arg(self.data_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (SIGKILL, like a crash); the append-only file stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it and deletes its data: it will come back empty.
    pub fn stop_and_wipe(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(self.data_dir());
        let _ = std::fs::create_dir_all(self.data_dir());
    }

    /// Runs a command through redis-cli; `None` if it failed.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real Redis Sentinel (the same binary, `--sentinel`) watching one master.
pub struct Sentinel {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Sentinel {
    pub fn watch(master: &RedisServer, name: &str) -> Sentinel {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\nsentinel monitor {name} 127.0.0.1 {} 1\nsentinel down-after-milliseconds {name} 1000\n",
            master.port
        );
        std::fs::write(&conf, text).expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis sentinel");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "SENTINEL", "get-master-addr-by-name", name])
                .output()
                .ok();
            if out.is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains(&master.port.to_string())) {
                break;
            }
            assert!(Instant::now() < deadline, "the sentinel did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sentinel { port, _dir: dir, child }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
