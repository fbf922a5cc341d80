//! Several real gateway processes sharing one store: a revocation on one
//! replica is refused on the other within a second; Redis stopped -> 503 on
//! protected routes within max_staleness + 1 s while public routes stay up
//! -> Redis back -> served again, no restart; Redis restarted empty ->
//! revoked tokens stay refused and are written back; the embedded store
//! keeps revocations and users across a restart and a `kill -9`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use std::time::{Duration, Instant};

use support::client::{get, get_bearer};
use support::fleet::{config, mint, revoke_via_api, setup, time_until};
use support::process::{GatewayProcess, cli, jti_of};
use support::redis::RedisServer;

fn redis_store(server: &RedisServer) -> String {
    format!("backend = \"redis\"\nurl = \"{}\"\nmax_staleness = \"1s\"\ntimeout = \"300ms\"\n", server.url())
}

#[tokio::test]
async fn a_revocation_on_one_replica_is_refused_on_the_other_within_a_second() {
    let redis = RedisServer::start();
    let dir = setup();
    let text = config(&redis_store(&redis));
    let one = GatewayProcess::start(dir.path(), "one.toml", &text).await;
    let two = GatewayProcess::start(dir.path(), "two.toml", &text).await;
    let (alice, bob, admin) = (
        mint(dir.path(), "one.toml", "alice", "user"),
        mint(dir.path(), "one.toml", "bob", "user"),
        mint(dir.path(), "one.toml", "root", "admin"),
    );
    for g in [&one, &two] {
        assert_eq!(get_bearer(&g.url("/api/x"), &alice).await.status, 200);
    }

    // Only the admin role may revoke, and the body must name one thing.
    assert_eq!(revoke_via_api(&one, &alice, &format!("{{\"jti\":\"{}\"}}", jti_of(&bob))).await, 403);
    assert_eq!(revoke_via_api(&one, &admin, "{\"jti\":\"a\",\"sub\":\"b\"}").await, 400);
    assert_eq!(revoke_via_api(&one, &admin, "not json").await, 400);

    assert_eq!(revoke_via_api(&one, &admin, &format!("{{\"jti\":\"{}\"}}", jti_of(&alice))).await, 204);
    let took = time_until(&two.url("/api/x"), &alice, 401, Duration::from_secs(1)).await;
    assert!(took.is_some(), "replica two still accepted the revoked token after 1 s");
    let refused = get_bearer(&two.url("/api/x"), &alice).await;
    assert_eq!(refused.code(), "token_revoked");
    assert_eq!(get_bearer(&one.url("/api/x"), &alice).await.status, 401, "the revoking replica refuses at once");

    // The CLI against the same Redis: every token of bob issued so far.
    assert_eq!(get_bearer(&two.url("/api/x"), &bob).await.status, 200);
    let (ok, _, err) = cli(dir.path(), &["--config", "one.toml", "revoke", "--sub", "bob"], None);
    assert!(ok, "{err}");
    for g in [&one, &two] {
        assert!(time_until(&g.url("/api/x"), &bob, 401, Duration::from_secs(1)).await.is_some(), "bob still accepted");
    }
    // Tokens issued after the cut-off are fine.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh_bob = mint(dir.path(), "one.toml", "bob", "user");
    assert_eq!(get_bearer(&two.url("/api/x"), &fresh_bob).await.status, 200);
}

#[tokio::test]
async fn redis_down_means_503_on_protected_routes_and_recovery_needs_no_restart() {
    let mut redis = RedisServer::start();
    let dir = setup();
    let gateway = GatewayProcess::start(dir.path(), "g.toml", &config(&redis_store(&redis))).await;
    let alice = mint(dir.path(), "g.toml", "alice", "user");
    assert_eq!(get_bearer(&gateway.url("/api/x"), &alice).await.status, 200);
    let readyz = format!("http://{}/readyz", gateway.admin);
    assert_eq!(get(&readyz, &[]).await.status, 200);

    redis.stop();
    // max_staleness is 1 s: 503 within 2 s of the outage.
    let took = time_until(&gateway.url("/api/x"), &alice, 503, Duration::from_secs(2)).await;
    assert!(took.is_some(), "protected route still served 200 without a current denylist");
    let down = get_bearer(&gateway.url("/api/x"), &alice).await;
    assert_eq!(down.code(), "store_unavailable");
    assert_eq!(get(&gateway.url("/public/x"), &[]).await.status, 200, "public routes keep working");
    let not_ready = get(&readyz, &[]).await;
    assert_eq!((not_ready.status, not_ready.json()["reason"].as_str()), (503, Some("store_unavailable")));

    redis.restart();
    let back = time_until(&gateway.url("/api/x"), &alice, 200, Duration::from_secs(10)).await;
    assert!(back.is_some(), "the gateway did not recover by itself");
    assert_eq!(get(&readyz, &[]).await.status, 200);
}

