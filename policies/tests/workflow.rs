//! The officers' workflow on a file store: four eyes, tests on every
//! proposal, stale proposals, emergencies, history, rollback, diff, hot
//! swap, and default deny on an empty or broken store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{base, library, with_rule, TempDir};
use stadttor_policies::emergency::Forbidden;
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
    let dir = TempDir::new("policies");
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
    // Not an officer of the replaced version: refused, still active.
    assert!(matches!(
        e.wf.reject(&p.proposal.id, "mallory", "no").unwrap_err(),
        WorkflowError::NotReviewer { version: 1, .. }
    ));
    assert_eq!(e.authz.decide(&library_req()).decision, Decision::Allow);
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
    let dir = TempDir::new("policies");
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

// ------------------------------------------- four eyes one officer cannot break

/// The attack of issue 12: one officer's emergency change replaces the
/// officer list (the author and an address nobody checks) and allows
/// everything.
fn officer_takeover(author: &str) -> stadttor_policies::PolicySet {
    let mut s =
        stadttor_policies::PolicySet::embedded_default().with_officers(&[author, "nobody@x"]);
    s.policy
        .push_str("p, *, musterstadt, /*, *, *, *, *, allow\n");
    // Its own tests agree with it.
    s.tests = "subject, domain, path, method, level, provider, cert, expect\nanyone, musterstadt, /fachverfahren/freigabe/7, POST, , , , allow\n".into();
    s
}

fn everything_req() -> AccessRequest<'static> {
    AccessRequest::new("anyone", "musterstadt", "/fachverfahren/freigabe/7", "POST")
}

#[test]
fn emergency_change_that_edits_officers_is_refused() {
    let e = env();
    let err =
        e.wf.propose(
            "alice",
            officer_takeover("alice"),
            Some(1),
            true,
            "incident",
        )
        .unwrap_err();
    let WorkflowError::EmergencyForbidden(ref why) = err else {
        panic!("{err}");
    };
    assert!(
        matches!(&why[..], [Forbidden::Officers { added, removed }]
            if added == &["nobody@x"] && removed == &["bob", "carol"]),
        "{why:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("changes the officers")
            && msg.contains("nobody@x")
            && msg.contains("without emergency"),
        "{msg}"
    );
    // Nothing changed, nothing is waiting.
    assert_eq!(e.store.active_version().unwrap(), Some(1));
    assert_eq!(e.authz.decide(&everything_req()).decision, Decision::Deny);
    assert!(e.wf.pending().unwrap().is_empty() && e.wf.awaiting_approval().unwrap().is_empty());

    // Adding an officer, or a role of the admin domain that could later be
    // made an officer, is just as refused.
    let err =
        e.wf.propose(
            "alice",
            base().with_officers(&["mallory"]),
            Some(1),
            true,
            "",
        )
        .unwrap_err();
    assert!(matches!(err, WorkflowError::EmergencyForbidden(_)), "{err}");
    let helper = with_rule(&base(), "g, mallory, helper, stadttor-admin", "");
    let err =
        e.wf.propose("alice", helper, Some(1), true, "")
            .unwrap_err();
    assert!(
        matches!(&err, WorkflowError::EmergencyForbidden(w) if matches!(w[..], [Forbidden::AdminDomain { .. }])),
        "{err}"
    );
    assert!(
        err.to_string().contains("admin domain stadttor-admin"),
        "{err}"
    );

    // As an ordinary proposal it waits for a second officer of version 1.
    let p =
        e.wf.propose("alice", officer_takeover("alice"), Some(1), false, "")
            .unwrap();
    assert!(matches!(
        e.wf.approve(&p.proposal.id, "nobody@x").unwrap_err(),
        WorkflowError::NotOfficer(_)
    ));
    assert_eq!(e.authz.decide(&everything_req()).decision, Decision::Deny);
}

