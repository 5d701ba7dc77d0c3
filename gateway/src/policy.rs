//! Policy enforcement in the gateway: the process's [`PolicyRuntime`]
//! (the `stadttor-policies` [`Authorizer`], its store and the watcher that
//! keeps every gateway on the store's active version) and the one function
//! that turns a verified identity into a policy question, [`decide`].
//!
//! Fail closed: no store, an empty store, or a store that cannot be read
//! at start means every enforced route is denied (`/readyz` says why); a
//! store that breaks later keeps the last good policy. The subject is
//! taken only from the verified identity, never from a request header.
//! Watching runs on its own thread (the PostgreSQL client blocks), never
//! on the reactor.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use stadttor_audit::event::{Event, Outcome};
use stadttor_policies::{
    AccessRequest, Authorizer, DecisionRecord, PolicyStore, StoreError, WatchEvent, WatchHandle,
    Workflow,
};

use crate::audit_event::AuditLog;
use crate::config::{Policies, PolicyStorage, RouteAuthz};
use crate::identity::Identity;

/// Opens the store a configuration names.
pub fn open_store(storage: &PolicyStorage) -> Result<Arc<dyn PolicyStore>, StoreError> {
    match storage {
        PolicyStorage::Dir(d) => Ok(Arc::new(stadttor_policies::FileStore::open(d)?)),
        #[cfg(feature = "postgres")]
        PolicyStorage::Postgres { url, schema, tls } => {
            let connector = crate::store_tls::sync_connector(tls.as_ref())
                .map_err(|e| StoreError::Config(e.to_string()))?;
            Ok(Arc::new(stadttor_policies::PgStore::connect_with(
                url, schema, connector,
            )?))
        }
        #[cfg(not(feature = "postgres"))]
        PolicyStorage::Postgres { .. } => Err(StoreError::Config(
            "a PostgreSQL policy store needs the cargo feature `postgres`".into(),
        )),
    }
}

/// The policy side of a running gateway.
pub struct PolicyRuntime {
    /// The active policy (deny-all while there is none).
    pub authz: Arc<Authorizer>,
    store: Mutex<Option<Arc<dyn PolicyStore>>>,
    last_error: Arc<Mutex<Option<String>>>,
    watch: Mutex<Option<WatchHandle>>,
}

impl std::fmt::Debug for PolicyRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyRuntime")
            .field("version", &self.authz.version())
            .finish()
    }
}

impl PolicyRuntime {
    /// Opens the store and starts watching it. A store that cannot be
    /// opened now is retried every `poll_interval` on a background thread;
    /// until then every enforced route is denied.
    pub fn start(cfg: &Policies, audit: Option<Arc<AuditLog>>) -> Arc<Self> {
        let rt = Arc::new(Self {
            authz: Arc::new(Authorizer::new()),
            store: Mutex::new(None),
            last_error: Arc::new(Mutex::new(None)),
            watch: Mutex::new(None),
        });
        let storage = cfg.storage.clone();
        let poll = cfg.poll_interval;
        let weak = Arc::downgrade(&rt);
        let spawned = std::thread::Builder::new()
            .name("policy-store".into())
            .spawn(move || loop {
                let Some(rt) = weak.upgrade() else { return };
                match open_store(&storage) {
                    Ok(store) => {
                        rt.attach(store, poll, audit);
                        return;
                    }
                    Err(e) => {
                        rt.failed(format!("cannot open the policy store: {e}"));
                    }
                }
                drop(rt);
                std::thread::sleep(poll);
            });
        if let Err(e) = spawned {
            rt.failed(format!("cannot start the policy store thread: {e}"));
        }
        rt
    }

    /// A runtime on an already opened store (tests, tools).
    pub fn with_store(
        store: Arc<dyn PolicyStore>,
        poll: Duration,
        audit: Option<Arc<AuditLog>>,
    ) -> Arc<Self> {
        let rt = Arc::new(Self {
            authz: Arc::new(Authorizer::new()),
            store: Mutex::new(None),
            last_error: Arc::new(Mutex::new(None)),
            watch: Mutex::new(None),
        });
        rt.attach(store, poll, audit);
        rt
    }

