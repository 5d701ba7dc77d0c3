//! A policy as officers write it: [`PolicySet`] = casbin model text, policy
//! CSV and the table of expected decisions ([`PolicyTest`]) kept beside it.
//! The embedded default lives in `policies/default/`.
//!
//! This module only parses the tests table; compiling and checking the
//! policy itself is [`crate::engine`].

use serde::{Deserialize, Serialize};

use crate::error::{PolicyError, Problem};
use crate::request::{AccessRequest, Level};
use crate::Decision;

/// The embedded default model (`policies/default/model.conf`).
pub const DEFAULT_MODEL: &str = include_str!("../default/model.conf");
/// The embedded default policy (`policies/default/policy.csv`).
pub const DEFAULT_POLICY: &str = include_str!("../default/policy.csv");
/// The embedded default policy's tests (`policies/default/tests.csv`).
pub const DEFAULT_TESTS: &str = include_str!("../default/tests.csv");

/// Reserved domain whose roles govern the policy itself.
pub const ADMIN_DOMAIN: &str = "stadttor-admin";
/// Role in [`ADMIN_DOMAIN`] that may propose and approve policy changes.
pub const OFFICER_ROLE: &str = "officer";

/// One complete policy: model, rules and their tests, as text.
///
/// Kept as text so versions store, diff and round-trip exactly what the
/// officers wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySet {
    /// casbin model (`model.conf`).
    pub model: String,
    /// casbin policy lines (`policy.csv`).
    pub policy: String,
    /// Expected decisions (`tests.csv`).
    pub tests: String,
}

impl PolicySet {
    /// The embedded default policy.
    pub fn embedded_default() -> Self {
        Self {
            model: DEFAULT_MODEL.to_string(),
            policy: DEFAULT_POLICY.to_string(),
            tests: DEFAULT_TESTS.to_string(),
        }
    }

    /// A copy with `g, NAME, officer, stadttor-admin` lines appended for
    /// each name (used to set up a first policy).
    pub fn with_officers(mut self, names: &[&str]) -> Self {
        if !self.policy.ends_with('\n') && !self.policy.is_empty() {
            self.policy.push('\n');
        }
        for n in names {
            let line = crate::csv::join_fields([*n, OFFICER_ROLE, ADMIN_DOMAIN]);
            self.policy.push_str(&format!("g, {line}\n"));
        }
        self
    }

    /// Parses the tests table.
    pub fn parse_tests(&self) -> Result<Vec<PolicyTest>, PolicyError> {
        parse_tests(&self.tests)
    }
}

/// One row of `tests.csv`: a request and the decision expected for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTest {
    /// Line in `tests.csv`.
    pub line: usize,
    /// Subject.
    pub subject: String,
    /// Domain.
    pub domain: String,
    /// Path.
    pub path: String,
    /// Method.
    pub method: String,
    /// eIDAS level, if any.
    pub level: Option<Level>,
    /// Identity provider, if any.
    pub provider: Option<String>,
    /// Client certificate, if any.
    pub cert: Option<String>,
    /// Expected decision.
    pub expect: Decision,
}

impl PolicyTest {
    /// The request this row describes.
    pub fn request(&self) -> AccessRequest<'_> {
        AccessRequest {
            subject: &self.subject,
            domain: &self.domain,
            path: &self.path,
            method: &self.method,
            level: self.level,
            provider: self.provider.as_deref(),
            client_cert: self.cert.as_deref(),
        }
    }
}

const COLUMNS: [&str; 8] = [
    "subject", "domain", "path", "method", "level", "provider", "cert", "expect",
];
const REQUIRED: [&str; 5] = ["subject", "domain", "path", "method", "expect"];

/// Parses a tests table: a header naming the columns (`subject, domain,
/// path, method, expect` required; `level, provider, cert` optional, in any
/// order), then one row per request. `#` starts a comment line; an empty
/// cell means "none".
pub fn parse_tests(text: &str) -> Result<Vec<PolicyTest>, PolicyError> {
    let mut problems = Vec::new();
    let mut header: Option<Vec<usize>> = None;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let cells = match crate::csv::split_fields(l) {
            Ok(c) => c,
            Err(e) => {
                problems.push(Problem::tests(line, e));
                continue;
            }
        };
        let Some(cols) = &header else {
            let mut cols = Vec::new();
            for c in &cells {
                match COLUMNS.iter().position(|k| k == c) {
                    Some(p) if !cols.contains(&p) => cols.push(p),
                    Some(_) => problems.push(Problem::tests(line, format!("column {c:?} twice"))),
                    None => problems.push(Problem::tests(
                        line,
                        format!("unknown column {c:?} (known: {})", COLUMNS.join(", ")),
                    )),
                }
            }
            for r in REQUIRED {
                let idx = COLUMNS.iter().position(|k| *k == r).unwrap_or(0);
                if !cols.contains(&idx) {
                    problems.push(Problem::tests(line, format!("header lacks column {r:?}")));
                }
            }
            header = Some(cols);
            continue;
        };
        if cells.len() != cols.len() {
            problems.push(Problem::tests(
                line,
                format!("{} cells, the header names {}", cells.len(), cols.len()),
            ));
            continue;
        }
        let mut v: [Option<&str>; 8] = [None; 8];
        for (c, cell) in cols.iter().zip(&cells) {
            if !cell.is_empty() {
                v[*c] = Some(cell);
            }
        }
        let level = match v[4].map(str::parse::<Level>).transpose() {
            Ok(l) => l,
            Err(e) => {
                problems.push(Problem::tests(line, e));
                continue;
            }
        };
        let expect = match v[7] {
            Some("allow") => Decision::Allow,
            Some("deny") => Decision::Deny,
            other => {
                problems.push(Problem::tests(
                    line,
                    format!(
                        "expect must be allow or deny, not {:?}",
                        other.unwrap_or("")
                    ),
                ));
                continue;
            }
        };
        let s = |k: usize| v[k].unwrap_or("").to_string();
        out.push(PolicyTest {
            line,
            subject: s(0),
            domain: s(1),
            path: s(2),
            method: s(3),
            level,
            provider: v[5].map(str::to_string),
            cert: v[6].map(str::to_string),
            expect,
        });
    }
    if header.is_none() {
        problems.push(Problem::tests(0, "no header line".to_string()));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(PolicyError::Invalid(problems))
    }
}
