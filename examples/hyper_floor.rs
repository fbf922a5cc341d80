//! The floor under authgate's HTTP/1.1 path: hyper alone, proxying.
//!
//! A reverse proxy with nothing of authgate's: no authentication, no
//! routes, no header rules, no logs, no metrics. It is built the way
//! authgate's proxy path is (docs/performance.md, "The floor"): one
//! current-thread runtime, hyper's HTTP/1 server connection per client,
//! hyper's HTTP/1 client connections to one upstream, pooled on the thread
//! and polled by the request that uses them (no task of their own), the
//! request and response passed through unchanged, bodies streamed. What it
//! costs a request is what hyper and tokio cost authgate before authgate
//! does anything; the harness's targets are measured against it there.
//!
//! ```text
//! cargo run --release --example hyper_floor -- 127.0.0.1:9010 127.0.0.1:9001
//! ```

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

struct Conn {
    sender: client::SendRequest<Incoming>,
    connection: client::Connection<TokioIo<TcpStream>, Incoming>,
}

impl Conn {
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        Pin::new(&mut self.connection).poll(cx).is_pending()
    }
}

/// Boxed, as authgate's are: a connection moves as a pointer.
type Pooled = Box<Conn>;

thread_local! {
    static IDLE: RefCell<Vec<Pooled>> = const { RefCell::new(Vec::new()) };
}

fn checkout() -> Option<Pooled> {
    IDLE.with_borrow_mut(|idle| {
        while let Some(mut conn) = idle.pop() {
            if conn.drive(&mut Context::from_waker(Waker::noop())) && conn.sender.is_ready() {
                return Some(conn);
            }
        }
        None
    })
}

async fn connect(upstream: SocketAddr) -> std::io::Result<Pooled> {
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = client::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    Ok(Box::new(Conn { sender, connection }))
}

/// The upstream's body, driving its connection as it is read, which goes
/// back to the pool at the body's end.
struct Driven {
    body: Incoming,
    conn: Option<Pooled>,
}

impl Body for Driven {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let mut polled = Pin::new(&mut this.body).poll_frame(cx);
        if polled.is_pending()
            && let Some(conn) = this.conn.as_mut()
        {
            if !conn.drive(cx) {
                this.conn = None;
            }
            polled = Pin::new(&mut this.body).poll_frame(cx);
        }
        if let Poll::Ready(None) = polled
            && let Some(mut conn) = this.conn.take()
            && conn.drive(cx)
            && conn.sender.is_ready()
        {
            IDLE.with_borrow_mut(|idle| idle.push(conn));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        // A body with nothing left to read may never be polled.
        if self.body.is_end_stream()
            && let Some(mut conn) = self.conn.take()
            && conn.drive(&mut Context::from_waker(Waker::noop()))
            && conn.sender.is_ready()
        {
            IDLE.with_borrow_mut(|idle| idle.push(conn));
        }
    }
}

async fn proxy(upstream: SocketAddr, request: Request<Incoming>) -> std::io::Result<Response<Driven>> {
    let mut conn = match checkout() {
        Some(conn) => conn,
        None => connect(upstream).await?,
    };
    let mut sent = std::pin::pin!(conn.sender.try_send_request(request));
    let mut live = Some(conn);
    let response = std::future::poll_fn(|cx| {
        if let Some(conn) = live.as_mut()
            && !conn.drive(cx)
        {
            live = None;
        }
        sent.as_mut().poll(cx)
    })
    .await
    .map_err(|e| std::io::Error::other(e.into_error()))?;
    Ok(response.map(|body| Driven { body, conn: live }))
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: hyper_floor LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let parse = |a: &str| a.parse::<SocketAddr>().map_err(std::io::Error::other);
    let (listen, upstream) = (parse(&listen)?, parse(&upstream)?);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let service = service_fn(move |request| async move {
                    Ok::<_, Infallible>(match proxy(upstream, request).await {
                        Ok(response) => response.map(http_body_util::Either::Left),
                        Err(_) => {
                            let mut response =
                                Response::new(http_body_util::Either::Right(http_body_util::Empty::new()));
                            *response.status_mut() = hyper::StatusCode::BAD_GATEWAY;
                            response
                        }
                    })
                });
                let _ = server::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    })
}
