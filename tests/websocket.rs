//! WebSocket upgrades through the gateway to a real WebSocket server:
//! authenticated handshakes are spliced (identity headers reach the
//! upstream), unauthenticated ones never open a tunnel, and a tunnel is
//! closed when its token expires.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::HeaderValue;
use support::gateway::TestGateway;
use support::tokens::{claims, now, sign};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// An echo WebSocket server; sends back the `x-auth-user` it saw as its first message.
#[allow(clippy::result_large_err, reason = "the callback's signature is tungstenite's")]
async fn websocket_upstream() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut user = String::new();
                let callback = |req: &Request, resp: Response| {
                    user =
                        req.headers().get("x-auth-user").and_then(|v| v.to_str().ok()).unwrap_or("<none>").to_owned();
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else { return };
                let _ = ws.send(Message::text(format!("user={user}"))).await;
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn gateway() -> TestGateway {
    let ws = websocket_upstream().await;
    TestGateway::start(&format!("[[route]]\npath = \"/ws\"\nupstream = \"http://{ws}\"\n")).await
}

async fn open(
    gw: &TestGateway,
    token: Option<&str>,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{}/ws/chat", gw.http).into_client_request().expect("request");
    if let Some(t) = token {
        request.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {t}")).expect("header"));
    }
    let tcp = TcpStream::connect(gw.http).await.expect("connect");
    tokio_tungstenite::client_async(request, tcp).await.map(|(ws, _)| ws)
}

#[tokio::test]
async fn an_authenticated_websocket_is_spliced_to_the_upstream() {
    let gw = gateway().await;
    let token = sign("es256", &claims("alice", &["user"]));
    let mut ws = open(&gw, Some(&token)).await.expect("handshake through the gateway");
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("greeting");
    assert_eq!(first.expect("frame").expect("message"), Message::text("user=alice"));
    for text in ["hello", "second message"] {
        ws.send(Message::text(text)).await.expect("send");
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("echo");
        assert_eq!(echoed.expect("frame").expect("message"), Message::text(text));
    }
}

#[tokio::test]
async fn an_unauthenticated_upgrade_opens_no_tunnel() {
    let gw = gateway().await;
    for token in [None, Some("a.b.c")] {
        match open(&gw, token).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
            other => panic!("expected a 401 handshake failure, got {:?}", other.map(|_| ())),
        }
    }
}

#[tokio::test]
async fn the_tunnel_closes_when_its_token_expires() {
    let gw = gateway().await;
    let mut c = claims("alice", &[]);
    c["exp"] = (now() + 2).into();
    let token = sign("es256", &c);
    let mut ws = open(&gw, Some(&token)).await.expect("handshake");
    let _greeting = ws.next().await;
    let closed = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return true,
                Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "the tunnel outlived its token");
}

#[tokio::test]
async fn the_tunnel_closes_when_its_token_is_revoked() {
    let ws = websocket_upstream().await;
    let options = support::gateway::Options { endpoints: true, ..Default::default() };
    let gw =
        TestGateway::start_with(&format!("[[route]]\npath = \"/ws\"\nupstream = \"http://{ws}\"\n"), options).await;
    let token = sign("es256", &claims("alice", &[]));
    let mut socket = open(&gw, Some(&token)).await.expect("handshake");
    let _greeting = socket.next().await;
    let admin = sign("es256", &claims("root", &["admin"]));
    let jti = support::process::jti_of(&token);
    let revoked = support::client::send(
        http::Method::POST,
        &gw.url("/auth/revoke"),
        &[("authorization", &format!("Bearer {admin}")), ("content-type", "application/json")],
        bytes::Bytes::from(format!("{{\"jti\":\"{jti}\"}}")),
    )
    .await;
    assert_eq!(revoked.status, 204);
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "a revoked token kept its socket open");
}
