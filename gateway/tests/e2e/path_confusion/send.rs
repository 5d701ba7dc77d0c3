//! The corpus' two ways onto the wire: an HTTP/1.1 request line written
//! byte for byte on a TLS socket (no client library touches the target),
//! and an h2 request whose `:path` is the target, for targets that are a
//! valid `:path` as they stand.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use testkit::client;
use testkit::normalising::SECRET_MARKER;

use super::Case;

/// What the client got back.
#[derive(Debug)]
pub(super) struct Reply {
    /// 0 when there was no HTTP response.
    pub(super) status: u16,
    /// The gateway's `x-request-id`, which the upstream logs.
    pub(super) id: Option<String>,
    /// The response (head or body) carries the protected file's marker.
    pub(super) secret: bool,
    /// Why there was no response.
    pub(super) error: Option<String>,
}

/// `GET <target> HTTP/1.1` on a fresh TLS connection; `Host` is the
/// target's authority for absolute-form targets.
pub(super) async fn h1(cfg: Arc<ClientConfig>, addr: SocketAddr, case: &Case) -> Reply {
    let host = case
        .authority()
        .map_or_else(|| format!("localhost:{}", addr.port()), str::to_owned);
    let mut req = Vec::new();
    req.extend_from_slice(b"GET ");
    req.extend_from_slice(case.target.as_bytes());
    req.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(b"\r\nconnection: close\r\n\r\n");
    let (raw, _) = client::raw_exchange(cfg, addr, "localhost", &req, Duration::from_secs(5)).await;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let head = raw.split("\r\n\r\n").next().unwrap_or("");
    let id = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-request-id")
            .then(|| v.trim().to_owned())
    });
    Reply {
        status,
        id,
        secret: raw.contains(SECRET_MARKER),
        error: (status == 0).then(|| format!("no HTTP/1.1 response: {raw:?}")),
    }
}

/// `GET` with `:path` = `target` over h2 (also when it is not a path:
/// `*`, `secret/file`, `http://…`), or `None` when the `http` crate
/// would not send it unchanged (fragments, bytes it refuses).
pub(super) async fn h2(cfg: Arc<ClientConfig>, addr: SocketAddr, target: &str) -> Option<Reply> {
    let uri = http::Uri::builder()
        .scheme("https")
        .authority(format!("localhost:{}", addr.port()))
        .path_and_query(target)
        .build()
        .ok()?;
    if uri.path_and_query().map(|p| p.as_str()) != Some(target) {
        return None;
    }
    let req = http::Request::get(uri)
        .body(Full::new(Bytes::new()))
        .unwrap();
    Some(match exchange_h2(cfg, addr, req).await {
        Ok((status, id, body)) => Reply {
            status,
            id,
            secret: String::from_utf8_lossy(&body).contains(SECRET_MARKER),
            error: None,
        },
        Err(e) => Reply {
            status: 0,
            id: None,
            secret: false,
            error: Some(e),
        },
    })
}

async fn exchange_h2(
    cfg: Arc<ClientConfig>,
    addr: SocketAddr,
    req: http::Request<Full<Bytes>>,
) -> Result<(u16, Option<String>, Bytes), String> {
    let tls = client::connect(cfg, addr, "localhost")
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, id, body))
}

/// `GET <target>` straight to an upstream over plain TCP, bypassing the
/// gateway: whether the answer carries the protected file.
pub(super) async fn direct(addr: SocketAddr, case: &Case) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let host = case.authority().unwrap_or("localhost");
    let mut req = format!("GET {} HTTP/1.1\r\nhost: {host}\r\n", case.target).into_bytes();
    req.extend_from_slice(b"connection: close\r\n\r\n");
    if tcp.write_all(&req).await.is_err() {
        return false;
    }
    let mut out = Vec::new();
    let read = tcp.read_to_end(&mut out);
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    String::from_utf8_lossy(&out).contains(SECRET_MARKER)
}
