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
use std::sync::Arc;

use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use stadttor_audit::event::{Event, Outcome};
use stadttor_policies::{
    ChangeEvent, CompiledPolicy, PolicyDiff, PolicySet, Proposal, ProposalStatus, Workflow,
    WorkflowError,
};

use crate::authn::cookie::{self, CookieKeys};
use crate::authn::provider::unix_now;
use crate::config;
use crate::http::body::ProxyBody;
use crate::respond::officer::{html, json, problem, redirect};
use crate::respond::{Audience, Lang, Problem};

mod api;
mod login;
mod page;

use api::{api_post, history_json, view_json};

use login::{callback, start_login};
use page::{logged_out, policy_page};

const SESSION: &str = "__Host-stadttor-officer";
const LOGIN_TIMEOUT: u64 = 600;
const MAX_BODY: usize = 1024 * 1024;

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
        }))
    }

    fn session(&self, h: &HeaderMap) -> Option<OfficerSession> {
        let raw = cookie::get(h, SESSION)?;
        let plain = self.cookies.open(SESSION, raw)?;
        let s: OfficerSession = serde_json::from_slice(&plain).ok()?;
        (unix_now() < s.exp).then_some(s)
    }
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

/// What the officers' pages need of the running gateway: the audit log,
/// the login (its transaction checks and session store) and the policy
/// workflow. The admin listener hands it in, so this module does not
/// depend on the process-wide `runtime::Shared` that holds it.
#[derive(Clone, Default)]
pub struct Context {
    /// The audit log, if configured.
    pub audit: Option<Arc<crate::audit_event::AuditLog>>,
    /// Logins (`[identity]`), if configured.
    pub auth: Option<Arc<crate::authn::Auth>>,
    /// The policy store and workflow, if configured.
    pub policy: Option<Arc<crate::policy::PolicyRuntime>>,
}

/// Handles one officer request on the admin listener.
pub async fn handle(
    shared: Context,
    officers: &Officers,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let api = path.starts_with("/api/");
    let aud = Audience::of(req.headers(), api);
    let lang = aud.lang;
    let fail = |p: Problem| problem(p.answer(), aud, &request_id);
    if let Some(p) = path.strip_prefix("/.stadttor/callback/") {
        if method == Method::GET && p == officers.cfg.provider {
            return callback(&shared, officers, &req, aud, &request_id).await;
        }
        return fail(Problem::NotFound);
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
            let host = crate::http::credentials::request_host(req.uri(), req.headers());
            return start_login(&shared, officers, &host, aud, &request_id).await;
        }
        return redirect("/policy", &[]);
    };
    let Some(policy) = shared.policy.clone() else {
        tracing::info!(request_id, "admin: no [policies] configured");
        return fail(Problem::NotFound);
    };
    let Some(wf) = policy.workflow() else {
        return fail(Problem::PolicyStoreDown);
    };
    let wf = Arc::new(wf);
    if !is_officer(&policy, &wf, &session.name).await {
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
        return html(StatusCode::FORBIDDEN, page::no_access(lang, &request_id));
    }
    if method == Method::POST {
        return post(&shared, wf, &session, req, &path, aud, &request_id).await;
    }
    if method != Method::GET && method != Method::HEAD {
        return fail(Problem::MethodNotAllowed);
    }
    match path.as_str() {
        "/policy" => get_policy(wf, &session, req.uri().query(), aud, &request_id).await,
        "/api/policy" => match blocking(wf, view).await {
            Ok(v) => json(StatusCode::OK, &view_json(&v)),
            Err(e) => {
                tracing::warn!(request_id, error = %e, "admin: policy store unavailable");
                fail(Problem::PolicyStoreDown)
            }
        },
        "/api/policy/history" => history_json(wf, aud, &request_id).await,
        _ => fail(Problem::NotFound),
    }
}

/// `GET /policy`: the page, with the outcome of the last form post
/// (`?done=`).
async fn get_policy(
    wf: Arc<Workflow>,
    session: &OfficerSession,
    query: Option<&str>,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    let q: HashMap<String, String> = query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let view = match blocking(wf, view).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(request_id, error = %e, "admin: policy store unavailable");
            return problem(Problem::PolicyStoreDown.answer(), aud, request_id);
        }
    };
    let done = q.get("done").map(String::as_str);
    html(
        StatusCode::OK,
        policy_page(aud.lang, session, &view, done, None),
    )
}

