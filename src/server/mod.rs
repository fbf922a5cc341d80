//! Listeners: accepting connections and serving HTTP on them.
//!
//! Owns the listeners (plain, TLS, admin, and `[authz] grpc`), the workers
//! (thread per core: each a current-thread runtime with its own
//! `SO_REUSEPORT` sockets on the data addresses), the accept loop (a
//! connection cap, backoff on accept errors such as EMFILE), one task per
//! connection (the TLS handshake runs inside it, under a timeout, so a slow
//! client never stalls the accept loop), and the drain on shutdown. One
//! connection's life (protocol, hyper's limits, idle close, keep-alive
//! parking) is `connection`'s.
//! What a request means is `crate::proxy`'s business; this module only
//! moves bytes to it. "Downstream" is the client side, "upstream" the backend.

pub mod admin;
mod connection;
mod idle;
pub mod reload;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::downstream::Downstream;
use hyper::Request;
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::state::State;

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
    /// Envoy's gRPC `ext_authz` (`[authz] grpc`).
    pub grpc: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot start a worker thread")]
    Worker(#[source] io::Error),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

#[derive(Clone, Copy)]
enum Kind {
    Plain,
    Tls,
    Admin,
    Grpc,
}

struct Shared {
    state: Arc<ArcSwap<State>>,
    metrics: Arc<crate::metrics::Metrics>,
    health: Arc<Health>,
    protocols: connection::Protocols,
    connections: Arc<Semaphore>,
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
    /// Tells the other workers' threads that draining is over (their runtimes end).
    finished: watch::Sender<bool>,
    /// Those threads, waited for at the end (their last log lines).
    workers: Vec<std::thread::JoinHandle<()>>,
    grace: Duration,
}

impl Gateway {
    /// Binds every configured listener (all or none) and starts serving.
    pub async fn start(state: State) -> Result<Gateway, ServerError> {
        let server = &state.config.server;
        let workers = server.workers.max(1);
        let bind = |addr: Option<SocketAddr>, shared_port: bool| async move {
            match addr {
                None => Ok(None),
                Some(addr) => listen(addr, shared_port).map(Some).map_err(|source| ServerError::Bind { addr, source }),
            }
        };
        let http = bind(server.http, workers > 1).await?;
        let https = bind(server.https, workers > 1).await?;
        let admin = bind(server.admin, false).await?;
        let grpc = bind(state.config.authz.grpc, false).await?;
        let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let addresses =
            Addresses { http: local(&http), https: local(&https), admin: local(&admin), grpc: local(&grpc) };
        let limits = server.limits.clone();
        state.start_background();
        let health = Arc::new(Health::default());
        let state = Arc::new(ArcSwap::from_pointee(state));
        let shared = Arc::new(Shared {
            metrics: state.load().metrics.clone(),
            state: state.clone(),
            health: health.clone(),
            protocols: connection::Protocols::new(&limits, state.load().metrics.parked_connections.clone()),
            connections: Arc::new(Semaphore::new(limits.max_connections)),
        });
        let (stop, _) = watch::channel(false);
        let (admin_stop, _) = watch::channel(false);
        let (finished, _) = watch::channel(false);
        // Workers beyond this one: each a thread with its own runtime and
        // its own sockets on the data addresses (all bound before any serves).
        let data = [(addresses.http, Kind::Plain), (addresses.https, Kind::Tls)];
        let mut extra = Vec::new();
        for _ in 1..workers {
            let mut sockets = Vec::new();
            for (addr, kind) in data {
                if let Some(addr) = addr {
                    let socket = listen(addr, true)
                        .and_then(TcpListener::into_std)
                        .map_err(|source| ServerError::Bind { addr, source })?;
                    sockets.push((socket, kind));
                }
            }
            extra.push(sockets);
        }
        let mut tasks = JoinSet::new();
        for (listener, kind) in [(http, Kind::Plain), (https, Kind::Tls), (grpc, Kind::Grpc)] {
            if let Some(listener) = listener {
                tasks.spawn(accept_loop(listener, kind, shared.clone(), stop.subscribe()));
            }
        }
        tasks.spawn(reload::watch(state.clone(), stop.subscribe()));
        let admin = admin.map(|l| tokio::spawn(accept_loop(l, Kind::Admin, shared.clone(), admin_stop.subscribe())));
        let named = [
            ("http", addresses.http),
            ("https", addresses.https),
            ("admin", addresses.admin),
            ("grpc", addresses.grpc),
        ];
        for (name, addr) in named {
            if let Some(addr) = addr {
                tracing::info!(listener = name, %addr, "listening");
            }
        }
        let mut workers = Vec::with_capacity(extra.len());
        for (index, sockets) in extra.into_iter().enumerate() {
            let (shared, stop, finished) = (shared.clone(), stop.subscribe(), finished.subscribe());
            let thread = std::thread::Builder::new()
                .name(format!("authgate-worker-{}", index + 1))
                .spawn(move || worker(sockets, shared, stop, finished))
                .map_err(ServerError::Worker)?;
            workers.push(thread);
        }
        health.ready.store(true, Ordering::Release);
        let grace = limits.shutdown_grace;
        Ok(Gateway { addresses, health, state, stop, tasks, admin_stop, admin, finished, workers, grace })
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
        let _ = self.finished.send(true);
        let workers = std::mem::take(&mut self.workers);
        let joined = tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| drop(w.join())));
        let _ = tokio::time::timeout(Duration::from_secs(1), joined).await;
        let _ = self.admin_stop.send(true);
        if let Some(admin) = self.admin.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), admin).await;
        }
        drained
    }
}

