//! One client connection, from its first byte to its close.
//!
//! The protocol is chosen by the first bytes, read under
//! `header_read_timeout` into 24 bytes on the stack: the HTTP/2 preface, or
//! HTTP/1. hyper then serves the connection from a box, so that the task of
//! a connection that waits holds no protocol state. A connection is
//! finished gracefully (in-flight requests complete; HTTP/1 closes, HTTP/2
//! sends GOAWAY) on shutdown, and once it has moved no byte for
//! `idle_timeout`.
//!
//! Past [`AWAKE_LIMIT`] HTTP/1 connections holding hyper's state, one that
//! waits for its next request is *parked*: hyper's connection, with its read
//! and write buffers (some 16 KiB), is dropped, and the bare socket waits
//! for readiness; the next request gets a fresh one. So 10,000 idle
//! keep-alive clients cost a socket and a small task each, while a few
//! hundred busy ones never pay for parking. Parking happens only between
//! requests (none in flight, every response byte handed to the socket,
//! nothing read since; see `idle::Activity`); whatever hyper had buffered
//! is handed on anyway.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;

use super::idle::{Activity, CountedBody, Tracked};
use crate::body::Body;
use crate::config::Limits;

/// HTTP/1 connections that keep hyper's state (about 26 KiB each) while they
/// wait for a request; beyond it, waiting ones are parked.
pub const AWAKE_LIMIT: usize = 512;

/// hyper's HTTP/1 header count limit when it is given none.
const HYPER_MAX_HEADERS: usize = 100;

/// The client preface that opens every HTTP/2 connection (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// hyper's two protocols, configured from `[server.limits]`.
pub struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    limits: Limits,
    /// HTTP/1 connections holding hyper's state now.
    awake: AtomicUsize,
    /// HTTP/1 connections parked now (a metric).
    parked: Gauge,
}

