//! Which endpoint of an upstream takes a request, and which are left out.
//!
//! Owns an upstream's endpoints: the addresses a DNS name stands for
//! (resolved again every `upstream_resolve_interval`, a headless Service's
//! pods coming and going), the choice between them (the less busy of two
//! picked at random: "power of two choices" on requests in flight), the
//! per-endpoint connection cap, and passive health: an endpoint that refuses
//! a connection or times out is ejected for a backoff (1 s, doubling to
//! 30 s); once it has passed, the next request it is picked for probes it, and
//! a success takes it back in. When every endpoint is ejected, they are all
//! tried anyway: a guess beats a certain failure. docs/configuration.md,
//! "Upstreams".

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::uri::Authority;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const FIRST_BACKOFF_MS: u64 = 1_000;
const MAX_BACKOFF_MS: u64 = 30_000;

/// One address of an upstream, with what the balancer knows of it.
pub struct Endpoint {
    /// Where requests go: `ip:port` once resolved, else the host as written.
    pub authority: Authority,
    /// The host as written in the config: the TLS server name for an address
    /// resolved from a DNS name.
    pub written_host: String,
    in_flight: AtomicUsize,
    failures: AtomicU32,
    /// Milliseconds since `epoch()`; 0: never ejected, or taken back in.
    ejected_until: AtomicU64,
    permits: Arc<Semaphore>,
}

impl Endpoint {
    fn new(authority: Authority, written_host: &str, max_connections: usize) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            authority,
            written_host: written_host.to_owned(),
            in_flight: AtomicUsize::new(0),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            permits: Arc::new(Semaphore::new(max_connections)),
        })
    }

    fn healthy(&self, now_ms: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) <= now_ms
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// A request's hold on an endpoint: counted in flight and holding one of
/// its connection slots until dropped (with the response body).
pub struct Lease {
    endpoint: Arc<Endpoint>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The endpoints of one upstream.
pub struct Endpoints {
    /// As configured; a DNS name among them is resolved by `resolve`.
    written: Vec<Authority>,
    default_port: u16,
    max_connections: usize,
    live: ArcSwap<Vec<Arc<Endpoint>>>,
}

/// What `/metrics` shows of an upstream's endpoints.
#[derive(Debug, Default, Clone, Copy)]
pub struct Health {
    pub healthy: usize,
    pub ejected: usize,
    pub in_flight: usize,
}

impl Endpoints {
    pub fn new(written: Vec<Authority>, default_port: u16, max_connections: usize) -> Endpoints {
        let live = written.iter().map(|a| Endpoint::new(a.clone(), a.host(), max_connections)).collect();
        Endpoints { written, default_port, max_connections, live: ArcSwap::from_pointee(live) }
    }

    /// Requests at once per endpoint (`upstream_max_connections`); also how
    /// many idle connections a worker keeps per endpoint.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// How many addresses there are now.
    pub fn count(&self) -> usize {
        self.live.load().len()
    }

    /// Whether some endpoint is a DNS name (so `resolve` has work to do).
    pub fn has_names(&self) -> bool {
        self.written.iter().any(|a| host_ip(a.host()).is_none())
    }

    /// The endpoint the address `authority` came from, for its TLS server name.
    pub fn written_host(&self, authority: &str) -> Option<String> {
        self.live.load().iter().find(|e| e.authority.as_str() == authority).map(|e| e.written_host.clone())
    }

    /// Picks an endpoint not in `tried`: the less busy of two healthy ones
    /// chosen at random; ejected ones only when no healthy one is left.
    pub fn pick(&self, tried: &[Arc<Endpoint>]) -> Option<Arc<Endpoint>> {
        let live = self.live.load();
        if let [only] = live.as_slice() {
            return tried.is_empty().then(|| only.clone());
        }
        let now = now_ms();
        for healthy_only in [true, false] {
            let eligible =
                |e: &&Arc<Endpoint>| !tried.iter().any(|t| Arc::ptr_eq(t, e)) && (!healthy_only || e.healthy(now));
            let n = live.iter().filter(eligible).count();
            if n == 0 {
                continue;
            }
            let a = fastrand::usize(..n);
            let b = if n > 1 { (a + 1 + fastrand::usize(..n - 1)) % n } else { a };
            let first = live.iter().filter(eligible).nth(a)?;
            let second = live.iter().filter(eligible).nth(b)?;
            return Some(if second.in_flight() < first.in_flight() { second } else { first }.clone());
        }
        None
    }

