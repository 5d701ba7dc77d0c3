//! A request-smuggling tripwire in front of hyper's HTTP/1.1 parser.
//!
//! hyper treats a request that carries both `Content-Length` and
//! `Transfer-Encoding` the RFC 9112 §6.3 way: it drops `Content-Length`,
//! reads the body as chunked, and closes the connection afterwards. It
//! removes the evidence before the gateway sees the request, so the gateway
//! could not answer such a request with 400 as it should.
//!
//! [`HeadWatch`] reads along the inbound byte stream of an HTTP/1.1
//! connection and looks at each request head (up to the blank line) for the
//! two header names. It follows the stream only while it can be sure where
//! heads are: from the start of the connection through bodiless requests.
//! At the first head that announces a body (either header present) it stops
//! for the rest of the connection, after recording that head. A head with
//! both headers is noted by its position on the connection; the proxy
//! refuses that request with 400 and closes the connection. Requests the
//! watcher did not see are left to hyper's (safe) handling. The cost is one
//! scan of each bodiless request's head.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Position (0-based) on the connection of the first request whose head
/// carried both framing headers; `u32::MAX` while none was seen.
#[derive(Debug)]
pub struct Ambiguous(AtomicU32);

impl Ambiguous {
    fn new() -> Self {
        Self(AtomicU32::new(u32::MAX))
    }

    /// Whether the request at `position` on this connection was ambiguous.
    pub fn at(&self, position: u32) -> bool {
        self.0.load(Ordering::Relaxed) == position
    }
}

/// Wraps an inbound HTTP/1.1 stream and watches its request heads.
#[derive(Debug)]
pub struct HeadWatch<T> {
    inner: T,
    buf: Vec<u8>,
    heads: u32,
    done: bool,
    limit: usize,
    found: Arc<Ambiguous>,
}

impl<T> HeadWatch<T> {
    /// Watches `inner`; heads longer than `limit` end the watch (hyper
    /// refuses them anyway). With `active` false the watcher only passes
    /// bytes through (h2 connections).
    pub fn new(inner: T, limit: usize, active: bool) -> (Self, Arc<Ambiguous>) {
        let found = Arc::new(Ambiguous::new());
        (
            Self {
                inner,
                buf: Vec::new(),
                heads: 0,
                done: !active,
                limit,
                found: found.clone(),
            },
            found,
        )
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        loop {
            let Some(end) = find_blank_line(&self.buf) else {
                if self.buf.len() > self.limit {
                    self.stop();
                }
                return;
            };
            let (cl, te) = framing_headers(&self.buf[..end]);
            if cl && te {
                self.found.0.store(self.heads, Ordering::Relaxed);
            }
            self.heads = self.heads.saturating_add(1);
            if cl || te {
                // A body follows; its end is not ours to find.
                self.stop();
                return;
            }
            self.buf.drain(..end);
        }
    }

    fn stop(&mut self) {
        self.done = true;
        self.buf = Vec::new();
    }
}

/// Index just past the first `\r\n\r\n` (or bare `\n\n`), if any.
fn find_blank_line(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|&c| c == b'\n') {
        let at = i + p;
        let rest = &b[at + 1..];
        if rest.starts_with(b"\r\n") {
            return Some(at + 3);
        }
        if rest.starts_with(b"\n") {
            return Some(at + 2);
        }
        i = at + 1;
    }
    None
}

/// Whether a head has a `Content-Length` and a `Transfer-Encoding` line.
/// Names are matched case-insensitively up to optional whitespace before
/// the colon (which hyper refuses, but the check must not be fooled).
fn framing_headers(head: &[u8]) -> (bool, bool) {
    let (mut cl, mut te) = (false, false);
    for line in head.split(|&c| c == b'\n').skip(1) {
        let name = line.split(|&c| c == b':').next().unwrap_or_default();
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            cl = true;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te = true;
        }
    }
    (cl, te)
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadWatch<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if !self.done && buf.filled().len() > before {
            let this = &mut *self;
            this.feed(&buf.filled()[before..]);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadWatch<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(chunks: &[&[u8]]) -> (u32, bool, u32) {
        let (mut w, found) = HeadWatch::new((), 16 * 1024, true);
        for c in chunks {
            if !w.done {
                w.feed(c);
            }
        }
        let pos = (0..4).find(|p| found.at(*p)).unwrap_or(u32::MAX);
        (pos, w.done, w.heads)
    }

    #[test]
    fn finds_both_headers_in_either_order_and_split_reads() {
        assert_eq!(
            watch(&[b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]).0,
            0
        );
        assert_eq!(
            watch(&[
                b"POST / HTTP/1.1\r\nTRANSFER-encoding: chunked\r\nHost: a\r\n",
                b"content-length : 4\r\n\r\n"
            ])
            .0,
            0
        );
    }

    #[test]
    fn follows_bodiless_requests_and_stops_at_a_body() {
        let (pos, done, heads) = watch(&[
            b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]);
        assert_eq!((pos, done, heads), (2, true, 3));
        // After a body it no longer looks: body bytes are never taken for heads.
        let (pos, done, heads) = watch(&[
            b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 60\r\n\r\n",
            b"x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]);
        assert_eq!((pos, done, heads), (u32::MAX, true, 1));
    }

    #[test]
    fn plain_requests_are_not_flagged() {
        let (pos, done, _) =
            watch(&[b"GET / HTTP/1.1\r\nHost: a\r\nX-Content-Length-Ish: 1\r\n\r\n"]);
        assert_eq!((pos, done), (u32::MAX, false));
    }
}
