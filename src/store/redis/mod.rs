//! The Redis store: shared by any number of gateway replicas.
//!
//! Owns the key layout (every key under `key_prefix`), the Lua scripts that
//! make multi-key updates atomic, and a timeout on every call; which node is
//! the master is `master.rs`'s. Revocations go to sorted sets (score:
//! expiry) and to a stream, `deny:feed`, that replicas follow with `XREAD
//! BLOCK`. Every write that the gateway acknowledges (a revocation, a user
//! change, a refresh family started, rotated or revoked) is sent with
//! `WAIT` and fails unless `ack_replicas` replicas have it: an
//! acknowledgement survives a failover (docs/configuration.md, `[store]`).
//!
//! A cursor names the data set (the `epoch` key) and the master process
//! (its `run_id`): a replica whose cursor names another data set or another
//! master reloads in full, writes back what the store lacks, and resumes
//! from the new master's own stream. Standalone and Sentinel only: the
//! scripts touch keys they compute, which Redis Cluster forbids.

mod master;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, FromRedisValue};

use self::master::{Link, Master};
use super::{
    Attempts, Changes, Cursor, LoginAttempts, RefreshFamilies, Revocation, Revocations, Rotation, Store, StoreError,
    User, Users, random_id,
};
use crate::config::SecretSource;

/// Entries kept in the feed; a replica further behind reloads instead.
const FEED_MAXLEN: usize = 100_000;

/// KEYS: jti zset, sub zset (score: expiry), sub hash (cut-off), feed, sid zset.
/// ARGV: kind (j|s|f), value, before, expires_at, feed maxlen, feed (always|changed).
/// A write-back (`changed`) adds a feed entry only where Redis lacked the
/// entry, so what one replica knows reaches every other replica through the
/// feed without echoing what Redis already had.
const REVOKE: &str = r"
local changed = false
if ARGV[1] == 'j' or ARGV[1] == 'f' then
  local set = KEYS[1]
  if ARGV[1] == 'f' then set = KEYS[5] end
  local cur = tonumber(redis.call('ZSCORE', set, ARGV[2]) or '0')
  if tonumber(ARGV[4]) > cur then redis.call('ZADD', set, ARGV[4], ARGV[2]); changed = true end
else
  local before = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
  if tonumber(ARGV[3]) > before then redis.call('HSET', KEYS[3], ARGV[2], ARGV[3]); changed = true end
  local cur = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[2]) or '0')
  if tonumber(ARGV[4]) > cur then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2]); changed = true end
end
if changed or ARGV[6] == 'always' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'k', ARGV[1], 'v', ARGV[2], 'b', ARGV[3], 'e', ARGV[4])
end
return 1
";

/// KEYS: user hash. ARGV: password_hash, roles (JSON), disabled (0|1).
const CREATE_USER: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'password_hash', ARGV[1], 'roles', ARGV[2], 'disabled', ARGV[3])
return 1
";

