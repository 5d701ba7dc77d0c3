//! `[audit]`: the tamper-evident log (directory or PostgreSQL), its
//! checkpoint key and pseudonym key; and that routes asking for auditing
//! have a log to record to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::identity::KeyRefParser;
use super::{raw, stores, Audit, AuditMode};

/// Checks `[audit]` and the routes' `audit` settings against it.
pub(super) fn validate(
    raw: &raw::File,
    base: &Path,
    abs: &dyn Fn(&Path) -> PathBuf,
    key_ref: &KeyRefParser<'_>,
    issue: &mut dyn FnMut(String, String),
) -> Option<Audit> {
    let audit = raw.audit.as_ref().map(|a| {
        if a.origin.is_empty() || a.origin.contains(char::is_whitespace) {
            issue(
                "audit.origin".into(),
                "must be a non-empty name without spaces, e.g. `stadttor.example.de/audit`".into(),
            );
        }
        if a.checkpoint_period < Duration::from_millis(100)
            || a.checkpoint_period > Duration::from_secs(60)
        {
            issue(
                "audit.checkpoint_period".into(),
                "must be between 100ms and 60s".into(),
            );
        }
        if a.queue_capacity == 0 {
            issue("audit.queue_capacity".into(), "must be at least 1".into());
        }
        if a.key_use_interval < Duration::from_secs(1)
            || a.key_use_interval > Duration::from_secs(86_400)
        {
            issue(
                "audit.key_use_interval".into(),
                "must be between 1s and 24h".into(),
            );
        }
        let storage = stores::audit_storage(a, base, issue);
        Audit {
            storage,
            origin: a.origin.clone(),
            key: key_ref(&a.key, issue, "audit.key".into()),
            pseudonym_key_file: abs(&a.pseudonym_key_file),
            checkpoint_period: a.checkpoint_period,
            queue_capacity: a.queue_capacity,
            key_use_interval: a.key_use_interval,
        }
    });
    if raw.audit.is_none() {
        // Without a log, `audit = "required"` (the default) cannot be met;
        // only routes that say otherwise explicitly are fine.
        for (i, r) in raw.routes.iter().enumerate() {
            if matches!(r.audit, Some(AuditMode::Required | AuditMode::BestEffort)) {
                issue(
                    format!("routes[{i}].audit"),
                    "asks for auditing, but there is no `[audit]` table; configure the audit \
                     log or set `audit = \"off\"`"
                        .into(),
                );
            }
        }
    }

    audit
}
