//! The admin listener: `/metrics` (Prometheus), `/healthz`, `/readyz`,
//! `/jwks.json`, and, with `[admin.tls]` and `officer_provider`, the
//! officers' policy page and API ([`officer`]).
//!
//! Without `[admin.tls]` it is plain HTTP and meant for loopback or a
//! management network only; none of these paths exist on the public
//! listeners. The officers' pages are only served over HTTPS.
//!
//! At most `admin.max_connections` connections are open at once (the
//! public listeners' limiter, `listener::ConnLimits`); more are closed at
//! accept, counted as `stadttor_connections_refused_total{reason=
//! "admin_max_connections"}` and logged.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::http::body::ProxyBody;
use crate::runtime::Shared;

pub mod officer;
mod ready;

/// Serves admin requests for the life of the process. It deliberately
/// keeps running while the gateway drains, so that `/readyz` can tell load
/// balancers to stop sending traffic. With `tls`, every connection is
/// HTTPS (HTTP/1.1).
pub async fn run(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    // The same limiter as the public listeners, with its own cap: a flood
    // of admin connections cannot take the process's file descriptors.
    let cap = shared.state.load().config.admin_max_connections;
    let limits = crate::http::listener::ConnLimits::with_caps(cap, cap);
    let mut refusing = false;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let admission = match limits.admit(peer.ip()) {
            Ok(a) => {
                if std::mem::take(&mut refusing) {
                    tracing::info!("admin connections are accepted again");
                }
                a
            }
            Err(_) => {
                shared.metrics.refused("admin_max_connections");
                if !std::mem::replace(&mut refusing, true) {
                    // Once per episode: a flood must not flood the log too.
                    tracing::warn!(%peer, max = cap, "admin connections refused: admin.max_connections reached");
                }
                drop(stream);
                continue;
            }
        };
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _admission = admission;
            let svc = service_fn(move |req| answer(shared.clone(), req));
            let http = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .clone();
            match acceptor {
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                }
                Some(a) => {
                    let tls = match tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        a.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        _ => return,
                    };
                    let _ = http.serve_connection(TokioIo::new(tls), svc).await;
                }
            }
        });
    }
}

async fn answer(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if crate::admin::officer::owns(req.uri().path()) {
        if let Some(o) = shared.officers.clone() {
            let ctx = crate::admin::officer::Context {
                audit: shared.audit.clone(),
                auth: shared.auth.clone(),
                policy: shared.policy.clone(),
            };
            return Ok(crate::admin::officer::handle(ctx, &o, req).await);
        }
    }
    let (status, ctype, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.encode(),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/jwks.json" if shared.auth.is_some() => (
            StatusCode::OK,
            "application/jwk-set+json",
            shared
                .auth
                .as_ref()
                .map(|a| a.jwks().to_owned())
                .unwrap_or_default(),
        ),
        "/readyz" => {
            let (status, body) = ready::answer(&shared);
            (status, "text/plain", body)
        }
        _ => {
            let request_id = uuid::Uuid::new_v4().to_string();
            let aud = crate::respond::Audience::of(req.headers(), true);
            let page = crate::respond::Problem::NotFound.answer();
            return Ok(crate::respond::officer::problem(page, aud, &request_id));
        }
    };
    Ok(crate::respond::officer::admin(status, ctype, body))
}