/// KEYS: user hash. ARGV: field, value. Only a user that exists.
const SET_USER_FIELD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// KEYS: family hash, token hash, the subject's family set. ARGV: family, sub, expiry.
const START_FAMILY: &str = r"
redis.call('HSET', KEYS[1], 'sub', ARGV[2], 'revoked', '0')
redis.call('EXPIREAT', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], 'family', ARGV[1], 'spent', '0')
redis.call('EXPIREAT', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('EXPIREAT', KEYS[3], ARGV[3])
return 1
";

/// KEYS: old token, new token. ARGV: key prefix, new expiry, now, grace (seconds).
/// A token spent at most `grace` ago rotates again (two tabs at once); grace 0: never.
const ROTATE: &str = r"
local family = redis.call('HGET', KEYS[1], 'family')
if not family then return {'invalid'} end
local fkey = ARGV[1] .. 'fam:' .. family
local sub = redis.call('HGET', fkey, 'sub')
if not sub or redis.call('HGET', fkey, 'revoked') == '1' then return {'invalid'} end
local outcome = 'rotated'
if redis.call('HGET', KEYS[1], 'spent') == '1' then
  local at = tonumber(redis.call('HGET', KEYS[1], 'spent_at') or '0')
  local grace = tonumber(ARGV[4])
  if grace == 0 or tonumber(ARGV[3]) - at > grace then
    redis.call('HSET', fkey, 'revoked', '1')
    return {'reused', family, sub}
  end
  outcome = 'replayed'
else
  redis.call('HSET', KEYS[1], 'spent', '1', 'spent_at', ARGV[3])
end
redis.call('HSET', KEYS[2], 'family', family, 'spent', '0')
redis.call('EXPIREAT', KEYS[2], ARGV[2])
if redis.call('TTL', fkey) >= 0 then redis.call('EXPIREAT', fkey, ARGV[2]) end
return {outcome, family, sub}
";

/// KEYS: family hashes. Only families that exist: HSET on a missing key
/// would create one without expiry.
const REVOKE_FAMILIES: &str = r"
for _, fkey in ipairs(KEYS) do
  if redis.call('EXISTS', fkey) == 1 then redis.call('HSET', fkey, 'revoked', '1') end
end
return 1
";

/// KEYS: refresh-token hashes a replica spent. Marks those that exist spent again.
const MARK_SPENT: &str = r"
for _, tkey in ipairs(KEYS) do
  if redis.call('EXISTS', tkey) == 1 then redis.call('HSET', tkey, 'spent', '1') end
end
return 1
";

/// KEYS: counter. ARGV: window in ms. Returns {count, ms left}.
const RECORD_FAILURE: &str = r"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
";

pub struct RedisStore {
    master: Arc<Master>,
    prefix: String,
    timeout: Duration,
    /// `[store] ack_replicas`; `None`: one once the master has shown a replica.
    ack_replicas: Option<u32>,
    /// The master has reported a connected replica since start.
    replicas_seen: AtomicBool,
    /// The master took writes when last asked (the feed asks twice a second).
    writable: AtomicBool,
}

impl RedisStore {
    pub async fn connect(
        url: &SecretSource,
        prefix: &str,
        timeout: Duration,
        ack_replicas: Option<u32>,
    ) -> Result<RedisStore, StoreError> {
        let url = url.read().map_err(StoreError::Config)?;
        let url = String::from_utf8(url).map_err(|_| StoreError::Config("the Redis URL is not UTF-8".into()))?;
        let master = Master::connect(url.trim(), timeout).await?;
        Ok(RedisStore {
            master,
            prefix: prefix.to_owned(),
            timeout,
            ack_replicas,
            replicas_seen: AtomicBool::new(false),
            writable: AtomicBool::new(true),
        })
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Bounds a call on `link` by `limit`; a failure that says the master
    /// may have moved sends the Sentinels a question.
    async fn on<T>(
        &self,
        link: &Link,
        limit: Duration,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(limit, call).await {
            Ok(result) => result.map_err(StoreError::Redis),
            Err(_) => Err(StoreError::Timeout),
        };
        if let Err(e) = &result
            && master::moved(e)
        {
            self.writable.store(false, Ordering::Release);
            self.master.suspect(link.generation);
        }
        result
    }

    /// A call on the current master's command connection.
    async fn query<T: FromRedisValue>(&self, cmd: impl FnOnce(&mut redis::Pipeline)) -> Result<T, StoreError> {
        let link = self.master.current();
        let mut pipe = redis::pipe();
        cmd(&mut pipe);
        let mut conn = link.commands.clone();
        let (value,): (T,) = self.on(&link, self.timeout, pipe.query_async(&mut conn)).await?;
        Ok(value)
    }

    /// How many replicas must hold a write before it is acknowledged.
    async fn replicas_wanted(&self, link: &Link) -> u32 {
        if let Some(n) = self.ack_replicas {
            return n;
        }
        if !self.replicas_seen.load(Ordering::Acquire) {
            let mut conn = link.commands.clone();
            let info: Result<redis::InfoDict, _> =
                bounded(self.timeout, redis::cmd("INFO").arg("replication").query_async(&mut conn)).await;
            if let Ok(info) = info {
                self.note_replication(&info);
            }
        }
        u32::from(self.replicas_seen.load(Ordering::Acquire))
    }

    fn note_replication(&self, info: &redis::InfoDict) {
        if info.get::<u32>("connected_slaves").unwrap_or(0) > 0 {
            self.replicas_seen.store(true, Ordering::Release);
        }
        self.writable.store(info.get::<String>("role").as_deref() == Some("master"), Ordering::Release);
    }

    /// Runs `script` on the master and acknowledges it only once the wanted
    /// number of replicas have it (`WAIT`, sent in the same pipeline so it
    /// covers this very write even if the connection is replaced after it).
    async fn durable<T: FromRedisValue>(
        &self,
        script: &str,
        keys: &[String],
        args: &[String],
    ) -> Result<T, StoreError> {
        let link = self.master.current();
        let wanted = self.replicas_wanted(&link).await;
        let mut pipe = redis::pipe();
        // EVAL, not EVALSHA: a newly promoted master may not have the script cached,
        // and a pipeline does not fall back. The scripts are a few hundred bytes.
        pipe.cmd("EVAL").arg(script).arg(keys.len()).arg(keys).arg(args);
        let wait_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        if wanted > 0 {
            pipe.cmd("WAIT").arg(wanted).arg(wait_ms);
        }
        let mut conn = link.durable.clone();
        let values: Vec<redis::Value> =
            self.on(&link, self.timeout * 2 + self.timeout / 2, pipe.query_async(&mut conn)).await?;
        let mut values = values.into_iter();
        let value = values.next().ok_or(StoreError::Corrupt("no reply to a write"))?;
        let value = T::from_redis_value(value).map_err(|e| StoreError::Redis(e.into()))?;
        if wanted > 0 {
            let acked: i64 =
                values.next().map_or(Ok(0), i64::from_redis_value).map_err(|e| StoreError::Redis(e.into()))?;
            if acked < i64::from(wanted) {
                return Err(StoreError::NotReplicated { acked, wanted });
            }
        }
        Ok(value)
    }

    /// `feed`: `always` for a revocation, `changed` for a write-back.
    fn revoke_args(&self, r: &Revocation, feed: &str) -> (Vec<String>, Vec<String>) {
        let (kind, value, before) = match r {
            Revocation::Jti { jti, .. } => ("j", jti.as_str(), 0),
            Revocation::Subject { sub, before, .. } => ("s", sub.as_str(), *before),
            Revocation::Session { sid, .. } => ("f", sid.as_str(), 0),
        };
        let keys = vec![
            self.key("deny:jti"),
            self.key("deny:sub:exp"),
            self.key("deny:sub"),
            self.key("deny:feed"),
            self.key("deny:sid"),
        ];
        let args = vec![
            kind.to_owned(),
            value.to_owned(),
            before.to_string(),
            r.expires_at().to_string(),
            FEED_MAXLEN.to_string(),
            feed.to_owned(),
        ];
        (keys, args)
    }

    /// The master's `run_id`: a new process (restarted, or another node promoted) has another.
    async fn run_id(&self, link: &Link, conn: &mut redis::aio::ConnectionManager) -> Result<String, StoreError> {
        let info: redis::InfoDict =
            self.on(link, self.timeout, redis::cmd("INFO").arg("server").query_async(conn)).await?;
        info.get::<String>("run_id").ok_or(StoreError::Corrupt("INFO server has no run_id"))
    }
}

async fn bounded<T>(limit: Duration, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(StoreError::Redis),
        Err(_) => Err(StoreError::Timeout),
    }
}

/// A cursor's epoch: the data set and the master process it was read from.
fn epoch_of(data_set: &str, run_id: &str) -> String {
    format!("{data_set}@{run_id}")
}

/// Stream ids compare as (milliseconds, sequence).
fn stream_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

fn feed_entry(map: &HashMap<String, redis::Value>) -> Option<Revocation> {
    let field = |name: &str| map.get(name).and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
    let num = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok());
    let value = field("v")?;
    match field("k")?.as_str() {
        "j" => Some(Revocation::Jti { jti: value, expires_at: num("e")? }),
        "s" => Some(Revocation::Subject { sub: value, before: num("b")?, expires_at: num("e")? }),
        "f" => Some(Revocation::Session { sid: value, expires_at: num("e")? }),
        _ => None,
    }
}