    fn failed(&self, why: String) {
        if let Ok(mut e) = self.last_error.lock() {
            if e.as_deref() != Some(why.as_str()) {
                tracing::error!(error = %why, "policy store: keeping the current policy (deny all if none)");
            }
            *e = Some(why);
        }
    }

    fn attach(&self, store: Arc<dyn PolicyStore>, poll: Duration, audit: Option<Arc<AuditLog>>) {
        let audit_for_proposals = audit.clone();
        let last_error = self.last_error.clone();
        let meta_store = store.clone();
        let on_event = move |ev: WatchEvent| match ev {
            WatchEvent::Activated { from, to } => {
                if let Ok(mut e) = last_error.lock() {
                    *e = None;
                }
                let meta = meta_store.load(to).ok().map(|v| v.meta);
                tracing::info!(from = ?from, to, author = meta.as_ref().map(|m| m.author.as_str()), "policy version active");
                if let Some(log) = &audit {
                    let mut ev = Event::new("policy.activated", Outcome::Success)
                        .target("policy")
                        .attr("version", to)
                        .attr("from_version", from.map_or(0, |v| v));
                    if let Some(m) = meta {
                        ev = ev
                            .attr("kind", serde_json::to_value(m.kind).unwrap_or_default())
                            .attr("emergency", m.emergency)
                            .attr("proposal", m.proposal.unwrap_or_default())
                            .attr("author", log.pseudonym("officer", &m.author).as_str())
                            .attr(
                                "approver",
                                m.approver
                                    .map(|a| log.pseudonym("officer", &a).as_str().to_owned())
                                    .unwrap_or_default(),
                            )
                            .attr("added", m.diff.added)
                            .attr("removed", m.diff.removed);
                    }
                    let _ = log.record(&ev);
                }
            }
            WatchEvent::Failed(e) => {
                let why = e.to_string();
                if let Ok(mut last) = last_error.lock() {
                    if last.as_deref() != Some(why.as_str()) {
                        tracing::warn!(error = %why, "policy store: sync failed; the previous policy stays active");
                    }
                    *last = Some(why);
                }
            }
        };
        if let Some(log) = audit_for_proposals {
            spawn_proposal_observer(Arc::downgrade(&store), log, poll);
        }
        match stadttor_policies::watch(store.clone(), self.authz.clone(), poll, on_event) {
            Ok(h) => {
                if let Ok(mut w) = self.watch.lock() {
                    *w = Some(h);
                }
            }
            Err(e) => self.failed(format!("cannot watch the policy store: {e}")),
        }
        if let Ok(mut s) = self.store.lock() {
            *s = Some(store);
        }
    }

    /// The store, once it is open.
    pub fn store(&self) -> Option<Arc<dyn PolicyStore>> {
        self.store.lock().ok().and_then(|s| s.clone())
    }

    /// The officers' workflow on this gateway's store; activations swap
    /// into this process at once.
    pub fn workflow(&self) -> Option<Workflow> {
        self.store()
            .map(|s| Workflow::new(s).with_authorizer(self.authz.clone()))
    }

    /// For `/readyz`: `Err(reason)` while no policy is active.
    pub fn readiness(&self) -> Result<(), String> {
        if self.authz.version().is_some() {
            return Ok(());
        }
        let detail = self
            .last_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_else(|| {
                "the policy store has no active version; install one with `stadttor policy init`"
                    .into()
            });
        Err(format!(
            "no active policy, every enforced route is denied: {detail}"
        ))
    }
}

/// The policy subject of a verified identity: its `sub`, or the string
/// value of the route's claim if [`verified_claim`] accepts it (empty,
/// which the policy denies, when the claim is missing, not a string, or
/// not verified by the provider).
pub fn subject<'a>(route: &RouteAuthz, id: &'a Identity) -> &'a str {
    if route.subject_claim == "sub" {
        return &id.sub;
    }
    verified_claim(
        &id.claims,
        &route.subject_claim,
        route.subject_verified_claim.as_deref(),
    )
    .unwrap_or("")
}

