//! The in-process denylist copy that the request path reads, and the task
//! that keeps it current from the store's change feed.
//!
//! Lookups are lock-free (papaya maps) and never wait on the network. The
//! copy only grows, except by expiry: a reload merges, it never replaces.
//! So a store that comes back empty, or a promoted replica that missed the
//! last writes, cannot bring a revoked token back to life on a running
//! replica: every reload writes back what this copy knows and the store
//! lacks, and the refresh tokens this replica spent recently, and the
//! store's feed carries them to every other replica. The copy is "current"
//! while the feed has answered within `max_staleness`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use super::{Changes, Cursor, Revocation, Store, now};

/// How long one feed call waits for a change before confirming "nothing new".
pub const FEED_BLOCK: Duration = Duration::from_millis(500);

/// The longest pause between two feed calls while the store fails.
const MAX_RETRY: Duration = Duration::from_millis(250);

pub struct Replica {
    /// jti -> expires_at
    jtis: papaya::HashMap<String, u64>,
    /// sub -> (revoked before, expires_at)
    subjects: papaya::HashMap<String, (u64, u64)>,
    /// sid -> expires_at
    sessions: papaya::HashMap<String, u64>,
    /// Refresh-token hash -> when this replica spent it (seconds since the epoch).
    spent: papaya::HashMap<String, u64>,
    started: Instant,
    /// Milliseconds since `started` when the feed last answered; 0 = never.
    confirmed_ms: AtomicU64,
}

/// How long a replica remembers the refresh tokens it spent, to mark them
/// spent again on a master that lost the rotation: far longer than any
/// replication lag a failover can lose.
const SPENT_MEMORY: u64 = 600;

impl Default for Replica {
    fn default() -> Self {
        Replica {
            jtis: papaya::HashMap::new(),
            subjects: papaya::HashMap::new(),
            sessions: papaya::HashMap::new(),
            spent: papaya::HashMap::new(),
            started: Instant::now(),
            confirmed_ms: AtomicU64::new(0),
        }
    }
}

impl Replica {
    /// Whether a token is revoked: its `jti`, its session, or its subject
    /// revoked at or after `issued_at`.
    pub fn is_revoked(&self, jti: &str, sub: &str, issued_at: u64, sid: Option<&str>) -> bool {
        self.jtis.pin().contains_key(jti)
            || self.subjects.pin().get(sub).is_some_and(|(before, _)| issued_at <= *before)
            || sid.is_some_and(|sid| !self.sessions.is_empty() && self.sessions.pin().contains_key(sid))
    }

    pub fn apply(&self, revocation: &Revocation) {
        match revocation {
            Revocation::Jti { jti, expires_at } => {
                self.jtis.pin().insert(jti.clone(), *expires_at);
            }
            Revocation::Subject { sub, before, expires_at } => {
                // Keep the latest cut-off.
                self.subjects.pin().update_or_insert(
                    sub.clone(),
                    |(b, e)| ((*b).max(*before), (*e).max(*expires_at)),
                    (*before, *expires_at),
                );
            }
            Revocation::Session { sid, expires_at } => {
                self.sessions.pin().update_or_insert(sid.clone(), |e| (*e).max(*expires_at), *expires_at);
            }
        }
    }

    /// Every entry, to write back into a store that lost its data.
    pub fn entries(&self) -> Vec<Revocation> {
        let mut out: Vec<Revocation> =
            self.jtis.pin().iter().map(|(jti, exp)| Revocation::Jti { jti: jti.clone(), expires_at: *exp }).collect();
        out.extend(self.subjects.pin().iter().map(|(sub, (before, exp))| Revocation::Subject {
            sub: sub.clone(),
            before: *before,
            expires_at: *exp,
        }));
        out.extend(
            self.sessions.pin().iter().map(|(sid, exp)| Revocation::Session { sid: sid.clone(), expires_at: *exp }),
        );
        out
    }

