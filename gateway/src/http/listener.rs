//! Listeners: accept, connection limits, TLS handshake, HTTP/1.1 or h2.
//!
//! Each accepted socket must pass two limits before any byte is read: the
//! process-wide connection cap and the per-IP cap. On a listener with
//! `proxy_protocol`, only trusted balancers may connect; their PROXY header
//! (read within the header read timeout) names the client, and the per-IP
//! cap counts that client instead of the balancer ([`ConnAddr`]). The TLS handshake must
//! finish within the header read timeout (slow handshakes are slowloris
//! too). Then hyper serves HTTP/1.1 or h2 (chosen by ALPN / preface) with
//! upgrades enabled for WebSockets, under the graceful-shutdown watcher.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::server::conn::http1::UpgradeableConnection;
use hyper::service::{service_fn, HttpService};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::config::{ClientAddrPolicy, Server};
use crate::http::client_addr::ConnAddr;
use crate::http::proxy_protocol::{self, Prefixed, Version};
use crate::http::tls::ClientCert;
use crate::proxy::ConnInfo;
use crate::runtime::Shared;

/// The per-request service future, boxed (see [`serve_connection`]).
type ServeFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<
                    hyper::Response<crate::http::body::ProxyBody>,
                    std::convert::Infallible,
                >,
            > + Send,
    >,
>;

/// Connection counters shared by all listeners.
#[derive(Debug)]
pub(crate) struct ConnLimits {
    total: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
}

impl ConnLimits {
    /// Limits from the server config.
    pub(crate) fn new(server: &Server) -> Arc<Self> {
        Self::with_caps(server.max_connections, server.max_connections_per_ip)
    }

    /// Limits of `total` open connections, `per_ip` of them from one
    /// address (the admin listener uses its own).
    pub(crate) fn with_caps(total: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(total)),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip: per_ip,
        })
    }

    /// Takes a slot for a connection from `ip`, or names the limit that
    /// refuses it. The slot is given back when the admission is dropped.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, &'static str> {
        let slot = self.take_slot()?;
        self.admit_ip(slot, ip)
    }

    /// A slot under the process-wide cap, taken before the client's address
    /// is known (a PROXY header is still to be read).
    pub(crate) fn take_slot(&self) -> Result<OwnedSemaphorePermit, &'static str> {
        self.total
            .clone()
            .try_acquire_owned()
            .map_err(|_| "max_connections")
    }

    /// Counts a connection with `slot` against the per-IP cap of `ip`
    /// (IPv4-mapped IPv6 counts as IPv4).
    pub(crate) fn admit_ip(
        self: &Arc<Self>,
        slot: OwnedSemaphorePermit,
        ip: IpAddr,
    ) -> Result<Admission, &'static str> {
        let ip = ip.to_canonical();
        let mut map = self.per_ip.lock().map_err(|_| "internal")?;
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err("max_connections_per_ip");
        }
        *n += 1;
        Ok(Admission {
            limits: self.clone(),
            ip,
            _permit: slot,
        })
    }
}

/// Held while a connection is open; gives its slots back on drop.
pub(crate) struct Admission {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Ok(mut map) = self.limits.per_ip.lock() {
            if let Some(n) = map.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
}

/// The HTTP/1.1 settings, one list for both builders ([`http_builder`]
/// and [`http1_builder`]), whose types share the method names but no trait.
macro_rules! http1_settings {
    ($b:expr, $server:expr) => {
        $b.timer(TokioTimer::new())
            .header_read_timeout($server.header_read_timeout)
            .max_buf_size(hard_head_limit($server))
            .keep_alive(true)
    };
}

/// The HTTP/1.1 server for connections that chose `http/1.1` by ALPN,
/// with the same settings as [`http_builder`]'s HTTP/1.1 part.
///
/// Those connections skip the auto builder's version sniffing: it reads
/// the first 24 bytes apart and hands them back to hyper on their own, so
/// every request head arrived in two reads and hyper's read buffer grew
/// from 8 to 16 KiB on the first request and kept that for the
/// connection's life (#14 item 3, memory per idle connection).
pub(crate) fn http1_builder(server: &Server) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    http1_settings!(b, server);
    b
}

