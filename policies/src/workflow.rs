//! The security officers' change process (four eyes).
//!
//! * Only officers of the **active** policy (role `officer` in domain
//!   `stadttor-admin`) may propose, approve or reject; a proposal cannot make
//!   its own author an approver.
//! * [`Workflow::propose`] compiles the new policy and runs its tests table;
//!   an invalid policy or a failing test refuses the proposal with the
//!   reason, and nothing changes. A policy must keep at least two officers.
//! * [`Workflow::approve`] by a *second* officer activates it, atomically
//!   and by compare-and-swap on the version it was based on: if another
//!   change became active in between, the proposal is stale and refused.
//! * Emergency proposals are active at once, flagged, and listed by
//!   [`Workflow::awaiting_approval`] until a second officer approves them.
//!   One officer must not be able to break four eyes with them, so:
//!   an emergency change may not alter the officers, the admin domain or
//!   the model ([`crate::emergency`]; such a change always waits for a
//!   second officer of the current version); only one emergency change is
//!   open at a time, and no pending proposal is activated on top of it;
//!   an open emergency change is approved or rejected by the officers of
//!   the version it **replaced**, never of the version it installed; a
//!   reject (by any of them, its author included) restores the replaced
//!   version as a new activation.
//! * [`Workflow::rollback`] proposes an earlier version's content as a new
//!   version; it needs approval like any change (or is an emergency).
//!
//! Every step returns [`ChangeEvent`]s for the gateway's audit log.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::authorizer::Authorizer;
use crate::diff::{DiffSummary, PolicyDiff};
use crate::engine::{CompiledPolicy, TestReport};
use crate::error::{StoreError, WorkflowError};
use crate::set::PolicySet;
use crate::store::{
    now_ms, Approval, ChangeKind, PolicyStore, Proposal, ProposalStatus, VersionMeta,
};

/// What happened, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    /// First policy of an empty store.
    Bootstrapped,
    /// A proposal was made (its tests passed).
    Proposed,
    /// A second officer approved a pending proposal.
    Approved,
    /// A version became active after approval.
    Activated,
    /// An emergency change became active without approval.
    EmergencyActivated,
    /// A second officer approved an active emergency change.
    ApprovedAfterActivation,
    /// A proposal was rejected.
    Rejected,
    /// A rejected emergency change was reverted.
    Reverted,
}

/// One change event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// What happened.
    pub action: ChangeAction,
    /// The officer who did it.
    pub actor: String,
    /// The proposal concerned.
    pub proposal: Option<String>,
    /// The version that became active, if one did.
    pub version: Option<u64>,
    /// The version the change was based on.
    pub base_version: Option<u64>,
    /// Whether it is an emergency change.
    pub emergency: bool,
    /// What changed.
    pub diff: DiffSummary,
    /// Comment or rejection reason.
    pub comment: String,
    /// When, ms since the epoch.
    pub at_unix_ms: u64,
}

/// Result of a proposal.
#[derive(Debug, Clone)]
pub struct Proposed {
    /// The stored proposal (status `Activated` for emergencies).
    pub proposal: Proposal,
    /// Its tests.
    pub tests: TestReport,
    /// Against the active version.
    pub diff: PolicyDiff,
    /// Audit events.
    pub events: Vec<ChangeEvent>,
}

/// Result of approve, reject or bootstrap.
#[derive(Debug, Clone)]
pub struct Changed {
    /// The proposal after the step (none for bootstrap).
    pub proposal: Option<Proposal>,
    /// The version that became active, if one did.
    pub version: Option<u64>,
    /// Audit events.
    pub events: Vec<ChangeEvent>,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The version's metadata.
    pub meta: VersionMeta,
    /// Whether it is the active version.
    pub active: bool,
    /// Who approved it, before or after activation.
    pub approved_by: Option<String>,
    /// An emergency change still waiting for approval.
    pub awaiting_approval: bool,
}

/// The change process over one store.
pub struct Workflow {
    store: Arc<dyn PolicyStore>,
    authz: Option<Arc<Authorizer>>,
}

impl Workflow {
    /// A workflow on `store`.
    pub fn new(store: Arc<dyn PolicyStore>) -> Self {
        Self { store, authz: None }
    }