    /// Takes one of the endpoint's connection slots, waiting at most `wait`;
    /// `None`: the endpoint stayed full.
    pub async fn lease(endpoint: &Arc<Endpoint>, wait: Duration) -> Option<Lease> {
        let permit = match endpoint.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(wait, endpoint.permits.clone().acquire_owned()).await.ok()?.ok()?,
        };
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Lease { endpoint: endpoint.clone(), _permit: permit })
    }

    /// A connection refused or a timeout: the endpoint sits out a backoff.
    /// Returns the backoff (for the log and the metrics).
    pub fn failed(&self, endpoint: &Endpoint) -> Duration {
        let failures = endpoint.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let backoff = FIRST_BACKOFF_MS.saturating_mul(1 << (failures - 1).min(5)).min(MAX_BACKOFF_MS);
        endpoint.ejected_until.store(now_ms() + backoff, Ordering::Relaxed);
        Duration::from_millis(backoff)
    }

    /// An answer: the endpoint is (back) in. Returns whether it had been out.
    pub fn succeeded(&self, endpoint: &Endpoint) -> bool {
        if endpoint.failures.load(Ordering::Relaxed) == 0 {
            return false;
        }
        endpoint.failures.store(0, Ordering::Relaxed);
        endpoint.ejected_until.store(0, Ordering::Relaxed);
        true
    }

    pub fn health(&self) -> Health {
        let now = now_ms();
        let live = self.live.load();
        let healthy = live.iter().filter(|e| e.healthy(now)).count();
        Health { healthy, ejected: live.len() - healthy, in_flight: live.iter().map(|e| e.in_flight()).sum() }
    }

    /// Resolves every DNS name again and swaps in the new set of addresses,
    /// keeping what is known of an address that stays. A name that does not
    /// resolve keeps its last addresses (a DNS outage must not empty the upstream).
    pub async fn resolve(&self) {
        let current = self.live.load_full();
        let mut next: Vec<Arc<Endpoint>> = Vec::new();
        for written in &self.written {
            let host = written.host();
            if host_ip(host).is_some() {
                if let Some(e) = current.iter().find(|e| e.authority == *written) {
                    next.push(e.clone());
                }
                continue;
            }
            let port = written.port_u16().unwrap_or(self.default_port);
            let addresses = match tokio::net::lookup_host((host, port)).await {
                Ok(found) => {
                    let mut found: Vec<SocketAddr> = found.collect();
                    found.sort();
                    found.dedup();
                    found
                }
                Err(e) => {
                    tracing::warn!(host, error = %e, "upstream name does not resolve; keeping its last addresses");
                    Vec::new()
                }
            };
            if addresses.is_empty() {
                next.extend(current.iter().filter(|e| e.written_host == host).cloned());
                continue;
            }
            for address in addresses {
                let Ok(authority) = Authority::try_from(address.to_string()) else { continue };
                let known = current.iter().find(|e| e.authority == authority && e.written_host == host);
                next.push(known.cloned().unwrap_or_else(|| Endpoint::new(authority, host, self.max_connections)));
            }
        }
        let changed = next.len() != current.len() || next.iter().zip(current.iter()).any(|(a, b)| !Arc::ptr_eq(a, b));
        if changed && !next.is_empty() {
            let list: Vec<&str> = next.iter().map(|e| e.authority.as_str()).collect();
            tracing::info!(endpoints = ?list, "upstream endpoints resolved");
            self.live.store(Arc::new(next));
        }
    }
}

fn host_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    // +1: 0 means "never ejected" even at the epoch itself.
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(list: &[&'static str]) -> Endpoints {
        Endpoints::new(list.iter().map(|a| Authority::from_static(a)).collect(), 80, 4)
    }

    #[test]
    fn the_less_busy_of_two_is_picked_and_an_ejected_one_only_as_a_last_resort() {
        let set = endpoints(&["127.0.0.1:1", "127.0.0.1:2"]);
        let live = set.live.load_full();
        live[0].in_flight.store(5, Ordering::Relaxed);
        for _ in 0..50 {
            assert_eq!(set.pick(&[]).map(|e| e.authority.clone()), Some(live[1].authority.clone()));
        }
        assert_eq!(set.failed(&live[1]), Duration::from_secs(1));
        assert_eq!(set.failed(&live[1]), Duration::from_secs(2));
        for _ in 0..50 {
            assert!(Arc::ptr_eq(&set.pick(&[]).expect("one is healthy"), &live[0]));
        }
        assert!(Arc::ptr_eq(&set.pick(std::slice::from_ref(&live[0])).expect("last resort"), &live[1]));
        assert!(set.pick(&live).is_none(), "every endpoint tried");
        assert!(set.succeeded(&live[1]));
        assert!(!set.succeeded(&live[1]));
        assert_eq!(set.health().healthy, 2);
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        let set = endpoints(&["127.0.0.1:1"]);
        let one = set.live.load_full()[0].clone();
        let backoffs: Vec<u64> = (0..8).map(|_| set.failed(&one).as_secs()).collect();
        assert_eq!(backoffs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[tokio::test]
    async fn a_name_becomes_its_addresses_and_keeps_what_is_known_of_them() {
        let set = endpoints(&["localhost:8080", "127.0.0.9:80"]);
        assert!(set.has_names());
        set.resolve().await;
        let first = set.live.load_full();
        let names: Vec<&str> = first.iter().map(|e| e.authority.as_str()).collect();
        assert!(names.contains(&"127.0.0.1:8080") && names.contains(&"127.0.0.9:80"), "{names:?}");
        assert_eq!(set.written_host("127.0.0.1:8080").as_deref(), Some("localhost"));
        set.resolve().await;
        let second = set.live.load_full();
        assert!(first.iter().zip(second.iter()).all(|(a, b)| Arc::ptr_eq(a, b)), "same addresses, same endpoints");
    }

    #[tokio::test]
    async fn a_full_endpoint_makes_the_next_request_wait_then_give_up() {
        let set = Endpoints::new(vec![Authority::from_static("127.0.0.1:1")], 80, 1);
        let one = set.pick(&[]).expect("one endpoint");
        let held = Endpoints::lease(&one, Duration::ZERO).await.expect("a free slot");
        assert_eq!(one.in_flight(), 1);
        assert!(Endpoints::lease(&one, Duration::from_millis(20)).await.is_none());
        drop(held);
        assert_eq!(one.in_flight(), 0);
        assert!(Endpoints::lease(&one, Duration::ZERO).await.is_some());
    }
}