    /// What this copy knows that `store_entries` (a snapshot taken at
    /// `now`) lacks or holds weaker: to be written back.
    pub fn lacking(&self, store_entries: &[Revocation], now: u64) -> Vec<Revocation> {
        let mut jtis = std::collections::HashMap::new();
        let mut subjects = std::collections::HashMap::new();
        let mut sessions = std::collections::HashMap::new();
        for e in store_entries {
            match e {
                Revocation::Jti { jti, expires_at } => {
                    jtis.insert(jti.as_str(), *expires_at);
                }
                Revocation::Subject { sub, before, expires_at } => {
                    subjects.insert(sub.as_str(), (*before, *expires_at));
                }
                Revocation::Session { sid, expires_at } => {
                    sessions.insert(sid.as_str(), *expires_at);
                }
            }
        }
        self.entries()
            .into_iter()
            .filter(|e| e.expires_at() >= now)
            .filter(|e| match e {
                Revocation::Jti { jti, expires_at } => jtis.get(jti.as_str()).is_none_or(|exp| exp < expires_at),
                Revocation::Subject { sub, before, expires_at } => {
                    subjects.get(sub.as_str()).is_none_or(|(b, exp)| b < before || exp < expires_at)
                }
                Revocation::Session { sid, expires_at } => {
                    sessions.get(sid.as_str()).is_none_or(|exp| exp < expires_at)
                }
            })
            .collect()
    }

    /// Remembers that this replica spent a refresh token (see `SPENT_MEMORY`).
    pub fn remember_spent(&self, token_hash: &str, now: u64) {
        self.spent.pin().insert(token_hash.to_owned(), now);
    }

    /// The refresh tokens spent here within `SPENT_MEMORY` of `now`; forgets older ones.
    pub fn recently_spent(&self, now: u64) -> Vec<String> {
        let spent = self.spent.pin();
        spent.retain(|_, at| now.saturating_sub(*at) <= SPENT_MEMORY);
        spent.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.jtis.len() + self.subjects.len() + self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops entries that expired before `now - grace`.
    pub fn sweep(&self, now: u64, grace: u64) {
        let cutoff = now.saturating_sub(grace);
        self.jtis.pin().retain(|_, exp| *exp >= cutoff);
        self.subjects.pin().retain(|_, (_, exp)| *exp >= cutoff);
        self.sessions.pin().retain(|_, exp| *exp >= cutoff);
    }

    fn confirm(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
        self.confirmed_ms.store(ms, Ordering::Release);
    }

    /// Whether the feed answered within `max_staleness`.
    pub fn is_current(&self, max_staleness: Duration) -> bool {
        let confirmed = self.confirmed_ms.load(Ordering::Acquire);
        confirmed != 0 && self.started.elapsed().saturating_sub(Duration::from_millis(confirmed)) <= max_staleness
    }

    /// How long since the feed last answered (`None`: never).
    pub fn staleness(&self) -> Option<Duration> {
        match self.confirmed_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(self.started.elapsed().saturating_sub(Duration::from_millis(ms))),
        }
    }
}

/// Loads the copy, then follows the feed until the process ends: resumes
/// after errors, reloads (merging) when the cursor cannot be resumed, and
/// writes back what it knows when the store lost its data. If the first
/// load fails (store down at start), the task keeps trying; until then the
/// copy is not current.
pub async fn follow(store: Arc<dyn Store>, replica: Arc<Replica>, grace: u64, errors: Counter) {
    let cursor = match load(&*store, &replica).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(backend = store.backend(), error = %crate::report::chain(&e), "cannot load the denylist; retrying");
            None
        }
    };
    tokio::spawn(run(store, replica, cursor, grace, errors));
}

/// Loads the store's entries into the copy (merging), then writes back
/// what the copy knows and the store lacks. A failed write-back fails the
/// load, so the caller loads again: the copy itself is already current.
async fn load(store: &dyn Store, replica: &Replica) -> Result<Cursor, super::StoreError> {
    let now = now();
    let (entries, cursor) = store.snapshot(now).await?;
    let lacking = replica.lacking(&entries, now);
    for e in &entries {
        replica.apply(e);
    }
    replica.confirm();
    if !lacking.is_empty() {
        tracing::warn!(
            backend = store.backend(),
            entries = lacking.len(),
            "the store lacks revocations this replica knows (failover, restart or flush); writing them back"
        );
        store.restore(&lacking).await?;
    }
    let spent = replica.recently_spent(now);
    if !spent.is_empty() {
        store.restore_spent(&spent).await?;
    }
    Ok(cursor)
}