    /// Also swap every activation into `authz` at once (other processes
    /// follow through [`crate::watch`]).
    pub fn with_authorizer(mut self, authz: Arc<Authorizer>) -> Self {
        self.authz = Some(authz);
        self
    }

    /// Installs the first policy of an empty store (tests must pass). This
    /// is the installation step, not reviewed by a second officer, and is
    /// recorded as [`ChangeKind::Bootstrap`].
    pub fn bootstrap(&self, set: PolicySet, author: &str) -> Result<Changed, WorkflowError> {
        if self.store.active_version()?.is_some() || !self.store.versions()?.is_empty() {
            return Err(WorkflowError::AlreadyBootstrapped);
        }
        let (compiled, _) = CompiledPolicy::compile_checked(&set, 0)?;
        let diff = PolicyDiff::between(&empty_set(), &set).summary();
        let meta = new_meta(
            author,
            None,
            false,
            ChangeKind::Bootstrap,
            None,
            "bootstrap",
            diff,
        );
        let version = self.store.activate(None, &set, meta, None)?;
        self.install(compiled, version);
        Ok(Changed {
            proposal: None,
            version: Some(version),
            events: vec![event(
                ChangeAction::Bootstrapped,
                author,
                None,
                Some(version),
                None,
                false,
                diff,
                "",
            )],
        })
    }

    /// The active compiled policy (from the authorizer if it is current).
    pub fn active_policy(&self) -> Result<Arc<CompiledPolicy>, WorkflowError> {
        let active = self
            .store
            .active_version()?
            .ok_or(WorkflowError::NoActivePolicy)?;
        if let Some(p) = self.authz.as_ref().and_then(|a| a.current()) {
            if p.version() == active {
                return Ok(p);
            }
        }
        let v = self.store.load(active)?;
        Ok(Arc::new(CompiledPolicy::compile(&v.set, active)?))
    }

    /// Proposes `set`, written against `base_version` (must be the active
    /// version). Runs its tests. An emergency proposal becomes active at
    /// once and waits for approval afterwards.
    pub fn propose(
        &self,
        author: &str,
        set: PolicySet,
        base_version: Option<u64>,
        emergency: bool,
        comment: &str,
    ) -> Result<Proposed, WorkflowError> {
        self.propose_kind(
            author,
            set,
            base_version,
            emergency,
            comment,
            ChangeKind::Change,
        )
    }

    /// Proposes restoring version `to` (a new version with its content).
    pub fn rollback(
        &self,
        to: u64,
        author: &str,
        emergency: bool,
        comment: &str,
    ) -> Result<Proposed, WorkflowError> {
        let old = self.store.load(to)?;
        let base = self.store.active_version()?;
        self.propose_kind(
            author,
            old.set,
            base,
            emergency,
            comment,
            ChangeKind::Rollback { to },
        )
    }

    fn propose_kind(
        &self,
        author: &str,
        set: PolicySet,
        base_version: Option<u64>,
        emergency: bool,
        comment: &str,
        kind: ChangeKind,
    ) -> Result<Proposed, WorkflowError> {
        let active_policy = self.active_policy()?;
        let active = Some(active_policy.version());
        if !active_policy.is_officer(author) {
            return Err(WorkflowError::NotOfficer(author.to_string()));
        }
        if base_version != active {
            return Err(WorkflowError::Stale {
                base: base_version,
                active,
            });
        }
        let (compiled, tests) = CompiledPolicy::compile_checked(&set, 0)?;
        let officers = compiled.officers().len();
        if officers < 2 {
            return Err(WorkflowError::TooFewOfficers(officers));
        }
        if emergency {
            let forbidden = crate::emergency::forbidden_changes(&active_policy, &compiled);
            if !forbidden.is_empty() {
                return Err(WorkflowError::EmergencyForbidden(forbidden));
            }
            self.no_open_emergency()?;
        }
        let diff = PolicyDiff::between(active_policy.set(), &set);
        let summary = diff.summary();
        let mut proposal = Proposal {
            id: uuid::Uuid::new_v4().to_string(),
            author: author.to_string(),
            created_unix_ms: now_ms(),
            base_version,
            emergency,
            kind,
            comment: comment.to_string(),
            set,
            diff: summary,
            tests_passed: tests.passed,
            status: ProposalStatus::Pending,
            approval: None,
        };
        self.store.insert_proposal(&proposal)?;
        let mut events = vec![event(
            ChangeAction::Proposed,
            author,
            Some(&proposal.id),
            None,
            base_version,
            emergency,
            summary,
            comment,
        )];
        if emergency {
            let meta = new_meta(
                author,
                None,
                true,
                kind,
                Some(&proposal.id),
                comment,
                summary,
            );
            let version = self
                .store
                .activate(base_version, &proposal.set, meta, Some(&proposal))
                .map_err(|e| stale(e, base_version))?;
            self.install(compiled, version);
            proposal.status = ProposalStatus::Activated { version };
            events.push(event(
                ChangeAction::EmergencyActivated,
                author,
                Some(&proposal.id),
                Some(version),
                base_version,
                true,
                summary,
                comment,
            ));
        }
        Ok(Proposed {
            proposal,
            tests,
            diff,
            events,
        })
    }