#[async_trait]
impl Users for RedisStore {
    async fn create_user(&self, user: &User) -> Result<bool, StoreError> {
        let roles = serde_json::to_string(&user.roles).unwrap_or_else(|_| "[]".into());
        let keys = [self.key(&format!("user:{}", user.name))];
        let args = [user.password_hash.clone(), roles, u8::from(user.disabled).to_string()];
        let created: i64 = self.durable(CREATE_USER, &keys, &args).await?;
        Ok(created == 1)
    }

    async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let map: HashMap<String, String> = self
            .query(|p| {
                p.hgetall(self.key(&format!("user:{name}")));
            })
            .await?;
        if map.is_empty() {
            return Ok(None);
        }
        let password_hash = map.get("password_hash").cloned().ok_or(StoreError::Corrupt("user without password"))?;
        let roles = map
            .get("roles")
            .map(|r| serde_json::from_str(r))
            .transpose()
            .map_err(|_| StoreError::Corrupt("user roles"))?
            .unwrap_or_default();
        Ok(Some(User {
            name: name.to_owned(),
            password_hash,
            roles,
            disabled: map.get("disabled").is_some_and(|d| d == "1"),
        }))
    }

    async fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError> {
        let keys = [self.key(&format!("user:{name}"))];
        let args = ["disabled".to_owned(), u8::from(disabled).to_string()];
        let found: i64 = self.durable(SET_USER_FIELD, &keys, &args).await?;
        Ok(found == 1)
    }

    async fn set_password_hash(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        let keys = [self.key(&format!("user:{name}"))];
        let args = ["password_hash".to_owned(), password_hash.to_owned()];
        let found: i64 = self.durable(SET_USER_FIELD, &keys, &args).await?;
        Ok(found == 1)
    }
}

