//! HTTP/1.1 to `http://` endpoints, with no task per connection.
//!
//! Owns the `http://` transport: connecting (with the connect timeout, no
//! Nagle), the idle connections of each endpoint (on each worker thread, a
//! list per endpoint found by pointer, not by hashing a key), and driving a
//! connection. A connection is hyper's HTTP/1 client connection, polled by
//! the request that uses it: while the response head is awaited by `send`,
//! then by the response body (`Driving`) as the proxy streams it. No other
//! task is woken per request, no channel crosses threads. A connection goes
//! back to its worker's idle list when its response has been read to the
//! end and hyper says it can take another request; otherwise it is closed.
//! An idle connection is checked (polled once) before reuse, and a worker's
//! idle lists are swept at most once a second, when a request looks in
//! them: one the endpoint closed, or idle for `IDLE_FOR`, is dropped. (The
//! `Weak` an idle list is keyed by keeps its endpoint's address from being
//! reused by another endpoint while the list exists.)
//!
//! A request asking for an upgrade (WebSockets) gets a connection of its
//! own, spawned with hyper's upgrade support and never pooled.

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::balance::Endpoint;
use crate::body::Body;

/// An idle connection unused this long is closed (the endpoint may have
/// closed it already; hyper-util's pool kept them as long).
const IDLE_FOR: Duration = Duration::from_secs(60);
const SWEEP_EVERY: Duration = Duration::from_secs(1);

type Connection = http1::Connection<TokioIo<TcpStream>, Body>;
type Pooled = Box<Conn>;

/// One connection to one endpoint: the handle requests are sent through,
/// and hyper's side of it, which does the reading and writing when polled.
/// Boxed once when opened (`Pooled`): it moves from the idle list to a
/// request to its response body and back, a pointer each time.
struct Conn {
    sender: http1::SendRequest<Body>,
    connection: Connection,
    idle_since: Instant,
}

impl Conn {
    /// Polls hyper's side once: `false` when the connection has ended
    /// (closed by the endpoint, or failed).
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        Pin::new(&mut self.connection).poll(cx).is_pending()
    }

    /// Still open and free for a request: what an idle one must be.
    fn reusable(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop())) && self.sender.is_ready()
    }
}

/// Why an exchange failed, as the retry rules need it.
#[derive(Debug)]
pub enum H1Error {
    /// No connection: nothing was sent.
    Connect(std::io::Error),
    ConnectTimeout,
    /// The exchange broke after the request was handed to the connection.
    Exchange(hyper::Error),
}

impl std::fmt::Display for H1Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            H1Error::Connect(e) => write!(f, "connect: {e}"),
            H1Error::ConnectTimeout => f.write_str("connect timeout"),
            H1Error::Exchange(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for H1Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            H1Error::Connect(e) => Some(e),
            H1Error::ConnectTimeout => None,
            H1Error::Exchange(e) => Some(e),
        }
    }
}

/// One worker's idle connections.
struct Idle {
    by_endpoint: Vec<(Weak<Endpoint>, Vec<Pooled>)>,
    swept: Instant,
}

thread_local! {
    static IDLE: RefCell<Idle> = RefCell::new(Idle { by_endpoint: Vec::new(), swept: Instant::now() });
}

impl Idle {
    /// The idle list of the endpoint at `endpoint` (`Arc::as_ptr` or `Weak::as_ptr`).
    fn list(&mut self, endpoint: *const Endpoint) -> Option<&mut Vec<Pooled>> {
        let mine = |entry: &&mut (Weak<Endpoint>, Vec<Pooled>)| std::ptr::eq(entry.0.as_ptr(), endpoint);
        self.by_endpoint.iter_mut().find(mine).map(|(_, list)| list)
    }

    /// Drops what the endpoints closed, what has idled too long, and the
    /// lists of endpoints gone (a reload, a DNS change).
    fn sweep(&mut self, now: Instant) {
        self.swept = now;
        self.by_endpoint.retain_mut(|(endpoint, list)| {
            list.retain_mut(|c| now.duration_since(c.idle_since) < IDLE_FOR && c.reusable());
            endpoint.strong_count() > 0 && !list.is_empty()
        });
    }
}

/// A connection from this worker's idle list, if one is still good.
fn checkout(endpoint: &Arc<Endpoint>) -> Option<Pooled> {
    IDLE.with_borrow_mut(|idle| {
        let now = Instant::now();
        if now.duration_since(idle.swept) >= SWEEP_EVERY {
            idle.sweep(now);
        }
        let list = idle.list(Arc::as_ptr(endpoint))?;
        while let Some(mut conn) = list.pop() {
            if now.duration_since(conn.idle_since) < IDLE_FOR && conn.reusable() {
                return Some(conn);
            }
        }
        None
    })
}

/// Back to this worker's idle list, if hyper says it can take another
/// request and the list is not full; else it is closed (dropped).
fn checkin(endpoint: &Weak<Endpoint>, mut conn: Pooled, keep: usize, cx: &mut Context<'_>) {
    // One more poll lets hyper finish the message and wait for the next.
    if !conn.drive(cx) || !conn.sender.is_ready() {
        return;
    }
    conn.idle_since = Instant::now();
    IDLE.with_borrow_mut(|idle| match idle.list(Weak::as_ptr(endpoint)) {
        Some(list) if list.len() < keep => list.push(conn),
        Some(_) => {}
        None => idle.by_endpoint.push((endpoint.clone(), vec![conn])),
    });
}

