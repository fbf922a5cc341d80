//! Revocation across a real Redis failover: a primary, two replicas and
//! three Sentinels (`redis-server --sentinel`), gateways as real processes
//! on `redis+sentinel://`. The primary is killed for real, Sentinel
//! promotes a replica, the old primary comes back at its old address.
//!
//! What must hold: the gateways follow the new master without a restart,
//! within Sentinel's own failover time plus about a second; a revocation
//! answered 204 is never lost, on running gateways and on gateways started
//! later; a write that no replica holds is answered 503, never 204; what a
//! promoted replica missed is written back by the gateways that know it;
//! a spent refresh token stays spent.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use support::client::{get_bearer, send};
use support::fleet::{config, mint, revoke_via_api, setup, time_until};
use support::process::{GatewayProcess, cli, jti_of};
use support::redis::{RedisServer, SentinelCluster};

fn store(url: &str, extra: &str) -> String {
    format!("backend = \"redis\"\nurl = \"{url}\"\nmax_staleness = \"1s\"\ntimeout = \"300ms\"\n{extra}")
}

/// Polls until the Sentinels name a master other than `old`; returns it.
async fn promoted(cluster: &SentinelCluster, old: u16, limit: Duration) -> Option<u16> {
    support::eventually(limit, || async { cluster.master_port().filter(|p| *p != old) }).await
}

async fn login(gateway: &GatewayProcess, user: &str, password: &str) -> String {
    let body = format!("{{\"username\":\"{user}\",\"password\":\"{password}\"}}");
    let r = send(http::Method::POST, &gateway.url("/auth/login"), &[], Bytes::from(body)).await;
    assert_eq!(r.status, 200, "login");
    r.json()["refresh_token"].as_str().expect("a refresh token").to_owned()
}

/// `POST /auth/refresh`: the status and, on 200, the new refresh token.
async fn refresh(gateway: &GatewayProcess, token: &str) -> (u16, Option<String>) {
    let body = format!("{{\"refresh_token\":\"{token}\"}}");
    let r = send(http::Method::POST, &gateway.url("/auth/refresh"), &[], Bytes::from(body)).await;
    let next = (r.status == 200).then(|| r.json()["refresh_token"].as_str().map(str::to_owned)).flatten();
    (r.status, next)
}

/// Whether every replica of `primary` has acknowledged all it was sent.
fn in_sync(primary: &RedisServer) -> bool {
    let Some(info) = primary.cli(&["INFO", "replication"]) else { return false };
    let offset = info.lines().find_map(|l| l.strip_prefix("master_repl_offset:")).map(str::trim).map(str::to_owned);
    let replicas: Vec<&str> = info.lines().filter(|l| l.starts_with("slave")).collect();
    !replicas.is_empty()
        && replicas.iter().all(|l| offset.as_deref().is_some_and(|o| l.contains(&format!("offset={o},"))))
}