#[tokio::test]
async fn a_redis_restarted_empty_does_not_bring_revoked_tokens_back() {
    let mut redis = RedisServer::start();
    let dir = setup();
    let text = config(&redis_store(&redis));
    let one = GatewayProcess::start(dir.path(), "one.toml", &text).await;
    let two = GatewayProcess::start(dir.path(), "two.toml", &text).await;
    let (alice, admin) = (mint(dir.path(), "one.toml", "alice", "user"), mint(dir.path(), "one.toml", "root", "admin"));
    let jti = jti_of(&alice);
    assert_eq!(revoke_via_api(&one, &admin, &format!("{{\"jti\":\"{jti}\"}}")).await, 204);
    assert!(time_until(&two.url("/api/x"), &alice, 401, Duration::from_secs(1)).await.is_some());

    redis.stop_and_wipe();
    redis.restart();
    assert_eq!(redis.cli(&["EXISTS", "authgate:epoch"]).as_deref(), Some("0"), "the restarted Redis is empty");
    // Never accepted again, on either replica, while the loss is detected and repaired.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        for g in [&one, &two] {
            assert_ne!(get_bearer(&g.url("/api/x"), &alice).await.status, 200, "a revoked token came back to life");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The replicas wrote their revocations back: a replica started now refuses it too.
    let restored = support::eventually(Duration::from_secs(5), || async {
        redis.cli(&["ZSCORE", "authgate:deny:jti", &jti]).filter(|s| !s.is_empty()).map(|_| ())
    })
    .await;
    assert!(restored.is_some(), "the revocation was not written back to Redis");
    let three = GatewayProcess::start(dir.path(), "three.toml", &text).await;
    let fresh = support::eventually(Duration::from_secs(5), || async {
        let r = get_bearer(&three.url("/api/x"), &alice).await;
        (r.status == 401).then_some(r.code())
    })
    .await;
    assert_eq!(fresh.as_deref(), Some("token_revoked"));
    assert_eq!(get_bearer(&three.url("/api/x"), &admin).await.status, 200);
}

#[tokio::test]
async fn the_embedded_store_keeps_revocations_and_users_across_restart_and_kill_9() {
    let dir = setup();
    let text = config("backend = \"embedded\"\npath = \"data/authgate.db\"\n");
    let mut gateway = GatewayProcess::start(dir.path(), "g.toml", &text).await;
    let (alice, bob, admin) = (
        mint(dir.path(), "g.toml", "alice", "user"),
        mint(dir.path(), "g.toml", "bob", "user"),
        mint(dir.path(), "g.toml", "root", "admin"),
    );

    // The CLI writes to the same file while the gateway runs.
    let (ok, _, err) = cli(
        dir.path(),
        &["--config", "g.toml", "user", "add", "carol", "--roles", "user,ops"],
        Some("a long enough password\n"),
    );
    assert!(ok, "{err}");
    let (ok, _, err) = cli(dir.path(), &["--config", "g.toml", "user", "add", "dave"], Some("short\n"));
    assert!(!ok && err.contains("shorter than 8"), "{err}");

    assert_eq!(revoke_via_api(&gateway, &admin, &format!("{{\"jti\":\"{}\"}}", jti_of(&alice))).await, 204);
    assert_eq!(get_bearer(&gateway.url("/api/x"), &alice).await.status, 401);
    // A CLI revocation reaches the running gateway through the change feed.
    let (ok, _, err) = cli(dir.path(), &["--config", "g.toml", "revoke", "--sub", "bob"], None);
    assert!(ok, "{err}");
    assert!(
        time_until(&gateway.url("/api/x"), &bob, 401, Duration::from_secs(1)).await.is_some(),
        "the CLI's revocation was not seen"
    );

    gateway.kill9();
    let gateway = GatewayProcess::start(dir.path(), "g.toml", &text).await;
    for token in [&alice, &bob] {
        let r = get_bearer(&gateway.url("/api/x"), token).await;
        assert_eq!((r.status, r.code().as_str()), (401, "token_revoked"), "a revocation was lost by kill -9");
    }
    assert_eq!(get_bearer(&gateway.url("/api/x"), &admin).await.status, 200);
    let (ok, _, err) =
        cli(dir.path(), &["--config", "g.toml", "user", "add", "carol"], Some("another long password\n"));
    assert!(!ok && err.contains("already exists"), "the user was lost: {err}");
    let (ok, _, err) = cli(dir.path(), &["--config", "g.toml", "user", "disable", "carol"], None);
    assert!(ok, "{err}");
}