/// The claim that must be `true` before `claim` may name a policy subject
/// or an officer: the configured one, else for the OpenID Connect claims
/// `email` and `phone_number` their `email_verified` and
/// `phone_number_verified` (OIDC Core 5.1); none for other claims.
pub fn verification_claim(claim: &str, configured: Option<&str>) -> Option<String> {
    configured.map(str::to_owned).or_else(|| match claim {
        "email" | "phone_number" => Some(format!("{claim}_verified")),
        _ => None,
    })
}

/// Why a claim cannot name a subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectRefused {
    /// The claim is missing, empty or not a string.
    #[error("the login carries no `{0}` claim (a non-empty string)")]
    Missing(String),
    /// The provider does not vouch for it.
    #[error("the provider has not verified `{claim}` (`{verified_by}` is not true)")]
    Unverified {
        /// The subject claim.
        claim: String,
        /// The claim that had to be `true`.
        verified_by: String,
    },
}

/// The string value of `claim` in `claims` if it may name a subject:
/// non-empty, and when [`verification_claim`] names a claim for it, that
/// claim is the JSON boolean `true` (a string `"true"`, a missing claim or
/// anything else refuses).
pub fn verified_claim<'a>(
    claims: &'a serde_json::Map<String, serde_json::Value>,
    claim: &str,
    configured: Option<&str>,
) -> Result<&'a str, SubjectRefused> {
    let value = claims
        .get(claim)
        .and_then(|v| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| SubjectRefused::Missing(claim.to_owned()))?;
    match verification_claim(claim, configured) {
        Some(by) if claims.get(&by) != Some(&serde_json::Value::Bool(true)) => {
            Err(SubjectRefused::Unverified {
                claim: claim.to_owned(),
                verified_by: by,
            })
        }
        _ => Ok(value),
    }
}

/// Decides one request on an enforced route. `path` is the request path
/// as the client sent it (before any `strip_prefix`); no identity means an
/// empty subject, which is denied.
pub fn decide(
    authz: &Authorizer,
    route: &RouteAuthz,
    identity: Option<&Identity>,
    path: &str,
    method: &str,
    client_cert: Option<&str>,
) -> DecisionRecord {
    let Some(id) = identity else {
        return authz.decide(&AccessRequest::new("", &route.domain, path, method));
    };
    let req = AccessRequest {
        subject: subject(route, id),
        domain: &route.domain,
        path,
        method,
        level: id.level,
        provider: Some(&id.provider),
        client_cert,
    };
    authz.decide(&req)
}

/// What an observer last saw of a proposal: status and approval.
fn proposal_state(p: &stadttor_policies::Proposal) -> (String, Option<String>) {
    let status = match &p.status {
        stadttor_policies::ProposalStatus::Pending => "pending".to_owned(),
        stadttor_policies::ProposalStatus::Activated { version } => format!("activated:{version}"),
        stadttor_policies::ProposalStatus::Rejected { .. } => "rejected".to_owned(),
        #[allow(unreachable_patterns)]
        _ => "other".to_owned(),
    };
    (status, p.approval.as_ref().map(|a| a.by.clone()))
}

