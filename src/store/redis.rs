//! The Redis store: shared by any number of gateway replicas.
//!
//! Owns the key layout (every key under `key_prefix`), the Lua scripts that
//! make multi-key updates atomic, connection set-up (`redis://`, `rediss://`
//! over rustls, `redis+sentinel://` resolved to the current master), and a
//! timeout on every call. Revocations go to sorted sets (score: expiry) and
//! to a stream, `deny:feed`, that replicas follow with `XREAD BLOCK`. The
//! `epoch` key names the data set: a replica whose cursor's epoch is gone
//! knows Redis lost its data (restarted empty, flushed) and writes back what
//! it knows. Standalone and Sentinel only: the scripts touch keys they
//! compute, which Redis Cluster forbids.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Client, Script};

use super::embedded::random_id;
use super::{
    Attempts, Changes, Cursor, LoginAttempts, RefreshFamilies, Revocation, Revocations, Rotation, Store, StoreError,
    User, Users,
};
use crate::config::SecretSource;

/// Entries kept in the feed; a replica further behind reloads instead.
const FEED_MAXLEN: usize = 100_000;

/// KEYS: jti zset, sub zset (score: expiry), sub hash (cut-off), feed.
/// ARGV: kind (j|s), value, before, expires_at, feed maxlen (0: no feed entry).
const REVOKE: &str = r"
if ARGV[1] == 'j' then
  local cur = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[2]) or '0')
  if tonumber(ARGV[4]) > cur then redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2]) end
else
  local before = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')
  if tonumber(ARGV[3]) > before then redis.call('HSET', KEYS[3], ARGV[2], ARGV[3]) end
  local cur = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[2]) or '0')
  if tonumber(ARGV[4]) > cur then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2]) end
end
if tonumber(ARGV[5]) > 0 then
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

/// KEYS: user hash. ARGV: disabled (0|1).
const SET_DISABLED: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'disabled', ARGV[1])
return 1
";

/// KEYS: old token, new token. ARGV: key prefix, new expiry.
const ROTATE: &str = r"
local family = redis.call('HGET', KEYS[1], 'family')
if not family then return {'invalid'} end
local fkey = ARGV[1] .. 'fam:' .. family
local sub = redis.call('HGET', fkey, 'sub')
if not sub or redis.call('HGET', fkey, 'revoked') == '1' then return {'invalid'} end
if redis.call('HGET', KEYS[1], 'spent') == '1' then
  redis.call('HSET', fkey, 'revoked', '1')
  return {'reused', family, sub}
end
redis.call('HSET', KEYS[1], 'spent', '1')
redis.call('HSET', KEYS[2], 'family', family, 'spent', '0')
redis.call('EXPIREAT', KEYS[2], ARGV[2])
if redis.call('TTL', fkey) >= 0 then redis.call('EXPIREAT', fkey, ARGV[2]) end
return {'rotated', family, sub}
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
    /// Commands.
    conn: ConnectionManager,
    /// The change feed's blocking reads, which would stall other commands on a shared connection.
    feed: ConnectionManager,
    prefix: String,
    timeout: Duration,
    revoke: Script,
    create_user: Script,
    set_disabled: Script,
    rotate: Script,
    record_failure: Script,
}

impl RedisStore {
    pub async fn connect(url: &SecretSource, prefix: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
        let url = crate::auth::keys::read_secret(url).map_err(StoreError::Config)?;
        let url = String::from_utf8(url).map_err(|_| StoreError::Config("the Redis URL is not UTF-8".into()))?;
        let client = client(url.trim()).await?;
        let config = |response: Duration| {
            redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(response))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500))
        };
        // Lazy: a Redis that is down at start makes the gateway unready, not dead.
        let conn = client.get_connection_manager_lazy(config(timeout)).map_err(StoreError::Redis)?;
        let feed = client
            .get_connection_manager_lazy(config(super::denylist::FEED_BLOCK + timeout))
            .map_err(StoreError::Redis)?;
        Ok(RedisStore {
            conn,
            feed,
            prefix: prefix.to_owned(),
            timeout,
            revoke: Script::new(REVOKE),
            create_user: Script::new(CREATE_USER),
            set_disabled: Script::new(SET_DISABLED),
            rotate: Script::new(ROTATE),
            record_failure: Script::new(RECORD_FAILURE),
        })
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Bounds a call by the store timeout (on top of the connection's own).
    async fn bounded<T>(&self, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T, StoreError> {
        bounded(self.timeout, call).await
    }

    fn revoke_invocation(&self, r: &Revocation, feed: bool) -> redis::ScriptInvocation<'_> {
        let (kind, value, before) = match r {
            Revocation::Jti { jti, .. } => ("j", jti.as_str(), 0),
            Revocation::Subject { sub, before, .. } => ("s", sub.as_str(), *before),
        };
        let mut inv = self.revoke.prepare_invoke();
        inv.key(self.key("deny:jti"))
            .key(self.key("deny:sub:exp"))
            .key(self.key("deny:sub"))
            .key(self.key("deny:feed"))
            .arg(kind)
            .arg(value)
            .arg(before)
            .arg(r.expires_at())
            .arg(if feed { FEED_MAXLEN } else { 0 });
        inv
    }
}

