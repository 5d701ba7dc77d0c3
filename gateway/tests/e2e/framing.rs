//! HTTP/1.1 framing attacks, each named after its threat. The pass
//! criterion for each: a 4xx/501 answer, never a second response (nothing
//! smuggled), the connection closed, and the backend never reached.

use std::time::Duration;

use testkit::backend::Backend;
use testkit::client::{self, Proto};

use crate::Setup;

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";

async fn expect_refused(s: &Setup, b: &Backend, case: &str, raw: String) {
    // A body that turns out malformed mid-stream was already started towards
    // the upstream (bodies stream, they are not buffered); the upstream sees
    // an aborted request, never a completed or smuggled one.
    let body_level = case.starts_with("body:");
    let before = b.requests();
    let (out, closed) = client::raw_exchange(
        s.client(Proto::H1),
        s.gw.addr(),
        "localhost",
        raw.as_bytes(),
        Duration::from_secs(3),
    )
    .await;
    let status: u16 = out
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{case}: no HTTP response: {out:?}"));
    assert!(
        (400..500).contains(&status) || status == 501,
        "{case}: expected 4xx/501, got {status}: {out}"
    );
    assert_eq!(
        out.matches("HTTP/1.1 ").count(),
        1,
        "{case}: a second response means a smuggled request: {out}"
    );
    assert!(closed, "{case}: connection must be closed");
    if !body_level {
        assert_eq!(b.requests(), before, "{case}: backend must not be reached");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_attacks_are_refused() {
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "", "", "");
    refuses_framing_attacks(&s, &b).await;
}

/// Every framing case of this file against a running gateway whose route
/// for `/` goes to `b` (also run on the packaged configuration, see
/// `appliance.rs`).
pub(crate) async fn refuses_framing_attacks(s: &Setup, b: &Backend) {
    let cases: Vec<(&str, String)> = vec![
        (
            "duplicate Content-Length with different values",
            format!("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\nhello{SMUGGLED}"),
        ),
        (
            "obfuscated Transfer-Encoding (space before colon)",
            format!("POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "obfuscated Transfer-Encoding (xchunked)",
            format!("POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "Transfer-Encoding not ending in chunked",
            format!("POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "obs-fold header continuation",
            format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Folded: a\r\n b\r\n\r\n{SMUGGLED}"),
        ),
        (
            "NUL byte in a header value",
            "GET / HTTP/1.1\r\nHost: localhost\r\nX-Nul: a\0b\r\n\r\n".to_owned(),
        ),
        (
            "body: chunk size overflow",
            format!("POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFFFF\r\nx\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "missing Host in HTTP/1.1",
            format!("GET / HTTP/1.1\r\nUser-Agent: t\r\n\r\n{SMUGGLED}"),
        ),
        (
            "two Host headers",
            format!("GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n{SMUGGLED}"),
        ),
        (
            "absolute-form target disagreeing with Host",
            format!("GET http://evil.example/ HTTP/1.1\r\nHost: localhost\r\n\r\n{SMUGGLED}"),
        ),
        (
            "user info in Host",
            format!("GET / HTTP/1.1\r\nHost: user@localhost\r\n\r\n{SMUGGLED}"),
        ),
        (
            "invalid Content-Length",
            format!("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: +5\r\n\r\nhello{SMUGGLED}"),
        ),
    ];
    for (case, raw) in cases {
        expect_refused(s, b, case, raw).await;
    }
    both_content_length_and_transfer_encoding(s, b).await;
    // A well-formed pipelined pair is answered twice: the probe itself works.
    let (out, _) = client::raw_exchange(
        s.client(Proto::H1),
        s.gw.addr(),
        "localhost",
        b"GET /one HTTP/1.1\r\nHost: localhost\r\n\r\nGET /two HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused() {
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "max_header_bytes = \"8KiB\"", "", "");
    let big = "a".repeat(20 * 1024);
    let (out, closed) = client::raw_exchange(
        s.client(Proto::H1),
        s.gw.addr(),
        "localhost",
        format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n").as_bytes(),
        Duration::from_secs(3),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    assert!(closed);
    assert_eq!(b.requests(), 0);
}

/// Request smuggling with both `Content-Length` and `Transfer-Encoding`
/// (CL.TE and TE.CL orders), on a fresh connection and after bodiless
/// keep-alive requests: 400, the connection closed, the upstream never
/// reached. hyper alone would answer it by Transfer-Encoding and close;
/// the gateway's head watcher (`framing.rs`) turns it into a 400.
async fn both_content_length_and_transfer_encoding(s: &Setup, b: &Backend) {
    let warmup = "GET /warm HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for (case, raw, answered_before) in [
        (
            "CL.TE",
            format!("POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
            0,
        ),
        (
            "TE.CL",
            format!("POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n{SMUGGLED}"),
            0,
        ),
        (
            "CL.TE after two keep-alive requests",
            format!("{warmup}{warmup}POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
            2,
        ),
    ] {
        let before = b.requests();
        let (out, closed) = client::raw_exchange(
            s.client(Proto::H1),
            s.gw.addr(),
            "localhost",
            raw.as_bytes(),
            Duration::from_secs(3),
        )
        .await;
        let mut expected = vec!["200"; answered_before];
        expected.push("400");
        assert_eq!(statuses(&out), expected, "{case}: {out}");
        assert!(!out.contains("/smuggled"), "{case}: {out}");
        assert!(closed, "{case}: connection must be closed");
        assert_eq!(b.requests(), before + answered_before, "{case}: upstream reached");
    }
}

/// The status codes of the responses in `out`, in order.
fn statuses(out: &str) -> Vec<&str> {
    out.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| out.get(i + 9..i + 12))
        .collect()
}

/// Both `Content-Length` and `Transfer-Encoding` on a request that follows,
/// on the same keep-alive connection, a request WITH a body: the head
/// watcher must find the second head behind the first body. `first` is a
/// request to `/upload` with an 11-byte body; it is answered normally, the
/// smuggling attempt gets 400 and the connection is closed.
async fn expect_refused_after(case: &str, first: &str) {
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "", "", "");
    let raw = format!(
        "{first}POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    let (out, closed) = client::raw_exchange(
        s.client(Proto::H1),
        s.gw.addr(),
        "localhost",
        raw.as_bytes(),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(statuses(&out), ["200", "400"], "{case}: {out}");
    assert!(
        out.contains("\r\n\r\n11HTTP/1.1 400"),
        "{case}: the upload's answer: {out}"
    );
    assert!(!out.contains("/smuggled"), "{case}: {out}");
    assert!(closed, "{case}: connection must be closed");
    assert_eq!(
        b.requests(),
        1,
        "{case}: only the upload reaches the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cl_te_after_a_request_with_a_content_length_body_is_refused() {
    expect_refused_after(
        "after a Content-Length body",
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\nhello world",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cl_te_after_a_chunked_request_is_refused() {
    expect_refused_after(
        "after a chunked body",
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
         5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 1\r\n\r\n",
    )
    .await;
}

/// No false positives: a keep-alive sequence of requests with a
/// `Content-Length` body, a chunked body (extensions, trailers), no body
/// and an empty body is answered request by request, even when the bodies
/// contain what looks like a head with both framing headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_requests_with_bodies_are_answered_normally() {
    let b = Backend::start("app").await;
    let s = Setup::start(b.addr, "", "", "");
    let fake = "GET /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n";
    let raw = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {cl}\r\n\r\n\r\n{fake}\
         POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
         3;a=b\r\nabc\r\n{size:x}\r\n{fake}\r\n0\r\nX-Trailer: t\r\n\r\n\
         GET /plain HTTP/1.1\r\nHost: localhost\r\n\r\n\
         POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n\
         POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        cl = fake.len() + 2,
        size = fake.len(),
    );
    let (out, closed) = client::raw_exchange(
        s.client(Proto::H1),
        s.gw.addr(),
        "localhost",
        raw.as_bytes(),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(statuses(&out), ["200"; 5], "{out}");
    let upload = |n: usize| format!("\r\n\r\n{n}HTTP/1.1 200");
    for n in [fake.len() + 2, fake.len() + 3, 0] {
        assert!(out.contains(&upload(n)), "upload of {n} bytes: {out}");
    }
    assert!(out.ends_with("\r\n\r\n5"), "{out}");
    assert!(closed, "Connection: close is honoured");
    assert_eq!(b.requests(), 5);
}