/// The HTTP server settings of one listener.
///
/// hyper's own limit on a request head is twice `max_header_bytes`: a head
/// above `max_header_bytes` and below that reaches the gateway, which
/// refuses it with 431 from its error templates (`proxy::head_too_large`).
/// Above twice the limit hyper answers itself: HTTP/1.1 with a bare
/// `431` without body or request id (hyper 1.x has no hook for its
/// automatic parse-error responses), h2 with the h2 crate's bare `431` and
/// `REFUSED_STREAM`.
pub(crate) fn http_builder(server: &Server) -> auto::Builder<TokioExecutor> {
    let hard_limit = hard_head_limit(server);
    let mut b = auto::Builder::new(TokioExecutor::new());
    http1_settings!(b.http1(), server);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(server.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(hard_limit).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(std::time::Duration::from_secs(30)))
        .keep_alive_timeout(server.header_read_timeout);
    b
}

/// hyper's own limit on a request head (see [`http_builder`]).
fn hard_head_limit(server: &Server) -> usize {
    server.max_header_bytes.saturating_mul(2).max(8192)
}

/// Accepts connections until `stop` fires.
pub(crate) async fn run(
    shared: Arc<Shared>,
    index: usize,
    listener: TcpListener,
    limits: Arc<ConnLimits>,
    graceful: Arc<GracefulShutdown>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let state = shared.state.load_full();
    let server = state.config.server.clone();
    let name = state.config.listeners[index].name.clone();
    drop(state);
    let http = Arc::new(Servers {
        auto: http_builder(&server),
        h1: http1_builder(&server),
    });
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Read per connection, so that a reload changes it for new ones.
        let policy = shared
            .state
            .load()
            .config
            .listeners
            .get(index)
            .map(|l| l.client_addr.clone())
            .unwrap_or_default();
        let admitted = match admit(&limits, &policy, peer) {
            Ok(a) => a,
            Err(reason) => {
                shared.metrics.refused(reason);
                tracing::debug!(%peer, reason, "connection refused");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        shared.metrics.connections_total.inc();
        let span = tracing::debug_span!("conn", listener = %name, %peer);
        let shared = shared.clone();
        let http = http.clone();
        let drain = Drain {
            watcher: graceful.watcher(),
            stop: stop.clone(),
        };
        let timeout = server.header_read_timeout;
        let limits = limits.clone();
        tokio::spawn(
            async move {
                shared.metrics.connections_open.inc();
                let accepted = match admitted {
                    Admitted::Direct(admission) => Some(Accepted {
                        stream: Prefixed::new(Vec::new(), stream),
                        addr: ConnAddr::new(peer, None, &policy),
                        _admission: admission,
                    }),
                    Admitted::AwaitHeader(slot, version) => {
                        let header = (version, timeout);
                        proxied(&shared, &limits, slot, stream, peer, header, &policy).await
                    }
                };
                if let Some(conn) = accepted {
                    serve_connection(&shared, index, conn, timeout, &http, drain).await;
                }
                shared.metrics.connections_open.dec();
            }
            .instrument(span),
        );
    }
    tracing::info!(listener = %name, "listener stopped accepting");
}

/// A connection past the limits that apply before its first byte.
enum Admitted {
    /// Counted for its socket peer.
    Direct(Admission),
    /// From a trusted balancer: holds a process-wide slot; its PROXY
    /// header (this version) names the client the per-IP cap counts.
    AwaitHeader(OwnedSemaphorePermit, Version),
}

/// The limits before any byte is read: the process-wide cap; then the
/// per-IP cap for the socket peer, or, on a `proxy_protocol` listener, only
/// trusted balancers (their header is read next).
fn admit(
    limits: &Arc<ConnLimits>,
    policy: &ClientAddrPolicy,
    peer: SocketAddr,
) -> Result<Admitted, &'static str> {
    let slot = limits.take_slot()?;
    match policy.proxy_protocol.version() {
        None => limits.admit_ip(slot, peer.ip()).map(Admitted::Direct),
        Some(_) if !policy.trusted_proxies.contains(peer.ip()) => Err("untrusted_proxy"),
        Some(v) => Ok(Admitted::AwaitHeader(slot, v)),
    }
}

/// The HTTP servers of one listener.
struct Servers {
    /// HTTP/1.1 or h2, sniffed from the first bytes: for h2 connections
    /// and for clients that named no protocol by ALPN.
    auto: auto::Builder<TokioExecutor>,
    /// HTTP/1.1 for connections that chose it by ALPN.
    h1: hyper::server::conn::http1::Builder,
}

/// How a connection learns of the drain: the graceful-shutdown watcher
/// (held while the connection lives, so the drain waits for it) and the
/// listeners' stop signal, which fires just before the drain starts.
struct Drain {
    watcher: hyper_util::server::graceful::Watcher,
    stop: tokio::sync::watch::Receiver<bool>,
}

