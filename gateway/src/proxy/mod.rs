//! The request path: [`serve`], the per-request entry (request id,
//! canonical target, security headers on every answer, metrics and the
//! access log), and [`handle`], which runs the [`stages`] in order:
//!
//! ```text
//! request ─▶ admit (framing) ─▶ route ─▶ authn ─▶ authz (policy) ─▶ audit
//!         ─▶ build upstream request (hygiene, Forwarded, request id)
//!         ─▶ send (round-robin, retry bodiless requests on connect failure)
//!         ─▶ sign / finish response (hop-by-hop out, security headers in)
//! ```
//!
//! Any failure is a [`GatewayError`], turned into a response in
//! [`crate::respond`] and nowhere else.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::Instrument;

use crate::http::body::{ProxyBody, Tripwire};
use crate::http::client_addr::{ClientAddr, ConnAddr};
use crate::http::headers;
use crate::http::target::TargetFacts;
use crate::http::tls::ClientCert;
use crate::respond::{error_chain, is_api, Audience, GatewayError, Source};
use crate::runtime::Shared;
use crate::state::{Route, State};
use stages::TargetRule;

mod stages;

/// What is known about the client connection a request came on.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    /// Index of the listener.
    pub(crate) listener: usize,
    /// The socket peer and the connection's client (after a PROXY header).
    pub(crate) addr: ConnAddr,
    /// The verified client certificate, if one was presented.
    pub(crate) client_cert: Option<ClientCert>,
    /// Which HTTP/1.1 request on this connection, if any, carried both
    /// `Content-Length` and `Transfer-Encoding` (see [`crate::http::framing`]).
    pub(crate) ambiguous: Arc<crate::http::framing::Ambiguous>,
    /// Requests seen on this connection (HTTP/1.x), in order.
    pub(crate) requests: std::sync::atomic::AtomicU32,
}

/// hyper service entry point: never fails, every error is a response.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let mut id_buf = [0u8; 36];
    let request_id: &str = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id_buf);
    // A UUID is always a valid header value.
    let request_id_value =
        HeaderValue::from_str(request_id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    // The one client address of this request: caps were counted for the
    // connection's; logs, audit and the upstream's X-Forwarded-For use this.
    let client = conn.addr.for_request(req.headers());
    let client_ip = client.ip();
    let span = tracing::debug_span!("request", id = %request_id, client = %client_ip);
    let state = shared.state.load_full();
    let access_log = state.config.server.access_log;
    let mut req = req;
    // The one canonical request target: from here on nothing sees the
    // client's raw path (routing, policy, signing, audit, upstream).
    let target = crate::http::target::canonicalise_uri(req.uri_mut());
    // Captured for the access log only when it is on: the hot path without
    // it allocates nothing here.
    let logged = access_log.then(|| (req.method().clone(), req.uri().path().to_owned()));
    let client_request_id = req.headers().get(headers::REQUEST_ID).cloned();
    // Kept for an error answer in the client's form and language (cheap:
    // the values share the request's buffer).
    let prefs = Prefs {
        accept: req.headers().get(header::ACCEPT).cloned(),
        accept_language: req.headers().get(header::ACCEPT_LANGUAGE).cloned(),
    };

    let ctx = Ctx {
        shared: &shared,
        state: &state,
        conn: &conn,
        client: &client,
        request_id,
        request_id_value: &request_id_value,
    };
    let outcome = if head_too_large(&req, state.config.server.max_header_bytes) {
        Err((GatewayError::HeadersTooLarge, None))
    } else {
        match target {
            Ok(facts) => handle(&ctx, req, facts).instrument(span).await,
            Err(refusal) => Err(refuse_target(&ctx, req.method(), refusal, None)),
        }
    };
    let (mut resp, route_name) = answer(&ctx, &prefs, outcome);
    resp.headers_mut()
        .insert(headers::REQUEST_ID, request_id_value.clone());
    if shared.draining.load(Ordering::Relaxed) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    match route_name {
        Some(r) => r.metrics.observe(status, elapsed.as_secs_f64()),
        None => state.unrouted.observe(status, elapsed.as_secs_f64()),
    }
    if let Some((method, path)) = logged {
        tracing::info!(
            target: "stadttor::access",
            request_id,
            client_request_id = client_request_id.as_ref().and_then(|v| v.to_str().ok()),
            client = %client_ip,
            peer = %conn.addr.peer,
            method = %method,
            path = %path,
            route = route_name.map(|r| r.cfg.name.as_str()).unwrap_or("-"),
            status,
            duration_us = elapsed.as_micros() as u64,
            "request"
        );
    } else if let Some(client_id) = client_request_id {
        tracing::debug!(request_id, client_request_id = ?client_id, "client sent its own request id; replaced");
    }
    Ok(resp)
}

/// What every stage of one request can see: the process, the state it
/// started with, its connection and its id.
pub(crate) struct Ctx<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) state: &'a State,
    pub(crate) conn: &'a ConnInfo,
    /// The client's address ([`crate::http::client_addr`]).
    pub(crate) client: &'a ClientAddr,
    pub(crate) request_id: &'a str,
    pub(crate) request_id_value: &'a HeaderValue,
}

