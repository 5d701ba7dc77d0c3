//! The PROXY protocol (HAProxy, versions 1 and 2): the header a load
//! balancer in TCP mode writes before the client's first byte, naming the
//! client's address. Spec: <https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt>.
//!
//! [`parse`] is a pure function over the bytes read so far (fuzzed:
//! `fuzz/fuzz_targets/proxy_protocol.rs`); [`read_header`] reads one header
//! from a socket under a deadline and hands back the bytes read past it,
//! which [`Prefixed`] replays to the TLS acceptor.
//!
//! What is accepted (everything else is an error, and the connection is
//! closed before TLS):
//! - v1: `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` with single
//!   spaces, addresses of the named family, decimal ports without sign or
//!   leading zeros, at most 107 bytes; `PROXY UNKNOWN…\r\n` (the balancer
//!   does not know the client: the socket peer is used).
//! - v2: the 12-byte signature, version 2, command LOCAL (the balancer's own
//!   health check: the socket peer is used) or PROXY; family INET or INET6
//!   over STREAM with the address block, UNSPEC or UNIX (the socket peer
//!   is used). TLVs after the addresses are walked (each must fit) and
//!   ignored. At most [`V2_MAX_BODY`] bytes after the 16-byte preamble.
//!
//! The version is the listener's setting, never guessed from the bytes: a
//! listener that expects v2 refuses v1 and the other way round.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header, CRLF included (the spec's 107 bytes).
pub const V1_MAX: usize = 107;
/// Largest v2 body (addresses and TLVs) accepted. The spec allows 65,535;
/// balancers send the addresses and a few short TLVs (unique id, SSL and
/// cloud endpoint details), far below this.
pub const V2_MAX_BODY: usize = 2048;
const V1_PREFIX: &[u8] = b"PROXY ";

/// Which PROXY protocol version a listener expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text format.
    V1,
    /// The binary format.
    V2,
}

/// What a PROXY header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The connection was proxied for this client, to this destination.
    Proxy {
        /// The client's address.
        source: SocketAddr,
        /// The address the client connected to.
        destination: SocketAddr,
    },
    /// v2 LOCAL: the balancer speaks for itself (health checks); use the
    /// socket peer.
    Local,
    /// v1 `UNKNOWN`, or v2 PROXY for an unspecified or UNIX family: the
    /// balancer does not know an IP client; use the socket peer.
    Unknown,
}

/// Why bytes are not a PROXY header (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The bytes so far are a valid beginning; at least one more is needed.
    #[error("incomplete PROXY header")]
    Incomplete,
    /// The header is longer than this gateway accepts.
    #[error("PROXY header too long")]
    TooLong,
    /// The bytes are not a valid header.
    #[error("invalid PROXY header: {0}")]
    Invalid(&'static str),
}

/// Parses a header of `version` at the start of `buf`. Returns the header
/// and how many bytes it took; [`ParseError::Incomplete`] when `buf` is a
/// valid beginning that needs more bytes.
pub fn parse(version: Version, buf: &[u8]) -> Result<(Header, usize), ParseError> {
    match version {
        Version::V1 => parse_v1(buf),
        Version::V2 => parse_v2(buf),
    }
}

