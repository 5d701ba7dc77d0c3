//! The stages of a request, one small function each, in the order
//! [`super::handle`] runs them:
//!
//! ```text
//! admit ─▶ gateway_endpoints ─▶ decision_path ─▶ match_route ─▶ target_rule
//!       ─▶ authenticate ─▶ authorize ─▶ audit_record (─▶ deny)
//!       ─▶ upstream_head ─▶ forward_body ─▶ exchange ─▶ tunnel | sign | finish
//! ```
//!
//! Each takes [`http::request::Parts`] or plain data where it can, so that
//! its rules can be tested without a connection.

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use stadttor_audit::event::Outcome;
use tokio::time::Instant;

use super::{empty, send, ConnInfo, Ctx};
use crate::config::{AuditMode, PathRules};
use crate::http::body::{Guarded, ProxyBody, Tripwire};
use crate::http::headers;
use crate::http::target::{Refusal, TargetFacts};
use crate::respond::{is_api, Audience, GatewayError};
use crate::state::{Route, State};

/// The host a request is for: canonical with the port as sent (for `Host`
/// upstream and `Forwarded`) and the bare name for routing.
#[derive(Debug)]
pub(super) struct Host {
    pub(super) original: HeaderValue,
    pub(super) name: String,
}

/// Admission: refuses the HTTP/1.1 request the framing tripwire saw with
/// both `Content-Length` and `Transfer-Encoding`, then checks the request's
/// own framing and returns its host.
pub(super) fn admit(conn: &ConnInfo, parts: &Parts) -> Result<Host, GatewayError> {
    if parts.version <= Version::HTTP_11 {
        let position = conn.requests.fetch_add(1, Ordering::Relaxed);
        if conn.ambiguous.at(position) {
            return Err(GatewayError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
        }
    }
    check_framing(parts)
}

/// Refuses ambiguous framing and returns the request's host.
///
/// hyper already rejects malformed chunking, bad `Content-Length` values,
/// obs-fold and bare CR. What it lets through and we refuse here: a request
/// with both `Content-Length` and `Transfer-Encoding` (request smuggling,
/// RFC 9112 §6.3), an HTTP/1.1 request without exactly one `Host`, and an
/// h2 request whose `Host` disagrees with `:authority`.
pub(super) fn check_framing(parts: &Parts) -> Result<Host, GatewayError> {
    let h = &parts.headers;
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
    let original: HeaderValue = match (parts.uri.authority(), host_header) {
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
            if parts.version == Version::HTTP_10 {
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
    canonical_host(original)
}

/// The canonical form of a non-empty `Host` value.
fn canonical_host(original: HeaderValue) -> Result<Host, GatewayError> {
    let authority = http::uri::Authority::try_from(original.as_bytes())
        .map_err(|_| GatewayError::BadRequest("Host is not a valid authority"))?;
    if authority.as_str().contains('@') {
        return Err(GatewayError::BadRequest("Host carries user info"));
    }
    let name = crate::http::target::canonical_host(authority.host())
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

/// The gateway's own endpoints, before any route: the signer's key
/// endpoint and the login flow's paths. `Ok` hands the request back when
/// none of them answered it.
pub(super) async fn gateway_endpoints(
    ctx: &Ctx<'_>,
    parts: Parts,
    body: Incoming,
) -> Result<(Parts, Incoming), GatewayError> {
    if let Some(signer) = ctx.shared.signer.as_deref() {
        match signer.endpoint(parts.uri.path()) {
            Some(Some(resp)) => return Err(GatewayError::Answered(Box::new(resp))),
            Some(None) => return Err(GatewayError::NotFound),
            None => {}
        }
    }
    let Some(auth) = ctx.shared.auth.as_deref() else {
        return Ok((parts, body));
    };
    let req = Request::from_parts(parts, body);
    match crate::authn::flow::handle(auth, ctx.state, req, ctx.request_id).await {
        Ok(resp) => Err(GatewayError::Answered(Box::new(resp))),
        Err(req) => Ok(req.into_parts()),
    }
}

/// Decisions are made on the canonical path; on a route that accepts `;`
/// parameters, on the path without them (the servlet view).
pub(super) fn decision_path(path: &str, facts: TargetFacts) -> Cow<'_, str> {
    if facts.parameters {
        crate::http::target::decision_path(path)
    } else {
        Cow::Borrowed(path)
    }
}

/// Route match: the first route of the listener for the host and the
/// decision path.
pub(super) fn match_route<'s>(
    state: &'s State,
    listener: usize,
    host: &Host,
    decision_path: &str,
) -> Result<&'s Route, GatewayError> {
    state
        .route(listener, &host.name, decision_path)
        .ok_or(GatewayError::NoRoute)
}

/// What a route's path rules say about a target that was not canonical as
/// sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TargetRule {
    /// Forward (as the canonical path).
    Pass,
    /// Refuse with 400: `;` parameters or `//` the route does not accept.
    Refuse(Refusal),
    /// Answer with a 308 to the canonical form.
    Redirect,
}

