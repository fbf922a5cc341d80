//! Properties that must hold for every input, not only the cases someone
//! thought of: the path normaliser, the token extractor, header hygiene and
//! the config parser (proptest).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

use std::path::Path;

use authgate::config::Config;
use authgate::headers;
use authgate::path::normalize;
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

/// Paths built from the pieces attacks are made of.
fn hostile_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E%2e".to_owned()),
        Just("%2f".to_owned()),
        Just("%5C".to_owned()),
        Just("%00".to_owned()),
        Just("%41".to_owned()),
        Just("%7e".to_owned()),
        Just("%".to_owned()),
        Just(";".to_owned()),
        "[a-zA-Z0-9_~-]{1,6}",
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|parts| format!("/{}", parts.concat()))
}

proptest! {
    #[test]
    fn normalizing_is_idempotent_and_never_escapes_the_root(path in hostile_path()) {
        if let Ok(once) = normalize(&path) {
            prop_assert!(once.starts_with('/'));
            let twice = normalize(&once);
            prop_assert_eq!(twice.as_deref(), Ok(once.as_str()), "not idempotent");
            for segment in once.split('/') {
                prop_assert!(segment != ".." && segment != ".", "a dot segment survived: {}", once);
                prop_assert!(!segment.to_ascii_lowercase().contains("%2f") && !segment.to_ascii_lowercase().contains("%5c"));
            }
            prop_assert!(!once.contains("//"), "an empty segment survived: {}", once);
        }
    }

    #[test]
    fn the_route_decided_is_the_route_the_forwarded_path_gets(path in hostile_path()) {
        let src = "[server]\nhttp = \"127.0.0.1:0\"\n\
            [[route]]\npath = \"/public\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\n\
            [[route]]\npath = \"/admin\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\n\
            [[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"none\"\n";
        let router = authgate::router::Router::new(Config::from_str(src, Path::new("p.toml")).expect("config").routes);
        if let Ok(first) = router.route(&http::Method::GET, None, &path, None) {
            let again = router.route(&http::Method::GET, None, &first.upstream_path_and_query, None).expect("forwarded path routes");
            prop_assert_eq!(&first.route.path, &again.route.path, "decided on one route, the upstream path gets another");
        }
    }

    #[test]
    fn no_client_header_with_the_identity_prefix_survives(
        names in proptest::collection::vec("(x|X)-(a|A)(u|U)(t|T)(h|H)-[a-zA-Z0-9-]{0,12}", 1..8),
        others in proptest::collection::vec("[a-z][a-z0-9-]{0,12}", 0..6),
        connection in "[a-zA-Z0-9, -]{0,40}",
    ) {
        let config = Config::from_str("[server]\nhttp = \"127.0.0.1:0\"\n", Path::new("p.toml")).expect("config").headers;
        let mut map = HeaderMap::new();
        for n in names.iter().chain(&others) {
            if let Ok(name) = HeaderName::from_bytes(n.as_bytes()) {
                map.append(name, HeaderValue::from_static("spoofed"));
            }
        }
        if let Ok(v) = HeaderValue::from_str(&connection) {
            map.insert(http::header::CONNECTION, v);
        }
        headers::remove_hop_by_hop(&mut map);
        headers::strip_identity(&mut map, &config);
        prop_assert!(map.keys().all(|k| !k.as_str().starts_with("x-auth-")), "{:?}", map);
        prop_assert!(!map.contains_key(http::header::CONNECTION));
    }

    #[test]
    fn the_token_extractor_never_panics_and_returns_what_follows_bearer(value in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut map = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            map.insert(http::header::AUTHORIZATION, v);
        }
        if let Ok(Some(token)) = authgate::auth::extract::bearer_token(&map) {
            prop_assert!(!token.is_empty() && !token.contains(' '));
            let text = String::from_utf8_lossy(&value);
            prop_assert!(text.ends_with(token));
        }
    }

    #[test]
    fn the_config_parser_never_panics(text in "(\\[\\[?[a-z.]{0,12}\\]?\\]|[a-z_]{1,12} = (\"[^\"\\n]{0,20}\"|[0-9]{1,5}|true|\\[\\])|\\n){0,30}") {
        let _ = Config::from_str(&text, Path::new("fuzz.toml"));
    }

    #[test]
    fn the_config_parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = Config::from_str(&text, Path::new("fuzz.toml"));
    }
}