#[tokio::test]
async fn the_gateways_follow_a_failover_and_lose_no_acknowledged_revocation() {
    let mut cluster = SentinelCluster::start("ha-follow");
    let dir = setup();
    let text = config(&store(&cluster.url(), ""));
    let mut gateways = Vec::new();
    for name in ["one.toml", "two.toml", "three.toml"] {
        gateways.push(GatewayProcess::start(dir.path(), name, &text).await);
    }
    let admin = mint(dir.path(), "one.toml", "root", "admin");
    let victims: Vec<String> = (0..60).map(|i| mint(dir.path(), "one.toml", &format!("user{i}"), "user")).collect();
    for g in &gateways {
        assert!(time_until(&g.url("/api/x"), &admin, 200, Duration::from_secs(5)).await.is_some(), "not ready");
    }
    // Acknowledged before the kill.
    let mut acknowledged: Vec<&String> = Vec::new();
    // When and by which gateway each was acknowledged: that gateway refuses
    // the token at once, every other within a second (the feed's promise).
    let mut acked_at: Vec<(Instant, usize)> = Vec::new();
    for (i, victim) in victims.iter().take(3).enumerate() {
        let status = revoke_via_api(&gateways[i % 3], &admin, &format!("{{\"jti\":\"{}\"}}", jti_of(victim))).await;
        assert_eq!(status, 204);
        acknowledged.push(victim);
        acked_at.push((Instant::now(), i % 3));
    }

    let old = cluster.nodes[0].port;
    cluster.node_mut(old).stop();
    let killed = Instant::now();
    // Steady traffic and a revocation every ~100 ms through the whole failover.
    let mut next = 3;
    let mut refused = 0;
    let mut promoted_after = None;
    let mut recovered: [Option<Duration>; 3] = [None; 3];
    let mut round = 0;
    while recovered.iter().any(Option::is_none) && killed.elapsed() < Duration::from_secs(30) {
        round += 1;
        if promoted_after.is_none() && cluster.master_port().is_some_and(|p| p != old) {
            promoted_after = Some(killed.elapsed());
        }
        for (i, g) in gateways.iter().enumerate() {
            for (victim, (at, by)) in acknowledged.iter().zip(&acked_at) {
                if *by != i && at.elapsed() < Duration::from_secs(1) {
                    continue;
                }
                let status = get_bearer(&g.url("/api/x"), victim).await.status;
                assert_ne!(status, 200, "an acknowledged revocation was not enforced during the failover");
            }
            // Before the promotion, one revocation a round (none can be acknowledged:
            // the master is gone); after it, each gateway until it has recovered:
            // it serves protected routes and acknowledges a write.
            let asks = if promoted_after.is_some() { recovered[i].is_none() } else { i == round % 3 };
            if asks && next < victims.len() {
                let victim = &victims[next];
                next += 1;
                match revoke_via_api(g, &admin, &format!("{{\"jti\":\"{}\"}}", jti_of(victim))).await {
                    204 => {
                        acknowledged.push(victim);
                        acked_at.push((Instant::now(), i));
                        if promoted_after.is_some() && get_bearer(&g.url("/api/x"), &admin).await.status == 200 {
                            recovered[i] = Some(killed.elapsed());
                        }
                    }
                    503 => refused += 1,
                    other => panic!("a revocation answered {other}"),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let promoted_after = promoted_after.expect("Sentinel never promoted a replica");
    let recovered: Vec<Duration> =
        recovered.iter().map(|r| r.expect("a gateway never followed the new master")).collect();
    let slowest = recovered.iter().max().copied().unwrap_or_default();
    eprintln!(
        "failover: Sentinel promoted after {promoted_after:?}; gateways serving and acknowledging after {recovered:?}; \
         {} revocations acknowledged, {refused} refused with 503",
        acknowledged.len()
    );
    // A replica must be attached to the new master before a write is acknowledged (WAIT 1).
    assert!(
        slowest <= promoted_after + Duration::from_millis(3500),
        "the gateways took {slowest:?} to follow a master promoted after {promoted_after:?}"
    );
    let master = cluster.master_port().expect("a master");

    // A CLI revocation written to the new master reaches the running gateways.
    let carol = mint(dir.path(), "one.toml", "carol", "user");
    let (ok, _, err) = cli(dir.path(), &["--config", "one.toml", "revoke", "--sub", "carol"], None);
    assert!(ok, "{err}");
    for g in &gateways {
        assert!(
            time_until(&g.url("/api/x"), &carol, 401, Duration::from_secs(1)).await.is_some(),
            "carol still accepted"
        );
    }

    // The old primary comes back at its old address, with its old data, and is demoted.
    cluster.node_mut(old).restart();
    let demoted = support::eventually(Duration::from_secs(20), || async {
        (cluster.node(old).role().as_deref() == Some("slave")).then_some(())
    })
    .await;
    assert!(demoted.is_some(), "Sentinel did not demote the old primary");
    // Writes while and after it came back land on the current master.
    let late = &victims[victims.len() - 1];
    let late_jti = jti_of(late);
    assert_eq!(revoke_via_api(&gateways[0], &admin, &format!("{{\"jti\":\"{late_jti}\"}}")).await, 204);
    acknowledged.push(late);
    let stored = cluster.node(master).cli(&["ZSCORE", "authgate:deny:jti", &late_jti]).unwrap_or_default();
    assert!(!stored.is_empty(), "the revocation did not reach the current master");

    // Nothing acknowledged is lost: on the running gateways, and on one started now.
    gateways.push(GatewayProcess::start(dir.path(), "four.toml", &text).await);
    let fresh = &gateways[3];
    assert!(time_until(&fresh.url("/api/x"), &admin, 200, Duration::from_secs(5)).await.is_some());
    let mut lost = 0;
    for g in &gateways {
        for victim in acknowledged.iter().chain([&&carol]) {
            if get_bearer(&g.url("/api/x"), victim).await.status != 401 {
                lost += 1;
            }
        }
    }
    eprintln!("failover: {lost} acknowledged revocations lost");
    assert_eq!(lost, 0, "acknowledged revocations were lost");
}

#[tokio::test]
async fn what_a_promoted_replica_missed_is_written_back_and_spent_stays_spent() {
    let mut cluster = SentinelCluster::start("ha-merge");
    let dir = setup();
    // Acknowledged without a replica: the loss this test needs, which `WAIT` otherwise prevents.
    let text = config(&store(&cluster.url(), "ack_replicas = 0\n"))
        .replace("[login]\nenabled = true\n", "[login]\nenabled = true\nrefresh_reuse_grace = \"0s\"\n");
    let mut gateways = Vec::new();
    for name in ["one.toml", "two.toml", "three.toml"] {
        gateways.push(GatewayProcess::start(dir.path(), name, &text).await);
    }
    let (ok, _, err) = cli(dir.path(), &["--config", "one.toml", "user", "add", "alice"], Some("a long password\n"));
    assert!(ok, "{err}");
    let (admin, victim, bob) = (
        mint(dir.path(), "one.toml", "root", "admin"),
        mint(dir.path(), "one.toml", "victim", "user"),
        mint(dir.path(), "one.toml", "bob", "user"),
    );
    let first = login(&gateways[0], "alice", "a long password").await;
    let (status, second) = refresh(&gateways[0], &first).await;
    assert_eq!(status, 200);
    let second = second.expect("a new refresh token");
    let old = cluster.nodes[0].port;
    let synced = support::eventually(Duration::from_secs(5), || async { in_sync(cluster.node(old)).then_some(()) });
    assert!(synced.await.is_some(), "the replicas did not catch up");

    // The replicas stop hearing the primary: stopped, and their links cut (what the
    // kernel had buffered for them would otherwise still arrive); three writes
    // reach the primary alone.
    for replica in &cluster.nodes[1..] {
        replica.signal("STOP");
    }
    assert!(cluster.node(old).cli(&["CLIENT", "KILL", "TYPE", "replica"]).is_some());
    assert_eq!(revoke_via_api(&gateways[0], &admin, &format!("{{\"jti\":\"{}\"}}", jti_of(&victim))).await, 204);
    let (status, _) = refresh(&gateways[1], &second).await;
    assert_eq!(status, 200, "the rotation on the primary alone");
    let (ok, _, err) = cli(dir.path(), &["--config", "one.toml", "revoke", "--sub", "bob"], None);
    assert!(ok, "{err}");
    for g in &gateways {
        assert!(time_until(&g.url("/api/x"), &bob, 401, Duration::from_secs(1)).await.is_some(), "bob still accepted");
    }
    cluster.node_mut(old).stop();
    for replica in &cluster.nodes[1..] {
        replica.signal("CONT");
    }
    let master = promoted(&cluster, old, Duration::from_secs(20)).await.expect("Sentinel never promoted a replica");

    // The running gateways notice the new master and write back what it lacks.
    let written_back = support::eventually(Duration::from_secs(5), || async {
        let node = cluster.node(master);
        let jti = node.cli(&["ZSCORE", "authgate:deny:jti", &jti_of(&victim)]).unwrap_or_default();
        let sub = node.cli(&["HGET", "authgate:deny:sub", "bob"]).unwrap_or_default();
        (!jti.is_empty() && !sub.is_empty()).then_some(())
    })
    .await;
    assert!(written_back.is_some(), "the revocations the promoted replica missed were not written back");
    // Only gateway two spent `second`: it marks it spent again on the new master.
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, second.as_bytes());
    let hash: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let spent_again = support::eventually(Duration::from_secs(2), || async {
        let spent = cluster.node(master).cli(&["HGET", &format!("authgate:rt:{hash}"), "spent"]).unwrap_or_default();
        (spent == "1").then_some(())
    })
    .await;
    assert!(spent_again.is_some(), "the refresh token spent on the old primary was not marked spent again");

    // A gateway started now refuses them, and the refresh token spent on the old primary stays spent.
    let fresh = GatewayProcess::start(dir.path(), "four.toml", &text).await;
    assert!(time_until(&fresh.url("/api/x"), &admin, 200, Duration::from_secs(5)).await.is_some());
    for token in [&victim, &bob] {
        assert_eq!(get_bearer(&fresh.url("/api/x"), token).await.status, 401, "a revocation was lost");
    }
    let (status, _) = refresh(&fresh, &second).await;
    assert_eq!(status, 401, "a refresh token spent before the failover worked again after it");
}

#[tokio::test]
async fn a_write_no_replica_holds_is_refused_never_acknowledged() {
    let primary = RedisServer::start();
    let replica = RedisServer::start_replica_of(Some(primary.port));
    let dir = setup();
    let gateway = GatewayProcess::start(dir.path(), "g.toml", &config(&store(&primary.url(), ""))).await;
    let (admin, one, two) = (
        mint(dir.path(), "g.toml", "root", "admin"),
        mint(dir.path(), "g.toml", "one", "user"),
        mint(dir.path(), "g.toml", "two", "user"),
    );
    // The default: one replica once the master has shown one.
    let acked = support::eventually(Duration::from_secs(5), || async {
        (revoke_via_api(&gateway, &admin, &format!("{{\"jti\":\"{}\"}}", jti_of(&one))).await == 204).then_some(())
    });
    assert!(acked.await.is_some(), "a replicated revocation was not acknowledged");

    replica.signal("STOP");
    let status = revoke_via_api(&gateway, &admin, &format!("{{\"jti\":\"{}\"}}", jti_of(&two))).await;
    assert_eq!(status, 503, "acknowledged a write no replica holds");
    // Refused, yet enforced here: failing closed costs nothing.
    assert_eq!(get_bearer(&gateway.url("/api/x"), &two).await.status, 401);
    replica.signal("CONT");
    let acked = support::eventually(Duration::from_secs(5), || async {
        (revoke_via_api(&gateway, &admin, &format!("{{\"jti\":\"{}\"}}", jti_of(&two))).await == 204).then_some(())
    });
    assert!(acked.await.is_some(), "not acknowledged once the replica was back");
}
