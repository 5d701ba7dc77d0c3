//! Real upstream servers for the tests, in the test process, on port 0.
//!
//! Paths of the echo backend:
//! - any path: a JSON echo of method, path and headers (`x-backend` names it);
//! - `/upload`: consumes the body, answers with the byte count;
//! - `/big/N`: streams N bytes;
//! - `/slow/MS`: answers after MS milliseconds;
//! - `/status/N`: answers with status N;
//! - `/set-cookies`: answers with the `Set-Cookie` headers in
//!   [`SET_COOKIES`] (a service trying to set the gateway's cookies);
//! - `/ws`: a WebSocket echo.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

type Body = BoxBody<Bytes, std::io::Error>;

/// What `/set-cookies` sends: three for the gateway's cookie names (any
/// case), then two of the service's own.
pub const SET_COOKIES: [&str; 5] = [
    "__Host-stadttor-session=from-upstream; Path=/; Secure; HttpOnly",
    "app=1; Path=/",
    "__HOST-STADTTOR-SESSION=x; Path=/; Secure",
    "__Host-stadttor-login-abc=; Path=/; Secure; Max-Age=0",
    "theme=dark; Path=/",
];

/// A running backend.
#[derive(Clone, Debug)]
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    requests: Arc<AtomicUsize>,
}

impl Backend {
    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Starts a plain HTTP/1.1 echo backend named `name`.
    pub async fn start(name: &str) -> Self {
        Self::start_inner(name, None).await
    }

    /// Starts an HTTPS echo backend with the given server config.
    pub async fn start_tls(name: &str, tls: Arc<rustls::ServerConfig>) -> Self {
        Self::start_inner(name, Some(TlsAcceptor::from(tls))).await
    }

    async fn start_inner(name: &str, tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let b = Self {
            addr,
            name: name.to_owned(),
            requests: requests.clone(),
        };
        let name = name.to_owned();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let name = name.clone();
                let requests = requests.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve(TokioIo::new(stream), name, requests, None).await,
                        Some(acc) => {
                            let Ok(s) = acc.accept(stream).await else {
                                return;
                            };
                            let subject = s
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| format!("{} bytes", c.len()));
                            serve(TokioIo::new(s), name, requests, subject).await
                        }
                    }
                });
            }
        });
        b
    }
}

async fn serve<I>(io: I, name: String, requests: Arc<AtomicUsize>, client_cert: Option<String>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        requests.fetch_add(1, Ordering::SeqCst);
        handle(name.clone(), client_cert.clone(), req)
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .with_upgrades()
        .await;
}

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

async fn handle(
    name: String,
    client_cert: Option<String>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let mut resp = if path == "/upload" {
        let mut n: u64 = 0;
        let mut body = req.into_body();
        while let Some(f) = body.frame().await {
            match f {
                Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => break,
            }
        }
        Response::new(full(n.to_string()))
    } else if let Some(n) = path.strip_prefix("/big/") {
        let total: u64 = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::unfold(0u64, move |sent| {
            let chunk = chunk.clone();
            async move {
                if sent >= total {
                    return None;
                }
                let n = (total - sent).min(chunk.len() as u64);
                Some((
                    Ok::<_, std::io::Error>(Frame::data(chunk.slice(..n as usize))),
                    sent + n,
                ))
            }
        });
        Response::new(BodyExt::boxed(StreamBody::new(stream)))
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        Response::new(full(format!("slow {ms}")))
    } else if let Some(code) = path.strip_prefix("/status/") {
        let mut r = Response::new(full("status"));
        *r.status_mut() = StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
        r
    } else if path == "/set-cookies" {
        let mut r = Response::new(full("cookies"));
        for c in SET_COOKIES {
            r.headers_mut().append("set-cookie", c.parse().unwrap());
        }
        r
    } else if path == "/ws" {
        return Ok(websocket(&mut req));
    } else {
        let mut headers = serde_json::Map::new();
        for (k, v) in req.headers() {
            let e = headers
                .entry(k.as_str().to_owned())
                .or_insert_with(|| serde_json::Value::Array(vec![]));
            if let serde_json::Value::Array(a) = e {
                a.push(String::from_utf8_lossy(v.as_bytes()).into_owned().into());
            }
        }
        let echo = serde_json::json!({
            "backend": name,
            "method": req.method().as_str(),
            "path": req.uri().path(),
            "query": req.uri().query(),
            "headers": headers,
            "client_cert": client_cert,
        });
        let mut r = Response::new(full(echo.to_string()));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    };
    resp.headers_mut()
        .insert("x-backend", name.parse().unwrap());
    Ok(resp)
}

fn websocket(req: &mut Request<Incoming>) -> Response<Body> {
    let wants_upgrade = req
        .headers()
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let key = req
        .headers()
        .get("sec-websocket-key")
        .filter(|_| wants_upgrade)
        .map(|k| tokio_tungstenite::tungstenite::handshake::derive_accept_key(k.as_bytes()));
    let Some(accept) = key else {
        let mut r = Response::new(full("not a websocket request"));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() || msg.is_binary() {
                if ws.send(msg).await.is_err() {
                    break;
                }
            } else if msg.is_close() {
                break;
            }
        }
    });
    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("connection", "upgrade".parse().unwrap());
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("sec-websocket-accept", accept.parse().unwrap());
    r
}
