//! The officers' workflow on a file store: four eyes, tests on every
//! proposal, stale proposals, emergencies, history, rollback, diff, hot
//! swap, and default deny on an empty or broken store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{base, library, with_rule, TempDir};
use stadttor_policies::store::ProposalStatus;
use stadttor_policies::{
    watch, AccessRequest, Authorizer, ChangeAction, ChangeKind, Decision, FileStore, Level,
    PolicyError, PolicyStore, Reason, WatchEvent, Workflow, WorkflowError,
};

fn library_req() -> AccessRequest<'static> {
    AccessRequest::new("buerger:9", "musterstadt", "/bibliothek/katalog", "GET")
        .with_level(Level::Low)
}

struct Env {
    _dir: TempDir,
    store: Arc<FileStore>,
    authz: Arc<Authorizer>,
    wf: Workflow,
}

fn env() -> Env {
    let dir = TempDir::new();
    let store = Arc::new(FileStore::open(dir.path().join("store")).unwrap());
    let authz = Arc::new(Authorizer::new());
    let wf = Workflow::new(store.clone()).with_authorizer(authz.clone());
    let c = wf.bootstrap(base(), "installer").unwrap();
    assert_eq!(c.version, Some(1));
    assert_eq!(c.events[0].action, ChangeAction::Bootstrapped);
    Env {
        _dir: dir,
        store,
        authz,
        wf,
    }
}

#[test]
fn propose_then_second_officer_approves_and_it_is_active_at_once() {
    let e = env();
    assert_eq!(e.authz.decide(&library_req()).decision, Decision::Deny);
    let p =
        e.wf.propose("alice", library(&base()), Some(1), false, "library")
            .unwrap();
    assert!(p.tests.ok() && p.tests.passed > 10);
    assert_eq!(
        p.diff.policy.added,
        ["p, *, musterstadt, /bibliothek/*, GET, low, *, *, allow"]
    );
    assert_eq!(p.events[0].action, ChangeAction::Proposed);
    assert_eq!(e.wf.pending().unwrap().len(), 1);
    // Not active before approval.
    assert_eq!(e.authz.decide(&library_req()).decision, Decision::Deny);
    assert_eq!(e.store.active_version().unwrap(), Some(1));

    let c = e.wf.approve(&p.proposal.id, "bob").unwrap();
    assert_eq!(c.version, Some(2));
    let actions: Vec<_> = c.events.iter().map(|e| e.action).collect();
    assert_eq!(actions, [ChangeAction::Approved, ChangeAction::Activated]);
    let d = e.authz.decide(&library_req());
    assert_eq!((d.decision, d.version), (Decision::Allow, 2));
    assert!(e.wf.pending().unwrap().is_empty());
    // Another process's authorizer picks it up from the store.
    let other = Authorizer::new();
    other.sync(&*e.store).unwrap();
    assert_eq!(other.decide(&library_req()).decision, Decision::Allow);
    // Approving again is refused.
    let err = e.wf.approve(&p.proposal.id, "carol").unwrap_err();
    assert!(matches!(err, WorkflowError::WrongState { .. }), "{err}");
}

#[test]
fn self_approval_is_refused() {
    let e = env();
    let p =
        e.wf.propose("alice", library(&base()), Some(1), false, "")
            .unwrap();
    let err = e.wf.approve(&p.proposal.id, "alice").unwrap_err();
    assert!(
        matches!(err, WorkflowError::SelfApproval(ref w) if w == "alice"),
        "{err}"
    );
    assert!(err.to_string().contains("second officer"));
    assert_eq!(e.store.active_version().unwrap(), Some(1));
}

#[test]
fn non_officers_can_neither_propose_nor_approve() {
    let e = env();
    let err =
        e.wf.propose("mallory", library(&base()), Some(1), false, "")
            .unwrap_err();
    assert!(
        matches!(err, WorkflowError::NotOfficer(ref w) if w == "mallory"),
        "{err}"
    );
    let p =
        e.wf.propose("alice", library(&base()), Some(1), false, "")
            .unwrap();
    let err = e.wf.approve(&p.proposal.id, "mallory").unwrap_err();
    assert!(matches!(err, WorkflowError::NotOfficer(_)), "{err}");
    // A role name is not an officer either.
    let err = e.wf.approve(&p.proposal.id, "officer").unwrap_err();
    assert!(matches!(err, WorkflowError::NotOfficer(_)), "{err}");
    // A proposal that makes mallory an officer does not let mallory approve it.
    let p2 =
        e.wf.propose(
            "alice",
            base().with_officers(&["mallory"]),
            Some(1),
            false,
            "",
        )
        .unwrap();
    assert!(matches!(
        e.wf.approve(&p2.proposal.id, "mallory").unwrap_err(),
        WorkflowError::NotOfficer(_)
    ));
}

