//! Helpers shared by the integration tests.
#![allow(
    dead_code,
    unused_imports,
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used
)]

use stadttor_policies::PolicySet;

pub use stadttor_test_harness::TempDir;

/// The default policy with officers alice, bob and carol.
pub fn base() -> PolicySet {
    PolicySet::embedded_default().with_officers(&["alice", "bob", "carol"])
}

/// `set` with one more policy line and a test row expecting it to work.
pub fn with_rule(set: &PolicySet, line: &str, test: &str) -> PolicySet {
    let mut s = set.clone();
    s.policy.push_str(line);
    s.policy.push('\n');
    s.tests.push_str(test);
    s.tests.push('\n');
    s
}

/// The change used in most tests: citizens may read /bibliothek/*.
pub fn library(set: &PolicySet) -> PolicySet {
    with_rule(
        set,
        "p, *, musterstadt, /bibliothek/*, GET, low, *, *, allow",
        "buerger:9, musterstadt, /bibliothek/katalog, GET, low, , , allow",
    )
}
