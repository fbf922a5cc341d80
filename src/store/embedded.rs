//! The embedded store: one SQLite file in WAL mode.
//!
//! Owns the schema and every query. `synchronous = FULL` makes each
//! acknowledged write durable (a `kill -9` or power loss after the answer
//! loses nothing). WAL lets other processes on the host (the `authgate
//! revoke` / `user` commands, a second gateway) use the same file
//! concurrently; their revocations reach every gateway through the
//! `changes` table, polled as the change feed. SQLite is synchronous, so
//! every call runs on tokio's blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    Attempts, Changes, Cursor, LoginAttempts, RefreshFamilies, Revocation, Revocations, Rotation, Store, StoreError,
    User, Users, random_id,
};

/// How often the change feed looks for other processes' writes.
const POLL: Duration = Duration::from_millis(200);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, roles TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS revoked_jti (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS revoked_jti_expiry ON revoked_jti(expires_at);
CREATE TABLE IF NOT EXISTS revoked_sub (sub TEXT PRIMARY KEY, before INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS revoked_sid (sid TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, value TEXT NOT NULL,
    before INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS changes_expiry ON changes(expires_at);
CREATE TABLE IF NOT EXISTS refresh_families (
    family TEXT PRIMARY KEY, sub TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS refresh_families_sub ON refresh_families(sub);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    hash TEXT PRIMARY KEY, family TEXT NOT NULL REFERENCES refresh_families(family) ON DELETE CASCADE,
    spent INTEGER NOT NULL DEFAULT 0, expires_at INTEGER NOT NULL, spent_at INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS login_attempts (key TEXT PRIMARY KEY, count INTEGER NOT NULL, window_ends_ms INTEGER NOT NULL);
";

pub struct EmbeddedStore {
    conn: Arc<Mutex<Connection>>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the database file and its directory (0700).
    pub async fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        let path = path.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
                let mut builder = std::fs::DirBuilder::new();
                builder.recursive(true);
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
                builder.create(dir).map_err(|e| StoreError::Config(format!("cannot create {}: {e}", dir.display())))?;
            }
            let conn = Connection::open(&path).map_err(StoreError::Embedded)?;
            conn.busy_timeout(Duration::from_secs(5)).map_err(StoreError::Embedded)?;
            conn.pragma_update(None, "journal_mode", "WAL").map_err(StoreError::Embedded)?;
            conn.pragma_update(None, "synchronous", "FULL").map_err(StoreError::Embedded)?;
            conn.pragma_update(None, "foreign_keys", "ON").map_err(StoreError::Embedded)?;
            conn.execute_batch(SCHEMA).map_err(StoreError::Embedded)?;
            migrate(&conn).map_err(StoreError::Embedded)?;
            let epoch = random_id();
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?1)", params![epoch])
                .map_err(StoreError::Embedded)?;
            Ok(conn)
        })
        .await
        .map_err(|_| StoreError::Corrupt("the store task panicked"))??;
        Ok(EmbeddedStore { conn: Arc::new(Mutex::new(conn)) })
    }

    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| StoreError::Corrupt("the store lock is poisoned"))?;
            f(&mut conn).map_err(StoreError::Embedded)
        })
        .await
        .map_err(|_| StoreError::Corrupt("the store task panicked"))?
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[async_trait]
impl Users for EmbeddedStore {
    async fn create_user(&self, user: &User) -> Result<bool, StoreError> {
        let user = user.clone();
        let roles = serde_json::to_string(&user.roles).unwrap_or_else(|_| "[]".into());
        self.with(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO users (name, password_hash, roles, disabled) VALUES (?1, ?2, ?3, ?4)",
                params![user.name, user.password_hash, roles, user.disabled],
            )
            .map(|n| n == 1)
        })
        .await
    }

    async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let name = name.to_owned();
        let row = self
            .with(move |c| {
                c.query_row(
                    "SELECT name, password_hash, roles, disabled FROM users WHERE name = ?1",
                    params![name],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, bool>(3)?,
                        ))
                    },
                )
                .optional()
            })
            .await?;
        row.map(|(name, password_hash, roles, disabled)| {
            let roles = serde_json::from_str(&roles).map_err(|_| StoreError::Corrupt("user roles"))?;
            Ok(User { name, password_hash, roles, disabled })
        })
        .transpose()
    }

    async fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            c.execute("UPDATE users SET disabled = ?2 WHERE name = ?1", params![name, disabled]).map(|n| n == 1)
        })
        .await
    }

    async fn set_password_hash(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.with(move |c| {
            c.execute("UPDATE users SET password_hash = ?2 WHERE name = ?1", params![name, hash]).map(|n| n == 1)
        })
        .await
    }
}

