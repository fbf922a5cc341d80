//! One contract, two stores: every case runs against the embedded store (a
//! SQLite file in a temporary directory) and against a real `redis-server`
//! started on a free loopback port.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use std::sync::Arc;
use std::time::Duration;

use authgate::config::{self, OnUnavailable, SecretSource};
use authgate::store::{Changes, Revocation, Rotation, Store, User, now};
use support::redis::RedisServer;

/// Keeps whatever the store needs alive (a directory, a server).
enum Guard {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Redis(#[allow(dead_code)] RedisServer),
}

async fn embedded() -> (Arc<dyn Store>, Guard) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = authgate::store::open(&config::Store::Embedded { path: dir.path().join("data/authgate.db") })
        .await
        .expect("open embedded store");
    (store, Guard::Dir(dir))
}

fn redis_config(server: &RedisServer) -> config::Store {
    config::Store::Redis {
        url: SecretSource::Inline(server.url()),
        key_prefix: "test:".into(),
        on_unavailable: OnUnavailable::Deny,
        max_staleness: Duration::from_secs(2),
        timeout: Duration::from_millis(500),
        ack_replicas: None,
    }
}

async fn redis() -> (Arc<dyn Store>, Guard) {
    let server = RedisServer::start();
    let store = authgate::store::open(&redis_config(&server)).await.expect("connect to redis");
    (store, Guard::Redis(server))
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod embedded_store {
            $( #[tokio::test] async fn $case() { let (store, _guard) = super::embedded().await; super::$case(&*store).await; } )*
        }
        mod redis_store {
            $( #[tokio::test] async fn $case() { let (store, _guard) = super::redis().await; super::$case(&*store).await; } )*
        }
    };
}

contract!(
    users,
    revocations_snapshot_and_feed,
    feed_waits_then_confirms,
    refresh_rotation_and_reuse,
    concurrent_rotation_has_one_winner,
    two_tabs_within_the_grace_keep_the_session,
    login_attempts_window
);

fn alice() -> User {
    User {
        name: "alice".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        roles: vec!["user".into(), "ops".into()],
        disabled: false,
    }
}

async fn users(store: &dyn Store) {
    assert_eq!(store.user("alice").await.expect("get"), None);
    assert!(store.create_user(&alice()).await.expect("create"));
    let mut other = alice();
    other.password_hash = "different".into();
    assert!(!store.create_user(&other).await.expect("create twice"), "a taken name is refused");
    assert_eq!(store.user("alice").await.expect("get"), Some(alice()), "the first user is untouched");
    assert!(store.set_disabled("alice", true).await.expect("disable"));
    assert!(store.user("alice").await.expect("get").expect("exists").disabled);
    assert!(!store.set_disabled("nobody", true).await.expect("disable unknown"));
    assert_eq!(store.user("nobody").await.expect("get"), None);
}

async fn revocations_snapshot_and_feed(store: &dyn Store) {
    let now = now();
    let live = Revocation::Jti { jti: "live".into(), expires_at: now + 600 };
    let expired = Revocation::Jti { jti: "old".into(), expires_at: now - 10 };
    let subject = Revocation::Subject { sub: "bob".into(), before: now, expires_at: now + 600 };
    let session = Revocation::Session { sid: "s1".into(), expires_at: now + 600 };
    for r in [&live, &expired, &subject, &session] {
        store.revoke(r).await.expect("revoke");
    }
    let (entries, cursor) = store.snapshot(now).await.expect("snapshot");
    assert!(entries.contains(&live) && entries.contains(&subject) && entries.contains(&session), "{entries:?}");
    assert!(!entries.contains(&expired), "expired entries are not loaded");

    // A later revocation arrives through the feed, after the cursor.
    let later = Revocation::Jti { jti: "later".into(), expires_at: now + 600 };
    store.revoke(&later).await.expect("revoke");
    let Changes::Entries(changes, next) = store.changes(&cursor, Duration::from_secs(2)).await.expect("changes") else {
        panic!("the cursor should resume");
    };
    assert_eq!(changes, vec![later], "exactly the new entry");
    let ended = Revocation::Session { sid: "s2".into(), expires_at: now + 600 };
    store.revoke(&ended).await.expect("revoke a session");
    let Changes::Entries(changes, next) = store.changes(&next, Duration::from_secs(2)).await.expect("changes") else {
        panic!("resume");
    };
    assert_eq!(changes, vec![ended], "sessions are fed like the rest");
    // A cut-off that is older never lowers the newer one, and is still fed.
    let older = Revocation::Subject { sub: "bob".into(), before: now - 100, expires_at: now + 600 };
    store.revoke(&older).await.expect("revoke");
    let Changes::Entries(changes, _) = store.changes(&next, Duration::from_secs(2)).await.expect("changes") else {
        panic!("resume");
    };
    assert_eq!(changes, vec![older]);
    let (entries, _) = store.snapshot(now).await.expect("snapshot");
    assert!(entries.contains(&subject), "the newest cut-off is kept: {entries:?}");
}

async fn feed_waits_then_confirms(store: &dyn Store) {
    let (_, cursor) = store.snapshot(now()).await.expect("snapshot");
    let started = std::time::Instant::now();
    let Changes::Entries(changes, next) = store.changes(&cursor, Duration::from_millis(400)).await.expect("changes")
    else {
        panic!("resume");
    };
    assert!(changes.is_empty());
    assert_eq!(next, cursor);
    assert!(started.elapsed() >= Duration::from_millis(150), "returned before waiting");
    assert!(started.elapsed() < Duration::from_secs(2), "waited too long");
}

async fn refresh_rotation_and_reuse(store: &dyn Store) {
    let (exp, now) = (now() + 600, now());
    store.start_family("f1", "alice", "h1", exp).await.expect("start");
    assert_eq!(store.family_of("h1", now).await.expect("family"), Some("f1".into()));
    let rotated = store.rotate("h1", "h2", exp, now, 0).await.expect("rotate");
    assert_eq!(rotated, Rotation::Rotated { family: "f1".into(), sub: "alice".into(), replayed: false });
    // Presenting the spent token again revokes the whole family.
    let reused = store.rotate("h1", "h3", exp, now, 0).await.expect("rotate");
    assert_eq!(reused, Rotation::Reused { family: "f1".into(), sub: "alice".into() });
    assert_eq!(
        store.rotate("h2", "h4", exp, now, 0).await.expect("rotate"),
        Rotation::Invalid,
        "the family is revoked"
    );
    assert_eq!(store.family_of("h2", now).await.expect("family"), None);
    assert_eq!(store.rotate("unknown", "h5", exp, now, 0).await.expect("rotate"), Rotation::Invalid);

    store.start_family("f2", "bob", "b1", exp).await.expect("start");
    store.start_family("f3", "bob", "c1", exp).await.expect("start");
    store.revoke_families_of("bob").await.expect("revoke bob's families");
    assert_eq!(store.rotate("b1", "b2", exp, now, 0).await.expect("rotate"), Rotation::Invalid);
    assert_eq!(store.rotate("c1", "c2", exp, now, 0).await.expect("rotate"), Rotation::Invalid);
    store.start_family("f4", "carol", "d1", exp).await.expect("start");
    store.revoke_family("f4").await.expect("revoke family");
    assert_eq!(store.rotate("d1", "d2", exp, now, 0).await.expect("rotate"), Rotation::Invalid);
}

async fn concurrent_rotation_has_one_winner(store: &dyn Store) {
    let (exp, now) = (now() + 600, now());
    store.start_family("race", "alice", "r0", exp).await.expect("start");
    let attempts = (0..8).map(|i| store.rotate("r0", Box::leak(format!("r1-{i}").into_boxed_str()), exp, now, 0));
    let outcomes = futures_util::future::join_all(attempts).await;
    let winners = outcomes.iter().filter(|o| matches!(o, Ok(Rotation::Rotated { .. }))).count();
    assert_eq!(winners, 1, "{outcomes:?}");
}

/// `refresh_reuse_grace`: of eight concurrent presentations of one token
/// within the grace, one spends it and seven rotate again; every new token
/// is valid; the same token after the grace is reuse and ends the family.
async fn two_tabs_within_the_grace_keep_the_session(store: &dyn Store) {
    let (exp, now) = (now() + 600, now());
    store.start_family("tabs", "alice", "t0", exp).await.expect("start");
    let attempts = (0..8).map(|i| store.rotate("t0", Box::leak(format!("t1-{i}").into_boxed_str()), exp, now, 10));
    let outcomes = futures_util::future::join_all(attempts).await;
    let first = outcomes.iter().filter(|o| matches!(o, Ok(Rotation::Rotated { replayed: false, .. }))).count();
    let again = outcomes.iter().filter(|o| matches!(o, Ok(Rotation::Rotated { replayed: true, .. }))).count();
    assert_eq!((first, again), (1, 7), "{outcomes:?}");
    for i in 0..8 {
        assert_eq!(store.family_of(&format!("t1-{i}"), now).await.expect("family"), Some("tabs".into()), "tab {i}");
    }
    let late = store.rotate("t0", "t2", exp, now + 11, 10).await.expect("rotate");
    assert_eq!(late, Rotation::Reused { family: "tabs".into(), sub: "alice".into() });
    assert_eq!(store.rotate("t1-0", "t3", exp, now + 11, 10).await.expect("rotate"), Rotation::Invalid);
}

async fn login_attempts_window(store: &dyn Store) {
    let window = Duration::from_millis(600);
    for expected in 1..=3 {
        let a = store.record_failure("user:alice", window).await.expect("record");
        assert_eq!(a.count, expected);
        assert!(a.retry_after > Duration::ZERO && a.retry_after <= window, "{a:?}");
    }
    assert_eq!(store.attempts("user:alice").await.expect("attempts").count, 3);
    assert_eq!(store.attempts("ip:127.0.0.1").await.expect("attempts").count, 0, "keys are separate");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(store.attempts("user:alice").await.expect("attempts").count, 0, "the window ended");
    assert_eq!(store.record_failure("user:alice", window).await.expect("record").count, 1, "a new window starts");
    store.clear("user:alice").await.expect("clear");
    assert_eq!(store.attempts("user:alice").await.expect("attempts").count, 0);
}

/// Redis only: a Redis that lost its data is detected through the epoch,
/// and what a replica writes back is there again for everyone.
#[tokio::test]
async fn redis_data_loss_is_detected_and_restored() {
    let mut server = RedisServer::start();
    let store = authgate::store::open(&redis_config(&server)).await.expect("connect");
    let revoked = Revocation::Jti { jti: "gone".into(), expires_at: now() + 600 };
    store.revoke(&revoked).await.expect("revoke");
    let (_, cursor) = store.snapshot(now()).await.expect("snapshot");

    server.stop_and_wipe();
    server.restart();
    let outcome = support::eventually(Duration::from_secs(5), || async {
        match store.changes(&cursor, Duration::from_millis(100)).await {
            Ok(Changes::Reload { data_lost: true }) => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(outcome.is_some(), "the loss was not detected");
    // The command connection notices the restart on first use; the feed loop retries the same way.
    let restored = support::eventually(Duration::from_secs(5), || async {
        store.restore(std::slice::from_ref(&revoked)).await.ok()
    })
    .await;
    assert!(restored.is_some(), "restore kept failing");
    let (entries, new_cursor) = store.snapshot(now()).await.expect("snapshot");
    assert!(entries.contains(&revoked));
    assert_ne!(new_cursor.epoch, cursor.epoch, "a new data set");
}

/// Embedded only: the change feed never skips an entry, whatever the
/// interleaving of writers. Four handles on one file (as four processes
/// would have) write 200 revocations each at once while a follower reads
/// the feed; the follower must see all 800, each once, in id order. It
/// holds because SQLite lets one writer at a time commit and the feed's
/// ids come from AUTOINCREMENT inside that write: an id is never visible
/// before a smaller one.
#[tokio::test]
async fn embedded_feed_never_skips_under_concurrent_writers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data/authgate.db");
    let config = config::Store::Embedded { path };
    let follower = authgate::store::open(&config).await.expect("open");
    let (_, mut cursor) = follower.snapshot(now()).await.expect("snapshot");
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = authgate::store::open(&config).await.expect("open");
        writers.push(tokio::spawn(async move {
            for i in 0..200 {
                let r = Revocation::Jti { jti: format!("w{w}-{i}"), expires_at: now() + 600 };
                store.revoke(&r).await.expect("revoke");
            }
        }));
    }
    let mut seen = std::collections::HashSet::new();
    let mut last_position = 0i64;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 800 && std::time::Instant::now() < deadline {
        let Changes::Entries(entries, next) =
            follower.changes(&cursor, Duration::from_millis(50)).await.expect("changes")
        else {
            panic!("the feed asked for a reload");
        };
        let position: i64 = next.position.parse().expect("a row id");
        assert!(position >= last_position, "the feed went backwards");
        last_position = position;
        for e in entries {
            let Revocation::Jti { jti, .. } = e else { panic!("only jtis were written") };
            assert!(seen.insert(jti.clone()), "{jti} fed twice");
        }
        cursor = next;
    }
    for w in writers {
        w.await.expect("writer");
    }
    assert_eq!(seen.len(), 800, "the feed skipped entries");
}