async fn bounded<T>(limit: Duration, call: impl Future<Output = redis::RedisResult<T>>) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(StoreError::Redis),
        Err(_) => Err(StoreError::Timeout),
    }
}

/// `redis://` and `rediss://` as the crate reads them; `redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]`
/// resolved through the sentinels to the current master.
async fn client(url: &str) -> Result<Client, StoreError> {
    let sentinel = url.strip_prefix("redis+sentinel://").map(|r| (r, false));
    let sentinel = sentinel.or_else(|| url.strip_prefix("rediss+sentinel://").map(|r| (r, true)));
    let Some((rest, tls)) = sentinel else {
        return Client::open(url).map_err(StoreError::Redis);
    };
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((auth, rest)) => (Some(auth), rest),
        None => (None, rest),
    };
    let mut parts = rest.split('/');
    let hosts = parts.next().unwrap_or_default();
    let service = parts.next().filter(|s| !s.is_empty()).ok_or_else(|| {
        StoreError::Config("redis+sentinel:// URL needs a service name: redis+sentinel://HOST:PORT/SERVICE".into())
    })?;
    let db: i64 =
        parts.next().map_or(Ok(0), str::parse).map_err(|_| StoreError::Config("bad database number".into()))?;
    let scheme = if tls { "rediss" } else { "redis" };
    let nodes: Vec<String> = hosts.split(',').map(|h| format!("{scheme}://{h}")).collect();
    let mut info = redis::RedisConnectionInfo::default().set_db(db);
    if let Some(password) = auth.map(|a| a.rsplit(':').next().unwrap_or(a)).filter(|p| !p.is_empty()) {
        info = info.set_password(password);
    }
    let node_info = redis::sentinel::SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
    let mut sentinel = redis::sentinel::SentinelClient::build(
        nodes,
        service,
        Some(node_info),
        redis::sentinel::SentinelServerType::Master,
    )
    .map_err(StoreError::Redis)?;
    sentinel.async_get_client().await.map_err(StoreError::Redis)
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
        _ => None,
    }
}

#[async_trait]
impl Users for RedisStore {
    async fn create_user(&self, user: &User) -> Result<bool, StoreError> {
        let roles = serde_json::to_string(&user.roles).unwrap_or_else(|_| "[]".into());
        let mut conn = self.conn.clone();
        let mut inv = self.create_user.prepare_invoke();
        inv.key(self.key(&format!("user:{}", user.name)))
            .arg(&user.password_hash)
            .arg(roles)
            .arg(u8::from(user.disabled));
        let created: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(created == 1)
    }

    async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let mut conn = self.conn.clone();
        let map: HashMap<String, String> = self.bounded(conn.hgetall(self.key(&format!("user:{name}")))).await?;
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
        let mut conn = self.conn.clone();
        let mut inv = self.set_disabled.prepare_invoke();
        inv.key(self.key(&format!("user:{name}"))).arg(u8::from(disabled));
        let found: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(found == 1)
    }
}

