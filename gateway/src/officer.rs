//! The security officers' policy page and JSON API on the admin listener
//! (HTTPS, `[admin.tls]`), behind an OIDC login with the configured staff
//! provider (`[admin] officer_provider`).
//!
//! ```text
//! GET  /policy                          page: active version, proposals (diff, tests), history
//! POST /policy/approve | /policy/reject form (csrf, id[, reason]); 303 back to /policy
//! POST /policy/logout                   ends the officer session
//! GET  /api/policy                      JSON: active version, pending, awaiting approval
//! GET  /api/policy/history              JSON: every version
//! POST /api/policy/proposals            JSON {policy, tests, model?, comment?, emergency?}
//! POST /api/policy/proposals/ID/approve JSON {}
//! POST /api/policy/proposals/ID/reject  JSON {reason}
//! GET  /.stadttor/callback/PROVIDER     the login's redirect URI on this listener
//! ```
//!
//! Who may act is itself policy: the login's subject (by
//! `officer_subject_claim`) must hold the role `officer` in domain
//! `stadttor-admin` of the **active** policy, and [`Workflow`] enforces
//! four eyes. The officer session is a sealed `__Host-` cookie (SameSite=Lax,
//! HttpOnly, Secure) bound to the cookie key of `[identity]`; every POST
//! needs the session's CSRF token (form field `csrf` or header
//! `X-CSRF-Token`). Pages are server-rendered German or English HTML
//! without JavaScript. Every change is an audit event `policy.change`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use stadttor_audit::event::{Event, Outcome};
use stadttor_policies::{
    ChangeEvent, CompiledPolicy, PolicyDiff, PolicySet, Proposal, ProposalStatus, Workflow,
    WorkflowError,
};

use crate::auth::cookie::{self, CookieKeys};
use crate::auth::pages::{esc, Lang};
use crate::auth::provider::unix_now;
use crate::auth::random_token;
use crate::body::ProxyBody;
use crate::config;
use crate::proxy::Shared;

const SESSION: &str = "__Host-stadttor-officer";
const LOGIN: &str = "__Host-stadttor-officer-login";
const LOGIN_TIMEOUT: u64 = 600;
const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct LoginTx {
    state: String,
    nonce: String,
    pkce: String,
    issuer: String,
    created: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OfficerSession {
    /// The officer's name in the policy (the configured claim).
    name: String,
    csrf: String,
    exp: u64,
}

/// Officers' login state for this process.
pub struct Officers {
    cfg: config::Officers,
    cookies: CookieKeys,
    lifetime: u64,
    used_states: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for Officers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Officers")
            .field("provider", &self.cfg.provider)
            .finish()
    }
}

/// Why the officers' pages cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("admin.officer_provider: {0}")]
pub struct OfficersError(String);

impl Officers {
    /// Sets up officer logins from the configuration.
    pub fn new(config: &config::Config) -> Result<Option<Self>, OfficersError> {
        let (Some(cfg), Some(identity)) = (&config.officers, &config.identity) else {
            return Ok(None);
        };
        let cookies = CookieKeys::load(&identity.session_key_file)
            .map_err(|e| OfficersError(format!("identity.session_key_file: {e}")))?;
        Ok(Some(Self {
            cfg: cfg.clone(),
            cookies,
            lifetime: identity.session_idle_timeout.as_secs(),
            used_states: Mutex::new(HashMap::new()),
        }))
    }

    fn session(&self, h: &HeaderMap) -> Option<OfficerSession> {
        let raw = cookie::get(h, SESSION)?;
        let plain = self.cookies.open(SESSION, raw)?;
        let s: OfficerSession = serde_json::from_slice(&plain).ok()?;
        (unix_now() < s.exp).then_some(s)
    }

    /// Marks a login state used; false if it was used before.
    fn use_state(&self, state: &str) -> bool {
        let now = unix_now();
        let Ok(mut m) = self.used_states.lock() else {
            return false;
        };
        m.retain(|_, exp| *exp > now);
        m.insert(state.to_owned(), now + LOGIN_TIMEOUT).is_none()
    }
}

