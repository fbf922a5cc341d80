//! The clients to upstreams: which endpoint, over which transport, within
//! which timeouts, and when a failed attempt is tried again elsewhere.
//!
//! Owns the transports (`http://` HTTP/1.1 over `h1`'s connections, driven
//! by the requests using them; `h2c://` HTTP/2 with prior knowledge and
//! `https://` TLS with HTTP/1.1 or HTTP/2 by ALPN over hyper-util's pools,
//! one per upstream on each worker thread), the connect timeout
//! (inside the connector) and the response timeout (until the response
//! head), retries, and the classification of failures: could not connect ->
//! unavailable (502), every endpoint full -> busy (503), took too long ->
//! timeout (504). Choosing an endpoint and ejecting a failing one is
//! `balance`'s. It sends what it is given; deciding what to send is the proxy's.
//!
//! A retry goes to another endpoint, at most three attempts in all, and only
//! when the request can be sent again whole: after a failed connect or a full
//! endpoint (nothing was sent), or, for an idempotent method, after an
//! exchange that broke before any response byte, and then only if the
//! request body was empty or never read. A response timeout is not retried:
//! `upstream_timeout` bounds the whole wait.

pub mod balance;
pub mod h1;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{Body, BoxError};
use crate::config::{Limits, Route, Upstream, UpstreamTls};
use crate::metrics::{Metrics, UpstreamHandles};
use balance::{Endpoint, Endpoints, Lease};
pub use h1::Driven;
use h1::H1Error;