/// What the client said about the form and language of an answer.
struct Prefs {
    accept: Option<HeaderValue>,
    accept_language: Option<HeaderValue>,
}

/// The response for an outcome: a failure becomes its response here (an
/// answered one as it is), in the form the client accepts and its route
/// suggests, and every response gets the security headers of its route
/// (or the defaults) it lacks.
fn answer<'s>(
    ctx: &Ctx<'_>,
    prefs: &Prefs,
    outcome: Result<(Response<ProxyBody>, &'s Route), Failure<'s>>,
) -> (Response<ProxyBody>, Option<&'s Route>) {
    let request_id = ctx.request_id;
    let (mut resp, route) = match outcome {
        Ok((resp, route)) => return (resp, Some(route)),
        Err((GatewayError::Answered(resp), route)) => (*resp, route),
        Err((e, route)) => {
            match e.source() {
                Source::Downstream => {
                    tracing::info!(request_id, client = %ctx.client.ip(), error = %e, "request refused")
                }
                Source::Upstream => {
                    tracing::warn!(request_id, route = route.map(|r| r.cfg.name.as_str()), error = %e, "upstream failure")
                }
                Source::Internal => tracing::error!(request_id, error = %e, "internal error"),
            }
            let api = route.is_some_and(|r| is_api(&r.cfg.auth));
            let aud =
                Audience::from_values(prefs.accept.as_ref(), prefs.accept_language.as_ref(), api);
            (e.to_response(aud, request_id), route)
        }
    };
    match route {
        Some(r) => headers::add_missing(resp.headers_mut(), &r.security_headers),
        None => headers::add_missing(resp.headers_mut(), &ctx.state.unrouted_headers),
    }
    (resp, route)
}

type Failure<'s> = (GatewayError, Option<&'s Route>);

/// Whether the request head is larger than `max_header_bytes`, counted as
/// on the wire in HTTP/1.1 (request line, `name: value` lines, the blank
/// line). hyper itself refuses heads above twice that limit (see
/// [`crate::http::listener::http_builder`]) with a bare 431 the gateway
/// cannot shape; everything between is refused here, with a page.
fn head_too_large<B>(req: &Request<B>, max: usize) -> bool {
    let uri = req.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    // "METHOD TARGET HTTP/1.1\r\n"
    let line = req.method().as_str().len() + target + 12;
    let fields: usize = req
        .headers()
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    line + fields + 2 > max
}

/// A request target that cannot be made unambiguous: 400, counted, and
/// recorded as `http.rejected` with the reason.
fn refuse_target<'s>(
    ctx: &Ctx<'_>,
    method: &Method,
    refusal: crate::http::target::Refusal,
    route: Option<&'s Route>,
) -> Failure<'s> {
    record_rejection(ctx, method, refusal.code(), route);
    (GatewayError::BadRequest(refusal.reason()), route)
}

/// Counts a request refused before it reached a service and records it as
/// `http.rejected` with the reason's code when there is an audit log.
fn record_rejection(ctx: &Ctx<'_>, method: &Method, code: &str, route: Option<&Route>) {
    ctx.shared.metrics.rejected_target(code);
    if let Some(log) = ctx.shared.audit.as_deref() {
        let listener = ctx
            .state
            .config
            .listeners
            .get(ctx.conn.listener)
            .map_or("", |l| l.name.as_str());
        let route_name = route.map_or("", |r| r.cfg.name.as_str());
        crate::audit_event::record_rejected(
            log,
            code,
            route_name,
            method,
            ctx.request_id,
            listener,
            ctx.client.ip(),
        );
    }
}

