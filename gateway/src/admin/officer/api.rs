//! The officers' JSON API (`/api/policy…`): the state of the policy store
//! as JSON and the proposal, approval and rejection calls. Session, CSRF
//! check and officer role are checked by [`super::handle`] before.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde::Deserialize;
use stadttor_policies::{ChangeEvent, PolicySet, ProposalStatus, Workflow, WorkflowError};

use super::Context;
use super::{audit_changes, audit_refusal, blocking, status_of, OfficerSession, View};
use crate::http::body::ProxyBody;
use crate::respond::officer::{json, problem};
use crate::respond::{Audience, Problem};

/// Every policy version, as JSON.
pub(super) async fn history_json(
    wf: Arc<Workflow>,
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
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
        Err(e) => {
            tracing::warn!(request_id, error = %e, "admin: policy store unavailable");
            problem(Problem::PolicyStoreDown.answer(), aud, request_id)
        }
    }
}

/// `GET /api/policy`: the page's [`View`] as JSON.
pub(super) fn view_json(v: &View) -> serde_json::Value {
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

pub(super) async fn api_post(
    shared: &Context,
    wf: Arc<Workflow>,
    session: &OfficerSession,
    path: &str,
    body: &[u8],
    aud: Audience,
    request_id: &str,
) -> Response<ProxyBody> {
    let me = session.name.clone();
    let fail = |p: Problem| problem(p.answer(), aud, request_id);
    let failed = |e: tokio::task::JoinError| {
        tracing::error!(request_id, error = %e, "admin: policy change task failed");
        problem(Problem::Internal.answer(), aud, request_id)
    };
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
            Err(e) => return failed(e),
        }
    } else if let Some(rest) = path.strip_prefix("/api/policy/proposals/") {
        let Some((id, action)) = rest.split_once('/') else {
            return fail(Problem::NotFound);
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
            Ok(None) => return fail(Problem::NotFound),
            Err(e) => return failed(e),
        }
    } else {
        return fail(Problem::NotFound);
    };
    match result {
        Ok((v, events)) => match audit_changes(shared, &events, aud, request_id).await {
            Ok(()) => json(StatusCode::OK, &v),
            Err(unrecorded) => unrecorded,
        },
        Err((action, e)) => {
            audit_refusal(shared, &me, &action, &e.to_string(), request_id);
            json(
                status_of(&e),
                &serde_json::json!({ "error": e.to_string() }),
            )
        }
    }
}