/// A connection admitted under every limit, with its addresses.
struct Accepted {
    stream: Prefixed<TcpStream>,
    addr: ConnAddr,
    _admission: Admission,
}

/// Reads the PROXY header of a balancer's connection, then counts it for
/// the client the header names. `None` (the connection is closed) when the
/// header is missing, malformed, late, or the client is over its cap.
async fn proxied(
    shared: &Shared,
    limits: &Arc<ConnLimits>,
    slot: OwnedSemaphorePermit,
    mut stream: TcpStream,
    peer: SocketAddr,
    (version, timeout): (Version, std::time::Duration),
    policy: &Arc<ClientAddrPolicy>,
) -> Option<Accepted> {
    let (header, rest) = match proxy_protocol::read_header(&mut stream, version, timeout).await {
        Ok(h) => h,
        Err(e) => {
            shared.metrics.refused("proxy_header");
            tracing::debug!(error = %e, "connection refused: no valid PROXY header");
            return None;
        }
    };
    let addr = ConnAddr::new(peer, Some(header), policy);
    match limits.admit_ip(slot, addr.client.ip()) {
        Ok(admission) => Some(Accepted {
            stream: Prefixed::new(rest, stream),
            addr,
            _admission: admission,
        }),
        Err(reason) => {
            shared.metrics.refused(reason);
            tracing::debug!(client = %addr.client.ip(), reason, "connection refused");
            None
        }
    }
}

async fn serve_connection(
    shared: &Arc<Shared>,
    index: usize,
    accepted: Accepted,
    handshake_timeout: std::time::Duration,
    http: &Servers,
    drain: Drain,
) {
    let Accepted {
        stream,
        addr,
        _admission,
    } = accepted;
    let (tls_config, max_head) = {
        let state = shared.state.load();
        match state.tls.get(index) {
            Some(c) => (c.clone(), state.config.server.max_header_bytes),
            None => return,
        }
    };
    let acceptor = TlsAcceptor::from(tls_config);
    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared.metrics.tls_handshake_failures.inc();
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            shared.metrics.tls_handshake_failures.inc();
            tracing::debug!("TLS handshake timed out");
            return;
        }
    };
    let client_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(ClientCert::from_der);
    let alpn = tls.get_ref().1.alpn_protocol();
    let h2 = alpn == Some(&b"h2"[..]);
    let alpn_h1 = alpn == Some(&b"http/1.1"[..]);
    let (io, ambiguous) = crate::http::framing::HeadWatch::new(tls, max_head, !h2);
    let conn = Arc::new(ConnInfo {
        listener: index,
        addr,
        client_cert,
        ambiguous,
        requests: std::sync::atomic::AtomicU32::new(0),
    });
    let shared = shared.clone();
    // Boxed: hyper's HTTP/1.1 dispatcher keeps a slot for the service
    // future for the whole connection, sized for that future (about 10 KB
    // here). Boxed, the slot is a pointer and the future exists only while
    // a request is in flight (#14 item 3, memory per idle connection).
    let svc = service_fn(move |req| -> ServeFuture {
        Box::pin(crate::proxy::serve(shared.clone(), conn.clone(), req))
    });
    let io = TokioIo::new(io);
    // Boxed, each connection holds the state of its own protocol only
    // (the task would otherwise be sized for the largest of them).
    let result = if alpn_h1 {
        let conn = Box::pin(http.h1.serve_connection(io, svc).with_upgrades());
        serve_h1(conn, drain).await.map_err(Into::into)
    } else {
        let conn = http.auto.serve_connection_with_upgrades(io, svc);
        Box::pin(drain.watcher.watch(conn.into_owned())).await
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with error");
    }
}

/// Serves an HTTP/1.1 connection until it ends; when the drain starts,
/// lets the request in flight finish and then closes (idle connections at
/// once), as hyper-util's graceful-shutdown watcher does for the auto
/// builder's connections (it does not take hyper's HTTP/1.1 connection
/// with upgrades).
async fn serve_h1<I, S>(
    mut conn: Pin<Box<UpgradeableConnection<I, S>>>,
    drain: Drain,
) -> hyper::Result<()>
where
    S: HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    UpgradeableConnection<I, S>: Future<Output = hyper::Result<()>>,
{
    let Drain { watcher, mut stop } = drain;
    // Ends when the drain starts (or the signal is gone); the guard
    // `wait_for` returns is dropped at once (it must not live across an
    // await of the connection task).
    let draining = async move {
        let _ = stop.wait_for(|stopping| *stopping).await.is_ok();
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = draining => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    drop(watcher);
    result
}
