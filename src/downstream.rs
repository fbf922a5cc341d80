//! The facts of the client's connection that a request's handling needs:
//! who is at the other end, and whether it came over TLS.
//!
//! A leaf: `server` fills it in for each connection, the doors (`proxy`,
//! `endpoints`) read it; it imports nothing of theirs.

use std::net::SocketAddr;

/// The client end of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Downstream {
    pub peer: SocketAddr,
    /// Whether the connection arrived over TLS.
    pub tls: bool,
}
