//! The request path: framing checks, route match, header hygiene, upstream
//! exchange, response finishing, metrics and the access log.
//!
//! ```text
//! request ─▶ check_framing ─▶ route ─▶ authn ─▶ authz (policy) ─▶ audit
//!         ─▶ build upstream request (hygiene, Forwarded, request id)
//!         ─▶ send (round-robin, retry bodiless requests on connect failure)
//!         ─▶ finish response (hop-by-hop out, security headers in) ─▶ log
//! ```
//!
//! Any failure is a [`GatewayError`], turned into a response in
//! [`crate::respond`] and nowhere else.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::Instrument;

use crate::body::{Guarded, ProxyBody, Tripwire};
use crate::config::AuditMode;
use crate::headers;
use crate::metrics::Metrics;
use crate::respond::{error_chain, GatewayError, Source};
use crate::state::{Route, State};
use crate::tls::ClientCert;

/// What the whole process shares: the swappable state and the metrics.
#[derive(Debug)]
pub struct Shared {
    /// The current runtime state.
    pub state: ArcSwap<State>,
    /// Metrics.
    pub metrics: Metrics,
    /// Set once SIGTERM arrived.
    pub draining: AtomicBool,
    /// The key store, for the life of the process.
    pub keys: Arc<crate::keys::Keys>,
    /// The audit log, if configured.
    pub audit: Option<Arc<crate::audit_event::AuditLog>>,
    /// Logins and sessions, if `[identity]` is configured.
    pub auth: Option<Arc<crate::authn::Auth>>,
    /// Document signing, if `[signing]` is configured.
    pub signer: Option<Arc<crate::signing::Signer>>,
    /// The policy store and active policy, if `[policies]` is configured.
    pub policy: Option<Arc<crate::policy::PolicyRuntime>>,
    /// Officers' logins on the admin listener, if configured.
    pub officers: Option<Arc<crate::admin::officer::Officers>>,
}

/// What is known about the client connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    /// Index of the listener.
    pub listener: usize,
    /// The client's address.
    pub peer: SocketAddr,
    /// The verified client certificate, if one was presented.
    pub client_cert: Option<ClientCert>,
    /// `Forwarded`/`X-Forwarded-For` values for this peer, computed once.
    pub forwarded: headers::ForwardedFor,
    /// Which HTTP/1.1 request on this connection, if any, carried both
    /// `Content-Length` and `Transfer-Encoding` (see [`crate::framing`]).
    pub ambiguous: Arc<crate::framing::Ambiguous>,
    /// Requests seen on this connection (HTTP/1.x), in order.
    pub requests: std::sync::atomic::AtomicU32,
}

/// hyper service entry point: never fails, every error is a response.
pub async fn serve(
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
    let span = tracing::debug_span!("request", id = %request_id, peer = %conn.peer);
    let state = shared.state.load_full();
    let access_log = state.config.server.access_log;
    let mut req = req;
    // The one canonical request target: from here on nothing sees the
    // client's raw path (routing, policy, signing, audit, upstream).
    let target = crate::target::canonicalise_uri(req.uri_mut());
    // Captured for the access log only when it is on: the hot path without
    // it allocates nothing here.
    let logged = access_log.then(|| (req.method().clone(), req.uri().path().to_owned()));
    let client_request_id = req.headers().get(headers::REQUEST_ID).cloned();

    let outcome = match target {
        Ok(facts) => {
            handle(
                &state,
                &conn,
                req,
                facts,
                request_id,
                &request_id_value,
                &shared,
            )
            .instrument(span)
            .await
        }
        Err(refusal) => Err(refuse_target(
            &shared,
            &state,
            &conn,
            req.method(),
            refusal,
            None,
            request_id,
        )),
    };
    let (mut resp, route_name) = match outcome {
        Ok((resp, route)) => (resp, Some(route)),
        Err((GatewayError::Answered(resp), route)) => {
            let mut resp = *resp;
            match route {
                Some(r) => headers::add_missing(resp.headers_mut(), &r.security_headers),
                None => {
                    let defaults = headers::security_headers_for(&Default::default());
                    headers::add_missing(resp.headers_mut(), &defaults);
                }
            }
            (resp, route)
        }
        Err((e, route)) => {
            match e.source() {
                Source::Downstream => {
                    tracing::info!(request_id, peer = %conn.peer, error = %e, "request refused")
                }
                Source::Upstream => {
                    tracing::warn!(request_id, route = route.map(|r| r.cfg.name.as_str()), error = %e, "upstream failure")
                }
                Source::Internal => tracing::error!(request_id, error = %e, "internal error"),
            }
            let mut resp = e.to_response(request_id);
            if let Some(r) = route {
                headers::add_missing(resp.headers_mut(), &r.security_headers);
            } else {
                let defaults = headers::security_headers_for(&Default::default());
                headers::add_missing(resp.headers_mut(), &defaults);
            }
            (resp, route)
        }
    };
    resp.headers_mut()
        .insert(headers::REQUEST_ID, request_id_value);
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
            peer = %conn.peer,
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

type Failure<'s> = (GatewayError, Option<&'s Route>);

