//! Trusted external issuers against a real JWKS server on loopback:
//! Keycloak- and Auth0-shaped tokens with their roles claims, route scopes,
//! key rotation (a new kid after one refetch), forged kids (one shared
//! refetch, a second apart), the endpoint failing (known keys keep working), and no
//! token ever checked against another issuer's keys.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use support::client::{get, get_bearer};
use support::gateway::TestGateway;
use support::jwks::{IdpKey, JwksServer};
use support::tokens::{claims, now, sign};
use support::upstream::Upstream;

const AUTH0: &str = "https://tenant.auth0.example/";

async fn setup(keys: &[&IdpKey]) -> (JwksServer, Upstream, TestGateway) {
    let jwks = JwksServer::start(keys.iter().map(|k| k.public.clone()).collect()).await;
    let up = Upstream::start().await;
    let keycloak = jwks.url("/realms/demo");
    let rest = format!(
        r#"
[[tokens.trusted]]
issuer = "{keycloak}"
jwks_url = "{keycloak}/protocol/openid-connect/certs"
audience = "api"
roles_claim = "realm_access.roles"

[[tokens.trusted]]
issuer = "{AUTH0}"
jwks_url = "{auth0_jwks}"
audience = "https://api.example.com"
roles_claim = "https://example.com/roles"

[headers]
claims = {{ "realm_access.roles" = "X-Auth-Realm-Roles", email = "X-Auth-Email" }}

[[route]]
path = "/orders"
upstream = "{u}"
scopes = ["read:orders"]

[[route]]
path = "/admin"
upstream = "{u}"
roles = ["admin"]

[[route]]
path = "/api"
upstream = "{u}"
"#,
        auth0_jwks = jwks.url("/.well-known/jwks.json"),
        u = up.url()
    );
    let gw = TestGateway::start(&rest).await;
    // Ready once each issuer's keys are in.
    let readyz = format!("http://{}/readyz", gw.admin);
    let loaded = support::eventually(Duration::from_secs(5), || async {
        let r = get(&readyz, &[]).await.json();
        r["jwks"].as_array()?.iter().all(|i| i["keys"].as_u64() == Some(keys.len() as u64)).then_some(())
    })
    .await;
    assert!(loaded.is_some(), "the JWKS were not fetched at start");
    (jwks, up, gw)
}

fn keycloak_claims(jwks: &JwksServer, roles: &[&str]) -> Value {
    let now = now();
    json!({
        "iss": jwks.url("/realms/demo"), "sub": "f81d4fae-7dec-11d0", "aud": ["api", "account"],
        "exp": now + 300, "iat": now, "jti": format!("kc-{now}"), "azp": "web",
        "typ": "Bearer", "realm_access": {"roles": roles}, "email": "alice@example.com",
        "scope": "openid profile email",
    })
}

fn auth0_claims(roles: &[&str], scope: &str) -> Value {
    let now = now();
    json!({
        "iss": AUTH0, "sub": "auth0|42", "aud": ["https://api.example.com", "https://tenant.auth0.example/userinfo"],
        "exp": now + 300, "iat": now, "azp": "spa", "scope": scope,
        "https://example.com/roles": roles,
    })
}

