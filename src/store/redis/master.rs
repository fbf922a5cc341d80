//! Which Redis node is the master, and the gateway's connections to it.
//!
//! Owns master discovery and nothing else. A `redis://` URL names the master
//! itself. A `redis+sentinel://` URL names Sentinels, which are asked for the
//! current master at start, again whenever a call fails in a way that says
//! the master may have moved (connection lost or refused, timeout,
//! `READONLY`), and whenever a Sentinel announces `+switch-master` on the
//! channel this module subscribes to. Every connection of the gateway
//! (commands, durable writes, the change feed) belongs to one `Link` made
//! for one address and swapped whole, so they always agree on one master.
//!
//! Must not know the key layout or what is stored: that is `super`'s.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{Client, ErrorKind, RedisError, ServerErrorKind};

use crate::store::StoreError;

/// Longest pause between two attempts to find the master: the outage after
/// a failover is Sentinel's own failover time plus at most this.
const REDISCOVER_MAX_DELAY: Duration = Duration::from_millis(250);

/// One master's connections, made together and replaced together.
pub struct Link {
    /// `host:port`, for logs.
    pub address: String,
    /// Counts the links made; a failure on an older link says nothing about this one.
    pub generation: u64,
    /// Reads and writes that need no replication.
    pub commands: ConnectionManager,
    /// Writes acknowledged only after `WAIT`: a blocked `WAIT` stalls only other durable writes.
    pub durable: ConnectionManager,
    /// The change feed's blocking reads.
    pub feed: ConnectionManager,
}

enum Source {
    Direct(Client),
    Sentinel { sentinel: tokio::sync::Mutex<Sentinel>, service: String, node: SentinelNodeConnectionInfo },
}

pub struct Master {
    source: Source,
    link: ArcSwap<Link>,
    generations: AtomicU64,
    rediscovering: AtomicBool,
    timeout: Duration,
}

impl Master {
    /// Finds the master (through the Sentinels, if any) and makes a lazy link
    /// to it. A master that cannot be found yet is not fatal: the link points
    /// at the first Sentinel's idea of it, or nowhere, and is replaced as soon
    /// as a master answers.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Arc<Master>, StoreError> {
        let source = source(url)?;
        let (client, found) = match resolve(&source, timeout).await {
            Ok(client) => (client, true),
            Err(e) => {
                tracing::warn!(error = %crate::report::chain(&e), "no Redis master found through the Sentinels yet; retrying");
                // Points nowhere; replaced by the first successful rediscovery.
                (Client::open("redis://127.0.0.1:1").map_err(StoreError::Redis)?, false)
            }
        };
        let link = make_link(client, 1, timeout)?;
        let master = Arc::new(Master {
            source,
            link: ArcSwap::from_pointee(link),
            generations: AtomicU64::new(1),
            rediscovering: AtomicBool::new(false),
            timeout,
        });
        if let Source::Sentinel { .. } = &master.source {
            if !found {
                master.suspect(1);
            }
            for url in sentinel_urls(url).unwrap_or_default() {
                tokio::spawn(watch_switch_master(Arc::downgrade(&master), url));
            }
        }
        Ok(master)
    }

    /// The current link; callers keep it for one call so that a failure is
    /// reported against the link it happened on.
    pub fn current(&self) -> Arc<Link> {
        self.link.load_full()
    }

    pub fn follows_sentinels(&self) -> bool {
        matches!(self.source, Source::Sentinel { .. })
    }

    /// A call on link `generation` failed in a way that says the master may
    /// have moved: look for it again, in the background, once at a time.
    pub fn suspect(self: &Arc<Self>, generation: u64) {
        if !self.follows_sentinels() || generation != self.current().generation {
            return;
        }
        if self.rediscovering.swap(true, Ordering::AcqRel) {
            return;
        }
        let master = self.clone();
        tokio::spawn(async move {
            master.rediscover().await;
            master.rediscovering.store(false, Ordering::Release);
        });
    }

    /// Asks the Sentinels until one names a master that says it is one, then
    /// moves every connection there if it is not where they already are.
    async fn rediscover(&self) {
        let mut delay = Duration::from_millis(50);
        loop {
            match resolve(&self.source, self.timeout).await {
                Ok(client) => {
                    let address = client.get_connection_info().addr().to_string();
                    let current = self.current();
                    if address != current.address {
                        let generation = self.generations.fetch_add(1, Ordering::AcqRel) + 1;
                        match make_link(client, generation, self.timeout) {
                            Ok(link) => {
                                tracing::warn!(from = %current.address, to = %address, "following the new Redis master");
                                self.link.store(Arc::new(link));
                            }
                            Err(e) => {
                                tracing::error!(error = %crate::report::chain(&e), "cannot connect to the new Redis master")
                            }
                        }
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %crate::report::chain(&e), "no Redis master yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(REDISCOVER_MAX_DELAY);
                }
            }
        }
    }
}

/// Whether a failed call says the master may be gone or no longer a master.
pub fn moved(error: &StoreError) -> bool {
    match error {
        StoreError::Timeout | StoreError::ReadOnly | StoreError::NotReplicated { .. } => true,
        StoreError::Redis(e) => is_moved(e),
        _ => false,
    }
}

fn is_moved(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(e.kind(), ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown))
}