/// One request through the [`stages`]: admission, the gateway's own
/// endpoints, route match, authentication, authorization, the audit
/// record, the upstream exchange and the response (tunnel, signed or
/// finished).
async fn handle<'s>(
    ctx: &Ctx<'s>,
    req: Request<Incoming>,
    facts: TargetFacts,
) -> Result<(Response<ProxyBody>, &'s Route), Failure<'s>> {
    let (parts, body) = req.into_parts();
    let host = stages::admit(ctx.conn, &parts).map_err(|e| (e, None))?;
    if let Err(reason) = crate::http::credentials::check_unique(&parts.headers) {
        record_rejection(ctx, &parts.method, "ambiguous_credentials", None);
        return Err((GatewayError::BadRequest(reason), None));
    }
    let (parts, body) = stages::gateway_endpoints(ctx, parts, body)
        .await
        .map_err(|e| (e, None))?;
    let uri = parts.uri.clone();
    let decision_path = stages::decision_path(uri.path(), facts);
    let route = stages::match_route(ctx.state, ctx.conn.listener, &host, &decision_path)
        .map_err(|e| (e, None))?;
    let fail = |e| (e, Some(route));
    let cfg = &route.cfg;
    match stages::target_rule(cfg.paths, facts, &parts.method) {
        TargetRule::Pass => {}
        TargetRule::Refuse(refusal) => {
            return Err(refuse_target(ctx, &parts.method, refusal, Some(route)))
        }
        TargetRule::Redirect => return Err(fail(stages::redirect_to_canonical(&parts.uri))),
    }
    let verified = stages::authenticate(ctx, cfg, &parts).await.map_err(fail)?;
    let decision = stages::authorize(ctx, cfg, &verified, &decision_path, &parts.method);
    let denied = decision.as_ref().is_some_and(|(_, d)| !d.is_allowed());
    let access = stages::AccessFacts {
        verified: &verified,
        decision: decision.as_ref().map(|(z, d)| (*z, d)),
        denied,
    };
    let evidence = stages::audit_record(ctx, cfg, &parts.method, access).map_err(fail)?;
    if let Some((z, d)) = decision.as_ref().filter(|_| denied) {
        return Err(fail(stages::deny(ctx, cfg, (z, d), evidence, &parts).await));
    }
    let sign_path = (!cfg.sign.is_empty()).then(|| decision_path.clone().into_owned());
    let websocket = stages::wants_websocket(cfg, &parts);
    let mut req = Request::from_parts(parts, body);
    let downstream_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    if let Some(len) = body.size_hint().exact() {
        if len > cfg.max_request_body {
            return Err(fail(GatewayError::PayloadTooLarge));
        }
    }
    let deadline = Instant::now() + cfg.timeouts.total;
    let h2 = parts.version == http::Version::HTTP_2;
    let upstream_headers = verified.upstream_headers;
    let path_and_query =
        stages::upstream_head(ctx, route, &mut parts, &host, upstream_headers, websocket)
            .map_err(fail)?;
    let tripwire = Tripwire::default();
    let (body, has_body) = stages::forward_body(body, cfg, deadline, &tripwire);
    let out = stages::Outbound {
        parts,
        path_and_query,
        body,
        has_body,
        deadline,
        tripwire,
    };
    let mut resp = stages::exchange(route, out, evidence).await.map_err(fail)?;
    if h2 {
        headers::own_values(resp.headers_mut());
    }
    if let Some(downstream) = downstream_upgrade {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return Ok((stages::tunnel(ctx, route, downstream, resp), route));
        }
    }
    let set_cookie = verified.set_cookie;
    stages::sign_and_finish(ctx, route, resp, sign_path.as_deref(), set_cookie, deadline)
        .await
        .map(|resp| (resp, route))
        .map_err(fail)
}

/// Sends the request to the next address of the pool. A bodiless request
/// whose connection failed is retried on the next address, at most once
/// per address; a request with a body is never retried.
async fn send(
    route: &Route,
    parts: http::request::Parts,
    path_and_query: PathAndQuery,
    body: ProxyBody,
    has_body: bool,
    tripwire: &Tripwire,
) -> Result<Response<Incoming>, GatewayError> {
    let pool = &route.pool;
    let retries = if has_body { 0 } else { pool.len() - 1 };
    let mut spare = (retries > 0).then(|| (parts.method.clone(), parts.headers.clone()));
    let mut next = Some(Request::from_parts(parts, body));
    let mut attempt = 0;
    loop {
        let Some(mut req) = next.take() else {
            return Err(GatewayError::Internal("no request to send".into()));
        };
        let backend = pool.pick();
        *req.uri_mut() = Uri::builder()
            .scheme(pool.scheme.clone())
            .authority(backend.authority.clone())
            .path_and_query(path_and_query.clone())
            .build()
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        match route.client.request(req).await {
            Ok(resp) => {
                pool.success(backend);
                return Ok(resp);
            }
            Err(e) if e.is_connect() => {
                pool.failure(backend);
                let detail = format!("{}: {}", backend.authority, error_chain(&e));
                if attempt < retries {
                    if let Some((method, headers)) = spare.take() {
                        tracing::info!(upstream = %pool.name, %detail, "connect failed; trying next address");
                        let mut r = Request::new(empty());
                        *r.method_mut() = method.clone();
                        *r.headers_mut() = headers.clone();
                        if attempt + 1 < retries {
                            spare = Some((method, headers));
                        }
                        next = Some(r);
                        attempt += 1;
                        continue;
                    }
                }
                return Err(GatewayError::UpstreamUnreachable {
                    upstream: pool.name.clone(),
                    detail,
                });
            }
            Err(e) => {
                if tripwire.too_large() {
                    return Err(GatewayError::PayloadTooLarge);
                }
                if tripwire.timed_out() {
                    return Err(GatewayError::RequestTimeout);
                }
                if tripwire.broken() {
                    return Err(GatewayError::BadRequest("malformed request body"));
                }
                return Err(GatewayError::UpstreamFailed {
                    upstream: pool.name.clone(),
                    detail: error_chain(&e),
                });
            }
        }
    }
}

/// An empty body.
fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

#[cfg(test)]
mod tests;
