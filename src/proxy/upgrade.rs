//! WebSocket upgrades (RFC 6455 §4) through the gateway, after authentication.
//!
//! Owns recognising a WebSocket handshake, handing it to the upstream with
//! its `Connection: upgrade` intact, checking the upstream's 101 (a wrong
//! `Sec-WebSocket-Accept` is a 502), and splicing the two upgraded
//! connections. A tunnel lives no longer than the token that opened it:
//! it is closed when the token expires or is revoked.
//! Other upgrade tokens (`h2c`, ...) are not honoured: they are hop-by-hop
//! and removed like any other.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::{self, Body};
use crate::error::GatewayError;
use crate::headers;
use crate::upstream::{Driven, UpstreamError};

const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

use super::lifetime::Caller;

/// A client's WebSocket handshake, taken out of the request.
pub struct WebSocketUpgrade {
    key: HeaderValue,
    client: OnUpgrade,
}

/// Recognises a WebSocket handshake. `Ok(None)`: not one (any `Upgrade` is then ignored).
pub fn websocket_request(parts: &mut Parts) -> Result<Option<WebSocketUpgrade>, GatewayError> {
    let wants_websocket =
        parts.headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
            && headers::connection_has(&parts.headers, "upgrade");
    if !wants_websocket {
        return Ok(None);
    }
    if parts.version != http::Version::HTTP_11 || parts.method != http::Method::GET {
        return Err(GatewayError::BadRequest("a WebSocket handshake must be an HTTP/1.1 GET"));
    }
    let key = parts
        .headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| STANDARD.decode(k.as_bytes()).is_ok_and(|raw| raw.len() == 16))
        .cloned()
        .ok_or(GatewayError::BadRequest("missing or malformed Sec-WebSocket-Key"))?;
    let client =
        parts.extensions.remove::<OnUpgrade>().ok_or(GatewayError::BadRequest("this connection cannot be upgraded"))?;
    Ok(Some(WebSocketUpgrade { key, client }))
}

/// Puts back the two headers hop-by-hop removal took away.
pub fn restore_upgrade_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

fn expected_accept(key: &HeaderValue) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(WEBSOCKET_GUID.as_bytes());
    STANDARD.encode(ctx.finish().as_ref())
}

/// Completes the handshake: `Ok(None)` when the upstream declined (any
/// non-101 answer is passed on as a normal response and the client
/// connection stays HTTP). The caller's token ending ends the tunnel (`lifetime`).
pub fn splice(
    upgrade: WebSocketUpgrade,
    upstream: &mut Response<Driven>,
    caller: Option<Caller>,
) -> Result<Option<Response<Body>>, UpstreamError> {
    if upstream.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(None);
    }
    let accept_ok = upstream
        .headers()
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .is_some_and(|v| v.as_bytes() == expected_accept(&upgrade.key).as_bytes());
    if !accept_ok {
        return Err(UpstreamError::BadUpgrade("wrong or missing Sec-WebSocket-Accept"));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut *upstream);
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(upgrade.client, upstream_upgrade) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade did not complete");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        let ended = async {
            match caller {
                Some(caller) => caller.ended().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = copy => {}
            why = ended => tracing::info!("websocket closed: {}", why.reason()),
        }
    });
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let mut response_headers = upstream.headers().clone();
    headers::remove_hop_by_hop(&mut response_headers);
    restore_upgrade_headers(&mut response_headers);
    *response.headers_mut() = response_headers;
    Ok(Some(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_rfc_6455_example() {
        // RFC 6455 §1.3.
        let key = HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(expected_accept(&key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