    /// A second officer approves: a pending proposal becomes active; an
    /// active emergency change is recorded as approved.
    pub fn approve(&self, id: &str, approver: &str) -> Result<Changed, WorkflowError> {
        let mut p = self.store.proposal(id)?;
        let active_policy = self.active_policy()?;
        self.check_judge(&p, &active_policy, approver)?;
        if approver == p.author {
            return Err(WorkflowError::SelfApproval(approver.to_string()));
        }
        let approval = Approval {
            by: approver.to_string(),
            at_unix_ms: now_ms(),
        };
        match p.status.clone() {
            ProposalStatus::Pending => {
                let active = Some(active_policy.version());
                if p.base_version != active {
                    return Err(WorkflowError::Stale {
                        base: p.base_version,
                        active,
                    });
                }
                // Nothing goes live on top of an emergency change no second
                // officer has judged (its reject must be able to restore).
                self.no_open_emergency()?;
                let (compiled, _) = CompiledPolicy::compile_checked(&p.set, 0)?;
                p.approval = Some(approval);
                let meta = new_meta(
                    &p.author,
                    Some(approver),
                    false,
                    p.kind,
                    Some(&p.id),
                    &p.comment,
                    p.diff,
                );
                let version = self
                    .store
                    .activate(p.base_version, &p.set, meta, Some(&p))
                    .map_err(|e| stale(e, p.base_version))?;
                self.install(compiled, version);
                p.status = ProposalStatus::Activated { version };
                let ev = |a| {
                    event(
                        a,
                        approver,
                        Some(&p.id),
                        Some(version),
                        p.base_version,
                        false,
                        p.diff,
                        &p.comment,
                    )
                };
                let events = vec![ev(ChangeAction::Approved), ev(ChangeAction::Activated)];
                Ok(Changed {
                    version: Some(version),
                    events,
                    proposal: Some(p),
                })
            }
            ProposalStatus::Activated { version } if p.awaiting_approval() => {
                let expected = p.status.clone();
                p.approval = Some(approval);
                self.store.update_proposal(&p, &expected)?;
                let events = vec![event(
                    ChangeAction::ApprovedAfterActivation,
                    approver,
                    Some(&p.id),
                    Some(version),
                    p.base_version,
                    true,
                    p.diff,
                    &p.comment,
                )];
                Ok(Changed {
                    version: None,
                    events,
                    proposal: Some(p),
                })
            }
            other => Err(wrong_state(&p.id, &other, p.approval.is_some())),
        }
    }

    /// An officer rejects a pending proposal (the author may withdraw their
    /// own). An open emergency change is rejected by any officer of the
    /// version it replaced (its author included): that version is restored
    /// as a new activation ([`ChangeAction::Reverted`]).
    pub fn reject(&self, id: &str, officer: &str, reason: &str) -> Result<Changed, WorkflowError> {
        let mut p = self.store.proposal(id)?;
        let active_policy = self.active_policy()?;
        self.check_judge(&p, &active_policy, officer)?;
        let expected = p.status.clone();
        let open_emergency = match &expected {
            ProposalStatus::Pending => false,
            ProposalStatus::Activated { .. } if p.awaiting_approval() => true,
            other => return Err(wrong_state(&p.id, other, p.approval.is_some())),
        };
        p.status = ProposalStatus::Rejected {
            by: officer.to_string(),
            reason: reason.to_string(),
            at_unix_ms: now_ms(),
        };
        // Compare-and-swap on the status: one judgement per proposal.
        self.store.update_proposal(&p, &expected)?;
        let mut events = vec![event(
            ChangeAction::Rejected,
            officer,
            Some(&p.id),
            None,
            p.base_version,
            p.emergency,
            p.diff,
            reason,
        )];
        let mut reverted = None;
        if let (true, Some(base)) = (open_emergency, p.base_version) {
            if let Some((v, ev)) = self.restore(base, &p.id, officer, reason)? {
                reverted = Some(v);
                events.push(ev);
            }
        }
        Ok(Changed {
            version: reverted,
            events,
            proposal: Some(p),
        })
    }