#[tokio::test]
async fn keycloak_and_auth0_tokens_are_accepted_with_their_roles() {
    let kc = IdpKey::generate("kc-1", Algorithm::RS256);
    let a0 = IdpKey::generate("a0-1", Algorithm::RS256);
    let (jwks, up, gw) = setup(&[&kc, &a0]).await;

    let token = kc.sign("JWT", &keycloak_claims(&jwks, &["admin", "user"]));
    assert_eq!(get_bearer(&gw.url("/admin/x"), &token).await.status, 200);
    let seen = up.last();
    assert_eq!(seen.headers["x-auth-user"], "f81d4fae-7dec-11d0");
    assert_eq!(seen.headers["x-auth-roles"], "admin,user");
    assert_eq!(seen.headers["x-auth-realm-roles"], "admin,user");
    assert_eq!(seen.headers["x-auth-email"], "alice@example.com");

    let reader = a0.sign("at+jwt", &auth0_claims(&["user"], "read:orders openid"));
    assert_eq!(get_bearer(&gw.url("/orders/1"), &reader).await.status, 200);
    assert_eq!(up.last().headers["x-auth-roles"], "user");
    let no_scope = a0.sign("at+jwt", &auth0_claims(&["user"], "openid"));
    let refused = get_bearer(&gw.url("/orders/1"), &no_scope).await;
    assert_eq!((refused.status, refused.code().as_str()), (403, "insufficient_scope"));
    assert_eq!(get_bearer(&gw.url("/admin/x"), &reader).await.status, 403, "auth0 user is not admin");

    // Our own tokens keep working beside them.
    assert_eq!(get_bearer(&gw.url("/api/x"), &sign("es256", &claims("local", &[]))).await.status, 200);
}

#[tokio::test]
async fn a_token_is_never_checked_against_another_issuers_keys() {
    let kc = IdpKey::generate("kc-1", Algorithm::RS256);
    let a0 = IdpKey::generate("a0-1", Algorithm::RS256);
    let (jwks, up, gw) = setup(&[&kc, &a0]).await;
    let before = up.count();
    // Keycloak's issuer, signed with our own key (kid es256).
    let ours_as_keycloak = sign("es256", &keycloak_claims(&jwks, &["admin"]));
    // Auth0's issuer, signed by Keycloak's key (both keys are in the one JWKS document here,
    // but the claims name Auth0 and Keycloak's key is not Auth0's kid for this token).
    let mut wrong = auth0_claims(&["admin"], "read:orders");
    wrong["aud"] = json!("api");
    let cross = kc.sign("JWT", &wrong);
    // Our issuer, signed by an IdP key.
    let mut ours = claims("mallory", &["admin"]);
    ours["iss"] = json!("authgate");
    let idp_as_ours = kc.sign("at+jwt", &ours);
    // An issuer nobody trusts.
    let mut stranger = keycloak_claims(&jwks, &["admin"]);
    stranger["iss"] = json!("https://evil.example/");
    let unknown_issuer = kc.sign("JWT", &stranger);
    for (case, token) in [
        ("own key as keycloak", ours_as_keycloak),
        ("keycloak key as auth0 with wrong aud", cross),
        ("idp key as ours", idp_as_ours),
        ("unknown issuer", unknown_issuer),
    ] {
        let r = get_bearer(&gw.url("/admin/x"), &token).await;
        assert_eq!((r.status, r.code().as_str()), (401, "invalid_token"), "{case}");
    }
    assert_eq!(up.count(), before);
}

#[tokio::test]
async fn a_new_kid_is_accepted_after_one_refetch() {
    let k1 = IdpKey::generate("kc-1", Algorithm::RS256);
    let (jwks, _up, gw) = setup(&[&k1]).await;
    let k2 = IdpKey::generate("kc-2", Algorithm::ES256);
    jwks.add_key(k2.public.clone());
    let fetches = jwks.fetches();
    let token = k2.sign("JWT", &keycloak_claims(&jwks, &["user"]));
    let accepted = support::eventually(Duration::from_secs(5), || async {
        (get_bearer(&gw.url("/api/x"), &token).await.status == 200).then_some(())
    })
    .await;
    assert!(accepted.is_some(), "the rotated key was never fetched");
    // One fetch per issuer at most (both issuers share this server).
    assert!(jwks.fetches() - fetches <= 2, "{} fetches for one new kid", jwks.fetches() - fetches);
    assert_eq!(get_bearer(&gw.url("/api/x"), &k1.sign("JWT", &keycloak_claims(&jwks, &["user"]))).await.status, 200);
}

