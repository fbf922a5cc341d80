//! Listeners: accepting connections and serving HTTP on them.
//!
//! Owns the three listeners (plain, TLS, admin), the accept loop (a
//! connection cap, backoff on accept errors such as EMFILE), one task per
//! connection (the TLS handshake runs inside it, under a timeout, so a slow
//! client never stalls the accept loop), hyper's per-connection limits
//! (header read timeout, header size and count), and the drain on shutdown.
//! What a request means is `crate::proxy`'s business; this module only
//! moves bytes to it. "Downstream" is the client side, "upstream" the backend.

pub mod admin;
mod idle;
pub mod reload;
pub mod tls;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::Limits;
use crate::state::State;

/// The client end of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Downstream {
    pub peer: SocketAddr,
    /// Whether the connection arrived over TLS.
    pub tls: bool,
}

/// Liveness and readiness, shared with the admin listener.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// The bound addresses (useful with port 0).
#[derive(Debug, Clone, Copy, Default)]
pub struct Addresses {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Serves a connection; on shutdown asks it to finish gracefully (HTTP/1:
/// close after the current response; HTTP/2: GOAWAY) and waits for it.
/// Holding `stop` until the end is what `Gateway::shutdown` waits on. An
/// idle connection (see `idle`) is finished the same way.
/// (A macro, not a generic fn: rustc cannot prove such a fn's future `Send`.)
macro_rules! drain_on_stop {
    ($conn:expr, $stop:expr, $peer:expr, $idle:expr) => {{
        let mut stop = $stop;
        let (activity, limits): (&idle::Activity, &Limits) = $idle;
        let mut conn = std::pin::pin!($conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = async { let _ = stop.wait_for(|stopping| *stopping).await; } => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            () = activity.idle_for(limits.header_read_timeout, limits.idle_timeout) => {
                tracing::debug!(peer = %$peer, "idle connection closed");
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(peer = %$peer, error = %e, "connection ended with an error");
        }
    }};
}

#[derive(Clone, Copy)]
enum Kind {
    Plain,
    Tls,
    Admin,
}

struct Shared {
    state: Arc<ArcSwap<State>>,
    metrics: Arc<crate::metrics::Metrics>,
    health: Arc<Health>,
    http: auto::Builder<TokioExecutor>,
    connections: Arc<Semaphore>,
    limits: Limits,
}

/// A running gateway: its addresses and the means to stop it.
pub struct Gateway {
    pub addresses: Addresses,
    pub health: Arc<Health>,
    pub state: Arc<ArcSwap<State>>,
    /// Flips to `true` on shutdown; every data accept loop and connection holds a receiver.
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// The admin listener answers (readyz: 503 draining) until the very end.
    admin_stop: watch::Sender<bool>,
    admin: Option<tokio::task::JoinHandle<()>>,
    grace: Duration,
}

impl Gateway {
    /// Binds every configured listener (all or none) and starts serving.
    pub async fn start(state: State) -> Result<Gateway, ServerError> {
        let server = &state.config.server;
        let bind = |addr: Option<SocketAddr>| async move {
            match addr {
                None => Ok(None),
                Some(addr) => listen(addr).map(Some).map_err(|source| ServerError::Bind { addr, source }),
            }
        };
        let http = bind(server.http).await?;
        let https = bind(server.https).await?;
        let admin = bind(server.admin).await?;
        let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let addresses = Addresses { http: local(&http), https: local(&https), admin: local(&admin) };
        let limits = server.limits.clone();
        state.start_background();
        let health = Arc::new(Health::default());
        let state = Arc::new(ArcSwap::from_pointee(state));
        let shared = Arc::new(Shared {
            metrics: state.load().metrics.clone(),
            state: state.clone(),
            health: health.clone(),
            http: http_builder(&limits),
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            limits: limits.clone(),
        });
        let (stop, _) = watch::channel(false);
        let (admin_stop, _) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for (listener, kind) in [(http, Kind::Plain), (https, Kind::Tls)] {
            if let Some(listener) = listener {
                tasks.spawn(accept_loop(listener, kind, shared.clone(), stop.subscribe()));
            }
        }
        tasks.spawn(reload::watch(state.clone(), stop.subscribe()));
        let admin = admin.map(|l| tokio::spawn(accept_loop(l, Kind::Admin, shared.clone(), admin_stop.subscribe())));
        for (name, addr) in [("http", addresses.http), ("https", addresses.https), ("admin", addresses.admin)] {
            if let Some(addr) = addr {
                tracing::info!(listener = name, %addr, "listening");
            }
        }
        health.ready.store(true, Ordering::Release);
        Ok(Gateway { addresses, health, state, stop, tasks, admin_stop, admin, grace: limits.shutdown_grace })
    }

    /// Drains: readiness goes false, listeners close, open connections finish
    /// their in-flight requests (HTTP/1 keep-alive closed, HTTP/2 GOAWAY) for
    /// up to `shutdown_grace`. Returns whether every connection finished in time.
    pub async fn shutdown(mut self) -> bool {
        self.health.draining.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        // Every connection holds a receiver until it has finished draining.
        let drained = tokio::time::timeout(self.grace, self.stop.closed()).await.is_ok();
        if !drained {
            tracing::warn!(grace = ?self.grace, "connections still open after shutdown_grace; closing them");
        }
        let _ = self.admin_stop.send(true);
        if let Some(admin) = self.admin.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), admin).await;
        }
        drained
    }
}

