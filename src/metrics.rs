//! Prometheus metrics, served on the admin listener at `/metrics`.
//!
//! Owns the registry and every metric. One `Metrics` lives as long as the
//! gateway: a config reload keeps it, so counters never reset. Label values
//! come from the config (route paths) or from fixed sets (status codes,
//! error codes, outcomes), never from a client, so cardinality is bounded.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route's path, `endpoint` for the gateway's endpoints, `-` for none.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabels {
    /// From the config, so the set is bounded.
    pub issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// The upstream as written in the config (bounded by it).
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamKindLabels {
    pub upstream: String,
    /// `connect`, `busy`, `timeout`, `broken` (failures); `healthy`, `ejected` (endpoints).
    pub kind: &'static str,
}

/// One upstream's counters, looked up once (no label hashing per request).
pub struct UpstreamHandles {
    pub requests: Counter,
    pub retries: Counter,
    pub ejections: Counter,
    /// By `UPSTREAM_ERRORS`.
    errors: [Counter; 4],
}

const UPSTREAM_ERRORS: [&str; 4] = ["connect", "busy", "timeout", "broken"];

impl UpstreamHandles {
    /// Counts a failed attempt of kind `kind` (one of `connect`, `busy`, `timeout`, `broken`).
    pub fn error(&self, kind: &'static str) {
        if let Some(i) = UPSTREAM_ERRORS.iter().position(|k| *k == kind) {
            self.errors[i].inc();
        }
    }
}

/// What `/metrics` shows of an upstream's endpoints now.
#[derive(Debug, Default)]
pub struct UpstreamObserved {
    pub upstream: String,
    pub healthy: usize,
    pub ejected: usize,
    pub in_flight: usize,
}

/// What the scrape-time gauges show, read by the caller from the live state
/// (so this module needs neither the stores nor the issuers).
#[derive(Debug, Default)]
pub struct Observed {
    /// Each trusted issuer and the age of its keys (`None`: never fetched).
    pub jwks_ages: Vec<(String, Option<std::time::Duration>)>,
    /// Denylist entries and staleness (`None`: never confirmed), with a store.
    pub denylist: Option<(usize, Option<std::time::Duration>)>,
    pub upstreams: Vec<UpstreamObserved>,
}