impl Protocols {
    pub fn new(limits: &Limits, parked: Gauge) -> Protocols {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // hyper answers 431 itself when a head outgrows its buffer; the exact
            // per-field limit is checked again in `proxy::serve`.
            .max_buf_size(limits.max_header_bytes.max(8192) + 4096);
        // hyper reads up to 100 fields into arrays on the stack, and answers
        // 431 beyond; `proxy::serve` counts again against the configured limit.
        // A larger limit needs hyper's own, whose arrays it fills for every
        // request (some 1,700 instructions a request at 100).
        if limits.max_headers > HYPER_MAX_HEADERS {
            http1.max_headers(limits.max_headers);
        }
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_pending_accept_reset_streams(64)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        Protocols { http1, http2, limits: limits.clone(), awake: AtomicUsize::new(0), parked }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// Serves `io` with `handler` until the client leaves, the connection idles
/// out, or `stop` flips (then gracefully).
pub async fn serve<IO, H, F>(
    io: IO,
    peer: SocketAddr,
    handler: H,
    protocols: &Protocols,
    mut stop: watch::Receiver<bool>,
) where
    IO: Socket,
    H: Fn(Request<Incoming>) -> F + Send + Sync + Unpin + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let limits = &protocols.limits;
    let mut io = Prefixed { prefix: Bytes::new(), io };
    let protocol = tokio::select! {
        first = tokio::time::timeout(limits.header_read_timeout, first_bytes(&mut io)) => match first {
            Ok(Ok(Some(protocol))) => protocol,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "connection failed before a request"),
            Err(_) => return tracing::debug!(%peer, "no request within header_read_timeout; closed"),
        },
        () = stopped(&mut stop) => return,
    };
    let activity = Activity::new();
    let counting = activity.clone();
    let service = service_fn(move |request| {
        let in_flight = counting.enter();
        let response = handler(request);
        async move { Ok::<_, Infallible>(response.await.map(|body| in_flight.hold(body))) }
    });
    let result = match protocol {
        Protocol::Http2 => {
            let mut conn =
                Box::pin(protocols.http2.serve_connection(TokioIo::new(Tracked::new(io, activity.clone())), service));
            let ended = Box::pin(drive(conn.as_mut(), peer, &activity, limits.idle_timeout, &mut stop, None)).await;
            ended.unwrap_or(Ok(()))
        }
        Protocol::Http1 => serve_http1(io, peer, service, &activity, protocols, stop).await,
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// HTTP/1: each round serves requests with a fresh hyper connection until
/// it ends, or is parked between requests while too many are awake.
async fn serve_http1<IO, S>(
    mut io: Prefixed<IO>,
    peer: SocketAddr,
    mut service: S,
    activity: &Activity,
    protocols: &Protocols,
    mut stop: watch::Receiver<bool>,
) -> hyper::Result<()>
where
    IO: Socket,
    S: hyper::service::HttpService<Incoming, ResBody = CountedBody, Error = Infallible> + Unpin,
{
    let limits = &protocols.limits;
    loop {
        let awake = Awake::enter(&protocols.awake);
        let mut conn = Box::pin(
            protocols.http1.serve_connection(TokioIo::new(Tracked::new(io, activity.clone())), service).with_upgrades(),
        );
        let driven = drive(conn.as_mut(), peer, activity, limits.idle_timeout, &mut stop, Some(&awake));
        if let Some(result) = Box::pin(driven).await {
            return result;
        }
        // Parked: hyper's state goes; the socket, and any bytes hyper had read, stay.
        tracing::trace!(%peer, "parked");
        drop(awake);
        let Some(apart) = take_apart(conn) else { return Ok(()) };
        (service, io) = apart;
        if !io.prefix.is_empty() {
            tracing::trace!(%peer, bytes = io.prefix.len(), "parked with part of a request; served again");
            continue;
        }
        // hyper's header-read timer started when it went back to reading;
        // the bare socket keeps the same deadline.
        let wait = limits.header_read_timeout.min(limits.idle_timeout);
        protocols.parked.inc();
        let woken = tokio::select! {
            ready = tokio::time::timeout(wait, io.io.readable()) => matches!(ready, Ok(Ok(()))),
            () = stopped(&mut stop) => false,
        };
        protocols.parked.dec();
        if !woken {
            return Ok(());
        }
    }
}

/// hyper's HTTP/1 connection as `serve_http1` makes it.
type Http1<IO, S> = http1::UpgradeableConnection<TokioIo<Tracked<Prefixed<IO>>>, S>;

/// A parked connection's service and socket, with whatever hyper had read
/// put back in front of it. Apart from `serve_http1`, so that hyper's parts
/// take no room in every connection's task while it waits.
fn take_apart<IO, S>(conn: Pin<Box<Http1<IO, S>>>) -> Option<(S, Prefixed<IO>)>
where
    IO: Socket,
    S: hyper::service::HttpService<Incoming, ResBody = CountedBody, Error = Infallible> + Unpin,
{
    let parts = Pin::into_inner(conn).into_parts()?;
    let mut io = parts.io.into_inner().into_inner();
    io.push_back(parts.read_buf);
    Some((parts.service, io))
}

/// One HTTP/1 connection holding hyper's state, counted while alive.
struct Awake<'a>(&'a AtomicUsize);

impl<'a> Awake<'a> {
    fn enter(count: &'a AtomicUsize) -> Awake<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Awake(count)
    }

    fn crowded(&self) -> bool {
        self.0.load(Ordering::Relaxed) > AWAKE_LIMIT
    }
}

impl Drop for Awake<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client socket: plain TCP or TLS over it.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Waits, without reading, until a read would not block (data or EOF).
    /// Only called when the last read found nothing, so a TLS stream holds
    /// no plaintext either.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
}

impl Socket for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        TcpStream::readable(self)
    }
}

impl Socket for TlsStream<TcpStream> {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        self.get_ref().0.readable()
    }
}