/// A request target that cannot be made unambiguous: 400, counted, and
/// recorded as `http.rejected` with the reason.
fn refuse_target<'s>(
    shared: &Shared,
    state: &State,
    conn: &ConnInfo,
    method: &Method,
    refusal: crate::target::Refusal,
    route: Option<&'s Route>,
    request_id: &str,
) -> Failure<'s> {
    record_rejection(
        shared,
        state,
        conn,
        method,
        refusal.code(),
        route,
        request_id,
    );
    (GatewayError::BadRequest(refusal.reason()), route)
}

/// Counts a request refused before it reached a service and records it as
/// `http.rejected` with the reason's code when there is an audit log.
fn record_rejection(
    shared: &Shared,
    state: &State,
    conn: &ConnInfo,
    method: &Method,
    code: &str,
    route: Option<&Route>,
    request_id: &str,
) {
    shared.metrics.rejected_target(code);
    if let Some(log) = shared.audit.as_deref() {
        let listener = state
            .config
            .listeners
            .get(conn.listener)
            .map_or("", |l| l.name.as_str());
        let route_name = route.map_or("", |r| r.cfg.name.as_str());
        crate::audit_event::record_rejected(log, code, route_name, method, request_id, listener);
    }
}

/// The route's own rules for a target that was not canonical as sent:
/// refuse `;` parameters or `//` it does not accept, or redirect to the
/// canonical form.
fn route_target_rules(
    route: &Route,
    facts: crate::target::TargetFacts,
    req: &Request<Incoming>,
) -> Result<(), Result<crate::target::Refusal, GatewayError>> {
    use crate::target::Refusal;
    let rules = route.cfg.paths;
    if facts.parameters && !rules.parameters {
        return Err(Ok(Refusal::Parameters));
    }
    if facts.empty_segments && !rules.merge_slashes {
        return Err(Ok(Refusal::EmptySegment));
    }
    if facts.changed
        && rules.redirect_to_canonical
        && (req.method() == Method::GET || req.method() == Method::HEAD)
    {
        // The canonical path never starts with `//` (slashes are merged
        // before routing), so the Location stays on this origin.
        let location = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        return Err(Err(GatewayError::Answered(Box::new(resp))));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn handle<'s>(
    state: &'s State,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    facts: crate::target::TargetFacts,
    request_id: &str,
    request_id_value: &HeaderValue,
    shared: &Shared,
) -> Result<(Response<ProxyBody>, &'s Route), Failure<'s>> {
    let (audit, auth, signer, policy) = (
        shared.audit.as_deref(),
        shared.auth.as_deref(),
        shared.signer.as_deref(),
        shared.policy.as_deref(),
    );
    if req.version() <= Version::HTTP_11 {
        let position = conn.requests.fetch_add(1, Ordering::Relaxed);
        if conn.ambiguous.at(position) {
            return Err((
                GatewayError::BadRequest("both Content-Length and Transfer-Encoding"),
                None,
            ));
        }
    }
    let host = check_framing(&req).map_err(|e| (e, None))?;
    if let Err(reason) = crate::credentials::check_unique(req.headers()) {
        record_rejection(
            shared,
            state,
            conn,
            req.method(),
            "ambiguous_credentials",
            None,
            request_id,
        );
        return Err((GatewayError::BadRequest(reason), None));
    }
    // The gateway's own endpoints come before any route.
    if let Some(signer) = signer {
        if let Some(resp) = signer.endpoint(req.uri().path()) {
            return Err((GatewayError::Answered(Box::new(resp)), None));
        }
    }
    if let Some(auth) = auth {
        req = match crate::authn::flow::handle(auth, state, req, request_id).await {
            Ok(resp) => return Err((GatewayError::Answered(Box::new(resp)), None)),
            Err(req) => req,
        };
    }
    // Decisions are made on the canonical path; on a route that accepts
    // `;` parameters, on the path without them (the servlet view).
    let uri = req.uri().clone();
    let decision_path = if facts.parameters {
        crate::target::decision_path(uri.path())
    } else {
        std::borrow::Cow::Borrowed(uri.path())
    };
    let route = state
        .route(conn.listener, &host.name, &decision_path)
        .ok_or((GatewayError::NoRoute, None))?;
    let fail = |e| (e, Some(route));
    let cfg = &route.cfg;
    match route_target_rules(route, facts, &req) {
        Ok(()) => {}
        Err(Ok(refusal)) => {
            return Err(refuse_target(
                shared,
                state,
                conn,
                req.method(),
                refusal,
                Some(route),
                request_id,
            ))
        }
        Err(Err(e)) => return Err(fail(e)),
    }

    // Authentication: a refusal is a complete response (login redirect,
    // 401, 403), sent with the route's security headers.
    let verified = match (auth, cfg.auth.methods.is_empty()) {
        (_, true) => crate::authn::Verified::default(),
        (None, false) => {
            return Err(fail(GatewayError::Internal(
                "route needs authentication but [identity] is missing".into(),
            )))
        }
        (Some(auth), false) => {
            let (parts, body) = req.into_parts();
            let v = auth
                .authenticate(cfg, &parts, conn.client_cert.as_ref(), request_id)
                .await;
            req = Request::from_parts(parts, body);
            match v {
                Ok(v) => v,
                Err(resp) => return Err(fail(GatewayError::Answered(Box::new(resp)))),
            }
        }
    };

    // Authorization: the policy decides on the verified identity (never a
    // request header) and the canonical path the upstream receives. No
    // policy: deny.
    let decision = cfg.authz.as_ref().map(|z| {
        let d = match policy {
            Some(p) => crate::policy::decide(
                &p.authz,
                z,
                verified.identity.as_ref(),
                &decision_path,
                req.method().as_str(),
                conn.client_cert.as_ref().map(|c| c.subject.as_str()),
            ),
            None => stadttor_policies::DecisionRecord::no_policy(),
        };
        (z, d)
    });
    let denied = decision.as_ref().is_some_and(|(_, d)| !d.is_allowed());

    // Recorded before anything is forwarded; a required route fails closed
    // and its response waits until the event is durable (`evidence`).
    // The decision travels in the same event: `http.access` when allowed,
    // `authz.decision` (outcome denied) when refused.
    let evidence = match (audit, cfg.audit) {
        (Some(log), AuditMode::Required | AuditMode::BestEffort) => {
            let facts = AccessFacts {
                verified: &verified,
                decision: decision.as_ref().map(|(z, d)| (&**z, d)),
                denied,
            };
            record_access(log, state, conn, cfg, &req, request_id, facts).map_err(fail)?
        }
        _ => None,
    };
    if let Some((z, d)) = decision.as_ref().filter(|_| denied) {
        tracing::info!(
            request_id,
            route = %cfg.name,
            domain = %z.domain,
            reason = ?d.reason,
            line = d.line,
            policy_version = d.version,
            "access denied by policy"
        );
        let browser = cfg
            .auth
            .methods
            .contains(&crate::identity::AuthMethod::Session)
            && !cfg.auth.api;
        let page = browser.then(|| {
            let lang = crate::authn::pages::Lang::from_headers(req.headers());
            crate::authn::pages::error(
                lang,
                crate::authn::pages::Problem::Forbidden,
                request_id,
                None,
            )
        });
        let resp = crate::respond::Refusal::Forbidden { page }.into_response(request_id);
        if let Some(e) = evidence {
            e.settled()
                .await
                .map_err(|e| fail(GatewayError::AuditUnavailable(e.to_string())))?;
        }
        return Err(fail(GatewayError::Answered(Box::new(resp))));
    }

    let sign_path = (!cfg.sign.is_empty()).then(|| decision_path.clone().into_owned());
    let websocket = cfg.websocket
        && req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && headers::is_websocket_upgrade(req.headers());
    let downstream_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));

    if let Some(len) = content_length(&req) {
        if len > cfg.max_request_body {
            return Err(fail(GatewayError::PayloadTooLarge));
        }
    }
    let deadline = Instant::now() + cfg.timeouts.total;

    // Upstream request head.
    let server = &state.config.server;
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, websocket);
    let spoofed = headers::strip_prefixed(&mut parts.headers, &server.identity_header_prefix);
    if spoofed > 0 {
        tracing::info!(
            request_id,
            count = spoofed,
            "removed client-sent identity headers"
        );
    }
    crate::credentials::withhold_for_route(&mut parts.headers, &cfg.auth, request_id);
    for (name, value) in verified.upstream_headers {
        parts.headers.insert(name, value);
    }
    headers::set_forwarded(&mut parts.headers, &conn.forwarded, &host.original);
    parts
        .headers
        .insert(headers::REQUEST_ID, request_id_value.clone());
    parts.headers.insert(header::HOST, host.original.clone());
    if cfg.forward_client_cert {
        if let Some(cc) = &conn.client_cert {
            let name = format!("{}client-cert-subject", server.identity_header_prefix);
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(cc.subject.as_bytes()),
            ) {
                parts.headers.insert(n, v);
            }
        }
    }
    let path_and_query = upstream_path(cfg, &parts.uri).map_err(fail)?;
    parts.version = Version::HTTP_11;

    let tripwire = Tripwire::default();
    let has_body = !body.is_end_stream();
    let body: ProxyBody = if has_body {
        Guarded::new(
            body,
            cfg.max_request_body,
            cfg.timeouts.idle,
            deadline,
            Some(tripwire.clone()),
        )
        .boxed_unsync()
    } else {
        Empty::new().map_err(|never| match never {}).boxed_unsync()
    };

    let header_deadline = (Instant::now() + cfg.timeouts.response_header).min(deadline);
    let exchange = send(route, parts, path_and_query, body, has_body, &tripwire);
    let exchange = tokio::time::timeout_at(header_deadline, exchange);
    // The response head leaves only once the access event is durable; the
    // commit runs while the upstream works.
    let (exchanged, recorded) = crate::audit_event::Evidence::along(evidence, exchange).await;
    recorded.map_err(|e| fail(GatewayError::AuditUnavailable(e.to_string())))?;
    let mut resp = match exchanged {
        Ok(r) => r.map_err(fail)?,
        Err(_) => {
            return Err(fail(if tripwire.timed_out() {
                GatewayError::RequestTimeout
            } else {
                GatewayError::UpstreamTimeout {
                    upstream: route.pool.name.clone(),
                }
            }))
        }
    };

    if let Some(downstream) = downstream_upgrade {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(crate::tunnel::run(
                downstream,
                upstream,
                route.pool.name.clone(),
                cfg.timeouts.idle,
                cfg.timeouts.total,
            ));
            headers::strip_hop_by_hop(resp.headers_mut(), true);
            crate::credentials::refuse_set_cookies_for_route(resp.headers_mut(), route, request_id);
            return Ok((resp.map(|_| empty()), route));
        }
    }

    headers::strip_hop_by_hop(resp.headers_mut(), false);
    crate::credentials::refuse_set_cookies_for_route(resp.headers_mut(), route, request_id);
    if let (Some(signer), Some(path)) = (signer, &sign_path) {
        if let Some(rule) =
            crate::signing::Signer::rule_for(&cfg.sign, resp.status(), resp.headers(), path)
        {
            let (parts, body) = resp.into_parts();
            let body = Guarded::new(body, u64::MAX, cfg.timeouts.idle, deadline, None);
            let mut signed = signer
                .sign(
                    &cfg.name,
                    rule,
                    Response::from_parts(parts, body),
                    request_id,
                )
                .await
                .map_err(|e| fail(GatewayError::SigningFailed(e.to_string())))?;
            headers::add_missing(signed.headers_mut(), &route.security_headers);
            if let Some(c) = verified.set_cookie {
                signed.headers_mut().append(header::SET_COOKIE, c);
            }
            return Ok((signed, route));
        }
    }
    headers::add_missing(resp.headers_mut(), &route.security_headers);
    if let Some(c) = verified.set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    let resp =
        resp.map(|b| Guarded::new(b, u64::MAX, cfg.timeouts.idle, deadline, None).boxed_unsync());
    Ok((resp, route))
}

