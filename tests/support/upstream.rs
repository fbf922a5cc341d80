//! A real HTTP/1.1 upstream that records every request it receives.
//!
//! A path with `/slow` in it waits 3 s before answering (timeouts); every other path
//! reads the whole body (counting bytes, not keeping them) and answers 200.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body_bytes: u64,
}

#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(req, record.clone()));
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
        Upstream { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn all(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().expect("lock").last().cloned().expect("the upstream received no request")
    }
}

async fn answer(req: Request<Incoming>, record: Arc<Mutex<Vec<Seen>>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let mut body_bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => body_bytes += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => break,
        }
    }
    let path_and_query = parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.to_string());
    record.lock().expect("lock").push(Seen {
        method: parts.method.to_string(),
        path_and_query: path_and_query.clone(),
        headers: parts.headers.clone(),
        body_bytes,
    });
    if path_and_query.contains("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let body = serde_json::json!({"upstream": true, "body_bytes": body_bytes}).to_string();
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("connection", "keep-alive, x-upstream-hop")
        .header("x-upstream-hop", "must not reach the client")
        .body(Full::new(Bytes::from(body)))
        .expect("response"))
}