/// Brings a file made by an older version to the current schema.
fn migrate(c: &Connection) -> rusqlite::Result<()> {
    let has_spent_at: bool =
        c.prepare("SELECT 1 FROM pragma_table_info('refresh_tokens') WHERE name = 'spent_at'")?.exists([])?;
    if !has_spent_at {
        c.execute_batch("ALTER TABLE refresh_tokens ADD COLUMN spent_at INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
}

/// The revocation and its row in the change feed, in the caller's transaction.
fn record_revocation(c: &Connection, r: &Revocation) -> rusqlite::Result<()> {
    insert_revocation(c, r)?;
    let (kind, value, before) = match r {
        Revocation::Jti { jti, .. } => ("jti", jti.as_str(), 0),
        Revocation::Subject { sub, before, .. } => ("sub", sub.as_str(), to_i64(*before)),
        Revocation::Session { sid, .. } => ("sid", sid.as_str(), 0),
    };
    c.execute(
        "INSERT INTO changes (kind, value, before, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![kind, value, before, to_i64(r.expires_at())],
    )?;
    Ok(())
}

fn insert_revocation(c: &Connection, r: &Revocation) -> rusqlite::Result<()> {
    match r {
        Revocation::Jti { jti, expires_at } => {
            c.execute(
                "INSERT INTO revoked_jti (jti, expires_at) VALUES (?1, ?2)
                 ON CONFLICT(jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
                params![jti, to_i64(*expires_at)],
            )?;
        }
        Revocation::Subject { sub, before, expires_at } => {
            c.execute(
                "INSERT INTO revoked_sub (sub, before, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(sub) DO UPDATE SET before = max(before, excluded.before),
                                                expires_at = max(expires_at, excluded.expires_at)",
                params![sub, to_i64(*before), to_i64(*expires_at)],
            )?;
        }
        Revocation::Session { sid, expires_at } => {
            c.execute(
                "INSERT INTO revoked_sid (sid, expires_at) VALUES (?1, ?2)
                 ON CONFLICT(sid) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
                params![sid, to_i64(*expires_at)],
            )?;
        }
    }
    Ok(())
}

fn change_row(kind: String, value: String, before: i64, expires_at: i64) -> Option<Revocation> {
    match kind.as_str() {
        "jti" => Some(Revocation::Jti { jti: value, expires_at: to_u64(expires_at) }),
        "sub" => Some(Revocation::Subject { sub: value, before: to_u64(before), expires_at: to_u64(expires_at) }),
        "sid" => Some(Revocation::Session { sid: value, expires_at: to_u64(expires_at) }),
        _ => None,
    }
}

#[async_trait]
impl Revocations for EmbeddedStore {
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let r = revocation.clone();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            record_revocation(&tx, &r)?;
            tx.commit()
        })
        .await
    }

    async fn snapshot(&self, now: u64) -> Result<(Vec<Revocation>, Cursor), StoreError> {
        let now = to_i64(now);
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Expired entries are of no use to anyone: prune them here.
            tx.execute("DELETE FROM revoked_jti WHERE expires_at < ?1", params![now])?;
            tx.execute("DELETE FROM revoked_sub WHERE expires_at < ?1", params![now])?;
            tx.execute("DELETE FROM revoked_sid WHERE expires_at < ?1", params![now])?;
            tx.execute("DELETE FROM changes WHERE expires_at < ?1", params![now])?;
            tx.execute("DELETE FROM refresh_families WHERE expires_at < ?1", params![now])?;
            let epoch: String = tx.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| r.get(0))?;
            let position: i64 = tx.query_row("SELECT coalesce(max(id), 0) FROM changes", [], |r| r.get(0))?;
            let mut entries = Vec::new();
            {
                let mut jtis = tx.prepare("SELECT jti, expires_at FROM revoked_jti")?;
                for row in jtis.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                    let (jti, exp) = row?;
                    entries.push(Revocation::Jti { jti, expires_at: to_u64(exp) });
                }
                let mut subs = tx.prepare("SELECT sub, before, expires_at FROM revoked_sub")?;
                for row in
                    subs.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?
                {
                    let (sub, before, exp) = row?;
                    entries.push(Revocation::Subject { sub, before: to_u64(before), expires_at: to_u64(exp) });
                }
                let mut sids = tx.prepare("SELECT sid, expires_at FROM revoked_sid")?;
                for row in sids.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                    let (sid, exp) = row?;
                    entries.push(Revocation::Session { sid, expires_at: to_u64(exp) });
                }
            }
            tx.commit()?;
            Ok((entries, Cursor { epoch, position: position.to_string() }))
        })
        .await
    }

    async fn changes(&self, cursor: &Cursor, wait: Duration) -> Result<Changes, StoreError> {
        let Ok(after) = cursor.position.parse::<i64>() else { return Ok(Changes::Reload { data_lost: false }) };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let cursor_epoch = cursor.epoch.clone();
            let found = self
                .with(move |c| {
                    // Polled five times a second: the statements are parsed once and cached.
                    let epoch: Option<String> = c
                        .prepare_cached("SELECT value FROM meta WHERE key = 'epoch'")?
                        .query_row([], |r| r.get(0))
                        .optional()?;
                    if epoch.as_deref() != Some(cursor_epoch.as_str()) {
                        return Ok(None);
                    }
                    let mut stmt = c.prepare_cached(
                        "SELECT id, kind, value, before, expires_at FROM changes WHERE id > ?1 ORDER BY id LIMIT 10000",
                    )?;
                    let rows = stmt
                        .query_map(params![after], |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get(3)?,
                                r.get(4)?,
                            ))
                        })?
                        .collect::<rusqlite::Result<Vec<(i64, String, String, i64, i64)>>>()?;
                    Ok(Some(rows))
                })
                .await?;
            let Some(rows) = found else { return Ok(Changes::Reload { data_lost: true }) };
            if !rows.is_empty() || tokio::time::Instant::now() + POLL > deadline {
                let position = rows.last().map_or(after, |r| r.0);
                let entries = rows.into_iter().filter_map(|(_, k, v, b, e)| change_row(k, v, b, e)).collect();
                let next = Cursor { epoch: cursor.epoch.clone(), position: position.to_string() };
                return Ok(Changes::Entries(entries, next));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn restore(&self, known: &[Revocation]) -> Result<(), StoreError> {
        let known = known.to_vec();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Into the feed too: another process on this file may lack them as well.
            for r in &known {
                record_revocation(&tx, r)?;
            }
            tx.commit()
        })
        .await
    }
}

