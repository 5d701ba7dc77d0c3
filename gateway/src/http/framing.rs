//! A request-smuggling tripwire in front of hyper's HTTP/1.1 parser.
//!
//! hyper treats a request that carries both `Content-Length` and
//! `Transfer-Encoding` the RFC 9112 §6.3 way: it drops `Content-Length`,
//! reads the body as chunked, and closes the connection afterwards. It
//! removes the evidence before the gateway sees the request, so the gateway
//! could not answer such a request with 400 as it should.
//!
//! [`HeadWatch`] reads along the inbound byte stream of an HTTP/1.1
//! connection, finds each request head (up to the blank line) and looks in
//! it for the two header names. A head with both is noted by its position
//! on the connection; the proxy refuses that request with 400 and closes the
//! connection. The watcher only observes: it never alters or delays a byte.
//!
//! To find the next head it follows the request boundaries the way hyper
//! does: empty lines before a request line are skipped; a request without
//! either header has no body; a `Content-Length: N` body is skipped by
//! counting N bytes; a `Transfer-Encoding: chunked` body is followed through
//! its chunk-size lines (with chunk extensions), chunk data (counted, not
//! copied), the last chunk and the trailer section up to its empty line.
//! Everything is incremental: a read may end anywhere, also mid-head or
//! mid-CRLF. Only the current head is buffered (at most `limit` bytes); body
//! bytes never are.
//!
//! It stops for the rest of the connection wherever it could not be sure
//! where the next head starts, and leaves the requests after that to
//! hyper's (safe) handling: at a head with both headers (already noted;
//! hyper closes after it), at an invalid, repeated or conflicting
//! `Content-Length`, a `Transfer-Encoding` whose final coding is not
//! `chunked` (or on HTTP/1.0), an `Upgrade` header or the `CONNECT` method
//! (the bytes after such a head may belong to a tunnel), a request line
//! that is not HTTP/1.0 or HTTP/1.1 (such as the HTTP/2 preface), a head
//! longer than `limit`, a chunk-size line longer than 4 KiB or with a
//! missing or overflowing size, a trailer section longer than `limit`, and
//! any other byte hyper's chunked decoder would refuse (hyper closes the
//! connection then anyway). `Expect: 100-continue` changes nothing: the body
//! follows as announced.
//!
//! The cost is one scan of each head, a few comparisons per byte of each
//! chunk-size line and trailer, and one subtraction per read of body data.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest chunk-size line (size, whitespace, extensions, CRLF) followed.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Position (0-based) on the connection of the first request whose head
/// carried both framing headers; `u32::MAX` while none was seen.
#[derive(Debug)]
pub(crate) struct Ambiguous(AtomicU32);

impl Ambiguous {
    fn new() -> Self {
        Self(AtomicU32::new(u32::MAX))
    }

    /// Whether the request at `position` on this connection was ambiguous.
    pub(crate) fn at(&self, position: u32) -> bool {
        self.0.load(Ordering::Relaxed) == position
    }
}

/// Where in the request stream the watcher is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before or in a request head (its bytes so far are in `buf`).
    Head,
    /// In a `Content-Length` body, with this many bytes left.
    Length(u64),
    /// In a chunked body.
    Chunked(Chunk),
    /// Not watching any more on this connection.
    Off,
}

/// Position in a chunked body; the names follow hyper's decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// First hex digit of a chunk size.
    Start,
    /// Further hex digits.
    Size,
    /// Whitespace after the size.
    Lws,
    /// A chunk extension, up to CR.
    Ext,
    /// LF ending the chunk-size line.
    SizeLf,
    /// Chunk data (`size` bytes left).
    Data,
    /// CR after the chunk data.
    DataCr,
    /// LF after the chunk data.
    DataLf,
    /// Start of a trailer line, or CR of the final empty line.
    EndCr,
    /// In a trailer line, up to CR.
    Trailer,
    /// LF ending a trailer line.
    TrailerLf,
    /// LF of the final empty line.
    EndLf,
}

/// What a chunked-body byte leads to.
enum Step {
    Next(Chunk),
    /// The body ended with this byte.
    End,
    /// Not what hyper accepts, or past a bound.
    Stop,
}