/// The route's own rules for a target that was not canonical as sent:
/// refuse `;` parameters or `//` it does not accept, or redirect to the
/// canonical form.
pub(super) fn target_rule(rules: PathRules, facts: TargetFacts, method: &Method) -> TargetRule {
    if facts.parameters && !rules.parameters {
        return TargetRule::Refuse(Refusal::Parameters);
    }
    if facts.empty_segments && !rules.merge_slashes {
        return TargetRule::Refuse(Refusal::EmptySegment);
    }
    if facts.changed
        && rules.redirect_to_canonical
        && (method == Method::GET || method == Method::HEAD)
    {
        return TargetRule::Redirect;
    }
    TargetRule::Pass
}

/// The 308 to the canonical form of the request target.
pub(super) fn redirect_to_canonical(uri: &Uri) -> GatewayError {
    // The canonical path never starts with `//` (slashes are merged
    // before routing), so the Location stays on this origin.
    let location = uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    GatewayError::Answered(Box::new(resp))
}

/// Authentication: a refusal is a complete response (login redirect, 401,
/// 403), sent with the route's security headers.
pub(super) async fn authenticate(
    ctx: &Ctx<'_>,
    cfg: &crate::config::Route,
    parts: &Parts,
) -> Result<crate::authn::Verified, GatewayError> {
    match (ctx.shared.auth.as_deref(), cfg.auth.methods.is_empty()) {
        (_, true) => Ok(crate::authn::Verified::default()),
        (None, false) => Err(GatewayError::Internal(
            "route needs authentication but [identity] is missing".into(),
        )),
        (Some(auth), false) => auth
            .authenticate(cfg, parts, ctx.conn.client_cert.as_ref(), ctx.request_id)
            .await
            .map_err(|resp| GatewayError::Answered(Box::new(resp))),
    }
}

/// Authorization: the policy decides on the verified identity (never a
/// request header) and the canonical path the upstream receives. No
/// policy: deny. `None` when the route has no `authz`.
pub(super) fn authorize<'r>(
    ctx: &Ctx<'_>,
    cfg: &'r crate::config::Route,
    verified: &crate::authn::Verified,
    decision_path: &str,
    method: &Method,
) -> Option<(
    &'r crate::config::RouteAuthz,
    stadttor_policies::DecisionRecord,
)> {
    cfg.authz.as_ref().map(|z| {
        let d = match ctx.shared.policy.as_deref() {
            Some(p) => crate::policy::decide(
                &p.authz,
                z,
                verified.identity.as_ref(),
                decision_path,
                method.as_str(),
                ctx.conn.client_cert.as_ref().map(|c| c.subject.as_str()),
            ),
            None => stadttor_policies::DecisionRecord::no_policy(),
        };
        (z, d)
    })
}

/// What the audit event of a request says about its identity and decision.
pub(super) struct AccessFacts<'a> {
    pub(super) verified: &'a crate::authn::Verified,
    pub(super) decision: Option<crate::audit_event::AuditedDecision<'a>>,
    pub(super) denied: bool,
}

/// Whether a route's requests are recorded, given whether there is an
/// audit log at all.
pub(super) fn audited(has_log: bool, mode: AuditMode) -> bool {
    has_log && matches!(mode, AuditMode::Required | AuditMode::BestEffort)
}

/// The event kind and outcome: `http.access` when allowed,
/// `authz.decision` (outcome denied) when refused.
pub(super) fn event_kind(denied: bool) -> (&'static str, Outcome) {
    if denied {
        ("authz.decision", Outcome::Denied)
    } else {
        ("http.access", Outcome::Success)
    }
}

/// Audit record: recorded before anything is forwarded; a required route
/// fails closed and its response waits until the event is durable (the
/// returned evidence). The decision travels in the same event.
pub(super) fn audit_record(
    ctx: &Ctx<'_>,
    cfg: &crate::config::Route,
    method: &Method,
    facts: AccessFacts<'_>,
) -> Result<Option<crate::audit_event::Evidence>, GatewayError> {
    match ctx.shared.audit.as_deref() {
        Some(log) if audited(true, cfg.audit) => record_access(log, ctx, cfg, method, facts),
        _ => Ok(None),
    }
}

