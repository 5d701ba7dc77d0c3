//! Listeners: accept, connection limits, TLS handshake, HTTP/1.1 or h2.
//!
//! Each accepted socket must pass two limits before any byte is read: the
//! process-wide connection cap and the per-IP cap. The TLS handshake must
//! finish within the header read timeout (slow handshakes are slowloris
//! too). Then hyper serves HTTP/1.1 or h2 (chosen by ALPN / preface) with
//! upgrades enabled for WebSockets, under the graceful-shutdown watcher.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::config::Server;
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
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| "max_connections")?;
        let mut map = self.per_ip.lock().map_err(|_| "internal")?;
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err("max_connections_per_ip");
        }
        *n += 1;
        Ok(Admission {
            limits: self.clone(),
            ip,
            _permit: permit,
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
    let hard_limit = server.max_header_bytes.saturating_mul(2).max(8192);
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(hard_limit)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(server.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(hard_limit).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(std::time::Duration::from_secs(30)))
        .keep_alive_timeout(server.header_read_timeout);
    b
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
    let http = Arc::new(http_builder(&server));
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
        let admission = match limits.admit(peer.ip()) {
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
        let watcher = graceful.watcher();
        let timeout = server.header_read_timeout;
        tokio::spawn(
            async move {
                let _admission = admission;
                shared.metrics.connections_open.inc();
                serve_connection(&shared, index, stream, peer, timeout, &http, watcher).await;
                shared.metrics.connections_open.dec();
            }
            .instrument(span),
        );
    }
    tracing::info!(listener = %name, "listener stopped accepting");
}

async fn serve_connection(
    shared: &Arc<Shared>,
    index: usize,
    stream: TcpStream,
    peer: SocketAddr,
    handshake_timeout: std::time::Duration,
    http: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) {
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
    let h2 = tls.get_ref().1.alpn_protocol() == Some(&b"h2"[..]);
    let (io, ambiguous) = crate::http::framing::HeadWatch::new(tls, max_head, !h2);
    let conn = Arc::new(ConnInfo {
        listener: index,
        peer,
        client_cert,
        forwarded: crate::http::headers::ForwardedFor::new(peer),
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
    let fut = http.serve_connection_with_upgrades(TokioIo::new(io), svc);
    if let Err(e) = watcher.watch(fut.into_owned()).await {
        tracing::debug!(error = %e, "connection ended with error");
    }
}