    /// Restores version `base` after its emergency change `id` was
    /// rejected: a new version with its content, unless the active version
    /// has that content already. Retries when another activation races.
    fn restore(
        &self,
        base: u64,
        id: &str,
        officer: &str,
        reason: &str,
    ) -> Result<Option<(u64, ChangeEvent)>, WorkflowError> {
        let old = self.store.load(base)?;
        let (compiled, _) = CompiledPolicy::compile_checked(&old.set, 0)?;
        let comment = format!("revert of rejected emergency change {id}: {reason}");
        let mut attempts = 0;
        loop {
            let current = self.active_policy()?;
            if current.set() == &old.set {
                return Ok(None);
            }
            let diff = PolicyDiff::between(current.set(), &old.set).summary();
            let meta = new_meta(
                officer,
                None,
                false,
                ChangeKind::Rollback { to: base },
                Some(id),
                &comment,
                diff,
            );
            match self
                .store
                .activate(Some(current.version()), &old.set, meta, None)
            {
                Ok(v) => {
                    self.install(compiled, v);
                    let ev = event(
                        ChangeAction::Reverted,
                        officer,
                        Some(id),
                        Some(v),
                        Some(current.version()),
                        false,
                        diff,
                        &comment,
                    );
                    return Ok(Some((v, ev)));
                }
                Err(StoreError::Conflict { .. }) if attempts < 3 => attempts += 1,
                Err(e) => return Err(stale(e, Some(current.version()))),
            }
        }
    }

    /// Whether `who` may approve or reject `p`: an officer of the active
    /// version for a pending proposal; for an open emergency change, an
    /// officer of the version it replaced (not of the one it installed).
    fn check_judge(
        &self,
        p: &Proposal,
        active: &CompiledPolicy,
        who: &str,
    ) -> Result<(), WorkflowError> {
        match (p.awaiting_approval(), p.base_version) {
            (true, Some(base)) => {
                if self.replaced_policy(base)?.is_officer(who) {
                    Ok(())
                } else {
                    Err(WorkflowError::NotReviewer {
                        who: who.to_string(),
                        version: base,
                    })
                }
            }
            _ if active.is_officer(who) => Ok(()),
            _ => Err(WorkflowError::NotOfficer(who.to_string())),
        }
    }

    /// The version an emergency change replaced, compiled (its tests
    /// passed when it was activated; they are not run again).
    fn replaced_policy(&self, base: u64) -> Result<Arc<CompiledPolicy>, WorkflowError> {
        if let Some(p) = self.authz.as_ref().and_then(|a| a.current()) {
            if p.version() == base {
                return Ok(p);
            }
        }
        let set = self.store.load(base)?.set;
        Ok(Arc::new(CompiledPolicy::compile(&set, base)?))
    }

    /// Refuses while an emergency change is active and not yet judged.
    fn no_open_emergency(&self) -> Result<(), WorkflowError> {
        match self.awaiting_approval()?.into_iter().next() {
            Some(p) => Err(WorkflowError::EmergencyOpen {
                version: match p.status {
                    ProposalStatus::Activated { version } => version,
                    _ => 0,
                },
                id: p.id,
            }),
            None => Ok(()),
        }
    }