/// Records the request's audit event: durably (the returned evidence must
/// settle before the response leaves) on required routes, queued on
/// best-effort ones. A required route whose event cannot be recorded is
/// refused with 503.
fn record_access(
    log: &crate::audit_event::AuditLog,
    ctx: &Ctx<'_>,
    cfg: &crate::config::Route,
    method: &Method,
    facts: AccessFacts<'_>,
) -> Result<Option<crate::audit_event::Evidence>, GatewayError> {
    let listener = ctx
        .state
        .config
        .listeners
        .get(ctx.conn.listener)
        .map_or("", |l| l.name.as_str());
    let (kind, outcome) = event_kind(facts.denied);
    let entry = crate::audit_event::request_entry(
        log,
        kind,
        outcome,
        &cfg.name,
        method,
        ctx.request_id,
        listener,
        ctx.client.ip(),
        ctx.conn.client_cert.as_ref().map(|c| c.subject.as_str()),
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

/// A refusal by policy: logged, answered with 403 in the client's form,
/// once the audit evidence (if any) is durable.
pub(super) async fn deny(
    ctx: &Ctx<'_>,
    cfg: &crate::config::Route,
    (z, d): (
        &crate::config::RouteAuthz,
        &stadttor_policies::DecisionRecord,
    ),
    evidence: Option<crate::audit_event::Evidence>,
    parts: &Parts,
) -> GatewayError {
    let request_id = ctx.request_id;
    tracing::info!(
        request_id,
        route = %cfg.name,
        domain = %z.domain,
        reason = ?d.reason,
        line = d.line,
        policy_version = d.version,
        "access denied by policy"
    );
    let aud = Audience::of(&parts.headers, is_api(&cfg.auth));
    let resp = crate::respond::Refusal::Forbidden.into_response(aud, request_id);
    if let Some(e) = evidence {
        if let Err(e) = e.settled().await {
            return GatewayError::AuditUnavailable(e.to_string());
        }
    }
    GatewayError::Answered(Box::new(resp))
}

/// Whether the request is a WebSocket upgrade the route lets through.
pub(super) fn wants_websocket(cfg: &crate::config::Route, parts: &Parts) -> bool {
    cfg.websocket
        && parts.version == Version::HTTP_11
        && parts.method == Method::GET
        && headers::is_websocket_upgrade(&parts.headers)
}

/// The upstream request head: hop-by-hop and client-sent identity headers
/// out, the client's credentials withheld, the verified identity,
/// `Forwarded`, the request id, the canonical `Host` and (if configured)
/// the client certificate's subject in. Returns the upstream target.
pub(super) fn upstream_head(
    ctx: &Ctx<'_>,
    route: &Route,
    parts: &mut Parts,
    host: &Host,
    upstream_headers: Vec<(http::HeaderName, HeaderValue)>,
    websocket: bool,
) -> Result<PathAndQuery, GatewayError> {
    let (cfg, server, request_id) = (&route.cfg, &ctx.state.config.server, ctx.request_id);
    headers::strip_hop_by_hop(&mut parts.headers, websocket);
    let spoofed = headers::strip_prefixed(&mut parts.headers, &server.identity_header_prefix);
    if spoofed > 0 {
        tracing::info!(
            request_id,
            count = spoofed,
            "removed client-sent identity headers"
        );
    }
    crate::http::credentials::withhold_for_route(&mut parts.headers, &cfg.auth, request_id);
    for (name, value) in upstream_headers {
        parts.headers.insert(name, value);
    }
    headers::set_forwarded(&mut parts.headers, ctx.client.forwarded(), &host.original);
    parts
        .headers
        .insert(headers::REQUEST_ID, ctx.request_id_value.clone());
    parts.headers.insert(header::HOST, host.original.clone());
    if cfg.forward_client_cert {
        if let Some(cc) = &ctx.conn.client_cert {
            let name = format!("{}client-cert-subject", server.identity_header_prefix);
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(cc.subject.as_bytes()),
            ) {
                parts.headers.insert(n, v);
            }
        }
    }
    let path_and_query = upstream_path(cfg.strip_prefix, &cfg.path_prefix, &parts.uri)?;
    parts.version = Version::HTTP_11;
    Ok(path_and_query)
}

/// The request body as it goes upstream: under the route's size limit and
/// timeouts, or empty. Also says whether there was a body.
pub(super) fn forward_body(
    body: Incoming,
    cfg: &crate::config::Route,
    deadline: Instant,
    tripwire: &Tripwire,
) -> (ProxyBody, bool) {
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
    (body, has_body)
}

/// The request as it goes upstream, with what the exchange needs to know.
pub(super) struct Outbound {
    pub(super) parts: Parts,
    pub(super) path_and_query: PathAndQuery,
    pub(super) body: ProxyBody,
    pub(super) has_body: bool,
    pub(super) deadline: Instant,
    /// Raised by the request body when it stops on a limit or timeout.
    pub(super) tripwire: Tripwire,
}

/// Forward: sends the request upstream within the response-header
/// deadline. The response head leaves only once the access event is
/// durable; the commit runs while the upstream works.
pub(super) async fn exchange(
    route: &Route,
    out: Outbound,
    evidence: Option<crate::audit_event::Evidence>,
) -> Result<Response<Incoming>, GatewayError> {
    let cfg = &route.cfg;
    let tripwire = out.tripwire;
    let header_deadline = (Instant::now() + cfg.timeouts.response_header).min(out.deadline);
    let sent = send(
        route,
        out.parts,
        out.path_and_query,
        out.body,
        out.has_body,
        &tripwire,
    );
    let sent = tokio::time::timeout_at(header_deadline, sent);
    let (exchanged, recorded) = crate::audit_event::Evidence::along(evidence, sent).await;
    recorded.map_err(|e| GatewayError::AuditUnavailable(e.to_string()))?;
    match exchanged {
        Ok(r) => r,
        Err(_) => Err(if tripwire.timed_out() {
            GatewayError::RequestTimeout
        } else {
            GatewayError::UpstreamTimeout {
                upstream: route.pool.name.clone(),
            }
        }),
    }
}

/// A switched protocol: the byte tunnel runs on its own task, the 101
/// goes back without a body.
pub(super) fn tunnel(
    ctx: &Ctx<'_>,
    route: &Route,
    downstream: hyper::upgrade::OnUpgrade,
    mut resp: Response<Incoming>,
) -> Response<ProxyBody> {
    let cfg = &route.cfg;
    let upstream = hyper::upgrade::on(&mut resp);
    tokio::spawn(crate::http::tunnel::run(
        downstream,
        upstream,
        route.pool.name.clone(),
        cfg.timeouts.idle,
        cfg.timeouts.total,
    ));
    headers::strip_hop_by_hop(resp.headers_mut(), true);
    crate::http::credentials::refuse_set_cookies_for_route(
        resp.headers_mut(),
        route,
        ctx.request_id,
    );
    resp.map(|_| empty())
}

/// Sign and finish: hop-by-hop headers and services' attempts to set the
/// gateway's cookies out; the response signed when a signing rule matches;
/// the route's security headers and a refreshed session cookie in.
pub(super) async fn sign_and_finish(
    ctx: &Ctx<'_>,
    route: &Route,
    mut resp: Response<Incoming>,
    sign_path: Option<&str>,
    set_cookie: Option<HeaderValue>,
    deadline: Instant,
) -> Result<Response<ProxyBody>, GatewayError> {
    let cfg = &route.cfg;
    headers::strip_hop_by_hop(resp.headers_mut(), false);
    crate::http::credentials::refuse_set_cookies_for_route(
        resp.headers_mut(),
        route,
        ctx.request_id,
    );
    if let (Some(signer), Some(path)) = (ctx.shared.signer.as_deref(), sign_path) {
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
                    ctx.request_id,
                )
                .await
                .map_err(|e| match e {
                    crate::signing::SignError::Unrecorded(why) => {
                        GatewayError::AuditUnavailable(why)
                    }
                    e => GatewayError::SigningFailed(e.to_string()),
                })?;
            headers::add_missing(signed.headers_mut(), &route.security_headers);
            if let Some(c) = set_cookie {
                signed.headers_mut().append(header::SET_COOKIE, c);
            }
            return Ok(signed);
        }
    }
    headers::add_missing(resp.headers_mut(), &route.security_headers);
    if let Some(c) = set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp.map(|b| Guarded::new(b, u64::MAX, cfg.timeouts.idle, deadline, None).boxed_unsync()))
}

/// The upstream target: the canonical path and query, with the route's
/// prefix stripped when the route says so.
pub(super) fn upstream_path(
    strip_prefix: bool,
    path_prefix: &str,
    uri: &Uri,
) -> Result<PathAndQuery, GatewayError> {
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    if !pq.path().starts_with('/') {
        // `OPTIONS *` and other non-origin forms are not proxied.
        return Err(GatewayError::BadRequest("request target is not a path"));
    }
    if !strip_prefix || path_prefix == "/" {
        return Ok(pq);
    }
    let rest = strip_segments(pq.path(), path_prefix);
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
pub(super) fn strip_segments<'p>(path: &'p str, prefix: &str) -> &'p str {
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
