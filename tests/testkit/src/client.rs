//! Real TLS clients for the tests: rustls + hyper for h1 and h2, and raw
//! TLS sockets for framing attacks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Which HTTP version to speak (chosen through ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H2,
}

/// Root store with the given PEM CA.
pub fn roots(ca_pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

/// A TLS client configuration trusting `ca_pem`, optionally presenting a
/// client certificate.
pub fn tls_config(ca_pem: &str, client: Option<(&str, &str)>, proto: Proto) -> ClientConfig {
    let b = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca_pem));
    let mut cfg = match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_slice_iter(cert.as_bytes())
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
    };
    cfg.alpn_protocols = match proto {
        Proto::H1 => vec![b"http/1.1".to_vec()],
        Proto::H2 => vec![b"h2".to_vec()],
    };
    cfg
}

/// Opens a TLS connection to `addr` with SNI `sni`.
pub async fn connect(
    cfg: Arc<ClientConfig>,
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tls_over(cfg, tcp, sni).await
}

/// A TLS client handshake with SNI `sni` on `tcp`.
pub async fn tls_over(
    cfg: Arc<ClientConfig>,
    tcp: TcpStream,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(sni.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    TlsConnector::from(cfg).connect(name, tcp).await
}

/// A TCP connection to `addr` from the local address `from` (another
/// loopback address such as 127.0.0.5 stands for a client that is not the
/// load balancer at 127.0.0.1).
pub async fn tcp_from(from: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = match from {
        std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // Port 0 here is the source port of an outgoing connection.
    sock.bind(SocketAddr::new(from, 0))?;
    sock.connect(addr).await
}

/// Like [`connect`], from the local address `from` (see [`tcp_from`]).
pub async fn connect_from(
    cfg: Arc<ClientConfig>,
    from: std::net::IpAddr,
    addr: SocketAddr,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    tls_over(cfg, tcp_from(from, addr).await?, sni).await
}

/// Sends one request on a fresh connection. `req`'s URI is a path; the
/// `Host` header (h1) or authority (h2) is `sni`.
pub async fn send(
    cfg: Arc<ClientConfig>,
    addr: SocketAddr,
    sni: &str,
    proto: Proto,
    req: Request<Full<Bytes>>,
) -> Result<Resp, String> {
    let tls = connect(cfg, addr, sni).await.map_err(|e| e.to_string())?;
    send_on(tls, addr, sni, proto, req).await
}

/// Sends one request on an established TLS stream.
pub async fn send_on(
    tls: TlsStream<TcpStream>,
    addr: SocketAddr,
    sni: &str,
    proto: Proto,
    mut req: Request<Full<Bytes>>,
) -> Result<Resp, String> {
    let io = TokioIo::new(tls);
    let resp = match proto {
        Proto::H1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            if !req.headers().contains_key("host") {
                let host = format!("{sni}:{}", addr.port());
                req.headers_mut().insert("host", host.parse().unwrap());
            }
            sender
                .send_request(req)
                .await
                .map_err(|e| format!("{e:?}"))?
        }
        Proto::H2 => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let uri = format!(
                "https://{sni}:{}{}",
                addr.port(),
                req.uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/")
            );
            *req.uri_mut() = uri.parse().unwrap();
            sender
                .send_request(req)
                .await
                .map_err(|e| format!("{e:?}"))?
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// A simple GET.
pub async fn get(
    cfg: Arc<ClientConfig>,
    addr: SocketAddr,
    sni: &str,
    proto: Proto,
    path: &str,
) -> Result<Resp, String> {
    let req = Request::get(path).body(Full::new(Bytes::new())).unwrap();
    send(cfg, addr, sni, proto, req).await
}

/// Writes raw bytes on a TLS (http/1.1) connection and reads until the
/// server closes or `wait` passes without data. Returns what was read and
/// whether the server closed the connection.
pub async fn raw_exchange(
    cfg: Arc<ClientConfig>,
    addr: SocketAddr,
    sni: &str,
    bytes: &[u8],
    wait: Duration,
) -> (String, bool) {
    let mut tls = connect(cfg, addr, sni).await.unwrap();
    tls.write_all(bytes).await.unwrap();
    tls.flush().await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout(wait, tls.read(&mut buf)).await {
            Ok(Ok(0)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Plain-HTTP GET (admin listener).
pub async fn plain_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
