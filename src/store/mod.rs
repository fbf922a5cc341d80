//! Stores: users, the revocation denylist, refresh-token families and
//! login-attempt counters (README, "Revocation and stores"; docs/configuration.md, `[store]`).
//!
//! Owns the four small traits both backends implement and the choice
//! between them: `embedded` (SQLite in WAL mode: one file, durable at every
//! acknowledged write, shared safely with the CLI and other processes on the
//! same host) and `redis` (shared by any number of replicas). The request
//! path never calls a store: it reads `denylist::Replica`, an in-process
//! copy that `denylist::follow` keeps current from the store's change feed.

pub mod denylist;
pub mod embedded;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{self, Config, OnUnavailable};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("embedded store")]
    Embedded(#[source] rusqlite::Error),
    #[error("redis")]
    Redis(#[source] ::redis::RedisError),
    #[error("store call timed out")]
    Timeout,
    #[error("store data is malformed: {0}")]
    Corrupt(&'static str),
    #[error("store configuration: {0}")]
    Config(String),
    #[error("the Redis node is a replica, not the master")]
    ReadOnly,
    #[error("the write reached {acked} of the {wanted} replicas it needs before the timeout")]
    NotReplicated { acked: i64, wanted: u32 },
}

/// A user in the store (or the read-only users file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// An argon2id PHC string.
    pub password_hash: String,
    pub roles: Vec<String>,
    pub disabled: bool,
}

/// One denylist entry. Both kinds expire: a `jti` with its token, a subject
/// cut-off once no token issued before it can still be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// This token is revoked until `expires_at` (seconds since the epoch).
    Jti { jti: String, expires_at: u64 },
    /// Every token of `sub` issued at or before `before` is revoked.
    Subject { sub: String, before: u64, expires_at: u64 },
    /// Every access token carrying `sid` (a login session: its refresh
    /// family) is revoked, until the last of them has expired.
    Session { sid: String, expires_at: u64 },
}

impl Revocation {
    /// An operator's revocation (`POST /auth/revoke`, `authgate revoke`): one
    /// token by `jti`, or every token of `sub` issued until `now`. Its token's
    /// expiry is unknown, so it is kept for `retention`. `None` unless exactly one is given.
    pub fn by_operator(jti: Option<String>, sub: Option<String>, now: u64, retention: Duration) -> Option<Revocation> {
        let expires_at = now.saturating_add(retention.as_secs());
        match (jti, sub) {
            (Some(jti), None) => Some(Revocation::Jti { jti, expires_at }),
            (None, Some(sub)) => Some(Revocation::Subject { sub, before: now, expires_at }),
            _ => None,
        }
    }

    pub fn expires_at(&self) -> u64 {
        match self {
            Revocation::Jti { expires_at, .. }
            | Revocation::Subject { expires_at, .. }
            | Revocation::Session { expires_at, .. } => *expires_at,
        }
    }
}

/// Where a replica is in a store's change feed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Identifies the store's data set; a different one means the data was lost or replaced.
    pub epoch: String,
    /// The last change seen (a stream id, or a row id).
    pub position: String,
}

#[derive(Debug)]
pub enum Changes {
    /// New entries (possibly none) and the cursor after them.
    Entries(Vec<Revocation>, Cursor),
    /// The cursor cannot be resumed: reload. `data_lost`: the store came back
    /// without its data (restarted empty, flushed), so what replicas know must be written back.
    Reload { data_lost: bool },
}