/// An officer of the active version, or of the version an open
/// emergency change replaced (they judge it, see `Workflow`).
async fn is_officer(policy: &crate::policy::PolicyRuntime, wf: &Arc<Workflow>, name: &str) -> bool {
    if policy.authz.current().is_some_and(|p| p.is_officer(name)) {
        return true;
    }
    let who = name.to_owned();
    blocking(wf.clone(), move |wf| {
        wf.is_judge(&who).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or(false)
}

/// A POST by a logged-in officer: CSRF token checked, then the API or the
/// page's forms.
async fn post(
    shared: &Context,
    wf: Arc<Workflow>,
    session: &OfficerSession,
    req: Request<Incoming>,
    path: &str,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    let api = path.starts_with("/api/");
    let token = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return problem(Problem::PayloadTooLarge.answer(), aud, request_id),
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
        return problem(Problem::CsrfFailed.answer(), aud, request_id);
    }
    if api {
        return api_post(shared, wf, session, path, &body, aud, request_id).await;
    }
    form_post(shared, wf, session, path, &form, aud, request_id).await
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

/// Records the policy changes an officer made and waits until they are
/// durable. `Err` when the log could not make them durable: the change is
/// stored, but the officer is told that its evidence is missing (503).
async fn audit_changes(
    shared: &Context,
    events: &[ChangeEvent],
    aud: Audience,
    request_id: &str,
) -> Result<(), Response<ProxyBody>> {
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
            if let Err(err) = log.record_durable(&ev).await {
                tracing::error!(request_id, error = %err, "audit log cannot record a policy change");
                return Err(problem(Problem::ChangeUnrecorded.answer(), aud, request_id));
            }
        }
    }
    Ok(())
}

fn audit_refusal(shared: &Context, who: &str, action: &str, why: &str, request_id: &str) {
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
        WorkflowError::NotOfficer(_)
        | WorkflowError::NotReviewer { .. }
        | WorkflowError::SelfApproval(_)
        | WorkflowError::EmergencyForbidden(_) => StatusCode::FORBIDDEN,
        WorkflowError::Stale { .. }
        | WorkflowError::WrongState { .. }
        | WorkflowError::EmergencyOpen { .. } => StatusCode::CONFLICT,
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

async fn form_post(
    shared: &Context,
    wf: Arc<Workflow>,
    session: &OfficerSession,
    path: &str,
    form: &HashMap<String, String>,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    let lang = aud.lang;
    if path == "/policy/logout" {
        return redirect("/policy/logged-out", &[cookie::clear(SESSION)]);
    }
    let id = form.get("id").cloned().unwrap_or_default();
    let reason = form.get("reason").cloned().unwrap_or_default();
    let me = session.name.clone();
    let action = match path {
        "/policy/approve" => "approve",
        "/policy/reject" => "reject",
        _ => return problem(Problem::NotFound.answer(), aud, request_id),
    };
    if action == "reject" && reason.trim().is_empty() {
        let msg = match lang {
            Lang::De => "Bitte geben Sie einen Grund für die Ablehnung an.",
            Lang::En => "Please give a reason for the rejection.",
        };
        return error_page(
            wf,
            session,
            aud,
            StatusCode::UNPROCESSABLE_ENTITY,
            msg,
            request_id,
        )
        .await;
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
            if let Err(unrecorded) = audit_changes(shared, &c.events, aud, request_id).await {
                return unrecorded;
            }
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
                return problem(Problem::PolicyStoreDown.answer(), aud, request_id);
            };
            let msg = e.to_string();
            error_page(Arc::new(wf), session, aud, status_of(&e), &msg, request_id).await
        }
        Err(e) => {
            tracing::error!(request_id, error = %e, "admin: policy change task failed");
            problem(Problem::Internal.answer(), aud, request_id)
        }
    }
}

/// The policy page with a refused step's message (the workflow's own
/// words for the officer), or the store's 503.
async fn error_page(
    wf: Arc<Workflow>,
    session: &OfficerSession,
    aud: Audience,
    status: StatusCode,
    msg: &str,
    request_id: &str,
) -> Response<ProxyBody> {
    match blocking(wf, view).await {
        Ok(v) => html(status, policy_page(aud.lang, session, &v, None, Some(msg))),
        Err(e) => {
            tracing::warn!(request_id, error = %e, "admin: policy store unavailable");
            problem(Problem::PolicyStoreDown.answer(), aud, request_id)
        }
    }
}