async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Pooled, H1Error> {
    let authority = &endpoint.authority;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let stream = match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Err(_) => return Err(H1Error::ConnectTimeout),
        Ok(Err(e)) => return Err(H1Error::Connect(e)),
        Ok(Ok(stream)) => stream,
    };
    stream.set_nodelay(true).map_err(H1Error::Connect)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(H1Error::Exchange)?;
    Ok(Box::new(Conn { sender, connection, idle_since: Instant::now() }))
}

/// Sends `request` (its URI in origin form: the path and query) to
/// `endpoint` on an idle connection or a new one, and drives the connection
/// until the response head is in. `keep`: idle connections kept for the
/// endpoint on this worker.
pub async fn send(
    endpoint: &Arc<Endpoint>,
    mut request: Request<Body>,
    connect_timeout: Duration,
    keep: usize,
) -> Result<Response<Driven>, H1Error> {
    if request.headers().contains_key(http::header::UPGRADE) {
        return Box::pin(upgrade(endpoint, request, connect_timeout)).await;
    }
    let mut pooled = checkout(endpoint);
    loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(conn) => conn,
            // Boxed: a new connection is the rare case, and its future is larger
            // than the rest of a request's, which is allocated and moved whole.
            None => Box::pin(connect(endpoint, connect_timeout)).await?,
        };
        let sent = conn.sender.try_send_request(request);
        let mut sent = std::pin::pin!(sent);
        let mut live = Some(conn);
        let result = std::future::poll_fn(|cx| {
            if let Some(conn) = live.as_mut()
                && !conn.drive(cx)
            {
                // Ended: dropping it answers the request with why.
                live = None;
            }
            sent.as_mut().poll(cx)
        })
        .await;
        match result {
            Ok(response) => {
                let driving = live.map(|conn| Driving { conn, endpoint: Arc::downgrade(endpoint), keep });
                return Ok(response.map(|body| Driven::new(body, driving)));
            }
            // A reused connection closed before the request went out: a new one.
            Err(mut e) if reused && e.message().is_some() => {
                request = e.take_message().ok_or_else(|| H1Error::Exchange(e.into_error()))?;
            }
            Err(e) => return Err(H1Error::Exchange(e.into_error())),
        }
    }
}

/// A connection of its own for an upgrade, spawned so the upgraded stream
/// outlives this request's task.
async fn upgrade(endpoint: &Endpoint, request: Request<Body>, timeout: Duration) -> Result<Response<Driven>, H1Error> {
    let Conn { mut sender, connection, .. } = *connect(endpoint, timeout).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection for an upgrade ended");
        }
    });
    let response = sender.send_request(request).await.map_err(H1Error::Exchange)?;
    Ok(response.map(|body| Driven::new(body, None)))
}

/// A connection lent to a response body until the body has been read.
struct Driving {
    conn: Pooled,
    endpoint: Weak<Endpoint>,
    keep: usize,
}

/// An upstream response body that drives its connection as it is read
/// (over `h2c://` and `https://` it is hyper-util's, driven by its own task).
pub struct Driven {
    body: Incoming,
    driving: Option<Driving>,
    /// A frame was handed over since the last `Pending`.
    handed: bool,
    /// An error held back one poll (see `poll_frame`).
    failed: Option<hyper::Error>,
}

impl Driven {
    pub fn pooled(body: Incoming) -> Driven {
        Driven::new(body, None)
    }

    fn new(body: Incoming, driving: Option<Driving>) -> Driven {
        Driven { body, driving, handed: false, failed: None }
    }

    fn release(&mut self, cx: &mut Context<'_>) {
        if let Some(Driving { conn, endpoint, keep }) = self.driving.take() {
            checkin(&endpoint, conn, keep, cx);
        }
    }
}

impl hyper::body::Body for Driven {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        let mut polled = Pin::new(&mut this.body).poll_frame(cx);
        if polled.is_pending()
            && let Some(driving) = this.driving.as_mut()
        {
            if !driving.conn.drive(cx) {
                this.driving = None;
            }
            // The connection may have just handed the body its next bytes.
            polled = Pin::new(&mut this.body).poll_frame(cx);
        }
        match polled {
            Poll::Ready(None) => this.release(cx),
            Poll::Ready(Some(Err(e))) => {
                this.driving = None;
                // A connection that broke right after its last bytes: those
                // bytes first. The server side aborts the client connection
                // at the error, losing what it has not flushed; a `Pending`
                // lets it flush (the legacy client's task gave it that turn).
                if std::mem::take(&mut this.handed) {
                    this.failed = Some(e);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(Some(Ok(_))) => this.handed = true,
            Poll::Pending => this.handed = false,
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        // A body with nothing to read (204, HEAD, `Content-Length: 0`) may
        // never be polled; one dropped before its end closes its connection.
        if self.driving.is_some() && hyper::body::Body::is_end_stream(&self.body) {
            self.release(&mut Context::from_waker(Waker::noop()));
        }
    }
}
