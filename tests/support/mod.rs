//! Real parts for integration tests: a recording upstream, the gateway
//! in-process on free loopback ports, keys and tokens, and clients.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod attack;
pub mod browser;
pub mod client;
pub mod fleet;
pub mod gateway;
pub mod h2raw;
pub mod ingress;
pub mod jwks;
pub mod oidc;
pub mod process;
pub mod python;
pub mod redis;
pub mod tokens;
pub mod upstream;

use std::future::Future;
use std::time::Duration;

/// Polls `probe` until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