#[async_trait]
impl Revocations for RedisStore {
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let inv = self.revoke_invocation(revocation, true);
        let _: i64 = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(())
    }

    async fn snapshot(&self, now: u64) -> Result<(Vec<Revocation>, Cursor), StoreError> {
        let mut conn = self.conn.clone();
        let epoch_key = self.key("epoch");
        // First mark the data set (only if unmarked), then read the feed's
        // end before the sets: anything added in between is both in the
        // sets and after the cursor, and applying it twice is harmless.
        let _: bool = self.bounded(conn.set_nx(&epoch_key, random_id())).await?;
        let (epoch, last, jtis, sub_expiry, cutoffs): (
            Option<String>,
            Vec<(String, HashMap<String, redis::Value>)>,
            Vec<(String, u64)>,
            Vec<(String, u64)>,
            HashMap<String, u64>,
        ) = self
            .bounded(
                redis::pipe()
                    .atomic()
                    .zrembyscore(self.key("deny:jti"), "-inf", format!("({now}"))
                    .ignore()
                    .get(&epoch_key)
                    .xrevrange_count(self.key("deny:feed"), "+", "-", 1)
                    .zrangebyscore_withscores(self.key("deny:jti"), now, "+inf")
                    .zrangebyscore_withscores(self.key("deny:sub:exp"), now, "+inf")
                    .hgetall(self.key("deny:sub"))
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
        Ok((entries, Cursor { epoch, position }))
    }

    async fn changes(&self, cursor: &Cursor, wait: Duration) -> Result<Changes, StoreError> {
        let mut conn = self.feed.clone();
        let feed_key = self.key("deny:feed");
        let (epoch, first): (Option<String>, Vec<(String, HashMap<String, redis::Value>)>) = self
            .bounded(redis::pipe().get(self.key("epoch")).xrange_count(&feed_key, "-", "+", 1).query_async(&mut conn))
            .await?;
        if epoch.as_deref() != Some(cursor.epoch.as_str()) {
            return Ok(Changes::Reload { data_lost: true });
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
        let reply: Option<redis::streams::StreamReadReply> =
            bounded(wait + self.timeout, conn.xread_options(&[&feed_key], &[&cursor.position], &options)).await?;
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
        let mut conn = self.conn.clone();
        // Pipelined EVALSHA does not fall back to EVAL, and a Redis that lost
        // its data lost its script cache too: load the script first.
        let _: String = self.bounded(self.revoke.prepare_invoke().load_async(&mut conn)).await?;
        for chunk in known.chunks(500) {
            let mut pipe = redis::pipe();
            for r in chunk {
                let inv = self.revoke_invocation(r, false);
                pipe.invoke_script(&inv).ignore();
            }
            let () = self.bounded(pipe.query_async(&mut conn)).await?;
        }
        // A new data set: every replica whose cursor names the old one reloads.
        let _: bool = self.bounded(conn.set_nx(self.key("epoch"), random_id())).await?;
        Ok(())
    }
}

#[async_trait]
impl RefreshFamilies for RedisStore {
    async fn start_family(&self, family: &str, sub: &str, token_hash: &str, expires_at: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let (fkey, tkey, skey) = (
            self.key(&format!("fam:{family}")),
            self.key(&format!("rt:{token_hash}")),
            self.key(&format!("fams:{sub}")),
        );
        let at = i64::try_from(expires_at).unwrap_or(i64::MAX);
        let () = self
            .bounded(
                redis::pipe()
                    .atomic()
                    .hset_multiple(&fkey, &[("sub", sub), ("revoked", "0")])
                    .ignore()
                    .expire_at(&fkey, at)
                    .ignore()
                    .hset_multiple(&tkey, &[("family", family), ("spent", "0")])
                    .ignore()
                    .expire_at(&tkey, at)
                    .ignore()
                    .sadd(&skey, family)
                    .ignore()
                    .expire_at(&skey, at)
                    .ignore()
                    .query_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn rotate(&self, old_hash: &str, new_hash: &str, expires_at: u64, _now: u64) -> Result<Rotation, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.rotate.prepare_invoke();
        inv.key(self.key(&format!("rt:{old_hash}")))
            .key(self.key(&format!("rt:{new_hash}")))
            .arg(&self.prefix)
            .arg(expires_at);
        let reply: Vec<String> = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(match reply.as_slice() {
            [kind, family, sub] if kind == "rotated" => Rotation::Rotated { family: family.clone(), sub: sub.clone() },
            [kind, family, sub] if kind == "reused" => Rotation::Reused { family: family.clone(), sub: sub.clone() },
            _ => Rotation::Invalid,
        })
    }

    async fn family_of(&self, token_hash: &str, _now: u64) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        let family: Option<String> = self.bounded(conn.hget(self.key(&format!("rt:{token_hash}")), "family")).await?;
        let Some(family) = family else { return Ok(None) };
        let revoked: Option<String> = self.bounded(conn.hget(self.key(&format!("fam:{family}")), "revoked")).await?;
        Ok((revoked.as_deref() == Some("0")).then_some(family))
    }

    async fn revoke_family(&self, family: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let fkey = self.key(&format!("fam:{family}"));
        // Only a family that exists: HSET on a missing key would create one without expiry.
        let exists: bool = self.bounded(conn.exists(&fkey)).await?;
        if exists {
            let () = self.bounded(conn.hset(&fkey, "revoked", "1")).await?;
        }
        Ok(())
    }

    async fn revoke_families_of(&self, sub: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let families: Vec<String> = self.bounded(conn.smembers(self.key(&format!("fams:{sub}")))).await?;
        for family in families {
            self.revoke_family(&family).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl LoginAttempts for RedisStore {
    async fn record_failure(&self, key: &str, window: Duration) -> Result<Attempts, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.record_failure.prepare_invoke();
        inv.key(self.key(&format!("attempts:{key}"))).arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        let (count, ms): (u32, i64) = self.bounded(inv.invoke_async(&mut conn)).await?;
        Ok(Attempts { count, retry_after: Duration::from_millis(u64::try_from(ms).unwrap_or(0)) })
    }

    async fn attempts(&self, key: &str) -> Result<Attempts, StoreError> {
        let mut conn = self.conn.clone();
        let k = self.key(&format!("attempts:{key}"));
        let (count, ms): (Option<u32>, i64) =
            self.bounded(redis::pipe().get(&k).pttl(&k).query_async(&mut conn)).await?;
        Ok(match count {
            Some(count) if ms > 0 => Attempts { count, retry_after: Duration::from_millis(ms as u64) },
            _ => Attempts { count: 0, retry_after: Duration::ZERO },
        })
    }

    async fn clear(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let () = self.bounded(conn.del(self.key(&format!("attempts:{key}")))).await?;
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