#[async_trait]
impl RefreshFamilies for EmbeddedStore {
    async fn start_family(&self, family: &str, sub: &str, token_hash: &str, expires_at: u64) -> Result<(), StoreError> {
        let (family, sub, hash, exp) = (family.to_owned(), sub.to_owned(), token_hash.to_owned(), to_i64(expires_at));
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO refresh_families (family, sub, revoked, expires_at) VALUES (?1, ?2, 0, ?3)",
                params![family, sub, exp],
            )?;
            tx.execute(
                "INSERT INTO refresh_tokens (hash, family, spent, expires_at) VALUES (?1, ?2, 0, ?3)",
                params![hash, family, exp],
            )?;
            tx.commit()
        })
        .await
    }

    async fn rotate(
        &self,
        old_hash: &str,
        new_hash: &str,
        expires_at: u64,
        now: u64,
        grace: u64,
    ) -> Result<Rotation, StoreError> {
        let (old, new, exp, now) = (old_hash.to_owned(), new_hash.to_owned(), to_i64(expires_at), to_i64(now));
        let grace = to_i64(grace);
        self.with(move |c| {
            // IMMEDIATE: the write lock is taken before the read, so two
            // rotations of one token (any process) are strictly ordered.
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row = tx
                .query_row(
                    "SELECT t.family, t.spent, f.sub, f.revoked, t.spent_at FROM refresh_tokens t
                     JOIN refresh_families f ON f.family = t.family
                     WHERE t.hash = ?1 AND t.expires_at >= ?2 AND f.expires_at >= ?2",
                    params![old, now],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, bool>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, bool>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    },
                )
                .optional()?;
            let outcome = match row {
                None | Some((_, _, _, true, _)) => Rotation::Invalid,
                Some((family, true, sub, false, spent_at)) if grace == 0 || now.saturating_sub(spent_at) > grace => {
                    tx.execute("UPDATE refresh_families SET revoked = 1 WHERE family = ?1", params![family])?;
                    Rotation::Reused { family, sub }
                }
                Some((family, spent, sub, false, _)) => {
                    if !spent {
                        tx.execute(
                            "UPDATE refresh_tokens SET spent = 1, spent_at = ?2 WHERE hash = ?1",
                            params![old, now],
                        )?;
                    }
                    tx.execute(
                        "INSERT INTO refresh_tokens (hash, family, spent, expires_at) VALUES (?1, ?2, 0, ?3)",
                        params![new, family, exp],
                    )?;
                    tx.execute(
                        "UPDATE refresh_families SET expires_at = max(expires_at, ?2) WHERE family = ?1",
                        params![family, exp],
                    )?;
                    Rotation::Rotated { family, sub, replayed: spent }
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn family_of(&self, token_hash: &str, now: u64) -> Result<Option<String>, StoreError> {
        let (hash, now) = (token_hash.to_owned(), to_i64(now));
        self.with(move |c| {
            c.query_row(
                "SELECT t.family FROM refresh_tokens t JOIN refresh_families f ON f.family = t.family
                 WHERE t.hash = ?1 AND t.expires_at >= ?2 AND f.revoked = 0",
                params![hash, now],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    async fn revoke_family(&self, family: &str) -> Result<(), StoreError> {
        let family = family.to_owned();
        self.with(move |c| {
            c.execute("UPDATE refresh_families SET revoked = 1 WHERE family = ?1", params![family]).map(|_| ())
        })
        .await
    }

    async fn revoke_families_of(&self, sub: &str) -> Result<(), StoreError> {
        let sub = sub.to_owned();
        self.with(move |c| {
            c.execute("UPDATE refresh_families SET revoked = 1 WHERE sub = ?1", params![sub]).map(|_| ())
        })
        .await
    }

    async fn restore_spent(&self, token_hashes: &[String]) -> Result<(), StoreError> {
        let hashes = token_hashes.to_vec();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for hash in &hashes {
                tx.execute("UPDATE refresh_tokens SET spent = 1 WHERE hash = ?1", params![hash])?;
            }
            tx.commit()
        })
        .await
    }
}

fn attempts_from(count: i64, window_ends_ms: i64, now_ms: i64) -> Attempts {
    if window_ends_ms <= now_ms {
        return Attempts { count: 0, retry_after: Duration::ZERO };
    }
    Attempts {
        count: u32::try_from(count).unwrap_or(u32::MAX),
        retry_after: Duration::from_millis(to_u64(window_ends_ms - now_ms)),
    }
}

#[async_trait]
impl LoginAttempts for EmbeddedStore {
    async fn record_failure(&self, key: &str, window: Duration) -> Result<Attempts, StoreError> {
        let key = key.to_owned();
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        self.with(move |c| {
            let now = now_ms();
            c.query_row(
                "INSERT INTO login_attempts (key, count, window_ends_ms) VALUES (?1, 1, ?2 + ?3)
                 ON CONFLICT(key) DO UPDATE SET
                   count = CASE WHEN window_ends_ms <= ?2 THEN 1 ELSE count + 1 END,
                   window_ends_ms = CASE WHEN window_ends_ms <= ?2 THEN ?2 + ?3 ELSE window_ends_ms END
                 RETURNING count, window_ends_ms",
                params![key, now, window_ms],
                |r| Ok(attempts_from(r.get(0)?, r.get(1)?, now)),
            )
        })
        .await
    }

    async fn attempts(&self, key: &str) -> Result<Attempts, StoreError> {
        let key = key.to_owned();
        self.with(move |c| {
            let now = now_ms();
            let row = c
                .query_row("SELECT count, window_ends_ms FROM login_attempts WHERE key = ?1", params![key], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()?;
            Ok(row.map_or(Attempts { count: 0, retry_after: Duration::ZERO }, |(n, end)| attempts_from(n, end, now)))
        })
        .await
    }

    async fn clear(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.with(move |c| c.execute("DELETE FROM login_attempts WHERE key = ?1", params![key]).map(|_| ())).await
    }
}

impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }
}