#[async_trait]
impl Revocations for RedisStore {
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let (keys, args) = self.revoke_args(revocation, "always");
        let _: i64 = self.durable(REVOKE, &keys, &args).await?;
        Ok(())
    }

    async fn snapshot(&self, now: u64) -> Result<(Vec<Revocation>, Cursor), StoreError> {
        let link = self.master.current();
        let mut conn = link.commands.clone();
        let epoch_key = self.key("epoch");
        // The master first: if it changes before the data below is read,
        // the next feed call sees another run_id and reloads again.
        let run_id = self.run_id(&link, &mut conn).await?;
        // Then mark the data set (only if unmarked), then read the feed's
        // end before the sets: anything added in between is both in the
        // sets and after the cursor, and applying it twice is harmless.
        let _: bool = self.on(&link, self.timeout, conn.set_nx(&epoch_key, random_id())).await?;
        let (epoch, last, jtis, sub_expiry, cutoffs, sids): (
            Option<String>,
            Vec<(String, HashMap<String, redis::Value>)>,
            Vec<(String, u64)>,
            Vec<(String, u64)>,
            HashMap<String, u64>,
            Vec<(String, u64)>,
        ) = self
            .on(
                &link,
                self.timeout,
                redis::pipe()
                    .atomic()
                    .zrembyscore(self.key("deny:jti"), "-inf", format!("({now}"))
                    .ignore()
                    .zrembyscore(self.key("deny:sid"), "-inf", format!("({now}"))
                    .ignore()
                    .get(&epoch_key)
                    .xrevrange_count(self.key("deny:feed"), "+", "-", 1)
                    .zrangebyscore_withscores(self.key("deny:jti"), now, "+inf")
                    .zrangebyscore_withscores(self.key("deny:sub:exp"), now, "+inf")
                    .hgetall(self.key("deny:sub"))
                    .zrangebyscore_withscores(self.key("deny:sid"), now, "+inf")
                    .query_async(&mut conn),
            )
            .await?;
        let epoch = epoch.ok_or(StoreError::Corrupt("the epoch vanished during the snapshot"))?;
        let position = last.first().map_or_else(|| "0-0".to_owned(), |(id, _)| id.clone());
        let mut entries: Vec<Revocation> =
            jtis.into_iter().map(|(jti, expires_at)| Revocation::Jti { jti, expires_at }).collect();
        for (sub, expires_at) in sub_expiry {
            let before = cutoffs.get(&sub).copied().unwrap_or(0);
            entries.push(Revocation::Subject { sub, before, expires_at });
        }
        entries.extend(sids.into_iter().map(|(sid, expires_at)| Revocation::Session { sid, expires_at }));
        Ok((entries, Cursor { epoch: epoch_of(&epoch, &run_id), position }))
    }

    async fn changes(&self, cursor: &Cursor, wait: Duration) -> Result<Changes, StoreError> {
        let link = self.master.current();
        let mut conn = link.feed.clone();
        let feed_key = self.key("deny:feed");
        let (epoch, first, server, replication): (
            Option<String>,
            Vec<(String, HashMap<String, redis::Value>)>,
            redis::InfoDict,
            redis::InfoDict,
        ) = self
            .on(
                &link,
                self.timeout,
                redis::pipe()
                    .get(self.key("epoch"))
                    .xrange_count(&feed_key, "-", "+", 1)
                    .cmd("INFO")
                    .arg("server")
                    .cmd("INFO")
                    .arg("replication")
                    .query_async(&mut conn),
            )
            .await?;
        self.note_replication(&replication);
        if !self.writable.load(Ordering::Acquire) {
            self.master.suspect(link.generation);
            return Err(StoreError::ReadOnly);
        }
        let run_id = server.get::<String>("run_id").unwrap_or_default();
        let data_set = cursor.epoch.rsplit_once('@').map_or(cursor.epoch.as_str(), |(d, _)| d);
        if epoch.as_deref() != Some(data_set) {
            return Ok(Changes::Reload { data_lost: true });
        }
        // Another master process (a replica promoted, the master restarted):
        // its stream is not the one the cursor's position was taken on.
        if epoch.as_deref().map(|e| epoch_of(e, &run_id)).as_deref() != Some(cursor.epoch.as_str()) {
            return Ok(Changes::Reload { data_lost: false });
        }
        // Entries after the cursor were trimmed away: the cursor cannot resume.
        if let Some((oldest, _)) = first.first()
            && cursor.position != "0-0"
            && stream_id(oldest) > stream_id(&cursor.position)
        {
            return Ok(Changes::Reload { data_lost: false });
        }
        let block = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let options = redis::streams::StreamReadOptions::default().block(block as usize).count(10_000);
        let reply: Option<redis::streams::StreamReadReply> = self
            .on(&link, wait + self.timeout, conn.xread_options(&[&feed_key], &[&cursor.position], &options))
            .await?;
        let mut next = cursor.clone();
        let mut entries = Vec::new();
        for id in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            if let Some(e) = feed_entry(&id.map) {
                entries.push(e);
            }
            next.position = id.id;
        }
        Ok(Changes::Entries(entries, next))
    }

    async fn restore(&self, known: &[Revocation]) -> Result<(), StoreError> {
        for r in known {
            let (keys, args) = self.revoke_args(r, "changed");
            let _: i64 = self.durable(REVOKE, &keys, &args).await?;
        }
        Ok(())
    }

    fn writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }
}