#[test]
fn model_change_or_admin_domain_change_as_emergency_is_refused() {
    let e = env();
    let mut model = base();
    model.model = model
        .model
        .replace("r.dom == p.dom", "(r.dom == p.dom || p.dom == \"*\")");
    let err =
        e.wf.propose("alice", model.clone(), Some(1), true, "")
            .unwrap_err();
    assert!(
        matches!(&err, WorkflowError::EmergencyForbidden(w) if w[..] == [Forbidden::Model]),
        "{err}"
    );
    assert!(
        err.to_string().contains("changes the model (model.conf)"),
        "{err}"
    );
    // A rule in the admin domain (not an officer grant) is refused too.
    let admin_rule = with_rule(&base(), "p, *, stadttor-admin, /*, *, *, *, *, allow", "");
    let err =
        e.wf.propose("alice", admin_rule, Some(1), true, "")
            .unwrap_err();
    assert!(
        matches!(&err, WorkflowError::EmergencyForbidden(w) if matches!(w[..], [Forbidden::AdminDomain { .. }])),
        "{err}"
    );
    // A rollback to a version with other officers cannot be an emergency.
    let p =
        e.wf.propose("alice", base().with_officers(&["dora"]), Some(1), false, "")
            .unwrap();
    e.wf.approve(&p.proposal.id, "bob").unwrap();
    let err = e.wf.rollback(1, "alice", true, "").unwrap_err();
    assert!(matches!(err, WorkflowError::EmergencyForbidden(_)), "{err}");
    // Both pass as ordinary proposals, approved by a second officer.
    let p =
        e.wf.propose("alice", model.with_officers(&["dora"]), Some(2), false, "")
            .unwrap();
    assert_eq!(
        e.wf.approve(&p.proposal.id, "bob").unwrap().version,
        Some(3)
    );
    assert_eq!(e.store.active_version().unwrap(), Some(3));
}

/// A store written before this fix: an emergency change that replaced the
/// officer list went live on one officer's word (as `propose` used to).
fn legacy_takeover(e: &Env) -> String {
    let set = officer_takeover("alice");
    let p = stadttor_policies::Proposal {
        id: "legacy-takeover".into(),
        author: "alice".into(),
        created_unix_ms: 0,
        base_version: Some(1),
        emergency: true,
        kind: ChangeKind::Change,
        comment: "incident".into(),
        set: set.clone(),
        diff: Default::default(),
        tests_passed: 0,
        status: ProposalStatus::Pending,
        approval: None,
    };
    e.store.insert_proposal(&p).unwrap();
    let meta = stadttor_policies::VersionMeta {
        version: 0,
        parent: None,
        author: "alice".into(),
        approver: None,
        emergency: true,
        kind: ChangeKind::Change,
        proposal: Some(p.id.clone()),
        comment: "incident".into(),
        created_unix_ms: 0,
        diff: Default::default(),
    };
    assert_eq!(e.store.activate(Some(1), &set, meta, Some(&p)).unwrap(), 2);
    e.authz.sync(&*e.store).unwrap();
    let d = e.authz.decide(&everything_req());
    assert_eq!(d.decision, Decision::Allow, "{d:?}");
    p.id
}

