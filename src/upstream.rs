//! The pooled HTTP/1.1 client to upstreams, with its timeouts.
//!
//! Owns connection reuse (hyper-util's pool), the connect timeout (inside the
//! connector) and the response timeout (until the upstream's response
//! headers), and classifies failures: could not connect -> unavailable (502),
//! took too long -> timeout (504). It sends what it is given; deciding what
//! to send is `forward`'s job.

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{Body, BoxError};
use crate::config::Limits;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unavailable")]
    Unavailable(#[source] BoxError),
    #[error("upstream timed out ({0})")]
    Timeout(&'static str),
    #[error("upstream request failed")]
    Request(#[source] BoxError),
    #[error("upstream refused the upgrade: {0}")]
    BadUpgrade(&'static str),
}

#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<HttpConnector, Body>,
    /// HTTP/2 with prior knowledge (`h2c://` upstreams: gRPC services).
    h2c: Client<HttpConnector, Body>,
    response_timeout: Duration,
}

impl UpstreamClient {
    pub fn new(limits: &Limits) -> UpstreamClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(limits.upstream_connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .set_host(false);
            b
        };
        let client = builder().build(connector.clone());
        let h2c = builder().http2_only(true).build(connector);
        UpstreamClient { client, h2c, response_timeout: limits.upstream_timeout }
    }

    /// Sends a request and waits for the response head, within the timeouts;
    /// `h2`: over HTTP/2 with prior knowledge.
    pub async fn send(&self, request: Request<Body>, h2: bool) -> Result<Response<Incoming>, UpstreamError> {
        let client = if h2 { &self.h2c } else { &self.client };
        match tokio::time::timeout(self.response_timeout, client.request(request)).await {
            Err(_) => Err(UpstreamError::Timeout("no response headers within upstream_timeout")),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.is_connect() => {
                if is_timeout(&e) {
                    Err(UpstreamError::Timeout("connect timeout"))
                } else {
                    Err(UpstreamError::Unavailable(Box::new(e)))
                }
            }
            Ok(Err(e)) => Err(UpstreamError::Request(Box::new(e))),
        }
    }
}

fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        current = e.source();
    }
    false
}