/// What follows a request head.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Bodiless,
    Length(u64),
    Chunked,
    /// Where the next head starts is not certain.
    Stop,
}

/// Head buffer capacity kept between requests; larger buffers are freed.
const KEEP_HEAD_CAPACITY: usize = 512;

/// Wraps an inbound HTTP/1.1 stream and watches its request heads.
#[derive(Debug)]
pub(crate) struct HeadWatch<T> {
    inner: T,
    state: State,
    /// The current head's bytes (empty lines before it not included).
    buf: Vec<u8>,
    /// Head-end detector: at the start of a line, and after a CR there.
    line_start: bool,
    line_cr: bool,
    /// Chunked body: bytes left of the chunk data, or the size being read.
    size: u64,
    /// Chunked body: bytes of the current chunk-size line or trailer section.
    line: usize,
    heads: u32,
    limit: usize,
    found: Arc<Ambiguous>,
}

impl<T> HeadWatch<T> {
    /// Watches `inner`; heads (and trailer sections) longer than `limit` end
    /// the watch (hyper refuses such heads anyway). With `active` false the
    /// watcher only passes bytes through (h2 connections).
    pub(crate) fn new(inner: T, limit: usize, active: bool) -> (Self, Arc<Ambiguous>) {
        let found = Arc::new(Ambiguous::new());
        (
            Self {
                inner,
                state: if active { State::Head } else { State::Off },
                buf: Vec::new(),
                line_start: false,
                line_cr: false,
                size: 0,
                line: 0,
                heads: 0,
                limit,
                found: found.clone(),
            },
            found,
        )
    }

