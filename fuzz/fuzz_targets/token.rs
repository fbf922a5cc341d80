//! Token extraction and verification: never panic, and never accept what
//! the fuzzer made (it holds no key). The verifier has keys of three
//! families, so every header/`kid`/`alg` path is reachable.
#![no_main]

use std::sync::OnceLock;

use authgate::State;
use authgate::auth::keys::LoadMode;
use authgate::config::Config;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("authgate-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("key dir");
        let mut keys = String::new();
        for (kid, alg) in [("es", "ES256"), ("rs", "RS256"), ("ed", "EdDSA"), ("hs", "HS256")] {
            let algorithm = alg.parse().expect("algorithm");
            let file = dir.join(kid);
            std::fs::write(&file, authgate::auth::keys::generate(algorithm).expect("generate")).expect("write key");
            let field = if alg == "HS256" { "secret_file" } else { "private_key_file" };
            keys.push_str(&format!(
                "[[tokens.keys]]\nkid = \"{kid}\"\nalgorithm = \"{alg}\"\n{field} = \"{}\"\n",
                file.display()
            ));
        }
        let src = format!(
            "[server]\nhttp = \"127.0.0.1:0\"\n[tokens]\nissuer = \"authgate\"\naudience = \"api\"\n\
             signing_key = \"es\"\nverify_cache = 0\n{keys}"
        );
        let config = Config::from_str(&src, &dir.join("gateway.toml")).expect("config");
        State::build(config, LoadMode::Run).expect("state")
    })
}

fuzz_target!(|data: &[u8]| {
    let state = state();
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(data) {
        headers.insert(http::header::AUTHORIZATION, value);
        if let Ok(Some(token)) = authgate::auth::extract::bearer_token(&headers) {
            assert!(state.verifier.verify(token).is_err(), "a token without a key was accepted");
        }
    }
    if let Ok(token) = std::str::from_utf8(data) {
        assert!(state.verifier.verify(token).is_err(), "a token without a key was accepted");
    }
});
