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
use crate::config::{Limits, UpstreamTls};
use hyper_rustls::HttpsConnector;

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
    /// One client per `https://` route (its own CA, server name, client
    /// certificate, pool), by route index.
    tls: std::collections::HashMap<usize, Client<HttpsConnector<HttpConnector>, Body>>,
    response_timeout: Duration,
}

/// How a request reaches its upstream.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    Http1,
    H2c,
    /// TLS, with the client of this route (index in the config).
    Tls(usize),
}

impl UpstreamClient {
    pub fn new(limits: &Limits) -> UpstreamClient {
        let connector = tcp_connector(limits, true);
        let client = client_builder().build(connector.clone());
        let h2c = client_builder().http2_only(true).build(connector);
        UpstreamClient { client, h2c, tls: Default::default(), response_timeout: limits.upstream_timeout }
    }

    /// Adds the TLS client of `https://` route `index`: the TLS set-up is
    /// read here (CA and client certificate files), so a bad file is a
    /// config problem at load, not a 502 later.
    pub fn add_tls(&mut self, index: usize, tls: &UpstreamTls, limits: &Limits) -> Result<(), String> {
        let client_cert = tls.client_cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        let config = crate::tls::client_config(tls.ca_file.as_deref(), client_cert)?;
        let http = tcp_connector(limits, false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_only();
        let builder = match &tls.server_name {
            Some(name) => {
                let name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| e.to_string())?;
                builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
            }
            None => builder,
        };
        let connector = builder.enable_all_versions().wrap_connector(http);
        let client = client_builder().build(connector);
        self.tls.insert(index, client);
        Ok(())
    }

    /// Sends a request and waits for the response head, within the timeouts;
    /// `h2`: over HTTP/2 with prior knowledge.
    pub async fn send(&self, request: Request<Body>, via: Via) -> Result<Response<Incoming>, UpstreamError> {
        let sent = match via {
            Via::Http1 => self.client.request(request),
            Via::H2c => self.h2c.request(request),
            Via::Tls(index) => match self.tls.get(&index) {
                Some(client) => client.request(request),
                None => return Err(UpstreamError::Unavailable("no TLS client for this route".into())),
            },
        };
        match tokio::time::timeout(self.response_timeout, sent).await {
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

/// The TCP side of every upstream connection: the connect timeout, no Nagle;
/// `plain_only` refuses anything but `http://` (the TLS connector wraps one that does not).
fn tcp_connector(limits: &Limits, plain_only: bool) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(limits.upstream_connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(plain_only);
    connector
}

/// Every upstream client's pool: tokio timers, idle connections kept a
/// minute, and `Host` left as the gateway set it.
fn client_builder() -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .set_host(false);
    builder
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