/// Every request with an unknown kid waits for one shared refetch, and
/// refetches are a second apart: a burst of forged kids costs one or two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_kids_share_one_refetch() {
    let k1 = IdpKey::generate("kc-1", Algorithm::RS256);
    let (jwks, up, gw) = setup(&[&k1]).await;
    let forger = IdpKey::generate("unused", Algorithm::RS256);
    let fetches = jwks.fetches();
    let url = gw.url("/api/x");
    let forged: Vec<String> = (0..25)
        .map(|i| {
            let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
            header.kid = Some(format!("forged-{i}"));
            jsonwebtoken::encode(&header, &keycloak_claims(&jwks, &["admin"]), &forger.private).expect("sign")
        })
        .collect();
    let replies = futures_util::future::join_all(forged.iter().map(|t| get_bearer(&url, t))).await;
    assert!(replies.iter().all(|r| r.status == 401));
    // Every request waited for the refetch it asked for: it has landed.
    let spent = jwks.fetches() - fetches;
    assert!((1..=2).contains(&spent), "{spent} fetches for 25 forged kids");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn known_keys_keep_working_while_the_jwks_endpoint_fails() {
    let k1 = IdpKey::generate("kc-1", Algorithm::RS256);
    let (jwks, _up, gw) = setup(&[&k1]).await;
    jwks.fail(true);
    // An unknown kid forces a (failing) refetch.
    let forged = IdpKey::generate("kc-9", Algorithm::RS256).sign("JWT", &keycloak_claims(&jwks, &[]));
    let fetches = jwks.fetches();
    assert_eq!(get_bearer(&gw.url("/api/x"), &forged).await.status, 401);
    let failed =
        support::eventually(Duration::from_secs(3), || async { (jwks.fetches() > fetches).then_some(()) }).await;
    assert!(failed.is_some(), "no refetch was attempted");
    let token = k1.sign("JWT", &keycloak_claims(&jwks, &["user"]));
    assert_eq!(get_bearer(&gw.url("/api/x"), &token).await.status, 200, "stale-if-error");
    let ready = get(&format!("http://{}/readyz", gw.admin), &[]).await.json();
    assert!(ready["jwks"][0]["age_s"].is_u64(), "{ready}");
    let metrics = String::from_utf8_lossy(&get(&format!("http://{}/metrics", gw.admin), &[]).await.body).into_owned();
    assert!(metrics.contains("authgate_jwks_age_seconds{issuer="), "{metrics}");
}

#[tokio::test]
async fn keys_are_fetched_over_tls_trusting_the_configured_ca() {
    let key = IdpKey::generate("kc-1", Algorithm::ES256);
    let (ca_pem, acceptor) = support::jwks::private_ca_server();
    let jwks = JwksServer::start_with(vec![key.public.clone()], Some(acceptor)).await;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("idp-ca.pem"), ca_pem).expect("write CA");
    let base = format!("https://localhost:{}", jwks.addr.port());
    let trusted = |ca: &str| {
        format!(
            "[[tokens.trusted]]\nissuer = \"{base}/realms/tls\"\njwks_url = \"{base}/certs\"\naudience = \"api\"\n{ca}\n[[route]]\npath = \"/api\"\nupstream = \"{}\"\n",
            up.url()
        )
    };
    let mut c = keycloak_claims(&jwks, &["user"]);
    c["iss"] = json!(format!("{base}/realms/tls"));
    let token = key.sign("JWT", &c);

    let with_ca =
        TestGateway::start(&trusted(&format!("ca_file = \"{}\"", dir.path().join("idp-ca.pem").display()))).await;
    let accepted = support::eventually(Duration::from_secs(5), || async {
        (get_bearer(&with_ca.url("/api/x"), &token).await.status == 200).then_some(())
    })
    .await;
    assert!(accepted.is_some(), "keys fetched over TLS with the configured CA were not used");

    // The system's trust store does not know this private CA: nothing is fetched.
    let fetches = jwks.fetches();
    let without = TestGateway::start(&trusted("")).await;
    // A negative check: nothing to poll for, so give the start-up fetch a second to (not) succeed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(get_bearer(&without.url("/api/x"), &token).await.status, 401);
    assert_eq!(jwks.fetches(), fetches, "a fetch completed over an untrusted TLS connection");
}
