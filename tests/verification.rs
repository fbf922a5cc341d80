//! Token verification through the real gateway: every algorithm family is
//! accepted with the right identity headers; every forgery is a 401 with its
//! error code, a `WWW-Authenticate` challenge, and nothing reaches the upstream.

mod support;

use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use support::client::{get, get_bearer};
use support::gateway::TestGateway;
use support::tokens::{self, KEYS, VERIFY_ONLY_KID, assemble, claims, hs256_forgery, now, sign, sign_with};
use support::upstream::Upstream;

fn routes(up: &Upstream) -> String {
    format!("[[route]]\npath = \"/api\"\nupstream = \"{}\"\n", up.url())
}

#[tokio::test]
async fn every_algorithm_family_reaches_the_upstream_with_identity_headers() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&routes(&up)).await;
    for (kid, alg) in KEYS {
        let token = sign(kid, &claims("alice", &["user", "ops"]));
        let reply = get_bearer(&gw.url("/api/orders"), &token).await;
        assert_eq!(reply.status, 200, "{kid} ({alg:?}): {:?}", reply.body);
        let seen = up.last();
        assert_eq!(seen.headers["x-auth-user"], "alice", "{kid}");
        assert_eq!(seen.headers["x-auth-roles"], "user,ops", "{kid}");
        assert!(seen.headers.get("authorization").is_none(), "{kid}: the token must stay at the edge");
    }
    assert_eq!(up.count(), KEYS.len());
}

#[tokio::test]
async fn a_verify_only_key_still_verifies_after_rotation() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&routes(&up)).await;
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(VERIFY_ONLY_KID.into());
    let token = sign_with(&header, &claims("bob", &[]), &tokens::encoding_key(Algorithm::ES256));
    let reply = get_bearer(&gw.url("/api/x"), &token).await;
    assert_eq!(reply.status, 200);
    assert_eq!(up.last().headers["x-auth-user"], "bob");
    assert_eq!(up.last().headers["x-auth-roles"], "");
}

fn with(mut c: Value, key: &str, value: Value) -> Value {
    c[key] = value;
    c
}

fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().expect("object").remove(key);
    c
}

fn es_header(extra: Value) -> Header {
    let mut h = json!({"alg": "ES256", "typ": "at+jwt", "kid": "es256"});
    if let (Some(h), Some(extra)) = (h.as_object_mut(), extra.as_object()) {
        h.extend(extra.clone());
    }
    serde_json::from_value(h).expect("header")
}

/// Signs with the P-256 key under an arbitrary header.
fn es_signed(header: Header, claims: &Value) -> String {
    sign_with(&header, claims, &tokens::encoding_key(Algorithm::ES256))
}

