//! The admin listener: `/metrics` (Prometheus), `/healthz`, `/readyz`.
//!
//! It is plain HTTP and meant for loopback or a management network only;
//! none of these paths exist on the public listeners.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::proxy::Shared;

/// Serves admin requests for the life of the process. It deliberately
/// keeps running while the gateway drains, so that `/readyz` can tell load
/// balancers to stop sending traffic.
pub async fn run(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| answer(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn answer(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, ctype, body) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.encode(),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/jwks.json" => match &shared.auth {
            Some(a) => (
                StatusCode::OK,
                "application/jwk-set+json",
                a.jwks().to_owned(),
            ),
            None => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "no [identity] configured\n".to_owned(),
            ),
        },
        "/readyz" => {
            let audit = shared.audit.as_ref().map(|a| a.health());
            let sessions = shared.auth.as_ref().map(|a| a.health());
            let policy = shared.policy.as_ref().map(|p| p.readiness());
            if shared.draining.load(Ordering::Relaxed) {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready: draining for shutdown\n".to_owned(),
                )
            } else if let Some(Err(reason)) = audit {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: audit log cannot record: {reason}\n"),
                )
            } else if let Some(Err(reason)) = sessions {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: session store: {reason}\n"),
                )
            } else if let Some(Err(reason)) = policy {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {reason}\n"),
                )
            } else {
                (StatusCode::OK, "text/plain", "ready\n".to_owned())
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(resp)
}
