//! RFC 3161 timestamps: the [`TimestampAuthority`] trait, a minimal
//! blocking HTTP/1.1 client for `http://` TSAs ([`HttpTsa`]), and the
//! checks every token passes before it goes into a signature.
//!
//! RFC 3161 over plain HTTP is common and sufficient: the token is signed
//! by the TSA and checked here (signature by the certificate the token
//! carries, our message imprint, our nonce). Whether that TSA certificate
//! is trusted is for the relying party, as for any CAdES/PAdES B-T. For
//! `https://` TSAs put a local relay in front; this crate opens no TLS.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::der::{self, oid, tag, Reader};
use crate::Error;

/// Something that returns an RFC 3161 `TimeStampToken` for a SHA-256
/// digest.
pub trait TimestampAuthority: Send + Sync {
    /// A DER `TimeStampToken` (a CMS `ContentInfo`) whose message imprint
    /// is SHA-256 `digest_sha256`.
    fn timestamp(&self, digest_sha256: &[u8]) -> Result<Vec<u8>, Error>;
}

/// Most a TSA response may be.
const MAX_RESPONSE: usize = 1 << 20;

/// An RFC 3161 TSA reached by HTTP POST of `application/timestamp-query`.
#[derive(Debug, Clone)]
pub struct HttpTsa {
    url: String,
    host: String,
    port: u16,
    path: String,
    timeout: Duration,
}

impl HttpTsa {
    /// A TSA at `url` (`http://host[:port]/path`); every network step
    /// (connect, write, each read) gives up after `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, Error> {
        let err = |reason: &str| Error::Tsa {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| err("only http:// URLs are supported (the token is signed)"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(err("no host, or user info in the URL"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, p.parse().map_err(|_| err("bad port"))?)
            }
            _ => (authority, 80),
        };
        if path.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err(err("bad path"));
        }
        Ok(Self {
            url: url.to_owned(),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            timeout,
        })
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Tsa {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    fn post(&self, body: &[u8]) -> Result<Vec<u8>, Error> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let addrs = (host, self.port)
            .to_socket_addrs()
            .map_err(|e| self.err(format!("cannot resolve: {e}")))?;
        let mut last = None;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let mut stream = stream.ok_or_else(|| {
            self.err(format!(
                "cannot connect: {}",
                last.map(|e| e.to_string())
                    .unwrap_or_else(|| "no address".into())
            ))
        })?;
        let io = |e: std::io::Error| self.err(e.to_string());
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let host_header = if self.port == 80 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: application/timestamp-query\r\nAccept: application/timestamp-reply\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: stadttor\r\n\r\n",
            self.path,
            body.len()
        );
        stream.write_all(head.as_bytes()).map_err(io)?;
        stream.write_all(body).map_err(io)?;
        stream.flush().map_err(io)?;
        let mut response = Vec::new();
        stream
            .take(MAX_RESPONSE as u64 + 1)
            .read_to_end(&mut response)
            .map_err(io)?;
        if response.len() > MAX_RESPONSE {
            return Err(self.err("response larger than 1 MiB"));
        }
        self.parse_http(&response)
    }

    fn parse_http(&self, response: &[u8]) -> Result<Vec<u8>, Error> {
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| self.err("no complete HTTP response head"))?;
        let head = std::str::from_utf8(&response[..end])
            .map_err(|_| self.err("HTTP head is not UTF-8"))?;
        let body = &response[end + 4..];
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or_default();
        let code = status.split(' ').nth(1).unwrap_or_default();
        if !status.starts_with("HTTP/1.") || code != "200" {
            return Err(self.err(format!("HTTP status `{status}`")));
        }
        let mut content_length = None;
        let mut chunked = false;
        let mut content_type_ok = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return Err(self.err("bad header line"));
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    content_length = Some(
                        value
                            .parse::<usize>()
                            .map_err(|_| self.err("bad Content-Length"))?,
                    )
                }
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "content-type" => {
                    content_type_ok = value
                        .to_ascii_lowercase()
                        .starts_with("application/timestamp-reply")
                }
                _ => {}
            }
        }
        if !content_type_ok {
            return Err(self.err("Content-Type is not application/timestamp-reply"));
        }
        if chunked {
            return dechunk(body).ok_or_else(|| self.err("bad chunked body"));
        }
        match content_length {
            Some(n) => body
                .get(..n)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| self.err("body shorter than Content-Length")),
            None => Ok(body.to_vec()),
        }
    }
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