fn parse_v1(buf: &[u8]) -> Result<(Header, usize), ParseError> {
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Err(ParseError::Invalid("v1 header must start with `PROXY `"));
    }
    let Some(end) = buf.iter().take(V1_MAX).position(|&b| b == b'\n') else {
        return Err(if buf.len() >= V1_MAX {
            ParseError::TooLong
        } else {
            ParseError::Incomplete
        });
    };
    if end < V1_PREFIX.len() || buf[end - 1] != b'\r' {
        return Err(ParseError::Invalid("v1 header must end in CRLF"));
    }
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..end - 1])
        .map_err(|_| ParseError::Invalid("v1 header is not ASCII"))?;
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return Ok((Header::Unknown, end + 1));
    }
    let mut parts = line.split(' ');
    let proto = parts.next().unwrap_or("");
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(ParseError::Invalid(
            "v1 header needs four fields after the protocol",
        ));
    };
    let (src, dst): (IpAddr, IpAddr) = match proto {
        "TCP4" => (
            v1_ip::<Ipv4Addr>(src)?.into(),
            v1_ip::<Ipv4Addr>(dst)?.into(),
        ),
        "TCP6" => (
            v1_ip::<Ipv6Addr>(src)?.into(),
            v1_ip::<Ipv6Addr>(dst)?.into(),
        ),
        _ => {
            return Err(ParseError::Invalid(
                "v1 protocol must be TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let header = Header::Proxy {
        source: SocketAddr::new(src, v1_port(sport)?),
        destination: SocketAddr::new(dst, v1_port(dport)?),
    };
    Ok((header, end + 1))
}

fn v1_ip<T: std::str::FromStr>(s: &str) -> Result<T, ParseError> {
    s.parse()
        .map_err(|_| ParseError::Invalid("v1 address does not match its protocol"))
}

fn v1_port(s: &str) -> Result<u16, ParseError> {
    let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return Err(ParseError::Invalid(
            "v1 port must be decimal without leading zeros",
        ));
    }
    s.parse()
        .map_err(|_| ParseError::Invalid("v1 port out of range"))
}

fn parse_v2(buf: &[u8]) -> Result<(Header, usize), ParseError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] != V2_SIGNATURE[..n] {
        return Err(ParseError::Invalid("v2 signature missing"));
    }
    let Some(pre) = buf.get(..16) else {
        return Err(ParseError::Incomplete);
    };
    let (ver_cmd, fam, len) = (
        pre[12],
        pre[13],
        usize::from(u16::from_be_bytes([pre[14], pre[15]])),
    );
    if ver_cmd >> 4 != 2 {
        return Err(ParseError::Invalid("v2 version must be 2"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ParseError::Invalid("v2 command must be LOCAL or PROXY")),
    };
    if len > V2_MAX_BODY {
        return Err(ParseError::TooLong);
    }
    let Some(body) = buf.get(16..16 + len) else {
        return Err(ParseError::Incomplete);
    };
    let total = 16 + len;
    if local {
        // LOCAL: the address block and TLVs are to be ignored, but the
        // length still says where the client's bytes start.
        return Ok((Header::Local, total));
    }
    let width = match (fam >> 4, fam & 0x0f) {
        // UNSPEC or UNIX: nothing usable in the body, which is skipped.
        (0 | 3, _) => return Ok((Header::Unknown, total)),
        (1 | 2, p) if p != 1 => return Err(ParseError::Invalid("v2 transport must be STREAM")),
        (1, _) => 4,
        (2, _) => 16,
        _ => return Err(ParseError::Invalid("v2 address family unknown")),
    };
    let header = v2_inet(body, width)?;
    check_tlvs(&body[2 * width + 4..])?;
    Ok((header, total))
}

/// Source and destination of an INET (`width` 4) or INET6 (16) block.
fn v2_inet(body: &[u8], width: usize) -> Result<Header, ParseError> {
    let block = body
        .get(..2 * width + 4)
        .ok_or(ParseError::Invalid("v2 length shorter than its addresses"))?;
    let ip = |b: &[u8]| -> Result<IpAddr, ParseError> {
        match <[u8; 4]>::try_from(b) {
            Ok(a) => Ok(a.into()),
            Err(_) => <[u8; 16]>::try_from(b)
                .map(IpAddr::from)
                .map_err(|_| ParseError::Invalid("v2 address width")),
        }
    };
    let port = |i: usize| u16::from_be_bytes([block[i], block[i + 1]]);
    Ok(Header::Proxy {
        source: SocketAddr::new(ip(&block[..width])?, port(2 * width)),
        destination: SocketAddr::new(ip(&block[width..2 * width])?, port(2 * width + 2)),
    })
}

/// Walks the TLVs: each is type (1 byte), length (2 bytes), value, and
/// must fit. Their content is not used.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ParseError> {
    while !tlvs.is_empty() {
        let Some(&[_, hi, lo]) = tlvs.get(..3) else {
            return Err(ParseError::Invalid("v2 TLV header truncated"));
        };
        let end = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        tlvs = tlvs
            .get(end..)
            .ok_or(ParseError::Invalid("v2 TLV longer than the header"))?;
    }
    Ok(())
}

/// Why no PROXY header could be read from a connection.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes are not a header the listener accepts.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The peer closed the connection first.
    #[error("connection closed before the PROXY header was complete")]
    Closed,
    /// The header did not arrive in time.
    #[error("no complete PROXY header within {0:?}")]
    TimedOut(Duration),
    /// The socket failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one header of `version` from `io` within `timeout`. Returns it
/// and the bytes read after it (the start of the TLS handshake), for
/// [`Prefixed`]. Never holds more than the longest header plus one read.
pub async fn read_header<R: AsyncRead + Unpin>(
    io: &mut R,
    version: Version,
    timeout: Duration,
) -> Result<(Header, Vec<u8>), ReadError> {
    let read = async {
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        loop {
            match parse(version, &buf) {
                Ok((header, used)) => {
                    buf.drain(..used);
                    return Ok((header, buf));
                }
                Err(ParseError::Incomplete) => {}
                Err(e) => return Err(e.into()),
            }
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                return Err(ReadError::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ReadError::TimedOut(timeout))?
}

/// A stream that first yields `prefix`, then reads from the inner stream;
/// writes go straight through. Carries the bytes read past a PROXY header
/// on to TLS.
#[derive(Debug)]
pub struct Prefixed<T> {
    prefix: Vec<u8>,
    pos: usize,
    inner: T,
}

impl<T> Prefixed<T> {
    /// `inner`, with `prefix` read first.
    pub fn new(prefix: Vec<u8>, inner: T) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let rest = &this.prefix[this.pos..];
            let n = rest.len().min(out.remaining());
            out.put_slice(&rest[..n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, out)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
}

#[cfg(test)]
mod tests;