fn full(s: impl Into<Bytes>) -> ProxyBody {
    Full::new(s.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn harden(mut r: Response<ProxyBody>) -> Response<ProxyBody> {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    r
}

fn html(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    harden(r)
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    harden(r)
}

fn redirect(location: &str, cookies: &[String]) -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    harden(r)
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether `path` belongs to the officers' pages.
pub fn owns(path: &str) -> bool {
    path == "/policy"
        || path.starts_with("/policy/")
        || path == "/api/policy"
        || path.starts_with("/api/policy/")
        || path.starts_with("/.stadttor/callback/")
}

/// Handles one officer request on the admin listener.
pub async fn handle(
    shared: Arc<Shared>,
    officers: &Officers,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let lang = Lang::from_headers(req.headers());
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let api = path.starts_with("/api/");
    if let Some(p) = path.strip_prefix("/.stadttor/callback/") {
        if method == Method::GET && p == officers.cfg.provider {
            return callback(&shared, officers, &req, lang, &request_id).await;
        }
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    if path == "/policy/logged-out" {
        return logged_out(lang);
    }
    let Some(session) = officers.session(req.headers()) else {
        if api {
            return json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"error": "officer login required (GET /policy in a browser)"}),
            );
        }
        if method == Method::GET && path == "/policy" {
            return start_login(&shared, officers, lang, &request_id).await;
        }
        return redirect("/policy", &[]);
    };
    let Some(policy) = shared.policy.clone() else {
        return plain(StatusCode::NOT_FOUND, "no [policies] configured");
    };
    let is_officer = policy
        .authz
        .current()
        .is_some_and(|p| p.is_officer(&session.name));
    if !is_officer {
        tracing::info!(
            request_id,
            "admin: logged in, but not an officer of the active policy"
        );
        if api {
            return json(
                StatusCode::FORBIDDEN,
                &serde_json::json!({"error": format!("{:?} is not an officer (role officer in domain stadttor-admin of the active policy)", session.name)}),
            );
        }
        return html(
            StatusCode::FORBIDDEN,
            page(
                lang,
                match lang {
                    Lang::De => "Kein Zugang",
                    Lang::En => "No access",
                },
                &format!(
                    "<p>{}</p><p class=\"rid\">{}: <code>{}</code></p>",
                    match lang {
                        Lang::De => "Sie sind angemeldet, sind aber in der aktiven Richtlinie nicht als Sicherheitsbeauftragte oder Sicherheitsbeauftragter (Rolle <code>officer</code> in <code>stadttor-admin</code>) eingetragen.",
                        Lang::En => "You are logged in, but the active policy does not name you as a security officer (role <code>officer</code> in <code>stadttor-admin</code>).",
                    },
                    match lang {
                        Lang::De => "Vorgangsnummer",
                        Lang::En => "Reference",
                    },
                    esc(&request_id)
                ),
            ),
        );
    };
    let Some(wf) = policy.workflow() else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "policy store unavailable");
    };
    let wf = Arc::new(wf);
    if method == Method::POST {
        let token = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
        };
        let form: HashMap<String, String> = if api {
            HashMap::new()
        } else {
            url::form_urlencoded::parse(&body).into_owned().collect()
        };
        let sent = token
            .or_else(|| form.get("csrf").cloned())
            .unwrap_or_default();
        if !ct_eq(&sent, &session.csrf) {
            tracing::warn!(request_id, "admin: POST without a valid CSRF token refused");
            return plain(StatusCode::FORBIDDEN, "missing or wrong CSRF token");
        }
        if api {
            return api_post(&shared, wf, &session, &path, &body, &request_id).await;
        }
        return form_post(&shared, wf, &session, &path, &form, lang, &request_id).await;
    }
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    match path.as_str() {
        "/policy" => {
            let q: HashMap<String, String> = req
                .uri()
                .query()
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default();
            let view = match blocking(wf.clone(), view).await {
                Ok(v) => v,
                Err(e) => return plain(StatusCode::SERVICE_UNAVAILABLE, &e),
            };
            html(
                StatusCode::OK,
                policy_page(
                    lang,
                    &session,
                    &view,
                    q.get("done").map(String::as_str),
                    None,
                ),
            )
        }
        "/api/policy" => match blocking(wf, view).await {
            Ok(v) => json(StatusCode::OK, &view_json(&v)),
            Err(e) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({ "error": e }),
            ),
        },
        "/api/policy/history" => {
            match blocking(wf, |wf| wf.history().map_err(|e| e.to_string())).await {
                Ok(h) => json(
                    StatusCode::OK,
                    &serde_json::Value::Array(
                        h.into_iter()
                            .map(|e| {
                                serde_json::json!({
                                    "meta": e.meta, "active": e.active,
                                    "approved_by": e.approved_by,
                                    "awaiting_approval": e.awaiting_approval,
                                })
                            })
                            .collect(),
                    ),
                ),
                Err(e) => json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({ "error": e }),
                ),
            }
        }
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut r = Response::new(full(format!("{text}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    harden(r)
}

/// Runs blocking store work off the reactor.
async fn blocking<T: Send + 'static>(
    wf: Arc<Workflow>,
    f: impl FnOnce(&Workflow) -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(move || f(&wf))
        .await
        .map_err(|e| format!("task failed: {e}"))?
}

/// What the page and `GET /api/policy` show.
struct View {
    active: Option<Arc<CompiledPolicy>>,
    active_meta: Option<stadttor_policies::VersionMeta>,
    open: Vec<(
        Proposal,
        Result<stadttor_policies::TestReport, String>,
        PolicyDiff,
    )>,
    history: Vec<stadttor_policies::HistoryEntry>,
}

fn view(wf: &Workflow) -> Result<View, String> {
    let active = wf.active_policy().ok();
    let history = wf.history().map_err(|e| e.to_string())?;
    let active_meta = history.iter().find(|h| h.active).map(|h| h.meta.clone());
    let empty = PolicySet {
        model: String::new(),
        policy: String::new(),
        tests: String::new(),
    };
    let base = active.as_ref().map_or(&empty, |p| p.set());
    let mut open = Vec::new();
    let pending = wf.pending().map_err(|e| e.to_string())?;
    let awaiting = wf.awaiting_approval().map_err(|e| e.to_string())?;
    for p in pending.into_iter().chain(awaiting) {
        let tests = CompiledPolicy::compile(&p.set, 0)
            .map(|c| c.run_tests())
            .map_err(|e| e.to_string());
        // Pending: against the active version. Active emergency changes:
        // against the version they replaced.
        let diff = match (&p.status, p.base_version) {
            (ProposalStatus::Activated { version }, Some(b)) => {
                wf.diff(b, *version).map_err(|e| e.to_string())?
            }
            _ => PolicyDiff::between(base, &p.set),
        };
        open.push((p, tests, diff));
    }
    Ok(View {
        active,
        active_meta,
        open,
        history,
    })
}

fn view_json(v: &View) -> serde_json::Value {
    serde_json::json!({
        "active_version": v.active.as_ref().map(|p| p.version()),
        "active": v.active_meta,
        "officers": v.active.as_ref().map(|p| p.officers()),
        "open": v.open.iter().map(|(p, t, d)| serde_json::json!({
            "id": p.id, "author": p.author, "base_version": p.base_version,
            "emergency": p.emergency, "comment": p.comment, "status": p.status,
            "stale": matches!(p.status, ProposalStatus::Pending) && p.base_version != v.active.as_ref().map(|a| a.version()),
            "tests": match t { Ok(r) => serde_json::json!({"passed": r.passed, "failures": r.failures}), Err(e) => serde_json::json!({"error": e}) },
            "diff": d,
        })).collect::<Vec<_>>(),
    })
}

fn audit_changes(shared: &Shared, events: &[ChangeEvent], request_id: &str) {
    for e in events {
        tracing::info!(request_id, action = ?e.action, proposal = e.proposal.as_deref(), version = e.version, "policy change");
        if let Some(log) = &shared.audit {
            let ev = Event::new("policy.change", Outcome::Success)
                .target("policy")
                .request_id(request_id)
                .subject(log.pseudonym("officer", &e.actor))
                .attr("action", serde_json::to_value(e.action).unwrap_or_default())
                .attr("proposal", e.proposal.clone().unwrap_or_default())
                .attr("version", e.version.unwrap_or(0))
                .attr("base_version", e.base_version.unwrap_or(0))
                .attr("emergency", e.emergency)
                .attr("added", e.diff.added)
                .attr("removed", e.diff.removed)
                .attr("via", "admin");
            let _ = log.record(&ev);
        }
    }
}

fn audit_refusal(shared: &Shared, who: &str, action: &str, why: &str, request_id: &str) {
    tracing::info!(request_id, action, reason = why, "policy change refused");
    if let Some(log) = &shared.audit {
        let ev = Event::new("policy.change", Outcome::Denied)
            .target("policy")
            .request_id(request_id)
            .subject(log.pseudonym("officer", who))
            .attr("action", action)
            .attr("reason", why)
            .attr("via", "admin");
        let _ = log.record(&ev);
    }
}

/// HTTP status of a refused workflow step.
fn status_of(e: &WorkflowError) -> StatusCode {
    match e {
        WorkflowError::NotOfficer(_) | WorkflowError::SelfApproval(_) => StatusCode::FORBIDDEN,
        WorkflowError::Stale { .. } | WorkflowError::WrongState { .. } => StatusCode::CONFLICT,
        WorkflowError::Policy(_) | WorkflowError::TooFewOfficers(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        WorkflowError::Store(stadttor_policies::StoreError::NoSuchProposal(_)) => {
            StatusCode::NOT_FOUND
        }
        WorkflowError::Store(
            stadttor_policies::StoreError::Conflict { .. }
            | stadttor_policies::StoreError::ProposalConflict(_),
        ) => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposeBody {
    policy: String,
    tests: String,
    model: Option<String>,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    emergency: bool,
    /// The version the change was written against (default: the active one).
    base_version: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    #[serde(default)]
    reason: String,
}

async fn api_post(
    shared: &Shared,
    wf: Arc<Workflow>,
    session: &OfficerSession,
    path: &str,
    body: &[u8],
    request_id: &str,
) -> Response<ProxyBody> {
    let me = session.name.clone();
    let bad = |e: String| json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": e }));
    let result: Result<(serde_json::Value, Vec<ChangeEvent>), (String, WorkflowError)> = if path
        == "/api/policy/proposals"
    {
        let p: ProposeBody = match serde_json::from_slice(body) {
            Ok(p) => p,
            Err(e) => return bad(format!("body: {e}")),
        };
        let set = PolicySet {
            model: p
                .model
                .unwrap_or_else(|| stadttor_policies::set::DEFAULT_MODEL.to_string()),
            policy: p.policy,
            tests: p.tests,
        };
        let who = me.clone();
        match tokio::task::spawn_blocking(move || {
            let base = match p.base_version {
                Some(b) => Some(b),
                None => wf.active_policy().map(|a| a.version()).ok(),
            };
            wf.propose(&who, set, base, p.emergency, &p.comment)
        })
        .await
        {
            Ok(Ok(done)) => Ok((
                serde_json::json!({
                    "id": done.proposal.id, "status": done.proposal.status,
                    "tests_passed": done.tests.passed, "diff": done.diff,
                }),
                done.events,
            )),
            Ok(Err(e)) => Err(("propose".into(), e)),
            Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    } else if let Some(rest) = path.strip_prefix("/api/policy/proposals/") {
        let Some((id, action)) = rest.split_once('/') else {
            return plain(StatusCode::NOT_FOUND, "not found");
        };
        let (id, action) = (id.to_owned(), action.to_owned());
        let reason = if action == "reject" {
            match serde_json::from_slice::<RejectBody>(body) {
                Ok(r) => r.reason,
                Err(e) => return bad(format!("body: {e}")),
            }
        } else {
            String::new()
        };
        let who = me.clone();
        let act = action.clone();
        let r = tokio::task::spawn_blocking(move || match act.as_str() {
            "approve" => Some(wf.approve(&id, &who)),
            "reject" => Some(wf.reject(&id, &who, &reason)),
            _ => None,
        })
        .await;
        match r {
            Ok(Some(Ok(c))) => Ok((
                serde_json::json!({ "version": c.version, "proposal": c.proposal.map(|p| p.status) }),
                c.events,
            )),
            Ok(Some(Err(e))) => Err((action, e)),
            Ok(None) => return plain(StatusCode::NOT_FOUND, "not found"),
            Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    } else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    match result {
        Ok((v, events)) => {
            audit_changes(shared, &events, request_id);
            json(StatusCode::OK, &v)
        }
        Err((action, e)) => {
            audit_refusal(shared, &me, &action, &e.to_string(), request_id);
            json(
                status_of(&e),
                &serde_json::json!({ "error": e.to_string() }),
            )
        }
    }
}

async fn form_post(
    shared: &Shared,
    wf: Arc<Workflow>,
    session: &OfficerSession,
    path: &str,
    form: &HashMap<String, String>,
    lang: Lang,
    request_id: &str,
) -> Response<ProxyBody> {
    if path == "/policy/logout" {
        return redirect("/policy/logged-out", &[cookie::clear(SESSION)]);
    }
    let id = form.get("id").cloned().unwrap_or_default();
    let reason = form.get("reason").cloned().unwrap_or_default();
    let me = session.name.clone();
    let action = match path {
        "/policy/approve" => "approve",
        "/policy/reject" => "reject",
        _ => return plain(StatusCode::NOT_FOUND, "not found"),
    };
    if action == "reject" && reason.trim().is_empty() {
        let msg = match lang {
            Lang::De => "Bitte geben Sie einen Grund für die Ablehnung an.",
            Lang::En => "Please give a reason for the rejection.",
        };
        return error_page(wf, session, lang, StatusCode::UNPROCESSABLE_ENTITY, msg).await;
    }
    let who = me.clone();
    let (id2, reason2) = (id.clone(), reason.clone());
    let r = tokio::task::spawn_blocking(move || match action {
        "approve" => wf.approve(&id2, &who).map(|c| (c, wf)),
        _ => wf.reject(&id2, &who, &reason2).map(|c| (c, wf)),
    })
    .await;
    match r {
        Ok(Ok((c, _))) => {
            audit_changes(shared, &c.events, request_id);
            let done = match (action, c.version) {
                ("approve", Some(v)) => format!("approved-{v}"),
                ("approve", None) => "approved".to_owned(),
                _ => "rejected".to_owned(),
            };
            redirect(&format!("/policy?done={done}"), &[])
        }
        Ok(Err(e)) => {
            audit_refusal(shared, &me, action, &e.to_string(), request_id);
            let Some(wf) = shared.policy.as_ref().and_then(|p| p.workflow()) else {
                return plain(status_of(&e), &e.to_string());
            };
            error_page(Arc::new(wf), session, lang, status_of(&e), &e.to_string()).await
        }
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn error_page(
    wf: Arc<Workflow>,
    session: &OfficerSession,
    lang: Lang,
    status: StatusCode,
    msg: &str,
) -> Response<ProxyBody> {
    match blocking(wf, view).await {
        Ok(v) => html(status, policy_page(lang, session, &v, None, Some(msg))),
        Err(e) => plain(StatusCode::SERVICE_UNAVAILABLE, &e),
    }
}

async fn start_login(
    shared: &Shared,
    officers: &Officers,
    lang: Lang,
    request_id: &str,
) -> Response<ProxyBody> {
    let Some(p) = shared
        .auth
        .as_ref()
        .and_then(|a| a.provider(&officers.cfg.provider))
    else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "officer provider not configured",
        );
    };
    let state = random_token(24);
    let nonce = random_token(24);
    match p
        .authorization_request_at(&officers.cfg.redirect_uri, &state, &nonce, None, false)
        .await
    {
        Ok(req) => {
            let tx = LoginTx {
                state,
                nonce,
                pkce: req.pkce_verifier,
                issuer: req.issuer,
                created: unix_now(),
            };
            let Some(sealed) = serde_json::to_vec(&tx)
                .ok()
                .and_then(|j| officers.cookies.seal(LOGIN, &j))
            else {
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot start a login");
            };
            tracing::info!(request_id, provider = %officers.cfg.provider, "officer login started");
            redirect(
                &req.url,
                &[cookie::set(LOGIN, &sealed, Some(LOGIN_TIMEOUT))],
            )
        }
        Err(e) => {
            tracing::warn!(request_id, error = %e, "officer login: provider unavailable");
            html(
                StatusCode::SERVICE_UNAVAILABLE,
                crate::auth::pages::error(
                    lang,
                    crate::auth::pages::Problem::ProviderDown,
                    request_id,
                    None,
                ),
            )
        }
    }
}

async fn callback(
    shared: &Shared,
    officers: &Officers,
    req: &Request<Incoming>,
    lang: Lang,
    request_id: &str,
) -> Response<ProxyBody> {
    let q: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let fail = |why: &str| {
        tracing::warn!(request_id, reason = why, "officer login refused");
        let mut r = html(
            StatusCode::BAD_REQUEST,
            crate::auth::pages::error(
                lang,
                crate::auth::pages::Problem::LoginFailed,
                request_id,
                Some("/policy"),
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&cookie::clear(LOGIN)) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    };
    let tx = cookie::get(req.headers(), LOGIN)
        .and_then(|raw| officers.cookies.open(LOGIN, raw))
        .and_then(|p| serde_json::from_slice::<LoginTx>(&p).ok());
    let Some(tx) = tx else {
        return fail("no login transaction in this browser");
    };
    let state = q.get("state").map(String::as_str).unwrap_or("");
    if !ct_eq(state, &tx.state) {
        return fail("state does not match the transaction");
    }
    if unix_now() > tx.created + LOGIN_TIMEOUT {
        return fail("login transaction expired");
    }
    if q.get("iss").is_some_and(|i| *i != tx.issuer) {
        return fail("iss in the response is not the expected issuer (mix-up)");
    }
    if !officers.use_state(state) {
        return fail("state replayed");
    }
    if q.contains_key("error") {
        return fail("provider returned an error");
    }
    let Some(code) = q.get("code").filter(|c| !c.is_empty()) else {
        return fail("no code");
    };
    let Some(p) = shared
        .auth
        .as_ref()
        .and_then(|a| a.provider(&officers.cfg.provider))
    else {
        return fail("officer provider not configured");
    };
    let login = match p
        .exchange_at(
            &officers.cfg.redirect_uri,
            code,
            &tx.pkce,
            &tx.nonce,
            Duration::from_secs(LOGIN_TIMEOUT),
        )
        .await
    {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(request_id, error = %e, "officer login: token exchange failed");
            return fail("tokens refused");
        }
    };
    let name = if officers.cfg.subject_claim == "sub" {
        Some(login.sub.clone())
    } else {
        login
            .claims
            .get(&officers.cfg.subject_claim)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return fail("the login carries no officer name claim");
    };
    let s = OfficerSession {
        name,
        csrf: random_token(24),
        exp: unix_now() + officers.lifetime,
    };
    let Some(sealed) = serde_json::to_vec(&s)
        .ok()
        .and_then(|j| officers.cookies.seal(SESSION, &j))
    else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot create the session",
        );
    };
    tracing::info!(request_id, provider = %officers.cfg.provider, "officer login completed");
    if let Some(log) = &shared.audit {
        let _ = log.record(
            &Event::new("admin.login", Outcome::Success)
                .target("policy")
                .request_id(request_id)
                .subject(log.pseudonym("officer", &s.name)),
        );
    }
    redirect(
        "/policy",
        &[
            cookie::clear(LOGIN),
            cookie::set(SESSION, &sealed, Some(officers.lifetime)),
        ],
    )
}

// ------------------------------------------------------------------ page

fn page(lang: Lang, title: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="{code}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – stadttor</title>
<style>
body{{font-family:system-ui,sans-serif;font-size:1rem;line-height:1.5;color:#1a1a1a;background:#fff;max-width:60rem;margin:2rem auto;padding:0 1rem}}
h1{{font-size:1.6rem}} h2{{font-size:1.3rem;margin-top:2rem}}
a,button{{color:#0b3d91;font-size:1rem}}
a:focus,button:focus,input:focus,textarea:focus{{outline:3px solid #b35900;outline-offset:2px}}
button{{padding:.4rem 1rem;border:2px solid #0b3d91;background:#fff;border-radius:4px;cursor:pointer}}
section.proposal{{border:2px solid #404040;border-radius:4px;padding:1rem;margin:1rem 0}}
pre{{background:#f3f3f3;padding:.5rem;overflow-x:auto}}
.msg{{border:3px solid #8a1f11;padding:.5rem 1rem}} .ok{{border:3px solid #1e5631;padding:.5rem 1rem}}
table{{border-collapse:collapse}} td,th{{border:1px solid #808080;padding:.2rem .5rem;text-align:left}}
.rid{{color:#404040}}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"#,
        code = match lang {
            Lang::De => "de",
            Lang::En => "en",
        }
    )
}

fn diff_html(d: &PolicyDiff) -> String {
    if d.is_empty() {
        return "<p>–</p>".into();
    }
    let mut s = String::from("<pre class=\"diff\">");
    for (name, ld) in [
        ("model.conf", &d.model),
        ("policy.csv", &d.policy),
        ("tests.csv", &d.tests),
    ] {
        if ld.is_empty() {
            continue;
        }
        s.push_str(&format!("--- {name}\n"));
        for l in &ld.removed {
            s.push_str(&format!("- {}\n", esc(l)));
        }
        for l in &ld.added {
            s.push_str(&format!("+ {}\n", esc(l)));
        }
    }
    s.push_str("</pre>");
    s
}

fn policy_page(
    lang: Lang,
    session: &OfficerSession,
    v: &View,
    done: Option<&str>,
    error: Option<&str>,
) -> String {
    let de = lang == Lang::De;
    let t = |de_text: &'static str, en_text: &'static str| if de { de_text } else { en_text };
    let csrf = esc(&session.csrf);
    let mut b = String::new();
    b.push_str(&format!(
        "<p>{} <strong>{}</strong></p>\n<form method=\"post\" action=\"/policy/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">{}</button></form>\n",
        t("Angemeldet als", "Logged in as"),
        esc(&session.name),
        t("Abmelden", "Log out")
    ));
    if let Some(e) = error {
        b.push_str(&format!(
            "<p class=\"msg\" role=\"alert\"><strong>{}</strong> {}</p>\n",
            t("Nicht ausgeführt:", "Not done:"),
            esc(e)
        ));
    }
    if let Some(d) = done {
        let text = if let Some(ver) = d.strip_prefix("approved-") {
            match ver.parse::<u64>() {
                Ok(n) if de => format!("Freigegeben: Version {n} ist jetzt aktiv."),
                Ok(n) => format!("Approved: version {n} is active now."),
                Err(_) => String::new(),
            }
        } else if d == "approved" {
            t("Nachträglich freigegeben.", "Approved afterwards.").to_owned()
        } else if d == "rejected" {
            t("Abgelehnt.", "Rejected.").to_owned()
        } else {
            String::new()
        };
        if !text.is_empty() {
            b.push_str(&format!("<p class=\"ok\" role=\"status\">{text}</p>\n"));
        }
    }
    b.push_str(&format!(
        "<h2>{}</h2>\n",
        t("Aktive Richtlinie", "Active policy")
    ));
    match (&v.active, &v.active_meta) {
        (Some(p), Some(m)) => {
            b.push_str(&format!(
                "<p id=\"active-version\">{} <strong>{}</strong> · {} {}{}{}</p>\n<details><summary>policy.csv</summary><pre>{}</pre></details>\n",
                t("Version", "Version"),
                p.version(),
                t("von", "by"),
                esc(&m.author),
                m.approver
                    .as_ref()
                    .map(|a| format!(", {} {}", t("freigegeben von", "approved by"), esc(a)))
                    .unwrap_or_default(),
                if m.emergency {
                    t(" · NOTFALLÄNDERUNG", " · EMERGENCY CHANGE")
                } else {
                    ""
                },
                esc(&p.set().policy)
            ));
        }
        _ => b.push_str(&format!(
            "<p>{}</p>\n",
            t(
                "Keine aktive Richtlinie: alle geschützten Routen werden abgelehnt.",
                "No active policy: every enforced route is denied."
            )
        )),
    }
    let active_version = v.active.as_ref().map(|p| p.version());
    b.push_str(&format!(
        "<h2>{}</h2>\n",
        t("Offene Vorschläge", "Open proposals")
    ));
    if v.open.is_empty() {
        b.push_str(&format!(
            "<p>{}</p>\n",
            t("Keine offenen Vorschläge.", "No open proposals.")
        ));
    }
    for (p, tests, diff) in &v.open {
        let id = esc(&p.id);
        let awaiting = p.awaiting_approval();
        let stale = matches!(p.status, ProposalStatus::Pending) && p.base_version != active_version;
        b.push_str(&format!(
            "<section class=\"proposal\" data-proposal=\"{id}\" aria-labelledby=\"h-{id}\">\n<h3 id=\"h-{id}\">{} {} {}</h3>\n",
            t("Vorschlag von", "Proposal by"),
            esc(&p.author),
            if awaiting {
                t("(NOTFALLÄNDERUNG, bereits aktiv, Freigabe ausstehend)", "(EMERGENCY CHANGE, already active, awaiting approval)")
            } else {
                ""
            }
        ));
        b.push_str(&format!(
            "<p>ID <code>{id}</code> · {} {} · {}</p>\n",
            t("auf Version", "on version"),
            p.base_version.map_or("–".into(), |v| v.to_string()),
            esc(&p.comment)
        ));
        if stale {
            b.push_str(&format!(
                "<p class=\"msg\">{}</p>\n",
                t(
                    "Veraltet: seit dem Vorschlag wurde eine andere Version aktiv. Er kann nicht mehr freigegeben werden.",
                    "Stale: another version became active since it was proposed. It can no longer be approved."
                )
            ));
        }
        match tests {
            Ok(r) => b.push_str(&format!(
                "<p class=\"tests\">{}: {} {}, {} {}</p>\n",
                t("Tests der Richtlinie", "The policy's tests"),
                r.passed,
                t("bestanden", "passed"),
                r.failures.len(),
                t("fehlgeschlagen", "failed")
            )),
            Err(e) => b.push_str(&format!("<p class=\"msg\">{}</p>\n", esc(e))),
        }
        b.push_str(&format!(
            "<h4>{}</h4>\n{}\n",
            t("Änderungen", "Changes"),
            diff_html(diff)
        ));
        if p.author == session.name {
            b.push_str(&format!(
                "<p>{}</p>\n",
                t(
                    "Ihr eigener Vorschlag: eine zweite Person muss ihn freigeben (Vier-Augen-Prinzip).",
                    "Your own proposal: a second officer must approve it (four eyes)."
                )
            ));
        } else {
            b.push_str(&format!(
                "<form method=\"post\" action=\"/policy/approve\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"id\" value=\"{id}\"><button type=\"submit\" name=\"approve\">{}</button></form>\n",
                t("Freigeben", "Approve")
            ));
        }
        b.push_str(&format!(
            "<form method=\"post\" action=\"/policy/reject\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"id\" value=\"{id}\"><label for=\"r-{id}\">{}</label> <input id=\"r-{id}\" name=\"reason\" required> <button type=\"submit\" name=\"reject\">{}</button></form>\n</section>\n",
            t("Grund", "Reason"),
            t("Ablehnen", "Reject")
        ));
    }
    b.push_str(&format!(
        "<h2>{}</h2>\n<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>\n",
        t("Verlauf", "History"),
        t("Version", "Version"),
        t("Art", "Kind"),
        t("Vorgeschlagen von", "Proposed by"),
        t("Freigegeben von", "Approved by"),
        t("Kommentar", "Comment")
    ));
    for h in v.history.iter().rev().take(20) {
        let m = &h.meta;
        b.push_str(&format!(
            "<tr><td>{}{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            m.version,
            if h.active {
                t(" (aktiv)", " (active)")
            } else {
                ""
            },
            match m.kind {
                stadttor_policies::ChangeKind::Bootstrap =>
                    t("Installation", "Bootstrap").to_owned(),
                stadttor_policies::ChangeKind::Change => t("Änderung", "Change").to_owned(),
                stadttor_policies::ChangeKind::Rollback { to } =>
                    format!("{} {to}", t("Rückkehr zu", "Rollback to")),
            },
            if m.emergency {
                t(", Notfall", ", emergency")
            } else {
                ""
            },
            esc(&m.author),
            esc(h.approved_by.as_deref().unwrap_or("–")),
            esc(&m.comment)
        ));
    }
    b.push_str("</tbody></table>\n");
    page(lang, t("Zugriffsrichtlinie", "Access policy"), &b)
}

/// The "logged out" page (no session needed).
fn logged_out(lang: Lang) -> Response<ProxyBody> {
    html(
        StatusCode::OK,
        page(
            lang,
            match lang {
                Lang::De => "Abgemeldet",
                Lang::En => "Logged out",
            },
            "<p><a href=\"/policy\">/policy</a></p>",
        ),
    )
}