/// A listening socket with a backlog of 4,096 (tokio's default is 1,024):
/// a burst of connects waits in the kernel's queue instead of being
/// dropped while the accept loop catches up.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper answers 431 itself when a head outgrows its buffer; the exact
        // per-field limit is checked again in `proxy::serve`.
        .max_buf_size(limits.max_header_bytes.max(8192) + 4096)
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(64)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

async fn accept_loop(listener: TcpListener, kind: Kind, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            permit = shared.connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(e) => {
                // EMFILE and friends: wait instead of spinning; the listener stays.
                tracing::warn!(error = %e, ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let metrics = shared.metrics.clone();
            metrics.open_connections.inc();
            serve_connection(tcp, peer, kind, shared, stop).await;
            metrics.open_connections.dec();
            drop(permit);
        });
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    kind: Kind,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    match kind {
        Kind::Plain => serve_http(tcp, Downstream { peer, tls: false }, &shared, stop).await,
        Kind::Admin => {
            let health = shared.health.clone();
            let state = shared.state.clone();
            let service = service_fn(move |req| {
                let (health, state) = (health.clone(), state.clone());
                async move { Ok::<_, Infallible>(admin::handle(&req, &health, &state.load())) }
            });
            let activity = idle::Activity::new();
            let conn = shared.http.serve_connection(TokioIo::new(idle::Tracked::new(tcp, activity.clone())), service);
            drain_on_stop!(conn, stop, peer, (&activity, &shared.limits));
        }
        Kind::Tls => {
            let state = shared.state.load_full();
            let Some(acceptor) = state.tls.clone() else {
                return;
            };
            let timeout = state.config.server.limits.tls_handshake_timeout;
            drop(state);
            match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => serve_http(stream, Downstream { peer, tls: true }, &shared, stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn serve_http<IO>(io: IO, downstream: Downstream, shared: &Arc<Shared>, stop: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = shared.state.clone();
    let service = service_fn(move |request| {
        let state = state.load_full();
        async move { Ok::<_, Infallible>(crate::proxy::handle(request, downstream, &state).await) }
    });
    let activity = idle::Activity::new();
    let conn =
        shared.http.serve_connection_with_upgrades(TokioIo::new(idle::Tracked::new(io, activity.clone())), service);
    drain_on_stop!(conn, stop, downstream.peer, (&activity, &shared.limits));
}