async fn run(store: Arc<dyn Store>, replica: Arc<Replica>, mut cursor: Option<Cursor>, grace: u64, errors: Counter) {
    let mut backoff = Duration::from_millis(100);
    let mut last_sweep = Instant::now();
    let mut failing_since: Option<Instant> = None;
    loop {
        if last_sweep.elapsed() > Duration::from_secs(30) {
            replica.sweep(now(), grace);
            last_sweep = Instant::now();
        }
        let Some(current) = &cursor else {
            match load(&*store, &replica).await {
                Ok(c) => {
                    tracing::info!(backend = store.backend(), entries = replica.len(), "denylist loaded");
                    cursor = Some(c);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
            continue;
        };
        let step = match store.changes(current, FEED_BLOCK).await {
            Ok(Changes::Entries(entries, next)) => {
                for e in &entries {
                    replica.apply(e);
                }
                cursor = Some(next);
                replica.confirm();
                Ok(())
            }
            Ok(Changes::Reload { data_lost }) => {
                if data_lost {
                    tracing::error!(
                        backend = store.backend(),
                        "the store's data set changed (restarted empty or flushed); reloading and writing back"
                    );
                } else {
                    tracing::warn!(
                        backend = store.backend(),
                        "cannot resume the change feed (another master, or entries trimmed); reloading"
                    );
                }
                load(&*store, &replica).await.map(|c| cursor = Some(c))
            }
            Err(e) => Err(e),
        };
        match step {
            Ok(()) => {
                if let Some(since) = failing_since.take() {
                    tracing::info!(backend = store.backend(), down_for = ?since.elapsed(), "denylist feed recovered");
                }
                backoff = Duration::from_millis(100);
            }
            Err(e) => {
                errors.inc();
                if failing_since.is_none() {
                    failing_since = Some(Instant::now());
                    tracing::error!(backend = store.backend(), error = %crate::report::chain(&e), "denylist feed failed; retrying");
                }
                tokio::time::sleep(backoff).await;
                // Short: after a failover the feed must reach the new master
                // (and reload from it) well within a second of it being found.
                backoff = (backoff * 2).min(MAX_RETRY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jti_and_subject_cutoffs() {
        let r = Replica::default();
        r.apply(&Revocation::Jti { jti: "a".into(), expires_at: 100 });
        r.apply(&Revocation::Subject { sub: "bob".into(), before: 50, expires_at: 200 });
        assert!(r.is_revoked("a", "anyone", 0, None));
        assert!(!r.is_revoked("b", "alice", 10, None));
        assert!(r.is_revoked("b", "bob", 50, None), "issued at the cut-off");
        assert!(!r.is_revoked("b", "bob", 51, None), "issued after the cut-off");
        // An older cut-off never lowers a newer one.
        r.apply(&Revocation::Subject { sub: "bob".into(), before: 10, expires_at: 150 });
        assert!(r.is_revoked("b", "bob", 40, None));
        r.sweep(160, 0);
        assert!(!r.is_revoked("a", "x", 0, None), "expired jti swept");
        assert!(r.is_revoked("b", "bob", 40, None), "bob's entry expires at 200");
        assert_eq!(r.len(), 1);
        r.apply(&Revocation::Session { sid: "s1".into(), expires_at: 300 });
        assert!(r.is_revoked("c", "carol", 1000, Some("s1")), "its session");
        assert!(!r.is_revoked("c", "carol", 1000, Some("s2")));
        assert!(!r.is_revoked("c", "carol", 1000, None));
    }

    #[test]
    fn never_confirmed_is_not_current() {
        let r = Replica::default();
        assert!(!r.is_current(Duration::from_secs(60)));
        r.confirm();
        assert!(r.is_current(Duration::from_secs(60)));
    }
}
