//! A raw HTTP/2 client (prior knowledge, cleartext): frames written byte
//! for byte, so tests can send what a real client library refuses to
//! (uppercase names, `transfer-encoding`, CRLF in values, floods).
//! HPACK is written as literals without indexing, never Huffman-coded.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const CONTINUATION: u8 = 9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// What the server sent, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A response head; `ok` when its `:status` is the static-table 200.
    Response {
        stream: u32,
        ok: bool,
    },
    Reset {
        stream: u32,
        code: u32,
    },
    GoAway {
        code: u32,
    },
    Data {
        stream: u32,
        len: usize,
    },
}

pub struct H2 {
    tcp: TcpStream,
    buf: Vec<u8>,
    pub closed: bool,
}

fn integer(out: &mut Vec<u8>, prefix_bits: u8, first: u8, value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// An HPACK block of literal fields (without indexing, new names).
pub fn block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        integer(&mut out, 7, 0, name.len());
        out.extend_from_slice(name);
        integer(&mut out, 7, 0, value.len());
        out.extend_from_slice(value);
    }
    out
}

/// `GET {path}` request pseudo-headers plus `extra`.
pub fn get(path: &str, extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut fields: Vec<(&[u8], &[u8])> =
        vec![(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"), (b":path", path.as_bytes())];
    fields.extend_from_slice(extra);
    block(&fields)
}

impl H2 {
    pub async fn connect(addr: SocketAddr) -> H2 {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.expect("preface");
        let mut h2 = H2 { tcp, buf: Vec::new(), closed: false };
        h2.frame(SETTINGS, 0, 0, &[]).await;
        h2
    }

    /// Writes one frame; a write error (the server closed) marks the connection closed.
    pub async fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut out = Vec::with_capacity(9 + payload.len());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        if self.tcp.write_all(&out).await.is_err() {
            self.closed = true;
        }
    }

    pub async fn request(&mut self, stream: u32, block: &[u8], end_stream: bool) {
        let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
        self.frame(HEADERS, flags, stream, block).await;
    }

    /// Reads frames until `done` says so, the server closes, or `wait` passes.
    pub async fn events_until(&mut self, wait: Duration, mut done: impl FnMut(&[Event]) -> bool) -> Vec<Event> {
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(event) = self.next_buffered() {
                if let Some(e) = event {
                    events.push(e);
                }
            }
            if done(&events) || self.closed {
                return events;
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk)).await {
                Err(_) => return events,
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// One whole buffered frame, decoded (`Some(None)` for frames of no interest).
    fn next_buffered(&mut self) -> Option<Option<Event>> {
        if self.buf.len() < 9 {
            return None;
        }
        let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
        if self.buf.len() < 9 + len {
            return None;
        }
        let kind = self.buf[3];
        let stream = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) & 0x7fff_ffff;
        let payload: Vec<u8> = self.buf[9..9 + len].to_vec();
        self.buf.drain(..9 + len);
        let word = |at: usize| payload.get(at..at + 4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        Some(match kind {
            HEADERS => Some(Event::Response { stream, ok: payload.first() == Some(&0x88) }),
            RST_STREAM => Some(Event::Reset { stream, code: word(0) }),
            GOAWAY => Some(Event::GoAway { code: word(4) }),
            DATA => Some(Event::Data { stream, len }),
            _ => None,
        })
    }
}