impl TimestampAuthority for HttpTsa {
    fn timestamp(&self, digest_sha256: &[u8]) -> Result<Vec<u8>, Error> {
        if digest_sha256.len() != 32 {
            return Err(self.err("a SHA-256 digest has 32 bytes"));
        }
        let mut nonce = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| self.err("no randomness for the nonce"))?;
        nonce[0] &= 0x7f;
        let request = der::seq(&[
            &der::small_int(1),
            &der::seq(&[
                &der::seq(&[&der::oid(oid::SHA256)]),
                &der::octets(digest_sha256),
            ]),
            &der::uint(&nonce),
            &[tag::BOOLEAN, 1, 0xff],
        ]);
        let response = self.post(&request)?;
        let token = parse_response(&response).map_err(|e| self.err(e.to_string()))?;
        let info = verify_token(&token).map_err(|e| self.err(e.to_string()))?;
        info.check_imprint(digest_sha256)
            .map_err(|e| self.err(e.to_string()))?;
        let want = der::uint(&nonce);
        if info.nonce.as_deref() != Some(&want[2..]) {
            return Err(self.err("the token does not carry our nonce"));
        }
        Ok(token)
    }
}

/// The `TimeStampToken` from a DER `TimeStampResp`, if the TSA granted it.
pub fn parse_response(response: &[u8]) -> Result<Vec<u8>, Error> {
    let resp = der::read_exact(response, tag::SEQUENCE)?;
    let mut r = Reader::new(resp.value);
    let status = r.expect(tag::SEQUENCE)?;
    let code = Reader::new(status.value).expect(tag::INTEGER)?.value;
    if code != [0] && code != [1] {
        return Err(Error::Malformed {
            what: "timestamp response",
            reason: format!("the TSA refused: PKIStatus {code:?}"),
        });
    }
    let token = r.expect(tag::SEQUENCE)?;
    Ok(token.raw.to_vec())
}

/// What a checked timestamp token says.
#[derive(Debug, Clone)]
pub struct TstInfo {
    /// `genTime`, as the GeneralizedTime text (`YYYYMMDDhhmmss[.f]Z`).
    pub gen_time: String,
    /// The message imprint's hash algorithm OID (DER content octets).
    pub imprint_algorithm: Vec<u8>,
    /// The message imprint.
    pub imprint: Vec<u8>,
    /// The nonce's INTEGER content octets, if any.
    pub nonce: Option<Vec<u8>>,
    /// The TSA's signing certificate, DER.
    pub tsa_certificate: Vec<u8>,
}

impl TstInfo {
    /// Fails unless the imprint is SHA-256 `digest`.
    pub fn check_imprint(&self, digest: &[u8]) -> Result<(), Error> {
        if self.imprint_algorithm != oid::SHA256 || self.imprint != digest {
            return Err(Error::BadSignature {
                reason: "the timestamp is not over this data (message imprint mismatch)".into(),
            });
        }
        Ok(())
    }
}

/// Verifies a `TimeStampToken`'s CMS signature (by the certificate it
/// carries) and returns its `TSTInfo`.
pub fn verify_token(token: &[u8]) -> Result<TstInfo, Error> {
    let v = super::cms::verify_detached(token, None)?;
    if v.content_type != oid::TST_INFO {
        return Err(Error::Malformed {
            what: "timestamp token",
            reason: "content is not a TSTInfo".into(),
        });
    }
    let content = v.content.unwrap_or_default();
    let tst = der::read_exact(&content, tag::SEQUENCE)?;
    let mut r = Reader::new(tst.value);
    r.expect(tag::INTEGER)?;
    r.expect(tag::OID)?;
    let mi = r.expect(tag::SEQUENCE)?;
    let mut m = Reader::new(mi.value);
    let alg = m.expect(tag::SEQUENCE)?;
    let imprint_algorithm = Reader::new(alg.value).expect(tag::OID)?.value.to_vec();
    let imprint = m.expect(tag::OCTET_STRING)?.value.to_vec();
    r.expect(tag::INTEGER)?;
    let gen_time = String::from_utf8_lossy(r.expect(tag::GENERALIZED_TIME)?.value).into_owned();
    r.optional(tag::SEQUENCE)?;
    r.optional(tag::BOOLEAN)?;
    let nonce = r.optional(tag::INTEGER)?.map(|t| t.value.to_vec());
    Ok(TstInfo {
        gen_time,
        imprint_algorithm,
        imprint,
        nonce,
        tsa_certificate: v.signer,
    })
}

/// Asks `tsa` and checks the token (signature, imprint) before use.
pub(crate) fn timestamp_checked(
    tsa: &dyn TimestampAuthority,
    digest_sha256: &[u8],
) -> Result<Vec<u8>, Error> {
    let token = tsa.timestamp(digest_sha256)?;
    verify_token(&token)?.check_imprint(digest_sha256)?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = HttpTsa::new("http://127.0.0.1:3180/tsa", Duration::from_secs(1)).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 3180, "/tsa")
        );
        let t = HttpTsa::new("http://tsa.example", Duration::from_secs(1)).unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = HttpTsa::new("http://[::1]:8080/", Duration::from_secs(1)).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("[::1]", 8080));
        assert!(HttpTsa::new("https://tsa.example/", Duration::from_secs(1)).is_err());
        assert!(HttpTsa::new("http://u@tsa.example/", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert!(dechunk(b"5\r\nab").is_none());
    }
}
