//! Several endpoints per upstream, against real backends (Flask under
//! gunicorn, killed and restarted for real): the load is shared, a killed
//! endpoint costs the clients nothing (its failures are retried elsewhere and
//! it is ejected), it is probed back in after a restart; a retry happens only
//! when the request can be sent again whole; a DNS name stands for all its
//! addresses and is resolved again (a private `/etc/hosts` in a mount
//! namespace, rewritten by the test); connections are reused, and one the
//! endpoint closed while idle is not.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use support::client::{get, send};
use support::gateway::{Options, TestGateway};
use support::python::Wsgi;

/// Answers with its own name and the request body it got.
const APP: &str = r#"
import time
from flask import Flask, request
app = Flask(__name__)

@app.route("/", defaults={"p": ""}, methods=["GET", "POST", "PUT"])
@app.route("/<path:p>", methods=["GET", "POST", "PUT"])
def answer(p):
    if p == "slow":
        time.sleep(2)
    return "NAME " + request.get_data(as_text=True)
"#;

fn app(name: &str, addr: SocketAddr, test: &str) -> Option<Wsgi> {
    Wsgi::gunicorn_at(addr, &APP.replace("NAME", name), &[], test)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn route(endpoints: &[String]) -> String {
    let list: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!("[[route]]\npath = \"/\"\nupstream = [{}]\nauth = \"none\"\n", list.join(", "))
}

/// Answers by backend name ("a", "b", ...) or by status for failures.
#[derive(Default)]
struct Tally {
    by_name: std::sync::Mutex<HashMap<String, usize>>,
    failures: AtomicUsize,
    done: AtomicUsize,
}

impl Tally {
    fn count(&self, name: &str) -> usize {
        self.by_name.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

/// `workers` clients sending GETs until `stop`.
fn load(url: String, workers: usize, tally: Arc<Tally>, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|_| {
            let (url, tally, stop) = (url.clone(), tally.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = get(&url, &[]).await;
                    let text = String::from_utf8_lossy(&r.body).into_owned();
                    if r.status == 200 {
                        let name = text.split(' ').next().unwrap_or_default().to_owned();
                        *tally.by_name.lock().unwrap().entry(name).or_default() += 1;
                    } else {
                        tally.failures.fetch_add(1, Ordering::Relaxed);
                    }
                    tally.done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

async fn until_done(tally: &Tally, n: usize) {
    let reached = support::eventually(Duration::from_secs(60), || async {
        (tally.done.load(Ordering::Relaxed) >= n).then_some(())
    })
    .await;
    assert!(reached.is_some(), "{n} requests within a minute");
}

async fn metric(gw: &TestGateway, name: &str) -> f64 {
    let text = String::from_utf8_lossy(&get(&format!("http://{}/metrics", gw.admin), &[]).await.body).into_owned();
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_endpoints_share_the_load_and_one_killed_costs_the_clients_nothing() {
    let test = "three_endpoints_share_the_load_and_one_killed_costs_the_clients_nothing";
    let ports = [support::process::free_port(), support::process::free_port(), support::process::free_port()];
    let Some(a) = app("a", loopback(ports[0]), test) else { return };
    let Some(mut b) = app("b", loopback(ports[1]), test) else { return };
    let Some(c) = app("c", loopback(ports[2]), test) else { return };
    let endpoints: Vec<String> = [&a, &b, &c].iter().map(|w| format!("http://{}", w.addr)).collect();
    let gw = TestGateway::start(&route(&endpoints)).await;
    let url = gw.url("/x");

    // Balanced: each of the three takes a fair share.
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(url.clone(), 6, tally.clone(), stop.clone());
    until_done(&tally, 600).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let total = tally.done.load(Ordering::Relaxed);
    assert_eq!(tally.failures.load(Ordering::Relaxed), 0);
    for name in ["a", "b", "c"] {
        let share = tally.count(name) as f64 / total as f64;
        assert!((0.2..0.47).contains(&share), "{name} took {share:.2} of {total}");
    }

    // One killed mid-load: what was in flight on it is retried elsewhere.
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(url.clone(), 6, tally.clone(), stop.clone());
    until_done(&tally, 200).await;
    b.kill();
    let at_kill = tally.done.load(Ordering::Relaxed);
    let b_at_kill = tally.count("b");
    until_done(&tally, at_kill + 400).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(tally.failures.load(Ordering::Relaxed) <= 6, "at most the requests in flight on b fail");
    assert_eq!(tally.failures.load(Ordering::Relaxed), 0, "in fact none: a GET that broke is retried");
    // (answers already on their way to a client when b died may still be counted)
    assert!(tally.count("b") <= b_at_kill + 6, "b answered nothing after its death");
    assert!(metric(&gw, "authgate_upstream_ejections_total").await >= 1.0, "b was ejected");
    assert!(metric(&gw, "authgate_upstream_retries_total").await >= 1.0, "and its requests retried");

    // Restarted: probed back in within its backoff, and takes its share again.
    b.restart();
    let back = support::eventually(Duration::from_secs(45), || async {
        let r = get(&url, &[]).await;
        assert_eq!(r.status, 200);
        r.body.starts_with(b"b ").then_some(())
    })
    .await;
    assert!(back.is_some(), "b probed back in after its restart");
    let healthy = support::eventually(Duration::from_secs(5), || async {
        (metric(&gw, "authgate_upstream_endpoints{").await >= 3.0).then_some(())
    })
    .await;
    assert!(healthy.is_some());
    drop((a, c));
}

/// A server that reads a request and closes without answering; counts the
/// requests it saw and the bytes of body among them.
async fn breaker() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                loop {
                    let read = tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await;
                    match read {
                        Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                            .unwrap_or(0usize);
                        if got.len() >= end + 4 + length {
                            counter.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
                // Dropped without a byte of answer.
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_request_is_retried_only_when_it_can_be_sent_again_whole() {
    let test = "a_request_is_retried_only_when_it_can_be_sent_again_whole";
    let Some(live) = app("live", loopback(support::process::free_port()), test) else { return };
    let (broken, seen) = breaker().await;
    let dead = loopback(support::process::free_port());

    // Connection refused: nothing was sent, so even a POST goes to the other endpoint, body whole.
    let gw = TestGateway::start(&route(&[format!("http://{dead}"), format!("http://{}", live.addr)])).await;
    for i in 0..10 {
        let payload = format!("payload-{i}");
        let r = send(Method::POST, &gw.url("/x"), &[], Bytes::from(payload.clone())).await;
        assert_eq!((r.status, String::from_utf8_lossy(&r.body).into_owned()), (200, format!("live {payload}")));
    }
    assert!(metric(&gw, "authgate_upstream_ejections_total").await >= 1.0, "the dead endpoint was ejected");
    drop(gw);

    // An exchange that broke after the request went out: a GET is retried;
    // a POST or a PUT whose body was sent is not (never delivered twice).
    let gw = TestGateway::start(&route(&[format!("http://{broken}"), format!("http://{}", live.addr)])).await;
    for _ in 0..20 {
        let r = get(&gw.url("/x"), &[]).await;
        assert_eq!(r.status, 200, "a GET that broke is retried on the other endpoint");
    }
    let gets_seen = seen.load(Ordering::Relaxed);
    let mut refused = 0;
    for (i, method) in [Method::POST, Method::PUT].into_iter().cycle().take(30).enumerate() {
        let payload = format!("body-{i}");
        let r = send(method, &gw.url("/x"), &[], Bytes::from(payload.clone())).await;
        match r.status {
            200 => assert_eq!(String::from_utf8_lossy(&r.body), format!("live {payload}")),
            502 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        seen.load(Ordering::Relaxed) - gets_seen,
        refused,
        "every body the breaker took is a 502, never a retry"
    );
    assert!(refused > 0 && refused < 30, "both endpoints were picked ({refused} of 30 broke)");
}

/// Answers with the port the gateway's connection came from.
const PORT_APP: &str = r#"
from flask import Flask, request
app = Flask(__name__)

@app.route("/", defaults={"p": ""})
@app.route("/<path:p>")
def answer(p):
    return request.environ["REMOTE_PORT"]
"#;

/// The TCP state of the loopback connection from local port `port` to
/// `remote`, if it is still there (`/proc/net/tcp`: 01 established, 08
/// close-wait). Both ends count: another test's connection may have had
/// the same local port, and linger in TIME_WAIT.
fn tcp_state(port: u16, remote: SocketAddr) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    let remote = format!("0100007F:{:04X}", remote.port());
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()))
            .then(|| fields[3].to_owned())
    })
}

/// Upstream connections are kept and reused: twenty requests one after the
/// other arrive on one connection. One the endpoint closed while idle
/// (gunicorn's keep-alive, 1 s here) is never used again: the next request
/// goes out on a new connection and succeeds.
#[tokio::test]
async fn connections_are_reused_and_one_the_endpoint_closed_is_not() {
    let test = "connections_are_reused_and_one_the_endpoint_closed_is_not";
    let addr = loopback(support::process::free_port());
    let Some(_app) = Wsgi::gunicorn_at(addr, PORT_APP, &["--keep-alive", "1"], test) else { return };
    // One worker: each worker keeps connections of its own.
    let options = Options { server: "workers = 1".to_owned(), ..Options::default() };
    let gw = TestGateway::start_with(&route(&[format!("http://{addr}")]), options).await;
    let mut ports = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let r = get(&gw.url("/x"), &[]).await;
        assert_eq!(r.status, 200);
        ports.insert(String::from_utf8_lossy(&r.body).parse::<u16>().unwrap());
    }
    assert_eq!(ports.len(), 1, "one connection for twenty requests in a row: {ports:?}");
    let first = *ports.first().unwrap();
    assert_eq!(tcp_state(first, addr).as_deref(), Some("01"), "the idle connection is kept open");

    // gunicorn closes it after its keep-alive: the gateway's end sees the FIN.
    let closed = support::eventually(Duration::from_secs(10), || async {
        tcp_state(first, addr).is_none_or(|state| state != "01").then_some(())
    })
    .await;
    assert!(closed.is_some(), "gunicorn did not close the idle connection");
    for _ in 0..5 {
        let r = get(&gw.url("/x"), &[]).await;
        assert_eq!(r.status, 200, "a request after the endpoint closed the idle connection");
        let port = String::from_utf8_lossy(&r.body).parse::<u16>().unwrap();
        assert_ne!(port, first, "the closed connection was used again");
    }
}

/// `upstream = "http://backend.test:PORT"`: the gateway runs with its own
/// `/etc/hosts` (a mount namespace); the test rewrites it and the endpoints follow.
#[tokio::test]
async fn a_dns_name_stands_for_all_its_addresses_and_is_resolved_again() {
    let test = "a_dns_name_stands_for_all_its_addresses_and_is_resolved_again";
    let unshare = std::path::Path::new("/usr/bin/unshare");
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !unshare.exists() || !root {
        let message = format!("SKIPPED {test}: needs `unshare` (util-linux) and root for a private /etc/hosts");
        assert!(std::env::var_os("CI").is_none(), "{message}");
        eprintln!("\n*** {message} ***\n");
        return;
    }
    let port = support::process::free_port();
    let at = |last: u8| SocketAddr::from(([127, 0, 0, last], port));
    let Some(two) = app("two", at(2), test) else { return };
    let Some(three) = app("three", at(3), test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    // Rewritten in place: the bind mount follows the file, not its name.
    let write_hosts = |lines: &str| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).truncate(true).create(true).open(&hosts).unwrap();
        f.write_all(format!("127.0.0.1 localhost\n{lines}").as_bytes()).unwrap();
    };
    write_hosts("127.0.0.2 backend.test\n");
    let config = format!(
        "[server]\nhttp = \"{{HTTP}}\"\nadmin = \"{{ADMIN}}\"\n[server.limits]\nupstream_resolve_interval = \"100ms\"\n\
         [[route]]\npath = \"/\"\nupstream = \"http://backend.test:{port}\"\nauth = \"none\"\n"
    );
    let hosts_text = hosts.display().to_string();
    let wrap = [
        "/usr/bin/unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
        hosts_text.as_str(),
    ];
    let gw = support::process::GatewayProcess::start_wrapped(dir.path(), "g.toml", &config, None, &wrap).await;
    let url = gw.url("/x");
    let names = |n: usize| {
        let url = url.clone();
        async move {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..n {
                let r = get(&url, &[]).await;
                assert_eq!(r.status, 200);
                seen.insert(String::from_utf8_lossy(&r.body).split(' ').next().unwrap_or_default().to_owned());
            }
            seen.into_iter().collect::<Vec<_>>()
        }
    };
    assert_eq!(names(20).await, ["two"]);
    write_hosts("127.0.0.2 backend.test\n127.0.0.3 backend.test\n");
    let both =
        support::eventually(Duration::from_secs(10), || async { (names(20).await == ["three", "two"]).then_some(()) })
            .await;
    assert!(both.is_some(), "a second address joins the upstream");
    write_hosts("127.0.0.3 backend.test\n");
    let only =
        support::eventually(Duration::from_secs(10), || async { (names(20).await == ["three"]).then_some(()) }).await;
    assert!(only.is_some(), "an address gone from DNS leaves the upstream");
    drop((two, three));
}

/// `upstream_max_connections`: a request finding its endpoint full waits
/// `upstream_connect_timeout` (500 ms here), then 503 `upstream_busy`; a slot freed is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_endpoint_is_503_upstream_busy() {
    let test = "a_full_endpoint_is_503_upstream_busy";
    let Some(one) = app("one", loopback(support::process::free_port()), test) else { return };
    let limits = "upstream_max_connections = 1\nupstream_timeout = \"10s\"\n".to_owned();
    let gw =
        TestGateway::start_with(&route(&[format!("http://{}", one.addr)]), Options { limits, ..Options::default() })
            .await;
    let slow_url = gw.url("/slow");
    let slow = tokio::spawn(async move { get(&slow_url, &[]).await });
    let busy = support::eventually(Duration::from_secs(5), || async {
        (metric(&gw, "authgate_upstream_in_flight").await >= 1.0).then_some(())
    })
    .await;
    assert!(busy.is_some(), "the slow request holds the only slot");
    let r = get(&gw.url("/x"), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (503, "upstream_busy"));
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(get(&gw.url("/x"), &[]).await.status, 200, "the slot is free again");
    assert!(metric(&gw, "authgate_upstream_errors_total{").await >= 1.0);
}

/// `check` and `explain` print an upstream's scheme, every endpoint and its TLS settings.
#[test]
fn check_and_explain_show_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[server]\nhttp = \"127.0.0.1:0\"\n\
                  [[route]]\npath = \"/api\"\nauth = \"none\"\nupstream = [\"http://10.0.0.5:8080/v1\", \"http://orders.svc:8080/v1\"]\n\
                  [[route]]\npath = \"/local\"\nauth = \"none\"\nupstream = \"https://127.0.0.1:8443\"\n\
                  [route.upstream_tls]\ninsecure_skip_verify = true\n";
    std::fs::write(dir.path().join("g.toml"), config).unwrap();
    let (ok, out, err) = support::process::cli(dir.path(), &["--config", "g.toml", "check"], None);
    assert!(ok, "{err}");
    assert!(out.contains("http://10.0.0.5:8080/v1, http://orders.svc:8080/v1"), "{out}");
    assert!(out.contains("https://127.0.0.1:8443 (certificate NOT verified)"), "{out}");
    let (ok, out, err) = support::process::cli(dir.path(), &["--config", "g.toml", "explain", "GET", "/api/x"], None);
    assert!(ok, "{err}");
    assert!(out.contains("http://10.0.0.5:8080/v1, http://orders.svc:8080/v1"), "{out}");
}