    /// Whether `who` may use the officers' tools now: an officer of the
    /// active version, or of a version an open emergency change replaced.
    pub fn is_judge(&self, who: &str) -> Result<bool, WorkflowError> {
        if self.active_policy()?.is_officer(who) {
            return Ok(true);
        }
        for p in self.awaiting_approval()? {
            if let Some(base) = p.base_version {
                if self.replaced_policy(base)?.is_officer(who) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Every version, oldest first, with approval state.
    pub fn history(&self) -> Result<Vec<HistoryEntry>, WorkflowError> {
        let active = self.store.active_version()?;
        let proposals = self.store.proposals()?;
        Ok(self
            .store
            .versions()?
            .into_iter()
            .map(|meta| {
                let p = meta
                    .proposal
                    .as_ref()
                    .and_then(|id| proposals.iter().find(|p| &p.id == id));
                let approved_by = meta
                    .approver
                    .clone()
                    .or_else(|| p.and_then(|p| p.approval.as_ref()).map(|a| a.by.clone()));
                let awaiting_approval = meta.emergency
                    && p.is_some_and(|p| {
                        p.awaiting_approval()
                            && p.status
                                == ProposalStatus::Activated {
                                    version: meta.version,
                                }
                    });
                HistoryEntry {
                    active: active == Some(meta.version),
                    approved_by,
                    awaiting_approval,
                    meta,
                }
            })
            .collect())
    }

    /// Differences between two versions.
    pub fn diff(&self, a: u64, b: u64) -> Result<PolicyDiff, WorkflowError> {
        Ok(PolicyDiff::between(
            &self.store.load(a)?.set,
            &self.store.load(b)?.set,
        ))
    }

    /// Proposals waiting for approval.
    pub fn pending(&self) -> Result<Vec<Proposal>, WorkflowError> {
        Ok(self
            .store
            .proposals()?
            .into_iter()
            .filter(|p| p.status == ProposalStatus::Pending)
            .collect())
    }

    /// Emergency changes that are active but not yet approved.
    pub fn awaiting_approval(&self) -> Result<Vec<Proposal>, WorkflowError> {
        Ok(self
            .store
            .proposals()?
            .into_iter()
            .filter(Proposal::awaiting_approval)
            .collect())
    }

    fn install(&self, compiled: CompiledPolicy, version: u64) {
        if let Some(a) = &self.authz {
            if a.version().is_none_or(|v| v < version) {
                a.install(Arc::new(compiled.with_version(version)));
            }
        }
    }
}

fn empty_set() -> PolicySet {
    PolicySet {
        model: String::new(),
        policy: String::new(),
        tests: String::new(),
    }
}

fn stale(e: StoreError, base: Option<u64>) -> WorkflowError {
    match e {
        StoreError::Conflict { actual, .. } => WorkflowError::Stale {
            base,
            active: actual,
        },
        e => WorkflowError::Store(e),
    }
}

fn wrong_state(id: &str, s: &ProposalStatus, approved: bool) -> WorkflowError {
    let status = match s {
        ProposalStatus::Pending => "pending".to_string(),
        ProposalStatus::Activated { version } if approved => {
            format!("already approved and active as version {version}")
        }
        ProposalStatus::Activated { version } => format!("already active as version {version}"),
        ProposalStatus::Rejected { by, reason, .. } => format!("rejected by {by}: {reason}"),
    };
    WorkflowError::WrongState {
        id: id.to_string(),
        status,
    }
}

fn new_meta(
    author: &str,
    approver: Option<&str>,
    emergency: bool,
    kind: ChangeKind,
    proposal: Option<&str>,
    comment: &str,
    diff: DiffSummary,
) -> VersionMeta {
    VersionMeta {
        version: 0,
        parent: None,
        author: author.to_string(),
        approver: approver.map(str::to_string),
        emergency,
        kind,
        proposal: proposal.map(str::to_string),
        comment: comment.to_string(),
        created_unix_ms: now_ms(),
        diff,
    }
}

#[allow(clippy::too_many_arguments)]
fn event(
    action: ChangeAction,
    actor: &str,
    proposal: Option<&str>,
    version: Option<u64>,
    base_version: Option<u64>,
    emergency: bool,
    diff: DiffSummary,
    comment: &str,
) -> ChangeEvent {
    ChangeEvent {
        action,
        actor: actor.to_string(),
        proposal: proposal.map(str::to_string),
        version,
        base_version,
        emergency,
        diff,
        comment: comment.to_string(),
        at_unix_ms: now_ms(),
    }
}