fn make_link(client: Client, generation: u64, timeout: Duration) -> Result<Link, StoreError> {
    let config = |response: Duration| {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(response))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200))
    };
    let lazy = |response| ConnectionManager::new_lazy_with_config(client.clone(), config(response));
    Ok(Link {
        address: client.get_connection_info().addr().to_string(),
        generation,
        commands: lazy(timeout).map_err(StoreError::Redis)?,
        // `WAIT` blocks for up to `timeout` on the server before answering.
        durable: lazy(timeout * 2 + timeout / 2).map_err(StoreError::Redis)?,
        feed: lazy(crate::store::denylist::FEED_BLOCK + timeout).map_err(StoreError::Redis)?,
    })
}

async fn resolve(source: &Source, timeout: Duration) -> Result<Client, StoreError> {
    match source {
        Source::Direct(client) => Ok(client.clone()),
        Source::Sentinel { sentinel, service, node } => {
            let mut sentinel = sentinel.lock().await;
            // Each Sentinel is asked in turn, and the master it names must say it is one.
            match tokio::time::timeout(timeout * 4, sentinel.async_master_for(service, Some(node))).await {
                Ok(result) => result.map_err(StoreError::Redis),
                Err(_) => Err(StoreError::Timeout),
            }
        }
    }
}

/// Listens on one Sentinel for `+switch-master` and rediscovers on each;
/// ends when the store is gone.
async fn watch_switch_master(master: Weak<Master>, sentinel_url: String) {
    use futures_util::StreamExt;
    loop {
        if master.strong_count() == 0 {
            return;
        }
        if let Ok(client) = Client::open(sentinel_url.as_str())
            && let Ok(mut pubsub) = client.get_async_pubsub().await
            && pubsub.subscribe("+switch-master").await.is_ok()
        {
            let mut messages = pubsub.into_on_message();
            while messages.next().await.is_some() {
                let Some(master) = master.upgrade() else { return };
                tracing::info!(sentinel = %sentinel_url, "a Sentinel announced a new master");
                let generation = master.current().generation;
                master.suspect(generation);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]` (and
/// `rediss+sentinel://`), as parts.
struct SentinelUrl<'a> {
    tls: bool,
    password: Option<&'a str>,
    hosts: Vec<&'a str>,
    service: &'a str,
    db: i64,
}

fn parse_sentinel_url(url: &str) -> Option<Result<SentinelUrl<'_>, StoreError>> {
    let (rest, tls) = match url.strip_prefix("redis+sentinel://") {
        Some(rest) => (rest, false),
        None => (url.strip_prefix("rediss+sentinel://")?, true),
    };
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((auth, rest)) => (Some(auth), rest),
        None => (None, rest),
    };
    let mut parts = rest.split('/');
    let hosts = parts.next().unwrap_or_default().split(',').filter(|h| !h.is_empty()).collect();
    let Some(service) = parts.next().filter(|s| !s.is_empty()) else {
        return Some(Err(StoreError::Config(
            "redis+sentinel:// URL needs a service name: redis+sentinel://HOST:PORT/SERVICE".into(),
        )));
    };
    let db = match parts.next().map_or(Ok(0), str::parse) {
        Ok(db) => db,
        Err(_) => return Some(Err(StoreError::Config("bad database number".into()))),
    };
    let password = auth.map(|a| a.rsplit(':').next().unwrap_or(a)).filter(|p| !p.is_empty());
    Some(Ok(SentinelUrl { tls, password, hosts, service, db }))
}

fn sentinel_urls(url: &str) -> Option<Vec<String>> {
    let parsed = parse_sentinel_url(url)?.ok()?;
    let scheme = if parsed.tls { "rediss" } else { "redis" };
    Some(parsed.hosts.iter().map(|h| format!("{scheme}://{h}")).collect())
}

fn source(url: &str) -> Result<Source, StoreError> {
    let Some(parsed) = parse_sentinel_url(url) else {
        return Client::open(url).map(Source::Direct).map_err(StoreError::Redis);
    };
    let parsed = parsed?;
    let nodes = sentinel_urls(url).unwrap_or_default();
    let mut info = redis::RedisConnectionInfo::default().set_db(parsed.db);
    if let Some(password) = parsed.password {
        info = info.set_password(password);
    }
    let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
    let node = if parsed.tls { node.set_tls_mode(redis::TlsMode::Secure) } else { node };
    let sentinel = Sentinel::build(nodes).map_err(StoreError::Redis)?;
    Ok(Source::Sentinel { sentinel: tokio::sync::Mutex::new(sentinel), service: parsed.service.to_owned(), node })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse() {
        let Some(Ok(u)) = parse_sentinel_url("redis+sentinel://:pw@a:26379,b:26380/mymaster/2") else {
            panic!("should parse")
        };
        assert_eq!(
            (u.tls, u.password, u.hosts, u.service, u.db),
            (false, Some("pw"), vec!["a:26379", "b:26380"], "mymaster", 2)
        );
        assert!(matches!(parse_sentinel_url("redis+sentinel://a:1"), Some(Err(_))), "no service");
        assert!(parse_sentinel_url("redis://a:1").is_none());
        assert_eq!(sentinel_urls("rediss+sentinel://a:1/m"), Some(vec!["rediss://a:1".to_owned()]));
    }
}