#[async_trait]
impl RefreshFamilies for RedisStore {
    async fn start_family(&self, family: &str, sub: &str, token_hash: &str, expires_at: u64) -> Result<(), StoreError> {
        let keys = [
            self.key(&format!("fam:{family}")),
            self.key(&format!("rt:{token_hash}")),
            self.key(&format!("fams:{sub}")),
        ];
        let args = [family.to_owned(), sub.to_owned(), expires_at.to_string()];
        let _: i64 = self.durable(START_FAMILY, &keys, &args).await?;
        Ok(())
    }

    async fn rotate(
        &self,
        old_hash: &str,
        new_hash: &str,
        expires_at: u64,
        now: u64,
        grace: u64,
    ) -> Result<Rotation, StoreError> {
        let keys = [self.key(&format!("rt:{old_hash}")), self.key(&format!("rt:{new_hash}"))];
        let args = [self.prefix.clone(), expires_at.to_string(), now.to_string(), grace.to_string()];
        let reply: Vec<String> = self.durable(ROTATE, &keys, &args).await?;
        Ok(match reply.as_slice() {
            [kind, family, sub] if kind == "rotated" || kind == "replayed" => {
                Rotation::Rotated { family: family.clone(), sub: sub.clone(), replayed: kind == "replayed" }
            }
            [kind, family, sub] if kind == "reused" => Rotation::Reused { family: family.clone(), sub: sub.clone() },
            _ => Rotation::Invalid,
        })
    }

