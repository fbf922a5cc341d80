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
    /// `--replicaof` at (first) start.
    replica_of: Option<u16>,
}

impl RedisServer {
    /// Starts with append-only persistence, so a restart keeps the data.
    pub fn start() -> RedisServer {
        RedisServer::start_replica_of(None)
    }

    /// Starts as a replica of the server on `master` (when given).
    pub fn start_replica_of(master: Option<u16>) -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut server =
            RedisServer { port, dir: tempfile::tempdir().expect("tempdir"), child: None, replica_of: master };
        server.restart();
        server
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...) to the server process.
    pub fn signal(&self, name: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
        }
    }

    /// `role` from `INFO replication`: `master` or `slave` (`None`: not answering).
    pub fn role(&self) -> Option<String> {
        let info = self.cli(&["INFO", "replication"])?;
        info.lines().find_map(|l| l.strip_prefix("role:")).map(|r| r.trim().to_owned())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Starts (again) on the same port, with whatever data the directory holds.
    pub fn restart(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            // Redis 7 waits 5 s for more replicas before a diskless full
            // sync; a replica would take that long to hold anything, as long
            // as the tests' own bounds on an acknowledged write.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(self.data_dir());
        // Only at first start: a restarted server comes back as it was configured, as after a crash.
        if let Some(master) = self.replica_of.take() {
            command.args(["--replicaof", "127.0.0.1", &master.to_string()]);
        }
        let child = command
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

/// A real Redis Sentinel (Debian's `redis-sentinel`) watching one master.
pub struct Sentinel {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Sentinel {
    pub fn watch(master: &RedisServer, name: &str) -> Sentinel {
        Sentinel::watch_with(master, name, 1, 1000)
    }

    /// With `quorum` Sentinels needed to agree, and `down_after_ms` of silence before a node counts as down.
    pub fn watch_with(master: &RedisServer, name: &str, quorum: u32, down_after_ms: u32) -> Sentinel {
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\nsentinel monitor {name} 127.0.0.1 {} {quorum}\n\
             sentinel down-after-milliseconds {name} {down_after_ms}\nsentinel failover-timeout {name} 5000\n",
            master.port
        );
        std::fs::write(&conf, text).expect("write sentinel.conf");
        let child = Command::new("redis-sentinel")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-sentinel must be installed (.ci/run installs it)");
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

/// A primary, two replicas and three Sentinels (quorum 2) watching them,
/// with a short `down-after-milliseconds`: a real failover in a few seconds.
pub struct SentinelCluster {
    pub name: String,
    /// The nodes in start order: the first is the primary at start.
    pub nodes: Vec<RedisServer>,
    pub sentinels: Vec<Sentinel>,
}

impl SentinelCluster {
    pub fn start(name: &str) -> SentinelCluster {
        let primary = RedisServer::start();
        let replicas: Vec<RedisServer> = (0..2).map(|_| RedisServer::start_replica_of(Some(primary.port))).collect();
        for replica in &replicas {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !replica.cli(&["INFO", "replication"]).is_some_and(|i| i.contains("master_link_status:up")) {
                assert!(Instant::now() < deadline, "a replica did not sync");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let sentinels = (0..3).map(|_| Sentinel::watch_with(&primary, name, 2, 600)).collect();
        let mut nodes = vec![primary];
        nodes.extend(replicas);
        SentinelCluster { name: name.to_owned(), nodes, sentinels }
    }

    /// `redis+sentinel://` naming every Sentinel.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("redis+sentinel://{}/{}", hosts.join(","), self.name)
    }

    /// The port the Sentinels name as the master now (the first that answers).
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let out = Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &s.port.to_string(), "SENTINEL", "get-master-addr-by-name", &self.name])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout).lines().nth(1)?.trim().parse().ok()
        })
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes.iter().find(|n| n.port == port).expect("a node of the cluster")
    }

    pub fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        self.nodes.iter_mut().find(|n| n.port == port).expect("a node of the cluster")
    }
}