#[async_trait]
pub trait Users: Send + Sync {
    /// Creates a user; `false` when the name is taken.
    async fn create_user(&self, user: &User) -> Result<bool, StoreError>;
    async fn user(&self, name: &str) -> Result<Option<User>, StoreError>;
    /// `false` when there is no such user.
    async fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError>;
    /// Replaces a user's password hash (an imported hash upgraded to
    /// argon2id at login); `false` when there is no such user.
    async fn set_password_hash(&self, name: &str, password_hash: &str) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait Revocations: Send + Sync {
    /// Records a revocation; durable and in the change feed when it returns.
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError>;
    /// Every entry not yet expired at `now`, and the cursor to follow changes from.
    async fn snapshot(&self, now: u64) -> Result<(Vec<Revocation>, Cursor), StoreError>;
    /// Changes after `cursor`, waiting up to `wait` for the first one.
    async fn changes(&self, cursor: &Cursor, wait: Duration) -> Result<Changes, StoreError>;
    /// Writes back entries a replica knows and the store lacks (after a
    /// failover or a flush), into the feed too, so every replica gets them.
    async fn restore(&self, known: &[Revocation]) -> Result<(), StoreError>;
    /// Whether the store took writes when last asked.
    fn writable(&self) -> bool {
        true
    }
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current, or spent less than the grace ago (two tabs
    /// refreshing at once: `replayed`): `new_hash` is now current too.
    Rotated { family: String, sub: String, replayed: bool },
    /// The token was spent longer than the grace ago: the whole family is now revoked.
    Reused { family: String, sub: String },
    /// Unknown, expired, or its family revoked.
    Invalid,
}

#[async_trait]
pub trait RefreshFamilies: Send + Sync {
    /// Starts a family whose first token has hash `token_hash`.
    async fn start_family(&self, family: &str, sub: &str, token_hash: &str, expires_at: u64) -> Result<(), StoreError>;
    /// Spends `old_hash` and makes `new_hash` current, atomically. A token
    /// spent at most `grace` seconds ago rotates again (`replayed`); one
    /// spent longer ago, or any with `grace` 0, revokes its family (`Reused`).
    async fn rotate(
        &self,
        old_hash: &str,
        new_hash: &str,
        expires_at: u64,
        now: u64,
        grace: u64,
    ) -> Result<Rotation, StoreError>;
    /// The family a token belongs to, while valid.
    async fn family_of(&self, token_hash: &str, now: u64) -> Result<Option<String>, StoreError>;
    async fn revoke_family(&self, family: &str) -> Result<(), StoreError>;
    async fn revoke_families_of(&self, sub: &str) -> Result<(), StoreError>;
    /// Marks spent again the refresh tokens a replica spent, where the store
    /// still knows them as unspent (a failover lost the rotation).
    async fn restore_spent(&self, token_hashes: &[String]) -> Result<(), StoreError>;
}

/// Failed attempts in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    pub count: u32,
    /// Until the window ends.
    pub retry_after: Duration,
}

#[async_trait]
pub trait LoginAttempts: Send + Sync {
    /// Counts one failure against `key` in a fixed window of `window`.
    async fn record_failure(&self, key: &str, window: Duration) -> Result<Attempts, StoreError>;
    async fn attempts(&self, key: &str) -> Result<Attempts, StoreError>;
    async fn clear(&self, key: &str) -> Result<(), StoreError>;
}

/// Both backends implement all four.
pub trait Store: Users + Revocations + RefreshFamilies + LoginAttempts {
    fn backend(&self) -> &'static str;
}

/// Opens the configured store (connects, creates the schema; no feed yet).
pub async fn open(config: &config::Store) -> Result<Arc<dyn Store>, StoreError> {
    match config {
        config::Store::Embedded { path } => Ok(Arc::new(embedded::EmbeddedStore::open(path).await?)),
        config::Store::Redis { url, key_prefix, timeout, ack_replicas, .. } => {
            Ok(Arc::new(redis::RedisStore::connect(url, key_prefix, *timeout, *ack_replicas).await?))
        }
    }
}

/// The live store: the backend, the request path's denylist copy, and the
/// rule for when that copy cannot be confirmed current.
pub struct Stores {
    pub store: Arc<dyn Store>,
    pub denylist: Arc<denylist::Replica>,
    pub on_unavailable: OnUnavailable,
    pub max_staleness: Duration,
    /// How long a revocation of unknown expiry is kept (see `retention`).
    pub retention: Duration,
}

impl Stores {
    /// Opens the configured store, loads the denylist copy and starts following the feed.
    /// A store that is down at start is not fatal: the copy stays unconfirmed until it answers.
    /// `errors` counts the feed's failed calls (`authgate_store_errors_total`).
    pub async fn start(
        config: &Config,
        errors: prometheus_client::metrics::counter::Counter,
    ) -> Result<Stores, StoreError> {
        let store = open(&config.store).await?;
        let denylist = Arc::new(denylist::Replica::default());
        denylist::follow(store.clone(), denylist.clone(), config.tokens.leeway.as_secs(), errors).await;
        Ok(Stores {
            store,
            denylist,
            on_unavailable: config.store.on_unavailable(),
            max_staleness: config.store.max_staleness(),
            retention: retention(config),
        })
    }

    /// Records a revocation. It applies to this replica at once, even when
    /// the store refuses it (failing closed here costs nothing); the caller
    /// acknowledges it only on `Ok`, once the store holds it durably.
    pub async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        self.denylist.apply(revocation);
        self.store.revoke(revocation).await
    }

    /// Whether the denylist copy is confirmed current.
    pub fn is_current(&self) -> bool {
        self.denylist.is_current(self.max_staleness)
    }

    /// Whether the store can take writes now (for Redis: a master answers).
    pub fn is_writable(&self) -> bool {
        self.store.writable()
    }
}

/// How long a revocation without a known expiry is kept: no token we
/// accept can outlive it.
pub fn retention(config: &Config) -> Duration {
    config.tokens.access_ttl.max(config.tokens.refresh_ttl) + config.tokens.leeway
}

/// A random identifier: data-set epochs, refresh families.
pub(crate) fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
