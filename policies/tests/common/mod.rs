//! Helpers shared by the integration tests.
#![allow(dead_code, missing_docs, unreachable_pub, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use stadttor_policies::PolicySet;

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(format!("stadttor-policies-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
