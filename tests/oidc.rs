//! A real OpenID Provider (npm `oidc-provider`) as a trusted issuer: its
//! RFC 9068 access tokens pass, its ID tokens never do (even when the
//! client id is an accepted audience); a key it rotates in is accepted on
//! the first request, however many forged `kid`s came before, which cost
//! the IdP a fetch or two; a gateway started while the IdP is down says so
//! in `/readyz` and picks the keys up within seconds of the IdP's return.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use support::client::{get, get_bearer};
use support::gateway::TestGateway;
use support::oidc::{AUDIENCE, CLIENT_ID, Idp};

fn trusted(idp: &Idp, extra: &str) -> String {
    format!(
        r#"[[tokens.trusted]]
issuer = "{issuer}"
jwks_url = "{jwks}"
audience = ["{AUDIENCE}", "{CLIENT_ID}"]
{extra}
[[route]]
path = "/api"
upstream = "builtin:echo"
"#,
        issuer = idp.issuer(),
        jwks = idp.jwks_url()
    )
}

/// Until the gateway's `/readyz` reports keys for the issuer.
async fn keys_in(gw: &TestGateway, limit: Duration) -> bool {
    let readyz = format!("http://{}/readyz", gw.admin);
    support::eventually(limit, || async {
        let doc = get(&readyz, &[]).await.json();
        (doc["jwks"][0]["status"] == "ok").then_some(())
    })
    .await
    .is_some()
}

#[tokio::test]
async fn an_id_token_never_passes_as_an_access_token() {
    let Some(idp) = Idp::start(&["k1"], "an_id_token_never_passes_as_an_access_token") else { return };
    for extra in ["", "require_typ = \"at+jwt\""] {
        let gw = TestGateway::start(&trusted(&idp, extra)).await;
        assert!(keys_in(&gw, Duration::from_secs(5)).await, "no keys from the IdP");
        let access = idp.access_token().await;
        let ok = get_bearer(&gw.url("/api/x"), &access).await;
        assert_eq!(ok.status, 200, "{extra}: {:?}", ok.body);
        assert_eq!(ok.json()["headers"]["x-auth-user"], CLIENT_ID, "{extra}");
        let id = idp.id_token().await;
        let refused = get_bearer(&gw.url("/api/x"), &id).await;
        assert_eq!((refused.status, refused.code().as_str()), (401, "invalid_token"), "{extra}: an ID token passed");
    }
}

/// A token of the IdP's issuer signed by a key the IdP never had.
fn forged(idp: &Idp, kid: &str) -> String {
    let key = EncodingKey::from_ec_pem(support::tokens::material().p256.as_bytes()).expect("test EC key");
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    header.typ = Some("at+jwt".into());
    let now = support::tokens::now();
    let claims = json!({"iss": idp.issuer(), "sub": "mallory", "aud": AUDIENCE, "iat": now, "exp": now + 300});
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_accepted_at_once_after_a_forged_kid_flood() {
    let test = "a_rotated_key_is_accepted_at_once_after_a_forged_kid_flood";
    let Some(mut idp) = Idp::start(&["k1"], test) else { return };
    let gw = TestGateway::start(&trusted(&idp, "")).await;
    assert!(keys_in(&gw, Duration::from_secs(5)).await, "no keys from the IdP");
    assert_eq!(get_bearer(&gw.url("/api/x"), &idp.access_token().await).await.status, 200);

    // Fifty forged kids at once: all refused, and a fetch or two at the IdP, not fifty.
    let before = idp.jwks_fetches().await;
    let url = gw.url("/api/x");
    let flood: Vec<_> = (0..50).map(|i| forged(&idp, &format!("forged-{i}"))).collect();
    let replies = futures_util::future::join_all(flood.iter().map(|t| get_bearer(&url, t))).await;
    assert!(replies.iter().all(|r| r.status == 401), "a forged token passed");
    let fetched = idp.jwks_fetches().await - before;
    assert!(fetched <= 3, "50 forged kids cost the IdP {fetched} JWKS fetches");

    // The IdP rotates right after: a token with the new kid passes on its first request.
    idp.serve(&["k2", "k1"]);
    let fresh = idp.access_token().await;
    let started = Instant::now();
    let first = get_bearer(&url, &fresh).await;
    assert_eq!(first.status, 200, "a token signed with the rotated-in key was refused: {:?}", first.body);
    assert!(started.elapsed() < Duration::from_secs(3), "accepted only after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_gateway_started_with_the_idp_down_recovers_within_seconds() {
    let test = "a_gateway_started_with_the_idp_down_recovers_within_seconds";
    let Some(mut idp) = Idp::start(&["k1"], test) else { return };
    idp.stop();
    let gw = TestGateway::start(&trusted(&idp, "")).await;
    let readyz = format!("http://{}/readyz", gw.admin);
    let doc = get(&readyz, &[]).await.json();
    assert_eq!(doc["jwks"][0]["status"], "no_keys", "{doc}");
    // Down for a few retries (1 s, 2 s, ...), then back.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    idp.serve(&["k1"]);
    let back = Instant::now();
    assert!(keys_in(&gw, Duration::from_secs(6)).await, "the keys never came");
    assert!(back.elapsed() < Duration::from_secs(5), "recovered {:?} after the IdP came back", back.elapsed());
    assert_eq!(get_bearer(&gw.url("/api/x"), &idp.access_token().await).await.status, 200);
}

/// Regression: `explain --token` could not judge a trusted issuer's token
/// ("no key for this token's kid"): it fetches the issuer's keys, or says
/// plainly that it cannot.
#[tokio::test]
async fn explain_fetches_a_trusted_issuers_keys() {
    let Some(mut idp) = Idp::start(&["k1"], "explain_fetches_a_trusted_issuers_keys") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\n[[tokens.keys]]\nkid = \"k\"\nalgorithm = \"ES256\"\n\
         private_key_file = \"k.pem\"\ngenerate_if_missing = true\n{}",
        trusted(&idp, "")
    );
    std::fs::write(dir.path().join("g.toml"), config).expect("write");
    let token = idp.access_token().await;
    let explain = |dir: &std::path::Path, token: &str| {
        let args = ["--config", "g.toml", "explain", "--token", token, "GET", "/api/x"];
        support::process::cli(dir, &args, None).1
    };
    let out = explain(dir.path(), &token);
    assert!(out.contains("decision: allow"), "{out}");
    idp.stop();
    let out = explain(dir.path(), &token);
    assert!(out.contains("could not be fetched"), "{out}");
}