#[test]
fn emergency_change_is_judged_against_the_officers_of_the_replaced_version() {
    let e = env();
    let id = legacy_takeover(&e);
    // The officers it installed cannot approve it: nobody@x is an officer
    // of version 2 only.
    let err = e.wf.approve(&id, "nobody@x").unwrap_err();
    assert!(
        matches!(&err, WorkflowError::NotReviewer { who, version: 1 } if who == "nobody@x"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("version 1, the version this emergency change replaced"),
        "{err}"
    );
    assert!(e.wf.reject(&id, "nobody@x", "looks fine").is_err());
    // bob is no officer of the active version 2, but of version 1: he may
    // use the officers' tools and his reject restores version 1.
    assert!(!e.wf.active_policy().unwrap().is_officer("bob"));
    assert!(e.wf.is_judge("bob").unwrap() && !e.wf.is_judge("mallory").unwrap());
    let c = e.wf.reject(&id, "bob", "takeover").unwrap();
    assert_eq!(c.version, Some(3));
    assert_eq!(e.store.load(3).unwrap().set, e.store.load(1).unwrap().set);
    assert_eq!(e.authz.decide(&everything_req()).decision, Decision::Deny);
    assert!(e.wf.active_policy().unwrap().is_officer("bob"));
    assert!(!e.wf.is_judge("nobody@x").unwrap());
}

#[test]
fn reject_by_an_officer_of_the_replaced_version_restores_it() {
    let e = env();
    let p =
        e.wf.propose("alice", library(&base()), Some(1), true, "outage")
            .unwrap();
    assert_eq!(e.authz.decide(&library_req()).decision, Decision::Allow);
    let c = e.wf.reject(&p.proposal.id, "carol", "not needed").unwrap();
    assert_eq!(c.version, Some(3));
    let actions: Vec<_> = c.events.iter().map(|e| e.action).collect();
    assert_eq!(actions, [ChangeAction::Rejected, ChangeAction::Reverted]);
    let reverted = &c.events[1];
    assert_eq!(
        (
            reverted.actor.as_str(),
            reverted.version,
            reverted.base_version
        ),
        ("carol", Some(3), Some(2))
    );
    assert_eq!(e.authz.decide(&library_req()).decision, Decision::Deny);
    // A new activation: no history lost, the emergency version is kept.
    let h = e.wf.history().unwrap();
    let versions: Vec<_> = h.iter().map(|h| (h.meta.version, h.active)).collect();
    assert_eq!(versions, [(1, false), (2, false), (3, true)]);
    assert_eq!(h[2].meta.kind, ChangeKind::Rollback { to: 1 });
    assert_eq!(h[2].meta.proposal.as_deref(), Some(p.proposal.id.as_str()));
    assert!(h[2].meta.comment.contains("not needed"));
    assert_eq!(e.store.load(2).unwrap().set, library(&base()));
    // Judged once: neither approve nor a second reject.
    assert!(matches!(
        e.wf.approve(&p.proposal.id, "bob").unwrap_err(),
        WorkflowError::WrongState { .. }
    ));

    // Its author may withdraw an emergency change too: the same restore.
    let p =
        e.wf.propose("alice", library(&base()), Some(3), true, "again")
            .unwrap();
    let c = e.wf.reject(&p.proposal.id, "alice", "withdrawn").unwrap();
    assert_eq!(c.version, Some(5));
    assert_eq!(e.authz.decide(&library_req()).decision, Decision::Deny);
}

#[test]
fn one_open_emergency_at_a_time_and_nothing_activated_on_top_of_it() {
    let e = env();
    let p =
        e.wf.propose("alice", library(&base()), Some(1), true, "first")
            .unwrap();
    let id = p.proposal.id.clone();
    // A second emergency would let a reject restore only the first one.
    let second = with_rule(
        &library(&base()),
        "p, *, musterstadt, /zweite/*, GET, low, *, *, allow",
        "",
    );
    let err =
        e.wf.propose("alice", second.clone(), Some(2), true, "")
            .unwrap_err();
    assert!(
        matches!(&err, WorkflowError::EmergencyOpen { id: i, version: 2 } if *i == id),
        "{err}"
    );
    // An ordinary proposal may wait, but not go live before the emergency
    // change is judged.
    let q = e.wf.propose("alice", second, Some(2), false, "").unwrap();
    let err = e.wf.approve(&q.proposal.id, "bob").unwrap_err();
    assert!(matches!(err, WorkflowError::EmergencyOpen { .. }), "{err}");
    assert_eq!(e.store.active_version().unwrap(), Some(2));
    e.wf.approve(&id, "bob").unwrap();
    assert_eq!(
        e.wf.approve(&q.proposal.id, "carol").unwrap().version,
        Some(3)
    );
}

/// The store holds who may reach what: its directories are created 0750
/// and its files 0640 (the service and its group, nobody else), whatever
/// a more permissive umask of the caller (`stadttor policy init` run by
/// root) would give.
#[test]
fn the_file_store_creates_directories_0750_and_files_0640() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("policies-modes");
    let root = dir.path().join("store");
    let store = FileStore::open(&root).unwrap();
    let wf = Workflow::new(Arc::new(store));
    wf.bootstrap(library(&base()), "installer").unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for d in ["versions", "proposals", "versions/0001"] {
        assert_eq!(mode(&root.join(d)), 0o750, "{d}");
    }
    for f in [
        "active",
        "versions/0001/policy.csv",
        "versions/0001/meta.json",
    ] {
        assert_eq!(mode(&root.join(f)), 0o640, "{f}");
    }
}