/// What the audit event of a request says about its identity and decision.
struct AccessFacts<'a> {
    verified: &'a crate::authn::Verified,
    decision: Option<crate::audit_event::AuditedDecision<'a>>,
    denied: bool,
}

/// Records the request's audit event: durably (the returned evidence must
/// settle before the response leaves) on required routes, queued on
/// best-effort ones. A required route whose event cannot be recorded is
/// refused with 503.
fn record_access(
    log: &crate::audit_event::AuditLog,
    state: &State,
    conn: &ConnInfo,
    cfg: &crate::config::Route,
    req: &Request<Incoming>,
    request_id: &str,
    facts: AccessFacts<'_>,
) -> Result<Option<crate::audit_event::Evidence>, GatewayError> {
    let listener = state
        .config
        .listeners
        .get(conn.listener)
        .map_or("", |l| l.name.as_str());
    let (kind, outcome) = if facts.denied {
        ("authz.decision", stadttor_audit::event::Outcome::Denied)
    } else {
        ("http.access", stadttor_audit::event::Outcome::Success)
    };
    let entry = crate::audit_event::request_entry(
        log,
        kind,
        outcome,
        &cfg.name,
        req.method(),
        request_id,
        listener,
        conn.client_cert.as_ref().map(|c| c.subject.as_str()),
        facts.verified.identity.as_ref(),
        facts.decision,
    );
    let required = cfg.audit == AuditMode::Required;
    let recorded = entry.and_then(|entry| {
        if required {
            log.record_durable_entry(entry).map(Some)
        } else {
            log.record_entry(entry).map(|()| None)
        }
    });
    match recorded {
        Ok(evidence) => Ok(evidence),
        Err(e) if required => Err(GatewayError::AuditUnavailable(e.to_string())),
        Err(_) => Ok(None),
    }
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

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// The host a request is for: canonical with the port as sent (for `Host`
/// upstream and `Forwarded`) and the bare name for routing.
#[derive(Debug)]
struct Host {
    original: HeaderValue,
    name: String,
}

/// Refuses ambiguous framing and returns the request's host.
///
/// hyper already rejects malformed chunking, bad `Content-Length` values,
/// obs-fold and bare CR. What it lets through and we refuse here: a request
/// with both `Content-Length` and `Transfer-Encoding` (request smuggling,
/// RFC 9112 §6.3), an HTTP/1.1 request without exactly one `Host`, and an
/// h2 request whose `Host` disagrees with `:authority`.
fn check_framing(req: &Request<Incoming>) -> Result<Host, GatewayError> {
    let h = req.headers();
    if h.contains_key(header::TRANSFER_ENCODING) && h.contains_key(header::CONTENT_LENGTH) {
        return Err(GatewayError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    let mut hosts = h.get_all(header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return Err(GatewayError::BadRequest("more than one Host header"));
    }
    let original: HeaderValue = match (req.uri().authority(), host_header) {
        (Some(a), Some(hh)) => {
            if !a.as_str().as_bytes().eq_ignore_ascii_case(hh.as_bytes()) {
                return Err(GatewayError::BadRequest("Host differs from the authority"));
            }
            hh.clone()
        }
        (Some(a), None) => HeaderValue::from_str(a.as_str())
            .map_err(|_| GatewayError::BadRequest("authority is not a valid Host"))?,
        (None, Some(hh)) => hh.clone(),
        (None, None) => {
            if req.version() == Version::HTTP_10 {
                HeaderValue::from_static("")
            } else {
                return Err(GatewayError::BadRequest("missing Host"));
            }
        }
    };
    if original.is_empty() {
        return Ok(Host {
            original,
            name: String::new(),
        });
    }
    let authority = http::uri::Authority::try_from(original.as_bytes())
        .map_err(|_| GatewayError::BadRequest("Host is not a valid authority"))?;
    if authority.as_str().contains('@') {
        return Err(GatewayError::BadRequest("Host carries user info"));
    }
    let name = crate::target::canonical_host(authority.host())
        .ok_or(GatewayError::BadRequest("Host is not a valid host name"))?;
    // The service gets the canonical host (lowercase, no trailing dot),
    // with the port as sent; most requests already are canonical.
    let canonical = match authority.port() {
        Some(p) => format!("{name}:{}", p.as_str()),
        None => name.clone(),
    };
    let original = if canonical.as_bytes() == original.as_bytes() {
        original
    } else {
        HeaderValue::from_str(&canonical)
            .map_err(|_| GatewayError::BadRequest("Host is not a valid host name"))?
    };
    Ok(Host { original, name })
}

fn content_length(req: &Request<Incoming>) -> Option<u64> {
    req.body().size_hint().exact()
}

fn upstream_path(cfg: &crate::config::Route, uri: &Uri) -> Result<PathAndQuery, GatewayError> {
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    if !pq.path().starts_with('/') {
        // `OPTIONS *` and other non-origin forms are not proxied.
        return Err(GatewayError::BadRequest("request target is not a path"));
    }
    if !cfg.strip_prefix || cfg.path_prefix == "/" {
        return Ok(pq);
    }
    let rest = strip_segments(pq.path(), &cfg.path_prefix);
    let s = match pq.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    s.parse()
        .map_err(|_| GatewayError::BadRequest("path cannot be rewritten"))
}

/// Removes as many leading segments of the canonical `path` as `prefix`
/// has (`;` parameters on those segments go with them); what is left
/// starts with `/`.
fn strip_segments<'p>(path: &'p str, prefix: &str) -> &'p str {
    let n = prefix.trim_end_matches('/').matches('/').count();
    let mut rest = path;
    for _ in 0..n {
        rest = match rest[1..].find('/') {
            Some(i) => &rest[i + 1..],
            None => "",
        };
        if rest.is_empty() {
            break;
        }
    }
    if rest.starts_with('/') {
        rest
    } else {
        "/"
    }
}

#[cfg(test)]
mod tests {
    use super::strip_segments;

    #[test]
    fn prefixes_are_stripped_by_segments() {
        assert_eq!(strip_segments("/app/x/y", "/app"), "/x/y");
        assert_eq!(strip_segments("/app", "/app"), "/");
        assert_eq!(strip_segments("/app/", "/app/"), "/");
        assert_eq!(strip_segments("/a/b/c", "/a/b"), "/c");
        assert_eq!(strip_segments("/app;jsessionid=1/x", "/app"), "/x");
    }
}