#[test]
fn stale_proposal_is_refused_after_a_conflicting_activation() {
    let e = env();
    let a =
        e.wf.propose("alice", library(&base()), Some(1), false, "a")
            .unwrap();
    let other = with_rule(
        &base(),
        "p, *, musterstadt, /kita/*, GET, low, *, *, allow",
        "",
    );
    let b =
        e.wf.propose("carol", other.clone(), Some(1), false, "b")
            .unwrap();
    e.wf.approve(&a.proposal.id, "bob").unwrap();
    let err = e.wf.approve(&b.proposal.id, "bob").unwrap_err();
    assert!(
        matches!(
            err,
            WorkflowError::Stale {
                base: Some(1),
                active: Some(2)
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("based on version Some(1)"),
        "{err}"
    );
    assert_eq!(e.store.active_version().unwrap(), Some(2));
    // Proposing on an old base is refused up front.
    let err =
        e.wf.propose("carol", other, Some(1), false, "")
            .unwrap_err();
    assert!(matches!(err, WorkflowError::Stale { .. }), "{err}");
}

#[test]
fn invalid_or_failing_proposals_are_refused_and_the_old_policy_stays() {
    let e = env();
    let mut broken = base();
    broken
        .policy
        .push_str("p, *, musterstadt, bibliothek, GET, low, *, *, allow\n");
    let line = broken.policy.lines().count();
    let err =
        e.wf.propose("alice", broken, Some(1), false, "")
            .unwrap_err();
    let text = err.to_string();
    assert!(matches!(
        err,
        WorkflowError::Policy(PolicyError::Invalid(_))
    ));
    assert!(
        text.contains(&format!(
            "policy.csv:{line}: path pattern \"bibliothek\" must start with '/'"
        )),
        "{text}"
    );

    let mut bad_model = base();
    bad_model.model = bad_model.model.replace("[matchers]\nm =", "[matchers]\nm ");
    let err =
        e.wf.propose("alice", bad_model, Some(1), false, "")
            .unwrap_err();
    assert!(err.to_string().contains("model.conf:"), "{err}");

    // Valid syntax, but its own test expects something else.
    let failing = with_rule(
        &base(),
        "",
        "buerger:9, musterstadt, /bibliothek/katalog, GET, low, , , allow",
    );
    let err =
        e.wf.propose("alice", failing, Some(1), false, "")
            .unwrap_err();
    assert!(
        matches!(err, WorkflowError::Policy(PolicyError::TestsFailed(_))),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("expected Allow, got Deny (no rule matched)"),
        "{err}"
    );

    // Emergency does not bypass validation either.
    let mut broken = base();
    broken.policy.push_str("g, x\n");
    assert!(e.wf.propose("alice", broken, Some(1), true, "").is_err());

    assert!(e.wf.pending().unwrap().is_empty());
    assert_eq!(e.store.active_version().unwrap(), Some(1));
    assert_eq!(e.authz.version(), Some(1));
}

#[test]
fn a_policy_must_keep_two_officers() {
    let e = env();
    let err =
        e.wf.propose(
            "alice",
            PolicySetExt::only_officer("alice"),
            Some(1),
            false,
            "",
        )
        .unwrap_err();
    assert!(matches!(err, WorkflowError::TooFewOfficers(1)), "{err}");
}

struct PolicySetExt;
impl PolicySetExt {
    fn only_officer(name: &str) -> stadttor_policies::PolicySet {
        stadttor_policies::PolicySet::embedded_default().with_officers(&[name])
    }
}

#[test]
fn emergency_change_is_active_at_once_flagged_and_awaits_approval() {
    let e = env();
    let p =
        e.wf.propose("alice", library(&base()), Some(1), true, "outage")
            .unwrap();
    let actions: Vec<_> = p.events.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [ChangeAction::Proposed, ChangeAction::EmergencyActivated]
    );
    assert_eq!(p.proposal.status, ProposalStatus::Activated { version: 2 });
    assert_eq!(e.authz.decide(&library_req()).decision, Decision::Allow);
    let waiting = e.wf.awaiting_approval().unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].id, p.proposal.id);
    let h = e.wf.history().unwrap();
    let last = h.last().unwrap();
    assert!(last.meta.emergency && last.awaiting_approval && last.active);
    assert_eq!(last.meta.approver, None);
    assert_eq!(last.approved_by, None);

    assert!(matches!(
        e.wf.approve(&p.proposal.id, "alice").unwrap_err(),
        WorkflowError::SelfApproval(_)
    ));
    let c = e.wf.approve(&p.proposal.id, "bob").unwrap();
    assert_eq!(c.events[0].action, ChangeAction::ApprovedAfterActivation);
    assert!(e.wf.awaiting_approval().unwrap().is_empty());
    let h = e.wf.history().unwrap();
    let last = h.last().unwrap();
    assert!(last.meta.emergency && !last.awaiting_approval);
    assert_eq!(last.approved_by.as_deref(), Some("bob"));
}

