#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: its own inputs, a panic is the right failure
//! The request path's hot functions, one by one: token extraction,
//! verification per algorithm (cached and not), route matching with 1 and
//! 200 routes, header hygiene, and the denylist lookup with 1 and 100,000
//! entries. Run with `cargo bench`; `docs/performance.md` has the figures.

use std::hint::black_box;
use std::path::Path;

use authgate::State;
use authgate::auth::keys::LoadMode;
use authgate::config::Config;
use authgate::headers;
use authgate::store::Revocation;
use authgate::store::denylist::Replica;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};

const ALGS: [(&str, &str); 4] = [("hs", "HS256"), ("es", "ES256"), ("rs", "RS256"), ("ed", "EdDSA")];

/// A state with one key per family, in a temporary directory; `cache` is
/// `verify_cache`. Key files already there are kept (tokens stay valid).
fn state(dir: &Path, cache: usize, routes: usize) -> State {
    let mut keys = String::new();
    for (kid, alg) in ALGS {
        let algorithm = alg.parse().expect("algorithm");
        let file = dir.join(kid);
        if !file.exists() {
            std::fs::write(&file, authgate::auth::keys::generate(algorithm).expect("generate")).expect("write key");
        }
        let field = if alg == "HS256" { "secret_file" } else { "private_key_file" };
        keys.push_str(&format!(
            "[[tokens.keys]]\nkid = \"{kid}\"\nalgorithm = \"{alg}\"\n{field} = \"{}\"\n",
            file.display()
        ));
    }
    let mut table = String::new();
    for i in 0..routes {
        table.push_str(&format!("[[route]]\npath = \"/svc{i}/api\"\nupstream = \"http://127.0.0.1:9\"\n"));
    }
    let src = format!(
        "[server]\nhttp = \"127.0.0.1:0\"\n[tokens]\nsigning_key = \"es\"\nverify_cache = {cache}\n{keys}{table}"
    );
    let config = Config::from_str(&src, &dir.join("gateway.toml")).expect("config");
    State::build(config, LoadMode::Run).expect("state")
}

/// An access token signed by the key file `dir/kid`.
fn token(dir: &Path, kid: &str, alg: &str) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let pem = std::fs::read(dir.join(kid)).expect("key file");
    let algorithm: Algorithm = alg.parse().expect("algorithm");
    let key = match algorithm {
        Algorithm::HS256 => EncodingKey::from_secret(String::from_utf8_lossy(&pem).trim_end().as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).expect("ec"),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).expect("ed"),
        _ => EncodingKey::from_rsa_pem(&pem).expect("rsa"),
    };
    let mut header = Header::new(algorithm);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.into());
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({
        "iss": "authgate", "aud": "api", "sub": "alice", "iat": now, "nbf": now, "exp": now + 600,
        "jti": "bench", "roles": ["user"],
    });
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

fn verification(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (cache, label) in [(0, "uncached"), (10_000, "cached")] {
        let state = state(dir.path(), cache, 1);
        for (kid, alg) in ALGS {
            let token = token(dir.path(), kid, alg);
            c.bench_function(&format!("verify/{alg}/{label}"), |b| {
                b.iter(|| state.verifier.verify(black_box(&token)).expect("valid"))
            });
        }
    }
}

fn extraction(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    let value = format!("Bearer {}", "a".repeat(300));
    headers.insert(http::header::AUTHORIZATION, HeaderValue::from_str(&value).expect("value"));
    c.bench_function("extract/bearer", |b| {
        b.iter(|| authgate::auth::extract::bearer_token(black_box(&headers)).expect("ok"))
    });
}

fn routing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    for routes in [1, 200] {
        let state = state(dir.path(), 0, routes);
        let path = format!("/svc{}/api/orders/42", routes - 1);
        c.bench_function(&format!("route/{routes}-routes"), |b| {
            b.iter(|| state.router.route(&Method::GET, None, black_box(&path), None).expect("routed").route.path.len())
        });
    }
}

fn hygiene(c: &mut Criterion) {
    let config = Config::from_str("[server]\nhttp = \"127.0.0.1:0\"\n", Path::new("b.toml")).expect("config").headers;
    let mut template = HeaderMap::new();
    for (n, v) in [
        ("host", "api.example.com"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("connection", "keep-alive, x-drop"),
        ("x-drop", "1"),
        ("x-auth-user", "spoof"),
        ("x-request-id", "abc"),
        ("cookie", "a=1; b=2"),
    ] {
        template.insert(http::HeaderName::from_static(n), HeaderValue::from_static(v));
    }
    c.bench_function("headers/hygiene", |b| {
        b.iter_batched(
            || template.clone(),
            |mut h| {
                headers::remove_hop_by_hop(&mut h);
                headers::strip_identity(&mut h, &config);
                h
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn denylist(c: &mut Criterion) {
    for entries in [1usize, 100_000] {
        let replica = Replica::default();
        for i in 0..entries {
            replica.apply(&Revocation::Jti { jti: format!("jti-{i}"), expires_at: u64::MAX / 2 });
        }
        c.bench_function(&format!("denylist/{entries}-entries"), |b| {
            b.iter(|| replica.is_revoked(black_box("jti-not-revoked"), black_box("alice"), 1_700_000_000, None))
        });
    }
}

criterion_group!(benches, extraction, verification, routing, hygiene, denylist);
criterion_main!(benches);