/// A listening socket with a backlog of 4,096 (tokio's default is 1,024):
/// a burst of connects waits in the kernel's queue instead of being
/// dropped while the accept loop catches up. `shared_port`: one of several
/// workers' sockets on the address (`SO_REUSEPORT`: the kernel spreads new
/// connections between them).
fn listen(addr: SocketAddr, shared_port: bool) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    if shared_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Another worker (thread per core): a current-thread runtime accepting on
/// its own sockets and serving those connections to the end, sharing the
/// state, the connection cap and the metrics with the others. It ends when
/// the gateway's drain is over.
fn worker(
    sockets: Vec<(std::net::TcpListener, Kind)>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    mut finished: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return tracing::error!(error = %e, "a worker's runtime did not start"),
    };
    runtime.block_on(async move {
        tokio::spawn(crate::logs::flush_every());
        let mut accepting = JoinSet::new();
        for (socket, kind) in sockets {
            match TcpListener::from_std(socket) {
                Ok(listener) => {
                    accepting.spawn(accept_loop(listener, kind, shared.clone(), stop.clone()));
                }
                Err(e) => tracing::error!(error = %e, "a worker could not take its socket"),
            }
        }
        drop(stop);
        while accepting.join_next().await.is_some() {}
        // Its connections drain on this runtime until the gateway says it is over.
        let _ = finished.wait_for(|over| *over).await;
    });
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
        let open = Open::new(shared.metrics.clone(), permit);
        let (shared, stop) = (shared.clone(), stop.clone());
        // One spawn per kind, so that each task is sized for its own kind's state.
        match kind {
            Kind::Plain => tokio::spawn(async move {
                serve_http(tcp, Downstream::new(peer, false), &shared, stop).await;
                drop(open);
            }),
            Kind::Tls => tokio::spawn(async move {
                serve_tls(tcp, peer, &shared, stop).await;
                drop(open);
            }),
            Kind::Admin => tokio::spawn(async move {
                serve_admin(tcp, peer, &shared, stop).await;
                drop(open);
            }),
            Kind::Grpc => tokio::spawn(async move {
                serve_grpc(tcp, Downstream::new(peer, false), &shared, stop).await;
                drop(open);
            }),
        };
    }
}

/// An open client connection: counted in the metrics, holding its place
/// under `max_connections` until dropped.
struct Open {
    metrics: Arc<crate::metrics::Metrics>,
    _permit: OwnedSemaphorePermit,
}

impl Open {
    fn new(metrics: Arc<crate::metrics::Metrics>, permit: OwnedSemaphorePermit) -> Open {
        metrics.open_connections.inc();
        Open { metrics, _permit: permit }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.open_connections.dec();
    }
}

async fn serve_admin(tcp: TcpStream, peer: SocketAddr, shared: &Arc<Shared>, stop: watch::Receiver<bool>) {
    let health = shared.health.clone();
    let state = shared.state.clone();
    let handler = move |request: Request<Incoming>| {
        let response = admin::handle(&request, &health, &state.load());
        std::future::ready(response)
    };
    connection::serve(tcp, peer, handler, &shared.protocols, stop).await;
}

/// The `[authz] grpc` listener: Envoy's gRPC `ext_authz` over HTTP/2 (prior knowledge).
async fn serve_grpc(tcp: TcpStream, downstream: Downstream, shared: &Arc<Shared>, stop: watch::Receiver<bool>) {
    let state = shared.state.clone();
    let peer = downstream.peer;
    let handler = move |request| {
        let (state, downstream) = (state.load_full(), downstream.clone());
        async move { crate::authz::grpc::handle(request, downstream, &state).await }
    };
    connection::serve(tcp, peer, handler, &shared.protocols, stop).await;
}

async fn serve_tls(tcp: TcpStream, peer: SocketAddr, shared: &Arc<Shared>, stop: watch::Receiver<bool>) {
    let state = shared.state.load_full();
    let Some(terminator) = state.tls.clone() else {
        return;
    };
    let timeout = state.config.server.limits.tls_handshake_timeout;
    drop(state);
    match tokio::time::timeout(timeout, terminator.accept(tcp)).await {
        Ok(Ok(stream)) => serve_http(stream, Downstream::new(peer, true), shared, stop).await,
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

async fn serve_http<IO>(io: IO, downstream: Downstream, shared: &Arc<Shared>, stop: watch::Receiver<bool>)
where
    IO: connection::Socket,
{
    let state = shared.state.clone();
    let peer = downstream.peer;
    let handler = move |request| {
        let (state, downstream) = (state.load_full(), downstream.clone());
        // Boxed once here, the request's future is not copied again as hyper
        // and the connection's wrappers move it (5.5 KiB). The box is
        // allocated first and the future made in it: the optimizer then
        // writes only what is set at the start (the request, 352 bytes)
        // instead of copying the whole future in (docs/performance.md).
        Box::into_pin(Box::write(
            Box::new_uninit(),
            async move { crate::proxy::handle(request, downstream, &state).await },
        ))
    };
    connection::serve(io, peer, handler, &shared.protocols, stop).await;
}