/// Rejected tokens: (case, Authorization value, expected error code).
fn rejection_cases() -> Vec<(String, String, &'static str)> {
    let c = || claims("alice", &["admin"]);
    let stranger_pem = authgate::auth::keys::generate(Algorithm::ES256).expect("key");
    let stranger = jsonwebtoken::EncodingKey::from_ec_pem(stranger_pem.as_bytes()).expect("key");
    let bearer = |t: String| format!("Bearer {t}");
    let valid = sign("es256", &c());
    let (vh, _) = valid.split_once('.').expect("three parts");
    let vsig = valid.rsplit('.').next().expect("signature").to_owned();
    let mut cases: Vec<(String, String, &'static str)> = vec![
        ("expired".into(), bearer(sign("es256", &with(c(), "exp", json!(now() - 120)))), "token_expired"),
        ("not yet valid".into(), bearer(sign("es256", &with(c(), "nbf", json!(now() + 120)))), "token_not_yet_valid"),
        ("wrong aud".into(), bearer(sign("es256", &with(c(), "aud", json!("other")))), "invalid_token"),
        ("empty aud list".into(), bearer(sign("es256", &with(c(), "aud", json!([])))), "invalid_token"),
        ("wrong iss".into(), bearer(sign("es256", &with(c(), "iss", json!("https://evil")))), "invalid_token"),
        ("iss as a list".into(), bearer(sign("es256", &with(c(), "iss", json!(["authgate"])))), "invalid_token"),
        ("iat in the future".into(), bearer(sign("es256", &with(c(), "iat", json!(now() + 3600)))), "invalid_token"),
        ("exp as a string".into(), bearer(sign("es256", &with(c(), "exp", json!("9999999999")))), "invalid_token"),
        ("roles as a string".into(), bearer(sign("es256", &with(c(), "roles", json!("admin")))), "invalid_token"),
        ("nested roles".into(), bearer(sign("es256", &with(c(), "roles", json!([["admin"]])))), "invalid_token"),
        (
            "sub with CRLF".into(),
            bearer(sign("es256", &with(c(), "sub", json!("alice\r\nX-Auth-Roles: admin")))),
            "invalid_token",
        ),
        ("unknown kid".into(), bearer(es_signed(es_header(json!({"kid": "nope"})), &c())), "invalid_token"),
        (
            "kid as path".into(),
            bearer(es_signed(es_header(json!({"kid": "../../../../dev/null"})), &c())),
            "invalid_token",
        ),
        ("no kid, several keys".into(), bearer(es_signed(es_header(json!({"kid": null})), &c())), "invalid_token"),
        ("typ JWT".into(), bearer(es_signed(es_header(json!({"typ": "JWT"})), &c())), "invalid_token"),
        ("typ missing".into(), bearer(es_signed(es_header(json!({"typ": null})), &c())), "invalid_token"),
        ("crit header".into(), bearer(es_signed(es_header(json!({"crit": ["exp2"]})), &c())), "invalid_token"),
        (
            "embedded jwk".into(),
            bearer(es_signed(es_header(json!({"jku": "http://127.0.0.1:9/jwks"})), &c())),
            "invalid_token",
        ),
        (
            "another P-256 key, same kid".into(),
            bearer(sign_with(&es_header(json!({})), &c(), &stranger)),
            "invalid_token",
        ),
        (
            "tampered payload".into(),
            bearer(assemble(
                &json!({"alg": "ES256", "typ": "at+jwt", "kid": "es256"}),
                &with(c(), "sub", json!("root")),
                &vsig,
            )),
            "invalid_token",
        ),
        ("truncated signature".into(), bearer(valid[..valid.len() - 4].to_owned()), "invalid_token"),
        ("empty signature".into(), bearer(format!("{}.", &valid[..valid.rfind('.').expect("dot")])), "invalid_token"),
        ("two segments".into(), bearer(format!("{vh}.e30")), "invalid_token"),
        ("four segments".into(), bearer(format!("{valid}.e30")), "invalid_token"),
        ("over 8 KiB".into(), bearer(sign("es256", &with(c(), "pad", json!("x".repeat(9000))))), "invalid_token"),
        ("Basic scheme".into(), "Basic YWxpY2U6cGFzcw==".into(), "invalid_token"),
        ("double space".into(), format!("Bearer  {valid}"), "invalid_token"),
    ];
    for claim in ["exp", "nbf", "iat", "iss", "aud", "sub", "jti"] {
        cases.push((format!("missing {claim}"), bearer(sign("es256", &without(c(), claim))), "invalid_token"));
    }
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": "es256"});
        cases.push((format!("alg {alg}, empty signature"), bearer(assemble(&header, &c(), "")), "invalid_token"));
        cases.push((format!("alg {alg}, signature kept"), bearer(assemble(&header, &c(), &vsig)), "invalid_token"));
    }
    // RS/ES -> HS confusion: HMAC keyed with the public key, every serialization.
    for (kid, alg) in [("es256", Algorithm::ES256), ("rs256", Algorithm::RS256), ("eddsa", Algorithm::EdDSA)] {
        let public = tokens::public_pem(alg);
        let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
        for secret in [public.clone(), public.trim_end().to_owned()] {
            cases.push((
                format!("HS256 keyed with {kid} public PEM"),
                bearer(hs256_forgery(&header, &c(), secret.as_bytes())),
                "invalid_token",
            ));
        }
    }
    // Family swaps on keys pinned to one algorithm.
    for (kid, alg) in [("rs256", Algorithm::PS256), ("hs256", Algorithm::HS512), ("ps256", Algorithm::RS256)] {
        let mut header = Header::new(alg);
        header.typ = Some("at+jwt".into());
        header.kid = Some(kid.into());
        cases.push((
            format!("{alg:?} on key {kid}"),
            bearer(sign_with(&header, &c(), &tokens::encoding_key(alg))),
            "invalid_token",
        ));
    }
    cases
}