/// Records every change of a proposal as an audit event, whichever
/// interface made it (CLI, admin API, page, another gateway): proposals,
/// approvals and rejections. Each gateway records what it observes, so a
/// change seen by two gateways is in a shared log twice, once per observer;
/// at start the open proposals are recorded as they stand.
fn spawn_proposal_observer(
    store: std::sync::Weak<dyn PolicyStore>,
    log: Arc<AuditLog>,
    poll: Duration,
) {
    let spawned = std::thread::Builder::new()
        .name("policy-proposals".into())
        .spawn(move || {
            let mut seen: std::collections::HashMap<String, (String, Option<String>)> =
                std::collections::HashMap::new();
            let mut first = true;
            loop {
                let Some(store) = store.upgrade() else { return };
                if let Ok(list) = store.proposals() {
                    for p in &list {
                        let now = proposal_state(p);
                        let before = seen.get(&p.id);
                        if before == Some(&now) {
                            continue;
                        }
                        let open = now.0 == "pending" || p.awaiting_approval();
                        if first && !open {
                            // History from before this process: the
                            // activation events cover it.
                            seen.insert(p.id.clone(), now);
                            continue;
                        }
                        // A poll may miss an intermediate state (an emergency
                        // change approved within a second): record every step
                        // the new state implies that was not seen yet.
                        let mut steps: Vec<&str> = Vec::new();
                        if before.is_none() {
                            steps.push(if p.emergency { "emergency_activated" } else { "proposed" });
                        }
                        if now.0 == "rejected" {
                            steps.push("rejected");
                        } else if now.1.is_some() && before.is_none_or(|b| b.1.is_none()) {
                            steps.push("approved");
                        } else if before.is_some() && steps.is_empty() {
                            steps.push("changed");
                        }
                        let mut ok = true;
                        for what in steps {
                            let mut ev = Event::new("policy.proposal", Outcome::Success)
                                .target("policy")
                                .attr("proposal", p.id.as_str())
                                .attr("change", what)
                                .attr("status", now.0.as_str())
                                .attr("emergency", p.emergency)
                                .attr("author", log.pseudonym("officer", &p.author).as_str())
                                .attr("added", p.diff.added)
                                .attr("removed", p.diff.removed)
                                .attr("tests_passed", p.tests_passed);
                            if let (Some(by), "approved") = (&now.1, what) {
                                ev = ev.attr("approver", log.pseudonym("officer", by).as_str());
                            }
                            if let stadttor_policies::ProposalStatus::Rejected { by, .. } = &p.status {
                                ev = ev.attr("rejected_by", log.pseudonym("officer", by).as_str());
                            }
                            if let Err(e) = log.record(&ev) {
                                tracing::error!(error = %e, "audit log cannot record a policy proposal change");
                                ok = false;
                                break;
                            }
                        }
                        if !ok {
                            continue; // retried next round
                        }
                        seen.insert(p.id.clone(), now);
                    }
                }
                first = false;
                drop(store);
                std::thread::sleep(poll.min(Duration::from_secs(1)));
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the policy proposal observer");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::{json, Map, Value};

    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn unverified_email_never_names_a_subject_or_officer() {
        let anna = "anna@kommune.example";
        let ok = claims(json!({"email": anna, "email_verified": true}));
        assert_eq!(verified_claim(&ok, "email", None), Ok(anna));
        for bad in [
            json!({"email": anna, "email_verified": false}),
            json!({"email": anna, "email_verified": "true"}),
            json!({"email": anna, "email_verified": 1}),
            json!({"email": anna}),
        ] {
            assert_eq!(
                verified_claim(&claims(bad.clone()), "email", None),
                Err(SubjectRefused::Unverified {
                    claim: "email".into(),
                    verified_by: "email_verified".into()
                }),
                "{bad}"
            );
        }
        let phone = claims(json!({"phone_number": "+49", "phone_number_verified": false}));
        assert!(verified_claim(&phone, "phone_number", None).is_err());
        assert_eq!(
            verified_claim(&claims(json!({"email": ""})), "email", None),
            Err(SubjectRefused::Missing("email".into()))
        );
    }

    #[test]
    fn a_configured_verification_claim_replaces_the_default() {
        let c = claims(json!({
            "email": "anna@kommune.example", "email_verified": false, "xms_edov": true,
            "upn": "anna@kommune.example",
        }));
        assert!(verified_claim(&c, "email", Some("xms_edov")).is_ok());
        assert!(verified_claim(&c, "upn", Some("email_verified")).is_err());
        // Claims without a standard verification claim pass as before.
        assert_eq!(verified_claim(&c, "upn", None), Ok("anna@kommune.example"));
    }
}