pub struct Metrics {
    registry: Registry,
    /// Tells this gateway's counters from another's in a worker's cache (`request`).
    id: u64,
    requests: Family<RequestLabels, Counter>,
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
    pub auth_failures: Family<ReasonLabels, Counter>,
    pub store_errors: Counter,
    pub logins: Family<OutcomeLabels, Counter>,
    pub reloads: Family<OutcomeLabels, Counter>,
    pub open_connections: Gauge,
    pub parked_connections: Gauge,
    denylist_entries: Gauge,
    denylist_staleness: Gauge<f64, AtomicU64>,
    jwks_age: Family<IssuerLabels, Gauge<f64, AtomicU64>>,
    upstream_requests: Family<UpstreamLabels, Counter>,
    upstream_retries: Family<UpstreamLabels, Counter>,
    upstream_ejections: Family<UpstreamLabels, Counter>,
    upstream_errors: Family<UpstreamKindLabels, Counter>,
    upstream_endpoints: Family<UpstreamKindLabels, Gauge>,
    upstream_in_flight: Family<UpstreamLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("authgate");
        static IDS: AtomicU64 = AtomicU64::new(0);
        let m = Metrics {
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            requests: Family::default(),
            // 100 µs .. ~26 s
            request_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            upstream_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            auth_failures: Family::default(),
            store_errors: Counter::default(),
            logins: Family::default(),
            reloads: Family::default(),
            open_connections: Gauge::default(),
            parked_connections: Gauge::default(),
            denylist_entries: Gauge::default(),
            denylist_staleness: Gauge::default(),
            jwks_age: Family::default(),
            upstream_requests: Family::default(),
            upstream_retries: Family::default(),
            upstream_ejections: Family::default(),
            upstream_errors: Family::default(),
            upstream_endpoints: Family::default(),
            upstream_in_flight: Family::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Requests by route and status", m.requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time to the response head, whole request",
            m.request_duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time the upstream took to answer with its head",
            m.upstream_duration.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests refused by authentication or policy, by error code",
            m.auth_failures.clone(),
        );
        registry.register(
            "store_errors",
            "Failed store calls (requests and the denylist feed)",
            m.store_errors.clone(),
        );
        registry.register("login_attempts", "Login attempts by outcome", m.logins.clone());
        registry.register("config_reloads", "Config reloads by outcome", m.reloads.clone());
        registry.register("open_connections", "Open client connections", m.open_connections.clone());
        registry.register(
            "parked_connections",
            "Idle HTTP/1 keep-alive connections waiting for a request without hyper's buffers",
            m.parked_connections.clone(),
        );
        registry.register("denylist_entries", "Entries in this replica's denylist copy", m.denylist_entries.clone());
        registry.register(
            "denylist_staleness_seconds",
            "Time since the store's change feed last answered (-1: never)",
            m.denylist_staleness.clone(),
        );
        registry.register(
            "jwks_age_seconds",
            "Age of each trusted issuer's keys in use (-1: never fetched); it grows while the JWKS endpoint fails",
            m.jwks_age.clone(),
        );
        registry.register(
            "upstream_requests",
            "Attempts sent to each upstream (a retry is one more)",
            m.upstream_requests.clone(),
        );
        registry.register("upstream_retries", "Attempts tried again on another endpoint", m.upstream_retries.clone());
        registry.register(
            "upstream_ejections",
            "Endpoints ejected for a backoff after a refused connection or a timeout",
            m.upstream_ejections.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed attempts by kind: connect (refused), busy (upstream_max_connections), timeout, broken (before the response head)",
            m.upstream_errors.clone(),
        );
        registry.register(
            "upstream_endpoints",
            "Each upstream's endpoints (addresses, once DNS names are resolved) by kind: healthy or ejected",
            m.upstream_endpoints.clone(),
        );
        registry.register(
            "upstream_in_flight",
            "Requests in flight to each upstream; over HTTP/1.1, its connections in use",
            m.upstream_in_flight.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The text exposition, with the gauges read at scrape time set from `now`.
    pub fn render(&self, now: &Observed) -> String {
        for (issuer, age) in &now.jwks_ages {
            let age = age.map_or(-1.0, |a| a.as_secs_f64());
            self.jwks_age.get_or_create(&IssuerLabels { issuer: issuer.clone() }).set(age);
        }
        for u in &now.upstreams {
            let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            let labels = |kind| UpstreamKindLabels { upstream: u.upstream.clone(), kind };
            self.upstream_endpoints.get_or_create(&labels("healthy")).set(count(u.healthy));
            self.upstream_endpoints.get_or_create(&labels("ejected")).set(count(u.ejected));
            self.upstream_in_flight
                .get_or_create(&UpstreamLabels { upstream: u.upstream.clone() })
                .set(count(u.in_flight));
        }
        if let Some((entries, staleness)) = now.denylist {
            self.denylist_entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
            self.denylist_staleness.set(staleness.map_or(-1.0, |d| d.as_secs_f64()));
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The counters of one upstream (`label` from the config).
    pub fn upstream(&self, label: &str) -> UpstreamHandles {
        let one = UpstreamLabels { upstream: label.to_owned() };
        let errors = UPSTREAM_ERRORS.map(|kind| {
            self.upstream_errors.get_or_create(&UpstreamKindLabels { upstream: label.to_owned(), kind }).clone()
        });
        UpstreamHandles {
            requests: self.upstream_requests.get_or_create(&one).clone(),
            retries: self.upstream_retries.get_or_create(&one).clone(),
            ejections: self.upstream_ejections.get_or_create(&one).clone(),
            errors,
        }
    }

    /// Counts a request by route and status. Each worker thread keeps the
    /// counters it has used (a few dozen at most: routes times statuses), so
    /// a request neither builds a label `String` nor hashes one.
    pub fn request(&self, route: &str, status: u16) {
        const KEPT: usize = 64;
        /// A counter this thread has used: the gateway's id, status, route.
        type Used = (u64, u16, Box<str>, Counter);
        thread_local! {
            static USED: std::cell::RefCell<Vec<Used>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        USED.with_borrow_mut(|used| {
            let mine = |(id, s, r, _): &&Used| *id == self.id && *s == status && &**r == route;
            if let Some((.., counter)) = used.iter().find(mine) {
                counter.inc();
                return;
            }
            let counter = self.requests.get_or_create(&RequestLabels { route: route.to_owned(), status }).clone();
            counter.inc();
            if used.len() < KEPT {
                used.push((self.id, status, route.into(), counter));
            }
        });
    }

    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn login(&self, outcome: &'static str) {
        self.logins.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn reload(&self, outcome: &'static str) {
        self.reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(metrics: &Metrics, route: &str, status: u16) -> Option<String> {
        let text = metrics.render(&Observed::default());
        let line = format!("authgate_requests_total{{route=\"{route}\",status=\"{status}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(line.as_str()).map(str::to_owned))
    }

    #[test]
    fn requests_are_counted_by_route_and_status_on_each_gateway_of_a_thread() {
        let (one, two) = (Metrics::default(), Metrics::default());
        for _ in 0..3 {
            one.request("/api", 200);
        }
        one.request("/api", 404);
        two.request("/api", 200);
        assert_eq!(count(&one, "/api", 200).as_deref(), Some("3"));
        assert_eq!(count(&one, "/api", 404).as_deref(), Some("1"));
        assert_eq!(count(&two, "/api", 200).as_deref(), Some("1"), "another gateway's counter, not the first's");
        assert_eq!(count(&two, "/api", 404), None);
    }
}
