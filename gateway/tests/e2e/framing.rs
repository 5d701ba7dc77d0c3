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
        let statuses: Vec<&str> = out
            .match_indices("HTTP/1.1 ")
            .map(|(i, _)| &out[i + 9..i + 12])
            .collect();
        let mut expected = vec!["200"; answered_before];
        expected.push("400");
        assert_eq!(statuses, expected, "{case}: {out}");
        assert!(!out.contains("/smuggled"), "{case}: {out}");
        assert!(closed, "{case}: connection must be closed");
        assert_eq!(b.requests(), before + answered_before, "{case}: upstream reached");
    }
}