#[test]
fn rejecting_an_emergency_change_reverts_it() {
    let e = env();
    let p =
        e.wf.propose("alice", library(&base()), Some(1), true, "")
            .unwrap();
    assert!(matches!(
        e.wf.reject(&p.proposal.id, "alice", "no").unwrap_err(),
        WorkflowError::SelfApproval(_)
    ));
    let c = e.wf.reject(&p.proposal.id, "bob", "not needed").unwrap();
    assert_eq!(c.version, Some(3));
    let actions: Vec<_> = c.events.iter().map(|e| e.action).collect();
    assert_eq!(actions, [ChangeAction::Rejected, ChangeAction::Reverted]);
    assert_eq!(e.authz.decide(&library_req()).decision, Decision::Deny);
    let v3 = e.store.load(3).unwrap();
    assert_eq!(v3.set, e.store.load(1).unwrap().set);
    assert_eq!(v3.meta.kind, ChangeKind::Rollback { to: 1 });
    assert!(e.wf.awaiting_approval().unwrap().is_empty());
}

#[test]
fn reject_a_pending_proposal() {
    let e = env();
    let p =
        e.wf.propose("alice", library(&base()), Some(1), false, "")
            .unwrap();
    let c = e.wf.reject(&p.proposal.id, "bob", "not now").unwrap();
    assert_eq!(c.events[0].action, ChangeAction::Rejected);
    assert!(matches!(
        e.wf.approve(&p.proposal.id, "carol").unwrap_err(),
        WorkflowError::WrongState { .. }
    ));
    assert_eq!(e.store.active_version().unwrap(), Some(1));
}

