//! Bodies stream in both directions in bounded memory; limits hold.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use testkit::backend::Backend;
use testkit::client::{self, Proto};

use crate::Setup;

const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_body_streams_both_ways_in_bounded_memory() {
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "", "max_request_body = \"200MiB\"", "");
    let baseline = s.gw.peak_rss_kib();

    // Upload: 1600 chunks of 64 KiB, generated lazily.
    let tls = client::connect(s.client(Proto::H1), s.gw.addr(), "localhost")
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let chunk = Bytes::from(vec![7u8; 64 * 1024]);
    let stream = futures_util::stream::iter(
        (0..1600).map(move |_| Ok::<_, std::io::Error>(Frame::data(chunk.clone()))),
    );
    let req = Request::post("/upload")
        .header("host", "localhost")
        .body(StreamBody::new(stream))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, (100 * MIB).to_string());

    // Download, counted frame by frame.
    let tls = client::connect(s.client(Proto::H2), s.gw.addr(), "localhost")
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let uri = format!("https://localhost:{}/big/{}", s.gw.addr().port(), 100 * MIB);
    let resp = sender
        .send_request(Request::get(uri).body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(f) = body.frame().await {
        n += f.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(n, 100 * MIB);

    let peak = s.gw.peak_rss_kib();
    assert!(
        peak < baseline + 48 * 1024,
        "gateway memory grew from {baseline} KiB to {peak} KiB: bodies are being buffered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_over_the_route_limit_get_413() {
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "", "max_request_body = \"1KiB\"", "");
    // Declared length over the limit: refused before the upstream is asked.
    let req = Request::post("/upload")
        .body(Full::new(Bytes::from(vec![1u8; 2048])))
        .unwrap();
    let r = client::send(
        s.client(Proto::H1),
        s.gw.addr(),
        "localhost",
        Proto::H1,
        req,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(b.requests(), 0);
    // Within the limit: passes.
    let req = Request::post("/upload")
        .body(Full::new(Bytes::from(vec![1u8; 1024])))
        .unwrap();
    let r = client::send(
        s.client(Proto::H2),
        s.gw.addr(),
        "localhost",
        Proto::H2,
        req,
    )
    .await
    .unwrap();
    assert_eq!(r.text(), "1024");
    // Chunked, no declared length: cut off when the limit is crossed.
    let payload = "z".repeat(2048);
    let raw = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n{}\r\n400\r\n{}\r\n0\r\n\r\n",
        &payload[..1024],
        &payload[1024..]
    );
    let (out, _) = client::raw_exchange(
        s.client(Proto::H1),
        s.gw.addr(),
        "localhost",
        raw.as_bytes(),
        Duration::from_secs(3),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
}
