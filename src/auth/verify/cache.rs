//! The verified-token cache for our own tokens.

use std::sync::Arc;

use super::Identity;

/// Verified own tokens by the whole token string. Bounded: past capacity,
/// expired entries are swept (at most once a second, so a flood of distinct
/// tokens cannot make every request pay for a sweep) and, if still full,
/// nothing new is remembered. An entry is never used past `exp + leeway`.
/// Lives in the `Verifier`, so a reload (new keys) starts it empty.
///
/// Hashed with foldhash (seeded per process), not SipHash: SipHash over a
/// ~200-byte token was ~1,000 instructions a request. Flooding a weaker
/// hash needs chosen keys, and only tokens that passed our own signature
/// check are ever inserted.
pub(super) struct VerifyCache {
    entries: papaya::HashMap<Box<str>, Arc<Identity>, foldhash::fast::RandomState>,
    capacity: usize,
    /// When the last sweep ran, seconds since the epoch.
    last_sweep: std::sync::atomic::AtomicU64,
}

impl VerifyCache {
    pub(super) fn new(capacity: usize) -> VerifyCache {
        VerifyCache {
            entries: papaya::HashMap::with_hasher(foldhash::fast::RandomState::default()),
            capacity,
            last_sweep: Default::default(),
        }
    }

    pub(super) fn get(&self, token: &str, now: u64, leeway: u64) -> Option<Arc<Identity>> {
        let entries = self.entries.pin();
        let hit = entries.get(token)?;
        if hit.expires_at.saturating_add(leeway) < now {
            entries.remove(token);
            return None;
        }
        Some(hit.clone())
    }

    pub(super) fn insert(&self, token: &str, identity: &Arc<Identity>, now: u64, leeway: u64) {
        use std::sync::atomic::Ordering;
        let entries = self.entries.pin();
        if entries.len() >= self.capacity {
            let last = self.last_sweep.load(Ordering::Relaxed);
            if last == now || self.last_sweep.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_err()
            {
                return;
            }
            entries.retain(|_, id| id.expires_at.saturating_add(leeway) >= now);
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(token.into(), identity.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(expires_at: u64) -> Arc<Identity> {
        Arc::new(Identity {
            sub: "alice".into(),
            roles: vec![],
            jti: "j".into(),
            expires_at,
            issued_at: 0,
            scopes: vec![],
            session: None,
            claims: Default::default(),
            header_values: Default::default(),
        })
    }

    #[test]
    fn the_cache_never_answers_past_exp_plus_leeway() {
        let cache = VerifyCache::new(10);
        cache.insert("t", &identity(1000), 900, 30);
        assert!(cache.get("t", 1000, 30).is_some());
        assert!(cache.get("t", 1030, 30).is_some(), "inside the leeway");
        assert!(cache.get("t", 1031, 30).is_none(), "past exp + leeway");
        assert!(cache.get("t", 900, 30).is_none(), "an expired entry is dropped, not kept");
    }

    #[test]
    fn the_cache_is_bounded_and_sweeps_expired_entries_to_make_room() {
        let cache = VerifyCache::new(2);
        cache.insert("a", &identity(100), 50, 0);
        cache.insert("b", &identity(1000), 50, 0);
        cache.insert("c", &identity(1000), 50, 0);
        assert_eq!(cache.entries.len(), 2, "full: nothing more is remembered");
        assert!(cache.get("c", 50, 0).is_none());
        // Later, "a" has expired: a sweep makes room.
        cache.insert("d", &identity(1000), 200, 0);
        assert!(cache.get("d", 200, 0).is_some());
        assert!(cache.get("a", 200, 0).is_none());
        assert!(cache.entries.len() <= 2);
    }
}
