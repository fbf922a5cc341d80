//! The facts of the client's connection that a request's handling needs:
//! who is at the other end, and whether it came over TLS.
//!
//! A leaf: `server` fills it in for each connection, the doors (`proxy`,
//! `endpoints`) read it; it imports nothing of theirs.

use std::net::{IpAddr, SocketAddr};

use http::HeaderValue;

/// The client end of a connection.
#[derive(Debug, Clone)]
pub struct Downstream {
    pub peer: SocketAddr,
    /// Whether the connection arrived over TLS.
    pub tls: bool,
    /// The peer's address as `X-Forwarded-For` gives it, written once for
    /// all of the connection's requests.
    pub peer_text: HeaderValue,
}

impl Downstream {
    pub fn new(peer: SocketAddr, tls: bool) -> Downstream {
        let text = ip_text(peer.ip());
        let peer_text = HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Downstream { peer, tls, peer_text }
    }
}

/// An address as text; IPv4 without `Display`'s formatting machinery (which
/// cost about 1,600 instructions a request in the profile, when it was made
/// for each request).
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                if octet >= 100 {
                    text.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    text.push(char::from(b'0' + octet / 10 % 10));
                }
                text.push(char::from(b'0' + octet % 10));
            }
            text
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_text_reads_as_displayed() {
        use std::net::{Ipv4Addr, Ipv6Addr};
        for ip in [[0, 0, 0, 0], [255, 255, 255, 255], [10, 0, 100, 9], [1, 20, 3, 199], [127, 0, 0, 1]] {
            let ip = IpAddr::V4(Ipv4Addr::from(ip));
            assert_eq!(ip_text(ip), ip.to_string());
        }
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(ip_text(v6), "::1");
        let peer = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 8443);
        assert_eq!(Downstream::new(peer, true).peer_text, "::1");
    }
}
