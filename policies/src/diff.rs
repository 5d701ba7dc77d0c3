//! Differences between two policy sets, line by line.
//!
//! casbin policy lines form a set (order and duplicates do not change a
//! decision under the deny-overrides effect), so the policy diff compares
//! normalised lines as sets: what was added, what was removed. Model and
//! tests are diffed the same way; comments and blank lines are ignored.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::set::PolicySet;

/// Added and removed lines of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDiff {
    /// Lines only in the new version, in its order.
    pub added: Vec<String>,
    /// Lines only in the old version, in its order.
    pub removed: Vec<String>,
}

impl LineDiff {
    /// Compares two texts.
    pub fn between(old: &str, new: &str) -> Self {
        let (o, n) = (norm_lines(old), norm_lines(new));
        let (os, ns): (HashSet<&String>, HashSet<&String>) =
            (o.iter().collect(), n.iter().collect());
        Self {
            added: dedup(n.iter().filter(|l| !os.contains(l))),
            removed: dedup(o.iter().filter(|l| !ns.contains(l))),
        }
    }

    /// True if nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

fn dedup<'a>(it: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut seen = HashSet::new();
    it.filter(|l| seen.insert(*l)).cloned().collect()
}

/// A line with its fields' surrounding spaces removed; `None` for comments.
fn norm_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match crate::csv::split_fields(l) {
            Ok(f) => crate::csv::join_fields(f),
            Err(_) => l.to_owned(),
        })
        .collect()
}

/// What changed between two policy sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDiff {
    /// `model.conf`.
    pub model: LineDiff,
    /// `policy.csv`.
    pub policy: LineDiff,
    /// `tests.csv`.
    pub tests: LineDiff,
}

/// Counts for metadata and audit events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffSummary {
    /// Policy lines added.
    pub added: usize,
    /// Policy lines removed.
    pub removed: usize,
    /// Whether the model changed.
    pub model_changed: bool,
    /// Whether the tests changed.
    pub tests_changed: bool,
}

impl PolicyDiff {
    /// Compares `old` with `new`.
    pub fn between(old: &PolicySet, new: &PolicySet) -> Self {
        Self {
            model: LineDiff::between(&old.model, &new.model),
            policy: LineDiff::between(&old.policy, &new.policy),
            tests: LineDiff::between(&old.tests, &new.tests),
        }
    }

    /// Counts.
    pub fn summary(&self) -> DiffSummary {
        DiffSummary {
            added: self.policy.added.len(),
            removed: self.policy.removed.len(),
            model_changed: !self.model.is_empty(),
            tests_changed: !self.tests.is_empty(),
        }
    }

    /// True if nothing changed.
    pub fn is_empty(&self) -> bool {
        self.model.is_empty() && self.policy.is_empty() && self.tests.is_empty()
    }
}

impl fmt::Display for PolicyDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no changes");
        }
        for (name, d) in [
            ("model.conf", &self.model),
            ("policy.csv", &self.policy),
            ("tests.csv", &self.tests),
        ] {
            if d.is_empty() {
                continue;
            }
            writeln!(f, "--- {name}")?;
            for l in &d.removed {
                writeln!(f, "- {l}")?;
            }
            for l in &d.added {
                writeln!(f, "+ {l}")?;
            }
        }
        Ok(())
    }
}