    fn watching(&self) -> bool {
        self.state != State::Off
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let used = match self.state {
                State::Off => return,
                State::Head => self.head(bytes),
                State::Length(left) => {
                    let n = usize::try_from(left).map_or(bytes.len(), |l| l.min(bytes.len()));
                    // n <= left, so this cannot wrap.
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Length(left)
                    };
                    n
                }
                State::Chunked(c) => self.chunked(c, bytes),
            };
            bytes = bytes.get(used..).unwrap_or_default();
        }
    }

    /// Takes head bytes from `bytes`; returns how many it used.
    fn head(&mut self, bytes: &[u8]) -> usize {
        let mut skipped = 0;
        if self.buf.is_empty() {
            // Empty lines before a request line are skipped (httparse does;
            // a lone CR there is its error, which closes the connection).
            skipped = bytes
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .unwrap_or(bytes.len());
            self.line_start = false;
            self.line_cr = false;
        }
        let rest = &bytes[skipped..];
        let end = self.blank_line(rest);
        let take = end.unwrap_or(rest.len());
        if self.buf.len() + take > self.limit {
            self.stop();
            return bytes.len();
        }
        self.buf.extend_from_slice(&rest[..take]);
        if end.is_some() {
            let (ambiguous, next) = classify(&self.buf);
            self.release_head();
            if ambiguous {
                self.found.0.store(self.heads, Ordering::Relaxed);
            }
            self.heads = self.heads.saturating_add(1);
            self.state = match next {
                Next::Bodiless | Next::Length(0) => State::Head,
                Next::Length(n) => State::Length(n),
                Next::Chunked => {
                    self.line = 0;
                    State::Chunked(Chunk::Start)
                }
                Next::Stop => {
                    self.stop();
                    return bytes.len();
                }
            };
        }
        skipped + take
    }

    /// Empties the head buffer once a head is classified. A connection
    /// that sent one large head (big cookies, a bearer token) does not keep
    /// that capacity while it sits idle: above [`KEEP_HEAD_CAPACITY`] the
    /// buffer is freed (#14 item 3, memory per connection).
    fn release_head(&mut self) {
        if self.buf.capacity() > KEEP_HEAD_CAPACITY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }

    /// Index just past the blank line ending the head (`\n\r\n` or `\n\n`)
    /// in `bytes`, carrying what it saw over to the next call.
    fn blank_line(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            i += 1;
            match b {
                b'\n' if self.line_start => return Some(i),
                b'\r' if self.line_start && !self.line_cr => self.line_cr = true,
                b'\n' => {
                    self.line_start = true;
                    self.line_cr = false;
                }
                _ => {
                    // Inside a line only its LF matters: jump there.
                    self.line_start = false;
                    self.line_cr = false;
                    i += bytes[i..].iter().position(|&c| c == b'\n')?;
                }
            }
        }
        None
    }

    /// Follows a chunked body through `bytes`; returns how many it used.
    fn chunked(&mut self, mut c: Chunk, bytes: &[u8]) -> usize {
        let mut i = 0;
        while i < bytes.len() {
            if c == Chunk::Data {
                let n =
                    usize::try_from(self.size).map_or(bytes.len() - i, |s| s.min(bytes.len() - i));
                // n <= size, so this cannot wrap.
                self.size -= n as u64;
                i += n;
                if self.size == 0 {
                    c = Chunk::DataCr;
                }
                continue;
            }
            let b = bytes[i];
            i += 1;
            match self.chunk_step(c, b) {
                Step::Next(n) => c = n,
                Step::End => {
                    self.state = State::Head;
                    return i;
                }
                Step::Stop => {
                    self.stop();
                    return bytes.len();
                }
            }
        }
        self.state = State::Chunked(c);
        i
    }

    /// One byte of a chunked body outside chunk data, as hyper reads it.
    fn chunk_step(&mut self, c: Chunk, b: u8) -> Step {
        use Chunk::*;
        self.line += 1;
        let bound = match c {
            Start | Size | Lws | Ext | SizeLf => MAX_CHUNK_LINE,
            _ => self.limit,
        };
        if self.line > bound {
            return Step::Stop;
        }
        let next = match (c, b) {
            (Start, _) => match hex(b) {
                Some(d) => {
                    self.size = u64::from(d);
                    Size
                }
                None => return Step::Stop,
            },
            (Size | Lws, b'\t' | b' ') => Lws,
            (Size | Lws, b';') => Ext,
            (Size | Lws | Ext, b'\r') => SizeLf,
            (Size, _) => {
                let next = hex(b).and_then(|d| {
                    self.size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(d)))
                });
                match next {
                    Some(s) => {
                        self.size = s;
                        Size
                    }
                    None => return Step::Stop,
                }
            }
            (Ext, b'\n') => return Step::Stop,
            (Ext, _) => Ext,
            (SizeLf, b'\n') => {
                // The trailer section is bounded separately from here on.
                self.line = 0;
                if self.size == 0 {
                    EndCr
                } else {
                    Data
                }
            }
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => {
                self.line = 0;
                Start
            }
            (EndCr, b'\r') => EndLf,
            (Trailer, b'\r') => TrailerLf,
            (EndCr | Trailer, _) => Trailer,
            (TrailerLf, b'\n') => EndCr,
            (EndLf, b'\n') => return Step::End,
            (Lws | SizeLf | Data | DataCr | DataLf | TrailerLf | EndLf, _) => return Step::Stop,
        };
        Step::Next(next)
    }

    fn stop(&mut self) {
        self.state = State::Off;
        self.buf = Vec::new();
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether a complete head has both a `Content-Length` and a
/// `Transfer-Encoding` line, and what follows it. Header names are matched
/// case-insensitively up to optional whitespace before the colon (which
/// hyper refuses, but the check must not be fooled).
fn classify(head: &[u8]) -> (bool, Next) {
    let mut lines = head
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let method = request_line
        .split(|&c| c == b' ')
        .next()
        .unwrap_or_default();
    let version = request_line
        .rsplit(|&c| c == b' ')
        .next()
        .unwrap_or_default();
    let http10 = version == b"HTTP/1.0";
    let mut tunnel = method.eq_ignore_ascii_case(b"CONNECT") || !(http10 || version == b"HTTP/1.1");
    let (mut lengths, mut length) = (0u32, None);
    let (mut te, mut chunked) = (false, false);
    for line in lines {
        let (name, value) = match line.iter().position(|&c| c == b':') {
            Some(p) => (&line[..p], &line[p + 1..]),
            None => (line, &b""[..]),
        };
        let name = name.trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
            length = digits(value.trim_ascii());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // The last line's last coding decides, as in hyper.
            te = true;
            let last = value.rsplit(|&c| c == b',').next().unwrap_or_default();
            chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            tunnel = true;
        }
    }
    let ambiguous = lengths > 0 && te;
    let next = if ambiguous || tunnel {
        Next::Stop
    } else if te {
        if chunked && !http10 {
            Next::Chunked
        } else {
            Next::Stop
        }
    } else {
        match (lengths, length) {
            (0, _) => Next::Bodiless,
            (1, Some(n)) => Next::Length(n),
            _ => Next::Stop,
        }
    };
    (ambiguous, next)
}