#[test]
fn history_rollback_and_diff() {
    let e = env();
    let p =
        e.wf.propose("alice", library(&base()), Some(1), false, "library")
            .unwrap();
    e.wf.approve(&p.proposal.id, "bob").unwrap();
    let diff = e.wf.diff(1, 2).unwrap();
    assert_eq!(
        diff.to_string(),
        "--- policy.csv\n+ p, *, musterstadt, /bibliothek/*, GET, low, *, *, allow\n--- tests.csv\n+ buerger:9, musterstadt, /bibliothek/katalog, GET, low, , , allow\n"
    );
    assert_eq!(e.wf.diff(2, 1).unwrap().policy.removed.len(), 1);

    // Rollback is a proposal like any other.
    let r = e.wf.rollback(1, "carol", false, "undo library").unwrap();
    assert_eq!(r.proposal.kind, ChangeKind::Rollback { to: 1 });
    assert_eq!(r.diff.policy.removed.len(), 1);
    assert_eq!(
        e.authz.decide(&library_req()).decision,
        Decision::Allow,
        "not yet approved"
    );
    assert!(matches!(
        e.wf.approve(&r.proposal.id, "carol").unwrap_err(),
        WorkflowError::SelfApproval(_)
    ));
    let c = e.wf.approve(&r.proposal.id, "alice").unwrap();
    assert_eq!(c.version, Some(3));
    assert_eq!(e.authz.decide(&library_req()).decision, Decision::Deny);

    let h = e.wf.history().unwrap();
    let rows: Vec<_> = h
        .iter()
        .map(|h| {
            (
                h.meta.version,
                h.meta.parent,
                h.meta.kind,
                h.meta.author.as_str(),
                h.approved_by.as_deref(),
                h.active,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1, None, ChangeKind::Bootstrap, "installer", None, false),
            (2, Some(1), ChangeKind::Change, "alice", Some("bob"), false),
            (
                3,
                Some(2),
                ChangeKind::Rollback { to: 1 },
                "carol",
                Some("alice"),
                true
            ),
        ]
    );
    assert_eq!(h[1].meta.diff.added, 1);
    assert!(h.iter().all(|h| h.meta.created_unix_ms > 0));
    assert!(e.wf.diff(1, 3).unwrap().is_empty());
    // Every version is kept on disk with metadata.
    let meta = std::fs::read_to_string(e.store.dir().join("versions/0002/meta.json")).unwrap();
    assert!(meta.contains("\"approver\": \"bob\""), "{meta}");
    assert!(matches!(
        e.wf.bootstrap(base(), "x").unwrap_err(),
        WorkflowError::AlreadyBootstrapped
    ));
}

#[test]
fn empty_or_broken_store_means_deny_and_a_broken_version_keeps_the_old_policy() {
    let dir = TempDir::new();
    let store = FileStore::open(dir.path()).unwrap();
    let a = Authorizer::new();
    a.sync(&store).unwrap();
    let r = a.decide(&library_req());
    assert_eq!((r.decision, r.reason), (Decision::Deny, Reason::NoPolicy));

    // A pointer that is not a number: error, still deny.
    std::fs::write(dir.path().join("active"), "garbage").unwrap();
    assert!(a.sync(&store).is_err());
    assert_eq!(a.decide(&library_req()).reason, Reason::NoPolicy);
    std::fs::remove_file(dir.path().join("active")).unwrap();

    let wf = Workflow::new(Arc::new(store.clone()));
    wf.bootstrap(library(&base()), "installer").unwrap();
    a.sync(&store).unwrap();
    assert_eq!(a.decide(&library_req()).decision, Decision::Allow);

    // Someone breaks version 1 on disk and writes a version 2 by hand.
    let v2 = dir.path().join("versions/0002");
    std::fs::create_dir_all(&v2).unwrap();
    for f in ["model.conf", "tests.csv", "meta.json"] {
        std::fs::copy(dir.path().join("versions/0001").join(f), v2.join(f)).unwrap();
    }
    std::fs::write(v2.join("policy.csv"), "p, broken\n").unwrap();
    std::fs::write(dir.path().join("active"), "2\n").unwrap();
    let err = a.sync(&store).unwrap_err().to_string();
    assert!(
        err.contains("policy version 2 cannot be used") && err.contains("policy.csv:1"),
        "{err}"
    );
    assert_eq!(a.version(), Some(1));
    assert_eq!(a.decide(&library_req()).decision, Decision::Allow);

    // A fresh process with only the broken version denies everything.
    let fresh = Authorizer::new();
    assert!(fresh.sync(&store).is_err());
    assert_eq!(fresh.decide(&library_req()).reason, Reason::NoPolicy);
}

#[test]
fn file_watcher_swaps_the_policy_in_another_process() {
    let e = env();
    let other = Arc::new(Authorizer::new());
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let h = watch(
        e.store.clone(),
        other.clone(),
        Duration::from_secs(1),
        move |w| {
            if let WatchEvent::Activated { to, .. } = w {
                ev.lock().unwrap().push(to);
            }
        },
    )
    .unwrap();
    assert_eq!(other.version(), Some(1));
    let p =
        e.wf.propose("alice", library(&base()), Some(1), false, "")
            .unwrap();
    e.wf.approve(&p.proposal.id, "bob").unwrap();
    let t = Instant::now();
    while other.version() != Some(2) {
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "not swapped within 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(other.decide(&library_req()).decision, Decision::Allow);
    h.stop();
    assert_eq!(*events.lock().unwrap(), [1, 2]);
}