#[tokio::test]
async fn every_forgery_is_refused_and_nothing_reaches_the_upstream() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&routes(&up)).await;
    let url = gw.url("/api/x");

    let missing = get(&url, &[]).await;
    assert_eq!((missing.status, missing.code().as_str()), (401, "missing_token"));
    assert_eq!(missing.headers["www-authenticate"], "Bearer realm=\"authgate\"");

    let cases = rejection_cases();
    for (case, authorization, code) in &cases {
        let started = std::time::Instant::now();
        let reply = get(&url, &[("authorization", authorization.as_str())]).await;
        assert_eq!(reply.status, 401, "{case}: {:?}", reply.body);
        assert_eq!(reply.code(), *code, "{case}");
        let challenge = reply.headers["www-authenticate"].to_str().expect("ascii");
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
            "{case}: {challenge}"
        );
        assert!(!String::from_utf8_lossy(&reply.body).contains("alice"), "{case}: the body echoes a claim");
        assert!(started.elapsed() < std::time::Duration::from_millis(500), "{case}: slow rejection");
    }
    assert_eq!(up.count(), 0, "a rejected request reached the upstream");

    // The control request still passes (the gateway is unharmed).
    let ok = get_bearer(&url, &sign("es256", &claims("alice", &[]))).await;
    assert_eq!(ok.status, 200);
    assert!(cases.len() > 40);
}

#[tokio::test]
async fn auth_modes_none_optional_required() {
    let up = Upstream::start().await;
    let rest = format!(
        "[[route]]\npath = \"/open\"\nupstream = \"{u}\"\nauth = \"none\"\n\
         [[route]]\npath = \"/maybe\"\nupstream = \"{u}\"\nauth = \"optional\"\n\
         [[route]]\npath = \"/admin\"\nupstream = \"{u}\"\nroles = [\"admin\"]\n",
        u = up.url()
    );
    let gw = TestGateway::start(&rest).await;
    let user = sign("es256", &claims("alice", &["user"]));
    let admin = sign("es256", &claims("root", &["admin"]));
    let bad = format!("{user}x");

    // none: a token, even a bad one, is ignored; no identity is forwarded.
    assert_eq!(get_bearer(&gw.url("/open/x"), &bad).await.status, 200);
    assert!(up.last().headers.get("x-auth-user").is_none());

    // optional: anonymous passes without identity; a bad token is 401, never anonymous.
    assert_eq!(get(&gw.url("/maybe/x"), &[]).await.status, 200);
    assert!(up.last().headers.get("x-auth-user").is_none());
    assert_eq!(get_bearer(&gw.url("/maybe/x"), &user).await.status, 200);
    assert_eq!(up.last().headers["x-auth-user"], "alice");
    let refused = get_bearer(&gw.url("/maybe/x"), &bad).await;
    assert_eq!((refused.status, refused.code().as_str()), (401, "invalid_token"));

    // required + roles: 403 for the wrong role, with the RFC 6750 challenge.
    let before = up.count();
    let forbidden = get_bearer(&gw.url("/admin/x"), &user).await;
    assert_eq!((forbidden.status, forbidden.code().as_str()), (403, "insufficient_role"));
    assert!(forbidden.headers["www-authenticate"].to_str().expect("ascii").contains("insufficient_scope"));
    assert_eq!(up.count(), before);
    assert_eq!(get_bearer(&gw.url("/admin/x"), &admin).await.status, 200);
    assert_eq!(up.last().headers["x-auth-roles"], "admin");
}
