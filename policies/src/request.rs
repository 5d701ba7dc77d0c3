//! What a decision is asked about and what it answers: [`AccessRequest`],
//! the eIDAS [`Level`], [`DecisionRecord`] (returned for every decision so
//! the gateway can write its audit event) and [`Explanation`].
//!
//! The subject is whatever the gateway took from the *verified* identity;
//! this module does not check identities, it only carries them.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Decision;

/// eIDAS level of assurance of the login, ordered `Low < Substantial < High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// eIDAS "low".
    Low,
    /// eIDAS "substantial".
    Substantial,
    /// eIDAS "high".
    High,
}

impl Level {
    /// All levels, lowest first.
    pub const ALL: [Level; 3] = [Self::Low, Self::Substantial, Self::High];

    /// The eIDAS URI of the level (`http://eidas.europa.eu/LoA/…`).
    pub fn uri(self) -> &'static str {
        match self {
            Self::Low => "http://eidas.europa.eu/LoA/low",
            Self::Substantial => "http://eidas.europa.eu/LoA/substantial",
            Self::High => "http://eidas.europa.eu/LoA/high",
        }
    }

    /// The lowercase name used in policies and test tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Substantial => "substantial",
            Self::High => "high",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Self::Low),
            "substantial" => Ok(Self::Substantial),
            "high" => Ok(Self::High),
            other => Err(format!(
                "unknown eIDAS level {other:?} (expected low, substantial or high)"
            )),
        }
    }
}

/// One question to the policy. Borrowed, so the hot path allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccessRequest<'a> {
    /// Subject from the verified identity. Empty means "no identity": deny.
    pub subject: &'a str,
    /// Domain (municipality / tenant) the route belongs to.
    pub domain: &'a str,
    /// Request path without query string.
    pub path: &'a str,
    /// HTTP method, upper case.
    pub method: &'a str,
    /// eIDAS level of the login, if known.
    pub level: Option<Level>,
    /// Identity provider that verified the subject, if any.
    pub provider: Option<&'a str>,
    /// Client certificate identifier (as configured by the gateway), if any.
    pub client_cert: Option<&'a str>,
}

impl<'a> AccessRequest<'a> {
    /// A request with no identity attributes.
    pub fn new(subject: &'a str, domain: &'a str, path: &'a str, method: &'a str) -> Self {
        Self {
            subject,
            domain,
            path,
            method,
            level: None,
            provider: None,
            client_cert: None,
        }
    }

    /// The same request with an eIDAS level.
    pub fn with_level(mut self, level: Level) -> Self {
        self.level = Some(level);
        self
    }

    /// The same request with an identity provider.
    pub fn with_provider(mut self, provider: &'a str) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The same request with a client certificate identifier.
    pub fn with_client_cert(mut self, cert: &'a str) -> Self {
        self.client_cert = Some(cert);
        self
    }
}

/// Why a decision came out the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// An allow rule matched and no deny rule did.
    AllowedByRule,
    /// A deny rule matched (deny overrides allow).
    DeniedByRule,
    /// No rule matched: default deny.
    NoMatchingRule,
    /// No identity (empty subject): deny.
    NoIdentity,
    /// No policy is loaded (missing or broken store): deny.
    NoPolicy,
    /// The policy engine failed on this request (custom models only): deny.
    EngineError,
    /// The path is not in canonical form ([`crate::path`]): deny.
    NonCanonicalPath,
}

impl Reason {
    /// The name used in JSON and audit events (`allowed_by_rule`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllowedByRule => "allowed_by_rule",
            Self::DeniedByRule => "denied_by_rule",
            Self::NoMatchingRule => "no_matching_rule",
            Self::NoIdentity => "no_identity",
            Self::NoPolicy => "no_policy",
            Self::EngineError => "engine_error",
            Self::NonCanonicalPath => "non_canonical_path",
        }
    }
}

/// The answer to one [`AccessRequest`], as data for the audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    /// Allow or deny.
    pub decision: Decision,
    /// Why.
    pub reason: Reason,
    /// The policy line that decided, as written in `policy.csv`.
    pub rule: Option<Arc<str>>,
    /// Its line number in `policy.csv` (1-based).
    pub line: Option<usize>,
    /// Version of the policy that decided; 0 when none is loaded.
    pub version: u64,
}

impl DecisionRecord {
    /// The fail-closed answer when no policy is loaded.
    pub fn no_policy() -> Self {
        Self {
            decision: Decision::Deny,
            reason: Reason::NoPolicy,
            rule: None,
            line: None,
            version: 0,
        }
    }

    /// Whether the request may pass.
    pub fn is_allowed(&self) -> bool {
        self.decision == Decision::Allow
    }
}

/// A decision with the reasoning behind it, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The decision exactly as `decide` returns it.
    pub record: DecisionRecord,
    /// The subject and every role it holds in the request's domain.
    pub roles: Vec<String>,
    /// Rules that were considered (same domain, subject or one of its roles
    /// or `*`), as `(line, text, matched, why_not)`.
    pub considered: Vec<ConsideredRule>,
}

/// One rule looked at by `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsideredRule {
    /// Line in `policy.csv`.
    pub line: usize,
    /// The line as written.
    pub text: String,
    /// Whether it matched the request.
    pub matched: bool,
    /// If not, the first field that did not match (`path`, `method`, `level`,
    /// `provider`, `cert`).
    pub mismatch: Option<&'static str>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.record;
        let verdict = match r.decision {
            Decision::Allow => "ALLOW",
            Decision::Deny => "DENY",
        };
        write!(f, "{verdict} (policy version {}): ", r.version)?;
        match (&r.rule, r.line) {
            // The reason as the audit log and the docs spell it.
            (Some(rule), Some(line)) => {
                writeln!(f, "{} by line {line}: {rule}", r.reason.as_str())?
            }
            _ => writeln!(f, "{}", r.reason.as_str())?,
        }
        writeln!(f, "subject and roles: {}", self.roles.join(", "))?;
        for c in &self.considered {
            let what = if c.matched {
                "matches".to_string()
            } else {
                format!("no ({} differs)", c.mismatch.unwrap_or("?"))
            };
            writeln!(f, "  line {}: {} -> {what}", c.line, c.text)?;
        }
        Ok(())
    }
}