/// A decimal `Content-Length` value: digits only, no sign, no overflow.
fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// What the watcher makes of `stream` when it arrives in reads of the
/// lengths in `reads` (then the rest in one read): the position of the
/// request it flagged, the number of heads it saw, and whether it is still
/// watching. For the fuzz target (the answer must not depend on how the
/// stream was split); the gateway uses [`HeadWatch`] itself.
#[doc(hidden)]
pub fn watch_reads(stream: &[u8], reads: &[usize], limit: usize) -> (Option<u32>, u32, bool) {
    let (mut w, found) = HeadWatch::new((), limit, true);
    let mut rest = stream;
    for &n in reads {
        let (now, later) = rest.split_at(n.min(rest.len()));
        if w.watching() && !now.is_empty() {
            w.feed(now);
        }
        rest = later;
    }
    if w.watching() && !rest.is_empty() {
        w.feed(rest);
    }
    let flagged = found.0.load(Ordering::Relaxed);
    (
        (flagged != u32::MAX).then_some(flagged),
        w.heads,
        w.watching(),
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadWatch<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.watching() && buf.filled().len() > before {
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

    const LIMIT: usize = 1024;
    const CL_TE: &[u8] =
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";

    /// What the watcher made of a stream: the flagged position, whether it
    /// still watches, how many heads it counted.
    #[derive(Debug, PartialEq, Eq)]
    struct Seen {
        flagged: Option<u32>,
        watching: bool,
        heads: u32,
    }

    fn watcher() -> (HeadWatch<()>, Arc<Ambiguous>) {
        HeadWatch::new((), LIMIT, true)
    }

    fn seen(w: &HeadWatch<()>, found: &Ambiguous) -> Seen {
        let at = found.0.load(Ordering::Relaxed);
        Seen {
            flagged: (at != u32::MAX).then_some(at),
            watching: w.watching(),
            heads: w.heads,
        }
    }

    /// Feeds `chunks` as separate reads, as `poll_read` does.
    fn watch(chunks: &[&[u8]]) -> Seen {
        let (mut w, found) = watcher();
        for c in chunks {
            if w.watching() {
                w.feed(c);
            }
        }
        seen(&w, &found)
    }

    /// Feeds `stream` in reads of the sizes `next` gives (at least 1).
    fn watch_split(stream: &[u8], mut next: impl FnMut() -> usize) -> Seen {
        let (mut w, found) = watcher();
        let mut rest = stream;
        while !rest.is_empty() {
            let n = next().clamp(1, rest.len());
            if w.watching() {
                w.feed(&rest[..n]);
            }
            assert!(w.buf.len() <= LIMIT);
            rest = &rest[n..];
        }
        seen(&w, &found)
    }

    /// A small deterministic generator (xorshift64).
    fn rng(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// The result is the same whatever the reads are: one read, byte by
    /// byte, every split into two reads, and random read sizes.
    fn same_for_every_split(stream: &[u8]) -> Seen {
        let whole = watch(&[stream]);
        assert_eq!(watch_split(stream, || 1), whole, "byte by byte");
        for cut in 1..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(watch(&[a, b]), whole, "split at {cut}");
        }
        for seed in 1..200u64 {
            let mut r = rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let max = [3, 17, 64, 700][seed as usize % 4];
            let got = watch_split(stream, || (r() % max) as usize + 1);
            assert_eq!(got, whole, "seed {seed}");
        }
        whole
    }

    fn stream(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn finds_both_headers_in_either_order_and_split_reads() {
        assert_eq!(watch(&[CL_TE]).flagged, Some(0));
        assert_eq!(
            watch(&[
                b"POST / HTTP/1.1\r\nTRANSFER-encoding: chunked\r\nHost: a\r\n",
                b"content-length : 4\r\n\r\n"
            ])
            .flagged,
            Some(0)
        );
    }

    #[test]
    fn follows_bodiless_requests() {
        let s = watch(&[
            b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
            CL_TE,
        ]);
        assert_eq!(
            s,
            Seen {
                flagged: Some(2),
                watching: false,
                heads: 3
            }
        );
    }

    #[test]
    fn cl_te_after_a_content_length_body_is_flagged() {
        let s = same_for_every_split(&stream(&[
            b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789",
            b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            CL_TE,
        ]));
        assert_eq!(
            s,
            Seen {
                flagged: Some(2),
                watching: false,
                heads: 3
            }
        );
    }

    #[test]
    fn body_bytes_are_never_taken_for_heads() {
        // A CL+TE head inside a Content-Length body, then inside chunk data.
        let fake = &CL_TE[..CL_TE.len() - 5];
        let s = same_for_every_split(&stream(&[
            format!(
                "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
                fake.len() + 4
            )
            .as_bytes(),
            b"x\r\n\r",
            fake,
            format!(
                "POST /2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
                fake.len()
            )
            .as_bytes(),
            fake,
            b"\r\n0\r\n\r\n",
            b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
        ]));
        assert_eq!(
            s,
            Seen {
                flagged: None,
                watching: true,
                heads: 3
            }
        );
    }

    #[test]
    fn cl_te_after_a_chunked_body_with_extensions_and_trailers_is_flagged() {
        let s = same_for_every_split(&stream(&[
            b"POST /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
            b"5;name=value;q=\"a;b\"\r\nhello\r\n",
            b"0A \t;ext\r\n\r\n\r\n0\r\n\r\n0\r\n",
            b"1F\r\n0123456789abcdef0123456789abcde\r\n",
            b"000\r\nX-Trailer: 1\r\nContent-Length: 5\r\n\r\n",
            b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            CL_TE,
        ]));
        assert_eq!(
            s,
            Seen {
                flagged: Some(3),
                watching: false,
                heads: 4
            }
        );
    }

    #[test]
    fn a_long_keep_alive_sequence_gives_the_same_result_for_every_split() {
        let s = same_for_every_split(&stream(&[
            b"\r\n\r\nGET /0 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\nGET /1 HTTP/1.0\nHost: a\nConnection: keep-alive\n\n",
            b"PUT /2 HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\ncontent-length:  3 \r\n\r\nabc",
            b"POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"3;a=b\r\n\r\n\r\r\n2\r\n\n\n\r\n0;end\r\nT: v\r\n\r\n",
            b"POST /4 HTTP/1.1\r\nX-Content-Length: 9\r\nX-Transfer-Encoding: chunked\r\n\r\n",
            b"DELETE /5 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n",
            CL_TE,
            b"GET /7 HTTP/1.1\r\nHost: a\r\n\r\n",
        ]));
        assert_eq!(
            s,
            Seen {
                flagged: Some(6),
                watching: false,
                heads: 7
            }
        );
    }

    #[test]
    fn plain_requests_are_not_flagged() {
        let s = watch(&[b"GET / HTTP/1.1\r\nHost: a\r\nX-Content-Length-Ish: 1\r\n\r\n"]);
        assert_eq!(
            s,
            Seen {
                flagged: None,
                watching: true,
                heads: 1
            }
        );
    }

    #[test]
    fn stops_where_the_next_head_is_uncertain() {
        let long_ext = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\nx\r\n0\r\n\r\n",
            "e".repeat(MAX_CHUNK_LINE)
        );
        let long_head = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "h".repeat(LIMIT));
        let long_trailer = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: {}\r\n\r\n",
            "t".repeat(LIMIT)
        );
        let chunked = |body: &str| {
            format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
        };
        let cases: Vec<(&str, String)> = vec![
            ("invalid Content-Length", "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n".into()),
            ("Content-Length with a letter", "POST / HTTP/1.1\r\nContent-Length: 5a\r\n\r\n".into()),
            ("empty Content-Length", "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n".into()),
            (
                "overflowing Content-Length",
                "POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n".into(),
            ),
            (
                "duplicate Content-Length",
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx".into(),
            ),
            (
                "conflicting Content-Length",
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx".into(),
            ),
            ("Content-Length list", "POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx".into()),
            (
                "Transfer-Encoding not ending in chunked",
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n".into(),
            ),
            (
                "a later Transfer-Encoding line not chunked",
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n".into(),
            ),
            (
                "Transfer-Encoding on HTTP/1.0",
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
            ),
            (
                "Upgrade",
                "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".into(),
            ),
            ("CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n".into()),
            ("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into()),
            ("head longer than the limit", long_head),
            ("chunk-size line longer than 4 KiB", long_ext),
            ("trailer section longer than the limit", long_trailer),
            ("missing chunk size", chunked(";e\r\n\r\n")),
            ("invalid chunk size", chunked("zz\r\n\r\n")),
            ("overflowing chunk size", chunked("10000000000000000\r\nx\r\n0\r\n\r\n")),
            ("digit after chunk-size whitespace", chunked("1 1\r\nx\r\n0\r\n\r\n")),
            ("bare LF after the chunk size", chunked("1\nx\r\n0\r\n\r\n")),
            ("LF in a chunk extension", chunked("1;a\nx\r\n0\r\n\r\n")),
            ("chunk data not followed by CRLF", chunked("1\r\nxy\r\n0\r\n\r\n")),
            ("chunk data followed by a bare LF", chunked("1\r\nx\n0\r\n\r\n")),
            ("CR without LF ending a trailer line", chunked("0\r\nT: v\rx\r\n\r\n")),
            ("CR without LF ending the trailer section", chunked("0\r\n\rx\r\n")),
        ];
        for (case, first) in cases {
            // It stops within `first`, not later for some other reason.
            assert!(!watch(&[first.as_bytes()]).watching, "{case}");
            let s = same_for_every_split(&stream(&[first.as_bytes(), CL_TE]));
            assert_eq!((s.flagged, s.watching), (None, false), "{case}");
        }
        // A CL+TE head is flagged and ends the watch: hyper closes after it.
        let s = same_for_every_split(&stream(&[CL_TE, CL_TE]));
        assert_eq!(
            s,
            Seen {
                flagged: Some(0),
                watching: false,
                heads: 1
            }
        );
        // Expect: 100-continue is not a reason to stop.
        let s = same_for_every_split(&stream(&[
            b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab",
            CL_TE,
        ]));
        assert_eq!(s.flagged, Some(1));
    }

    #[test]
    fn huge_bodies_do_not_grow_the_buffer() {
        // Body data full of what looks like CRLFs and CL+TE heads.
        let data = CL_TE.repeat(16 * 1024 / CL_TE.len() + 1);
        let data = &data[..16 * 1024];
        let read = 16 * 1024u64;
        let reads = 4 * 1024u64; // 64 MiB of body
        for (head, tail) in [
            (
                format!(
                    "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                    read * reads
                ),
                "",
            ),
            (
                format!(
                    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x};e=1\r\n",
                    read * reads
                ),
                "\r\n0\r\n\r\n",
            ),
        ] {
            let (mut w, found) = watcher();
            w.feed(head.as_bytes());
            let cap = w.buf.capacity();
            assert!(cap <= head.len() * 2, "{cap}");
            for _ in 0..reads {
                w.feed(data);
                assert_eq!(w.buf.capacity(), cap);
            }
            w.feed(tail.as_bytes());
            w.feed(CL_TE);
            assert_eq!(
                seen(&w, &found),
                Seen {
                    flagged: Some(1),
                    watching: false,
                    heads: 2
                }
            );
        }
    }
    #[test]
    fn a_large_head_does_not_stay_buffered_while_the_connection_idles() {
        // One request with a big cookie, then an idle keep-alive connection:
        // the head buffer must not keep the big head's capacity.
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nCookie: {}\r\n\r\n",
            "c".repeat(900)
        );
        let (mut w, found) = watcher();
        w.feed(big.as_bytes());
        assert!(
            w.buf.capacity() <= KEEP_HEAD_CAPACITY,
            "{}",
            w.buf.capacity()
        );
        // Small heads keep their (small) buffer between requests.
        w.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(w.buf.capacity() <= KEEP_HEAD_CAPACITY);
        // And the watch goes on as before.
        w.feed(CL_TE);
        assert_eq!(
            seen(&w, &found),
            Seen {
                flagged: Some(2),
                watching: false,
                heads: 3
            }
        );
    }
}