/// A hyper connection that can be asked to finish gracefully.
trait Graceful: Future<Output = hyper::Result<()>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<IO, S> Graceful for http1::UpgradeableConnection<IO, S>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = CountedBody>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<IO, S> Graceful for http2::Connection<IO, S, TokioExecutor>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming, ResBody = CountedBody>,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, CountedBody>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// Drives `conn` until it ends (`Some`), finishing it gracefully on `stop`
/// or once idle; with `park`, returns `None` as soon as the connection waits
/// between requests while too many are awake. Awaited from a box, so that
/// its timers are not part of a parked connection's task.
async fn drive<C: Graceful>(
    mut conn: Pin<&mut C>,
    peer: SocketAddr,
    activity: &Activity,
    idle: Duration,
    stop: &mut watch::Receiver<bool>,
    park: Option<&Awake<'_>>,
) -> Option<hyper::Result<()>> {
    let until_parked = std::future::poll_fn(|cx| match conn.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(Some(result)),
        Poll::Pending if park.is_some_and(Awake::crowded) && activity.between_requests() => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    });
    // Shutdown and the idle timer, asked only when one of them has news:
    // the task wakes for every read and write of both of its sockets.
    let watches = OnWake::new(Box::pin(async {
        tokio::select! {
            () = stopped(stop) => false,
            () = activity.idle(idle) => true,
        }
    }));
    tokio::select! {
        biased;
        ended = until_parked => ended,
        idled = watches => {
            if idled {
                tracing::debug!(%peer, "idle connection closed");
            }
            conn.as_mut().graceful_shutdown();
            Some(conn.await)
        }
    }
}

/// A future polled only after its own waker fired (and once at first), not
/// on every wake of the task that awaits it.
struct OnWake<F> {
    inner: Pin<Box<F>>,
    flag: Arc<WakeFlag>,
    waker: std::task::Waker,
}

struct WakeFlag {
    woken: AtomicBool,
    task: futures_util::task::AtomicWaker,
}

impl std::task::Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> OnWake<F> {
    fn new(inner: Pin<Box<F>>) -> OnWake<F> {
        let flag = Arc::new(WakeFlag { woken: AtomicBool::new(true), task: Default::default() });
        OnWake { inner, waker: std::task::Waker::from(flag.clone()), flag }
    }
}

impl<F: Future> Future for OnWake<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        this.flag.task.register(cx.waker());
        if !this.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner.as_mut().poll(&mut Context::from_waker(&this.waker))
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Reads until the bytes part from the HTTP/2 preface or match all of it,
/// keeping them for the protocol that serves the connection. `None`: the
/// client closed before any byte.
async fn first_bytes<IO: AsyncRead + Unpin>(io: &mut Prefixed<IO>) -> io::Result<Option<Protocol>> {
    let mut buf = [0u8; PREFACE.len()];
    let mut filled = 0;
    let protocol = loop {
        let n = io.io.read(&mut buf[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            break Protocol::Http1;
        }
        filled += n;
        if buf[..filled] != PREFACE[..filled] {
            break Protocol::Http1;
        }
        if filled == PREFACE.len() {
            break Protocol::Http2;
        }
    };
    io.push_back(Bytes::copy_from_slice(&buf[..filled]));
    Ok(Some(protocol))
}

/// A socket with bytes already read from it, served again first.
struct Prefixed<IO> {
    prefix: Bytes,
    io: IO,
}

impl<IO> Prefixed<IO> {
    fn push_back(&mut self, more: Bytes) {
        if more.is_empty() {
            return;
        }
        if self.prefix.is_empty() {
            self.prefix = more;
        } else {
            let mut joined = BytesMut::with_capacity(self.prefix.len() + more.len());
            joined.extend_from_slice(&self.prefix);
            joined.extend_from_slice(&more);
            self.prefix = joined.freeze();
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        if self.prefix.is_empty() {
            // Free the buffer now rather than with the connection.
            self.prefix = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