#[tokio::test]
async fn a_paused_redis_is_as_unavailable_as_a_stopped_one() {
    let redis = RedisServer::start();
    let dir = setup();
    let gateway = GatewayProcess::start(dir.path(), "g.toml", &config(&redis_store(&redis))).await;
    let alice = mint(dir.path(), "g.toml", "alice", "user");
    assert_eq!(get_bearer(&gateway.url("/api/x"), &alice).await.status, 200);
    // Every command of every client waits 4 s: calls time out instead of piling up.
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "4000", "ALL"]).as_deref(), Some("OK"));
    let paused = Instant::now();
    assert!(
        time_until(&gateway.url("/api/x"), &alice, 503, Duration::from_secs(3)).await.is_some(),
        "no 503 while Redis is paused"
    );
    assert_eq!(get(&gateway.url("/public/x"), &[]).await.status, 200);
    let back = time_until(&gateway.url("/api/x"), &alice, 200, Duration::from_secs(8)).await;
    assert!(back.is_some(), "not served again after the pause");
    assert!(paused.elapsed() >= Duration::from_secs(3), "served again before the pause ended");
}

#[tokio::test]
async fn a_pause_shorter_than_max_staleness_is_not_an_outage() {
    let redis = RedisServer::start();
    let dir = setup();
    let gateway = GatewayProcess::start(dir.path(), "g.toml", &config(&redis_store(&redis))).await;
    let alice = mint(dir.path(), "g.toml", "alice", "user");
    assert!(time_until(&gateway.url("/api/x"), &alice, 200, Duration::from_secs(5)).await.is_some());
    // max_staleness is 1 s; the pause a quarter of it.
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "250", "ALL"]).as_deref(), Some("OK"));
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        assert_eq!(get_bearer(&gateway.url("/api/x"), &alice).await.status, 200, "a short pause caused an outage");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn on_unavailable_allow_lets_requests_through_when_redis_is_down() {
    let mut redis = RedisServer::start();
    let dir = setup();
    let store = format!("{}on_unavailable = \"allow\"\n", redis_store(&redis));
    let gateway = GatewayProcess::start(dir.path(), "g.toml", &config(&store)).await;
    let (alice, admin) = (mint(dir.path(), "g.toml", "alice", "user"), mint(dir.path(), "g.toml", "root", "admin"));
    assert_eq!(revoke_via_api(&gateway, &admin, &format!("{{\"jti\":\"{}\"}}", jti_of(&alice))).await, 204);
    redis.stop();
    // Past max_staleness (1 s), as the gateway itself reports it.
    let readyz = format!("http://{}/readyz", gateway.admin);
    let stale = support::eventually(Duration::from_secs(5), || async {
        let ms = get(&readyz, &[]).await.json()["denylist_staleness_ms"].as_u64()?;
        (ms > 1000).then_some(())
    })
    .await;
    assert!(stale.is_some(), "the denylist copy never went stale");
    assert_eq!(
        get_bearer(&gateway.url("/api/x"), &admin).await.status,
        200,
        "allow: served without a current denylist"
    );
    assert_eq!(
        get_bearer(&gateway.url("/api/x"), &alice).await.status,
        401,
        "what the replica knows is still enforced"
    );
    assert_eq!(get(&readyz, &[]).await.status, 200, "allow: still ready");
}

#[tokio::test]
async fn a_sentinel_url_reaches_the_current_master() {
    let redis = RedisServer::start();
    let sentinel = support::redis::Sentinel::watch(&redis, "authgate-master");
    let dir = setup();
    let store = format!(
        "backend = \"redis\"\nurl = \"redis+sentinel://127.0.0.1:{}/authgate-master\"\nmax_staleness = \"1s\"\n",
        sentinel.port
    );
    let gateway = GatewayProcess::start(dir.path(), "g.toml", &config(&store)).await;
    let (alice, admin) = (mint(dir.path(), "g.toml", "alice", "user"), mint(dir.path(), "g.toml", "root", "admin"));
    assert!(time_until(&gateway.url("/api/x"), &alice, 200, Duration::from_secs(5)).await.is_some());
    let jti = jti_of(&alice);
    assert_eq!(revoke_via_api(&gateway, &admin, &format!("{{\"jti\":\"{jti}\"}}")).await, 204);
    assert_eq!(get_bearer(&gateway.url("/api/x"), &alice).await.status, 401);
    let stored = redis.cli(&["ZSCORE", "authgate:deny:jti", &jti]).unwrap_or_default();
    assert!(!stored.is_empty(), "the revocation did not reach the master");
}