    async fn family_of(&self, token_hash: &str, _now: u64) -> Result<Option<String>, StoreError> {
        let family: Option<String> = self
            .query(|p| {
                p.hget(self.key(&format!("rt:{token_hash}")), "family");
            })
            .await?;
        let Some(family) = family else { return Ok(None) };
        let revoked: Option<String> = self
            .query(|p| {
                p.hget(self.key(&format!("fam:{family}")), "revoked");
            })
            .await?;
        Ok((revoked.as_deref() == Some("0")).then_some(family))
    }

    async fn revoke_family(&self, family: &str) -> Result<(), StoreError> {
        let _: i64 = self.durable(REVOKE_FAMILIES, &[self.key(&format!("fam:{family}"))], &[]).await?;
        Ok(())
    }

    async fn revoke_families_of(&self, sub: &str) -> Result<(), StoreError> {
        let families: Vec<String> = self
            .query(|p| {
                p.smembers(self.key(&format!("fams:{sub}")));
            })
            .await?;
        let keys: Vec<String> = families.iter().map(|f| self.key(&format!("fam:{f}"))).collect();
        for chunk in keys.chunks(500) {
            let _: i64 = self.durable(REVOKE_FAMILIES, chunk, &[]).await?;
        }
        Ok(())
    }

    async fn restore_spent(&self, token_hashes: &[String]) -> Result<(), StoreError> {
        let keys: Vec<String> = token_hashes.iter().map(|h| self.key(&format!("rt:{h}"))).collect();
        for chunk in keys.chunks(500) {
            let _: i64 = self.durable(MARK_SPENT, chunk, &[]).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl LoginAttempts for RedisStore {
    async fn record_failure(&self, key: &str, window: Duration) -> Result<Attempts, StoreError> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let key = self.key(&format!("attempts:{key}"));
        let (count, ms): (u32, i64) = self
            .query(|p| {
                p.cmd("EVAL").arg(RECORD_FAILURE).arg(1).arg(&key).arg(window_ms);
            })
            .await?;
        Ok(Attempts { count, retry_after: Duration::from_millis(u64::try_from(ms).unwrap_or(0)) })
    }

    async fn attempts(&self, key: &str) -> Result<Attempts, StoreError> {
        let link = self.master.current();
        let mut conn = link.commands.clone();
        let k = self.key(&format!("attempts:{key}"));
        let (count, ms): (Option<u32>, i64) =
            self.on(&link, self.timeout, redis::pipe().get(&k).pttl(&k).query_async(&mut conn)).await?;
        Ok(match count {
            Some(count) if ms > 0 => Attempts { count, retry_after: Duration::from_millis(ms as u64) },
            _ => Attempts { count: 0, retry_after: Duration::ZERO },
        })
    }

    async fn clear(&self, key: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .query(|p| {
                p.del(self.key(&format!("attempts:{key}")));
            })
            .await?;
        Ok(())
    }
}

impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_numerically() {
        assert!(stream_id("1700000000000-10") > stream_id("1700000000000-9"));
        assert!(stream_id("1700000000001-0") > stream_id("1700000000000-99"));
        assert_eq!(stream_id("0-0"), (0, 0));
    }
}