const MAX_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unavailable")]
    Unavailable(#[source] BoxError),
    #[error("every endpoint of the upstream is at upstream_max_connections")]
    Busy,
    #[error("upstream timed out ({0})")]
    Timeout(&'static str),
    #[error("upstream request failed")]
    Request(#[source] BoxError),
    #[error("upstream refused the upgrade: {0}")]
    BadUpgrade(&'static str),
}

impl UpstreamError {
    /// The `kind` label of `upstream_errors`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Unavailable(_) => "connect",
            UpstreamError::Busy => "busy",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Request(_) | UpstreamError::BadUpgrade(_) => "broken",
        }
    }
}

/// How one upstream is reached: `h1`'s connections, or the connector each
/// worker's hyper-util pool is built on.
#[derive(Clone)]
enum Transport {
    Http1,
    Pooled(Connector),
}

/// What a hyper-util pool connects with.
#[derive(Clone)]
enum Connector {
    H2c(HttpConnector),
    /// Its own CA, server name and client certificate.
    Tls(HttpsConnector<HttpConnector>),
}

/// One worker's hyper-util pool for one `h2c://` or `https://` upstream.
enum Pool {
    Plain(Client<HttpConnector, Body>),
    Tls(Client<HttpsConnector<HttpConnector>, Body>),
}

impl Pool {
    fn request(&self, request: Request<Body>) -> hyper_util::client::legacy::ResponseFuture {
        match self {
            Pool::Plain(client) => client.request(request),
            Pool::Tls(client) => client.request(request),
        }
    }
}

thread_local! {
    /// This worker's pools, one per upstream (thread per core): a pooled
    /// connection's task runs on the worker that opened it, so a request
    /// never wakes another thread. The `Weak` keeps a dropped backend's
    /// address from being reused while its entry is here; entries of
    /// backends gone with a reload are dropped at the next miss.
    static POOLS: std::cell::RefCell<Vec<(std::sync::Weak<Backend>, Pool)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One upstream: its endpoints and how they are reached. Routes with the
/// same upstream (endpoints, scheme and TLS settings) share one, so they
/// share its health and its connection caps.
pub struct Backend {
    /// The upstream's addresses as written: the metrics' label.
    pub label: String,
    transport: Transport,
    pub endpoints: Arc<Endpoints>,
    handles: OnceLock<UpstreamHandles>,
}

/// A response head, and the hold on its endpoint that the response body must
/// keep until it ends (it counts in flight and holds a connection slot).
pub struct Exchange {
    pub response: Response<Driven>,
    pub lease: Lease,
}

pub struct Upstreams {
    backends: Vec<Arc<Backend>>,
    /// Index into `backends`, by route index.
    by_route: Vec<Option<usize>>,
    connect_timeout: Duration,
    response_timeout: Duration,
    resolve_interval: Duration,
}

impl Upstreams {
    /// Builds one backend per distinct upstream of `routes`. TLS set-ups are
    /// read here (CA and client certificate files), so a bad file is a
    /// config problem at load, not a 502 later: `Err` names the route.
    pub fn new(routes: &[Route], limits: &Limits) -> Result<Upstreams, Vec<(usize, String)>> {
        let connector = tcp_connector(limits, true);
        let mut backends: Vec<Arc<Backend>> = Vec::new();
        let mut keys: Vec<(&[http::uri::Authority], bool, Option<&UpstreamTls>)> = Vec::new();
        let mut by_route = Vec::with_capacity(routes.len());
        let mut errors = Vec::new();
        for (index, route) in routes.iter().enumerate() {
            let Upstream::Http { endpoints: written, h2, tls, .. } = &route.upstream else {
                by_route.push(None);
                continue;
            };
            let key = (written.as_slice(), *h2, tls.as_ref());
            if let Some(existing) = keys.iter().position(|k| *k == key) {
                by_route.push(Some(existing));
                continue;
            }
            let default_port = if tls.is_some() { 443 } else { 80 };
            let endpoints = Arc::new(Endpoints::new(written.clone(), default_port, limits.upstream_max_connections));
            let transport = match (tls, h2) {
                (Some(tls), _) => match tls_connector(tls, limits, endpoints.clone()) {
                    Ok(connector) => Transport::Pooled(Connector::Tls(connector)),
                    Err(message) => {
                        errors.push((index, message));
                        by_route.push(None);
                        continue;
                    }
                },
                (None, true) => Transport::Pooled(Connector::H2c(connector.clone())),
                (None, false) => Transport::Http1,
            };
            if tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
                tracing::warn!(route = route.path, "upstream certificates are NOT verified (insecure_skip_verify)");
            }
            let label = route.upstream.addresses().to_string();
            backends.push(Arc::new(Backend { label, transport, endpoints, handles: OnceLock::new() }));
            keys.push(key);
            by_route.push(Some(backends.len() - 1));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Upstreams {
            backends,
            by_route,
            connect_timeout: limits.upstream_connect_timeout,
            response_timeout: limits.upstream_timeout,
            resolve_interval: limits.upstream_resolve_interval,
        })
    }

    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// Starts resolving the upstreams written as DNS names, now and every
    /// `upstream_resolve_interval`; each task ends when its backend is dropped (a reload).
    pub fn start_resolving(&self) {
        for backend in self.backends.iter().filter(|b| b.endpoints.has_names()) {
            let endpoints = Arc::downgrade(&backend.endpoints);
            let interval = self.resolve_interval;
            tokio::spawn(async move {
                loop {
                    let Some(endpoints) = endpoints.upgrade() else { return };
                    endpoints.resolve().await;
                    drop(endpoints);
                    tokio::time::sleep(interval).await;
                }
            });
        }
    }

    /// Sends the request of route `route` to one of its upstream's endpoints
    /// (`path_and_query` appended to it), trying others as the module doc
    /// says, and waits for the response head within the timeouts.
    pub async fn send(
        &self,
        route: usize,
        parts: Parts,
        path_and_query: &str,
        body: Body,
        metrics: &Metrics,
    ) -> Result<Exchange, UpstreamError> {
        let backend = match self.by_route.get(route).copied().flatten() {
            Some(index) => &self.backends[index],
            None => return Err(UpstreamError::Unavailable("no upstream for this route".into())),
        };
        let handles = backend.handles.get_or_init(|| metrics.upstream(&backend.label));
        let endpoints = &backend.endpoints;
        // What a retry needs, kept only where one is possible.
        let retry = (endpoints.count() > 1).then(|| Resend::new(&parts, &body));
        let (body, slot) = match &retry {
            Some(r) if !r.empty => Held::hold(body),
            _ => (body, None),
        };
        let mut request = Some(Request::from_parts(parts, body));
        let mut tried: Vec<Arc<Endpoint>> = Vec::new();
        loop {
            let Some(endpoint) = endpoints.pick(&tried) else {
                return Err(UpstreamError::Unavailable("no endpoint left to try".into()));
            };
            let Some(attempt) = request.take().or_else(|| retry.as_ref().and_then(|r| r.again(slot.as_ref()))) else {
                return Err(UpstreamError::Unavailable("the request cannot be sent again".into()));
            };
            handles.requests.inc();
            let failure = match Endpoints::lease(&endpoint, self.connect_timeout).await {
                None => Failure { error: UpstreamError::Busy, nothing_sent: true, eject: false },
                Some(lease) => match self.exchange(backend, &endpoint, attempt, path_and_query).await {
                    Ok(response) => {
                        if endpoints.succeeded(&endpoint) {
                            tracing::info!(upstream = backend.label, endpoint = %endpoint.authority, "upstream endpoint back in");
                        }
                        return Ok(Exchange { response, lease });
                    }
                    Err(failure) => failure,
                },
            };
            handles.error(failure.error.kind());
            if failure.eject {
                let backoff = endpoints.failed(&endpoint);
                handles.ejections.inc();
                tracing::warn!(
                    upstream = backend.label,
                    endpoint = %endpoint.authority,
                    error = %crate::report::chain(&failure.error),
                    backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                    "upstream endpoint ejected"
                );
            }
            let again = retry.as_ref().is_some_and(|r| {
                tried.len() + 1 < MAX_ATTEMPTS.min(endpoints.count())
                    && (failure.nothing_sent || (r.idempotent && matches!(failure.error, UpstreamError::Request(_))))
                    && r.can_resend(slot.as_ref())
            });
            if !again {
                return Err(failure.error);
            }
            handles.retries.inc();
            tried.push(endpoint);
        }
    }

    async fn exchange(
        &self,
        backend: &Arc<Backend>,
        endpoint: &Arc<Endpoint>,
        mut request: Request<Body>,
        path_and_query: &str,
    ) -> Result<Response<Driven>, Failure> {
        let sent = async {
            match &backend.transport {
                Transport::Http1 => {
                    // The client's origin-form target, when it is exactly what
                    // the upstream gets, goes as it is (no copy, no second parse).
                    let uri = request.uri();
                    let unchanged = uri.scheme().is_none()
                        && uri.authority().is_none()
                        && uri.path_and_query().is_some_and(|target| target.as_str() == path_and_query);
                    if !unchanged {
                        *request.uri_mut() =
                            Uri::try_from(path_and_query).map_err(|e| Broke::Unsendable(Box::new(e)))?;
                    }
                    let keep = backend.endpoints.max_connections();
                    h1::send(endpoint, request, self.connect_timeout, keep).await.map_err(Broke::from)
                }
                Transport::Pooled(connector) => {
                    *request.uri_mut() =
                        backend.uri(connector, endpoint, path_and_query).map_err(|e| Broke::Unsendable(Box::new(e)))?;
                    let sent = backend.request(connector, request).await;
                    sent.map(|response| response.map(Driven::pooled)).map_err(Broke::from)
                }
            }
        };
        match tokio::time::timeout(self.response_timeout, sent).await {
            Err(_) => Err(Failure {
                error: UpstreamError::Timeout("no response headers within upstream_timeout"),
                nothing_sent: false,
                eject: true,
            }),
            Ok(sent) => sent.map_err(Failure::from),
        }
    }
}

impl Backend {
    /// Starts the request on this worker's pool for this upstream (made on first use).
    fn request(
        self: &Arc<Backend>,
        connector: &Connector,
        request: Request<Body>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        POOLS.with_borrow_mut(|pools| {
            let mine = |entry: &&(std::sync::Weak<Backend>, Pool)| std::ptr::eq(entry.0.as_ptr(), Arc::as_ptr(self));
            if let Some((_, pool)) = pools.iter().find(mine) {
                return pool.request(request);
            }
            pools.retain(|(backend, _)| backend.strong_count() > 0);
            let builder = client_builder(self.endpoints.max_connections());
            let pool = match connector {
                Connector::H2c(connector) => Pool::Plain(builder.clone().http2_only(true).build(connector.clone())),
                Connector::Tls(connector) => Pool::Tls(builder.build(connector.clone())),
            };
            let sent = pool.request(request);
            pools.push((Arc::downgrade(self), pool));
            sent
        })
    }

    fn uri(&self, connector: &Connector, endpoint: &Endpoint, path_and_query: &str) -> Result<Uri, http::Error> {
        let scheme = if matches!(connector, Connector::Tls(_)) { "https" } else { "http" };
        Uri::builder().scheme(scheme).authority(endpoint.authority.clone()).path_and_query(path_and_query).build()
    }
}

/// How an attempt failed, from either client, before the retry rules read it.
enum Broke {
    /// The request could not be addressed to the endpoint: nothing was sent.
    Unsendable(BoxError),
    ConnectTimeout,
    /// No connection (refused, unreachable, TLS refused): nothing was sent.
    Refused(BoxError),
    /// The exchange broke after the request was handed to a connection.
    Exchange(BoxError),
}

impl From<H1Error> for Broke {
    fn from(e: H1Error) -> Broke {
        match e {
            H1Error::ConnectTimeout => Broke::ConnectTimeout,
            H1Error::Connect(_) => Broke::Refused(Box::new(e)),
            H1Error::Exchange(_) => Broke::Exchange(Box::new(e)),
        }
    }
}

impl From<hyper_util::client::legacy::Error> for Broke {
    fn from(e: hyper_util::client::legacy::Error) -> Broke {
        match (e.is_connect(), is_timeout(&e)) {
            (true, true) => Broke::ConnectTimeout,
            (true, false) => Broke::Refused(Box::new(e)),
            (false, _) => Broke::Exchange(Box::new(e)),
        }
    }
}

impl From<Broke> for Failure {
    fn from(broke: Broke) -> Failure {
        let (error, nothing_sent, eject) = match broke {
            Broke::Unsendable(e) => (UpstreamError::Request(e), true, false),
            Broke::ConnectTimeout => (UpstreamError::Timeout("connect timeout"), true, true),
            Broke::Refused(e) => (UpstreamError::Unavailable(e), true, true),
            Broke::Exchange(e) => (UpstreamError::Request(e), false, false),
        };
        Failure { error, nothing_sent, eject }
    }
}

/// One failed attempt and what it allows.
struct Failure {
    error: UpstreamError,
    /// No byte of the request left the gateway: any method may be retried.
    nothing_sent: bool,
    /// The endpoint refused or timed out: it sits out a backoff.
    eject: bool,
}

/// The request's head, kept to send it again.
struct Resend {
    method: Method,
    version: Version,
    headers: HeaderMap,
    idempotent: bool,
    /// The body was empty: any attempt can have an empty one.
    empty: bool,
}

impl Resend {
    fn new(parts: &Parts, body: &Body) -> Resend {
        Resend {
            method: parts.method.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            idempotent: parts.method.is_idempotent(),
            empty: hyper::body::Body::is_end_stream(body),
        }
    }

    fn can_resend(&self, slot: Option<&Slot>) -> bool {
        self.empty || slot.is_some_and(|s| s.lock().is_ok_and(|b| b.is_some()))
    }

    /// The request again, if its body was empty or never read.
    fn again(&self, slot: Option<&Slot>) -> Option<Request<Body>> {
        let body = if self.empty {
            crate::body::empty()
        } else if self.can_resend(slot) {
            // The same slot again: if this attempt never reads the body
            // either, the next one can still have it.
            Held::reading(slot?.clone())
        } else {
            return None;
        };
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        Some(request)
    }
}

type Slot = Arc<Mutex<Option<Body>>>;

/// A request body that stays in its slot until the client first reads it:
/// an attempt that never got to send it leaves it there for the next one.
struct Held {
    taken: Option<Body>,
    slot: Slot,
}

impl Held {
    fn hold(body: Body) -> (Body, Option<Slot>) {
        let slot: Slot = Arc::new(Mutex::new(Some(body)));
        (Held::reading(slot.clone()), Some(slot))
    }

    /// A body for one attempt, taken from `slot` only when first read.
    fn reading(slot: Slot) -> Body {
        http_body_util::BodyExt::boxed_unsync(Held { taken: None, slot })
    }

    fn peek<T>(&self, f: impl FnOnce(&Body) -> T, otherwise: T) -> T {
        match &self.taken {
            Some(body) => f(body),
            None => match self.slot.lock() {
                Ok(guard) => guard.as_ref().map_or(otherwise, f),
                Err(_) => otherwise,
            },
        }
    }
}

impl hyper::body::Body for Held {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if self.taken.is_none() {
            let taken = self.slot.lock().ok().and_then(|mut b| b.take());
            self.taken = taken;
        }
        match self.taken.as_mut() {
            Some(body) => std::pin::Pin::new(body).poll_frame(cx),
            None => std::task::Poll::Ready(Some(Err("the request body was already sent".into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.peek(|b| b.is_end_stream(), false)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.peek(|b| b.size_hint(), hyper::body::SizeHint::default())
    }
}

/// The TLS connector of one `https://` upstream: its CA or none checked, its
/// client certificate, and the server name: `server_name`, else the host as
/// written for the endpoint an address came from (not the address).
fn tls_connector(
    tls: &UpstreamTls,
    limits: &Limits,
    endpoints: Arc<Endpoints>,
) -> Result<HttpsConnector<HttpConnector>, String> {
    let client_cert = tls.client_cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    let config = crate::client_tls::client_config(tls.ca_file.as_deref(), client_cert, tls.insecure_skip_verify)?;
    let fixed = match &tls.server_name {
        Some(name) => Some(rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| e.to_string())?),
        None => None,
    };
    let resolver = move |uri: &Uri| -> Result<rustls::pki_types::ServerName<'static>, BoxError> {
        if let Some(name) = &fixed {
            return Ok(name.clone());
        }
        let authority = uri.authority().ok_or("no host in the upstream address")?;
        let host = endpoints.written_host(authority.as_str()).unwrap_or_else(|| authority.host().to_owned());
        Ok(rustls::pki_types::ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_owned())?)
    };
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .with_server_name_resolver(resolver)
        .enable_all_versions()
        .wrap_connector(tcp_connector(limits, false)))
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
/// minute (at most `upstream_max_connections` per endpoint), and `Host`
/// left as the gateway set it.
fn client_builder(idle_per_endpoint: usize) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(idle_per_endpoint)
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
