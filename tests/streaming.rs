//! Bodies are streamed, never collected: a large upload passes through with
//! the gateway's memory flat. Alone in its binary so peak RSS is its own.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::gateway::TestGateway;
use support::tokens::{claims, sign};
use support::upstream::Upstream;

const CHUNK: usize = 256 * 1024;
const CHUNKS: usize = 1024; // 256 MiB

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_upload_streams_through_without_buffering() {
    let up = Upstream::start().await;
    let gw = TestGateway::start(&format!(
        "[[route]]\npath = \"/upload\"\nupstream = \"{}\"\nmax_body_bytes = 0\n",
        up.url()
    ))
    .await;
    let token = sign("es256", &claims("alice", &[]));
    let before = peak_rss_kib();

    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let frames = futures_util::stream::iter(
        (0..CHUNKS).map(move |_| Ok::<_, std::convert::Infallible>(Frame::data(chunk.clone()))),
    );
    let client = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::post(gw.url("/upload/big"))
        .header("authorization", format!("Bearer {token}"))
        .body(StreamBody::new(frames))
        .expect("request");
    let response = client.request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(up.last().body_bytes, (CHUNK * CHUNKS) as u64);

    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(grown_mib < 64, "peak RSS grew by {grown_mib} MiB for a 256 MiB upload: the body was buffered");
}
