//! What an emergency change may not touch.
//!
//! An emergency change becomes active on one officer's word, before any
//! second officer has seen it. That is only safe if the change cannot
//! reach the four-eyes process itself, so [`forbidden_changes`] lists what
//! a change alters of:
//!
//! * the officer list (who holds `officer` in `stadttor-admin`),
//! * the admin domain (any `p` or `g` line naming `stadttor-admin` in any
//!   field, so a role hierarchy or a custom model's layout cannot hide a
//!   grant),
//! * the model (`model.conf`, compared line by line in order; only
//!   comments and blank lines are ignored).
//!
//! [`crate::Workflow`] refuses an emergency change for which the list is
//! not empty: such a change always waits for a second officer of the
//! current version. This module only compares; it decides nothing else.

use std::fmt;

use crate::engine::CompiledPolicy;
use crate::set::{PolicySet, ADMIN_DOMAIN};

/// One thing an emergency change must not alter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forbidden {
    /// The officers change.
    Officers {
        /// Officers only in the new version.
        added: Vec<String>,
        /// Officers only in the old version.
        removed: Vec<String>,
    },
    /// Lines of the admin domain change (officers unchanged).
    AdminDomain {
        /// Normalised lines only in the new version.
        added: Vec<String>,
        /// Normalised lines only in the old version.
        removed: Vec<String>,
    },
    /// The casbin model changes.
    Model,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join("; ")
            }
        };
        match self {
            Self::Officers { added, removed } => write!(
                f,
                "it changes the officers (role officer in domain {ADMIN_DOMAIN}; added: {}; removed: {})",
                list(added),
                list(removed)
            ),
            Self::AdminDomain { added, removed } => write!(
                f,
                "it changes the admin domain {ADMIN_DOMAIN} (added: {}; removed: {})",
                list(added),
                list(removed)
            ),
            Self::Model => f.write_str("it changes the model (model.conf)"),
        }
    }
}

/// What `new` alters of the officers, the admin domain or the model of
/// `old`; empty if it may be an emergency change.
pub fn forbidden_changes(old: &CompiledPolicy, new: &CompiledPolicy) -> Vec<Forbidden> {
    let mut out = Vec::new();
    let (o, n) = (old.officers(), new.officers());
    let (added, removed) = (minus(&n, &o), minus(&o, &n));
    let officers_changed = !added.is_empty() || !removed.is_empty();
    if officers_changed {
        out.push(Forbidden::Officers { added, removed });
    }
    let (o, n) = (admin_lines(old.set()), admin_lines(new.set()));
    if o != n && !officers_changed {
        out.push(Forbidden::AdminDomain {
            added: minus(&n, &o),
            removed: minus(&o, &n),
        });
    }
    if model_lines(&old.set().model) != model_lines(&new.set().model) {
        out.push(Forbidden::Model);
    }
    out
}

/// Elements of `a` not in `b` (both sorted or not; small lists).
fn minus(a: &[String], b: &[String]) -> Vec<String> {
    let mut v: Vec<String> = a.iter().filter(|x| !b.contains(x)).cloned().collect();
    v.dedup();
    v
}

/// Every policy line with a field equal to the admin domain, normalised
/// (fields trimmed), sorted, duplicates kept (a multiset).
fn admin_lines(set: &PolicySet) -> Vec<String> {
    let mut v: Vec<String> = set
        .policy
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let fields = crate::csv::split_fields(l).ok()?;
            fields
                .iter()
                .skip(1)
                .any(|f| *f == ADMIN_DOMAIN)
                .then(|| crate::csv::join_fields(fields))
        })
        .collect();
    v.sort();
    v
}

/// The model's lines in order, trimmed, without comments and blank lines.
fn model_lines(model: &str) -> Vec<&str> {
    model
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn compiled(extra: &str, model: Option<&str>) -> CompiledPolicy {
        let mut set = PolicySet::embedded_default().with_officers(&["alice", "bob"]);
        set.policy.push_str(extra);
        if let Some(m) = model {
            set.model = m.to_owned();
        }
        CompiledPolicy::compile(&set, 0).unwrap()
    }

    #[test]
    fn ordinary_rules_and_reformatting_are_allowed() {
        let old = compiled("", None);
        let new = compiled(
            "p, *, musterstadt, /bibliothek/*, GET, low, *, *, allow\n# comment\n",
            None,
        );
        assert_eq!(forbidden_changes(&old, &new), []);
        // The same admin line with other spacing is the same line.
        let mut set = old.set().clone();
        set.policy = set
            .policy
            .replace("g, alice, officer", "g,alice ,  officer");
        let respaced = CompiledPolicy::compile(&set, 0).unwrap();
        assert_eq!(forbidden_changes(&old, &respaced), []);
    }

    #[test]
    fn officers_admin_lines_and_model_are_named() {
        let old = compiled("", None);
        let new = compiled("g, mallory, officer, stadttor-admin\n", None);
        assert_eq!(
            forbidden_changes(&old, &new),
            [Forbidden::Officers {
                added: vec!["mallory".into()],
                removed: vec![]
            }]
        );
        // A role in the admin domain that grants nothing yet is still an
        // admin-domain change (the next emergency could hang officer on it).
        let new = compiled("g, mallory, helper, stadttor-admin\n", None);
        let f = forbidden_changes(&old, &new);
        assert!(
            matches!(&f[..], [Forbidden::AdminDomain { added, .. }] if added == &["g, mallory, helper, stadttor-admin"]),
            "{f:?}"
        );
        let model = format!("{}\n# only a comment\n", crate::set::DEFAULT_MODEL);
        assert_eq!(forbidden_changes(&old, &compiled("", Some(&model))), []);
        let model = crate::set::DEFAULT_MODEL.replace(
            "r.dom == p.dom",
            "(r.dom == p.dom || p.dom == \"stadttor-admin\")",
        );
        assert_eq!(
            forbidden_changes(&old, &compiled("", Some(&model))),
            [Forbidden::Model]
        );
    }
}
