//! The idle timeout: a connection that moves no byte either way for
//! `idle_timeout` is asked to finish gracefully (in-flight requests
//! complete; HTTP/1 closes, HTTP/2 sends GOAWAY).
//!
//! A connection that has not sent a byte yet gets `header_read_timeout`
//! instead: hyper's own header-read timer starts only once the connection
//! is handed to the HTTP/1 parser, and hyper-util's protocol sniffing
//! (HTTP/1 or the HTTP/2 preface) waits for bytes without any timer, so an
//! idle TCP connection would otherwise be held for `idle_timeout`. This
//! also covers HTTP/2 connections, which answer pings and would otherwise
//! stay open for ever. One relaxed atomic store per read or write.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Not a byte moved yet.
const NEVER: u64 = u64::MAX;

/// When a connection last moved a byte, in milliseconds since it opened.
#[derive(Debug, Clone)]
pub struct Activity {
    opened: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    pub fn new() -> Activity {
        Activity { opened: Instant::now(), last_ms: Arc::new(AtomicU64::new(NEVER)) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(NEVER - 1);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once the connection has sent nothing for `first_byte` since
    /// it opened, or, once it has, moved nothing for `idle`.
    pub async fn idle_for(&self, first_byte: Duration, idle: Duration) {
        loop {
            let deadline = match self.last_ms.load(Ordering::Relaxed) {
                NEVER => self.opened + first_byte,
                last => self.opened + Duration::from_millis(last) + idle,
            };
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// An IO that reports its traffic to an [`Activity`].
pub struct Tracked<IO> {
    io: IO,
    activity: Activity,
}

impl<IO> Tracked<IO> {
    pub fn new(io: IO, activity: Activity) -> Tracked<IO> {
        Tracked { io, activity }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Tracked<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Tracked<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
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
