//! The PostgreSQL store (feature `postgres`) against a real server:
//! `STADTTOR_POLICIES_PG_URL` (default
//! `host=127.0.0.1 port=5432 user=postgres dbname=test`). Each test uses its
//! own schema and drops it afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "postgres")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{base, library};
use stadttor_policies::{
    watch, AccessRequest, Authorizer, Decision, Level, PgStore, PolicyStore, StoreError,
    WatchEvent, Workflow, WorkflowError,
};

fn url() -> String {
    std::env::var("STADTTOR_POLICIES_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

/// A schema dropped on drop.
struct Schema(String);

impl Schema {
    fn new() -> Self {
        Self(format!("pol_{}", uuid::Uuid::new_v4().simple()))
    }
    fn store(&self) -> PgStore {
        PgStore::connect(&url(), &self.0).expect("PostgreSQL must be running (see module doc)")
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(s) = PgStore::connect(&url(), &self.0) {
            let _ = s.drop_schema();
        }
    }
}

fn library_req() -> AccessRequest<'static> {
    AccessRequest::new("buerger:9", "musterstadt", "/bibliothek/katalog", "GET")
        .with_level(Level::Low)
}

#[test]
fn schema_creation_is_idempotent_under_concurrency() {
    let schema = Schema::new();
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let name = schema.0.clone();
            std::thread::spawn(move || PgStore::connect(&url(), &name).map(|_| ()))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let s = schema.store();
    assert_eq!(s.active_version().unwrap(), None);
    assert!(matches!(
        PgStore::connect(&url(), "Bad-Name"),
        Err(StoreError::Config(_))
    ));
}

#[test]
fn workflow_versions_and_compare_and_swap() {
    let schema = Schema::new();
    let store = Arc::new(schema.store());
    let wf = Workflow::new(store.clone());
    wf.bootstrap(base(), "installer").unwrap();
    let p = wf
        .propose("alice", library(&base()), Some(1), false, "library")
        .unwrap();
    assert!(matches!(
        wf.approve(&p.proposal.id, "alice").unwrap_err(),
        WorkflowError::SelfApproval(_)
    ));
    wf.approve(&p.proposal.id, "bob").unwrap();
    assert_eq!(store.active_version().unwrap(), Some(2));
    let h = wf.history().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[1].approved_by.as_deref(), Some("bob"));
    assert_eq!(h[1].meta.parent, Some(1));
    assert_eq!(wf.diff(1, 2).unwrap().policy.added.len(), 1);

    // CAS: activating on a stale base fails.
    let v1 = store.load(1).unwrap();
    let err = store
        .activate(Some(1), &v1.set, v1.meta.clone(), None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: Some(1),
                actual: Some(2)
            }
        ),
        "{err}"
    );

    // Versions are immutable in the database itself.
    let mut c = postgres::Client::connect(&url(), postgres::NoTls).unwrap();
    let err = c
        .execute(
            &format!(
                "UPDATE {}.policy_versions SET policy = '' WHERE version = 1",
                schema.0
            ),
            &[],
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("immutable") || format!("{err:?}").contains("immutable"),
        "{err:?}"
    );

    // Rollback through a second officer.
    let r = wf.rollback(1, "carol", false, "undo").unwrap();
    wf.approve(&r.proposal.id, "bob").unwrap();
    assert_eq!(store.load(3).unwrap().set, v1.set);
    // An emergency change is listed until approved.
    let e = wf
        .propose("bob", library(&base()), Some(3), true, "now")
        .unwrap();
    assert_eq!(wf.awaiting_approval().unwrap().len(), 1);
    wf.approve(&e.proposal.id, "carol").unwrap();
    assert!(wf.awaiting_approval().unwrap().is_empty());
}

#[test]
fn two_watching_gateways_see_an_activation_within_one_second() {
    let schema = Schema::new();
    let admin = Arc::new(schema.store());
    let wf = Workflow::new(admin.clone());
    wf.bootstrap(base(), "installer").unwrap();

    // Two gateways, each with its own connection, authorizer and watcher.
    // The poll backstop is 30 s, so only NOTIFY can make this fast.
    let mut gateways = Vec::new();
    for _ in 0..2 {
        let store: Arc<dyn PolicyStore> = Arc::new(schema.store());
        let authz = Arc::new(Authorizer::new());
        let seen = Arc::new(Mutex::new(None::<Instant>));
        let s2 = seen.clone();
        let h = watch(store, authz.clone(), Duration::from_secs(30), move |e| {
            if let WatchEvent::Activated { to: 2, .. } = e {
                *s2.lock().unwrap() = Some(Instant::now());
            }
        })
        .unwrap();
        assert_eq!(authz.version(), Some(1));
        assert_eq!(authz.decide(&library_req()).decision, Decision::Deny);
        gateways.push((authz, seen, h));
    }

    let p = wf
        .propose("alice", library(&base()), Some(1), false, "")
        .unwrap();
    let committed = Instant::now();
    wf.approve(&p.proposal.id, "bob").unwrap();
    let committed_at = committed.elapsed();
    for (authz, _, _) in &gateways {
        while authz.version() != Some(2) {
            assert!(
                committed.elapsed() < Duration::from_secs(1),
                "gateway did not swap within 1 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(authz.decide(&library_req()).decision, Decision::Allow);
    }
    for (i, (_, seen, _)) in gateways.iter().enumerate() {
        // The watcher swaps the policy first and reports it after: the
        // event may lag the swap seen above by a moment.
        let at = loop {
            if let Some(at) = *seen.lock().unwrap() {
                break at;
            }
            assert!(
                committed.elapsed() < Duration::from_secs(1),
                "no activation event within 1 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        let lag = at.duration_since(committed);
        eprintln!("gateway {i}: new policy active {lag:?} after approve() started (approve took {committed_at:?})");
        assert!(lag < Duration::from_secs(1));
    }
    for (_, _, h) in gateways {
        drop(h);
    }
}
