//! Error types of the crate: [`PolicyError`] (a policy that cannot be
//! used, with every problem by file and line), [`StoreError`] and
//! [`WorkflowError`].

use std::fmt;
use std::path::PathBuf;

use crate::emergency::Forbidden;
use crate::engine::TestReport;

/// Which file of a [`crate::PolicySet`] a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyFile {
    /// `model.conf`
    Model,
    /// `policy.csv`
    Policy,
    /// `tests.csv`
    Tests,
}

impl fmt::Display for PolicyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Model => "model.conf",
            Self::Policy => "policy.csv",
            Self::Tests => "tests.csv",
        })
    }
}

/// One thing wrong with a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PolicyFile,
    /// 1-based line; 0 when it concerns the file as a whole.
    pub line: usize,
    /// What is wrong, in words.
    pub reason: String,
}

impl Problem {
    pub(crate) fn model(line: usize, reason: String) -> Self {
        Self {
            file: PolicyFile::Model,
            line,
            reason,
        }
    }
    pub(crate) fn policy(line: usize, reason: String) -> Self {
        Self {
            file: PolicyFile::Policy,
            line,
            reason,
        }
    }
    pub(crate) fn tests(line: usize, reason: String) -> Self {
        Self {
            file: PolicyFile::Tests,
            line,
            reason,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

fn join<T: fmt::Display>(problems: &[T]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A policy that cannot become active.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyError {
    /// Syntax or semantic errors, each naming file, line and reason.
    #[error("invalid policy: {}", join(.0))]
    Invalid(Vec<Problem>),
    /// The policy compiles but its own tests fail.
    #[error("policy tests failed: {0}")]
    TestsFailed(TestReport),
}

/// The policy store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// File system error.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Stored data that cannot be read back.
    #[error("corrupt policy store: {0}")]
    Corrupt(String),
    /// Compare-and-swap failed: someone else changed it first.
    #[error("conflict: expected active version {expected:?}, store has {actual:?}")]
    Conflict {
        /// What the caller based its change on.
        expected: Option<u64>,
        /// What the store has.
        actual: Option<u64>,
    },
    /// A proposal changed status under us.
    #[error("proposal {0} was changed concurrently")]
    ProposalConflict(String),
    /// No such version.
    #[error("no policy version {0}")]
    NoSuchVersion(u64),
    /// No such proposal.
    #[error("no proposal {0}")]
    NoSuchProposal(String),
    /// Could not take the store's lock in time.
    #[error("policy store is locked by another writer ({0})")]
    Locked(String),
    /// PostgreSQL error.
    #[error("postgres: {0}")]
    Postgres(String),
    /// Invalid store configuration.
    #[error("invalid store configuration: {0}")]
    Config(String),
}

/// A workflow step refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The person is not an officer in the active policy.
    #[error(
        "{0:?} is not an officer (role officer in domain stadttor-admin of the active policy)"
    )]
    NotOfficer(String),
    /// Judging an active emergency change: the person is not an officer of
    /// the version it replaced.
    #[error(
        "{who:?} is not an officer of version {version}, the version this emergency change replaced; only its officers may approve or reject it"
    )]
    NotReviewer {
        /// Who tried.
        who: String,
        /// The replaced version.
        version: u64,
    },
    /// An emergency change that would alter the four-eyes process itself.
    #[error(
        "refused as an emergency change: {}; a change of the officers, the admin domain or the model always needs a second officer of the active version first, so propose it without emergency",
        join(.0)
    )]
    EmergencyForbidden(Vec<Forbidden>),
    /// Another emergency change is active and not yet judged.
    #[error(
        "emergency change {id} (version {version}) is active and waits for a second officer; approve or reject it first"
    )]
    EmergencyOpen {
        /// The open emergency proposal.
        id: String,
        /// The version it activated.
        version: u64,
    },
    /// Four eyes: the proposer tried to approve their own change.
    #[error("{0:?} proposed this change and cannot approve it; a second officer must")]
    SelfApproval(String),
    /// The proposal was based on a version that is no longer active.
    #[error("stale proposal: based on version {base:?}, but version {active:?} is active now; propose again on the active version")]
    Stale {
        /// The proposal's base.
        base: Option<u64>,
        /// The active version.
        active: Option<u64>,
    },
    /// The proposed policy is invalid or fails its tests; nothing changed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A proposal would leave fewer than two officers, making four eyes impossible.
    #[error(
        "the policy must keep at least two officers (g, NAME, officer, stadttor-admin); it has {0}"
    )]
    TooFewOfficers(usize),
    /// The proposal is not in a state that allows this step.
    #[error("proposal {id} is {status}")]
    WrongState {
        /// Proposal id.
        id: String,
        /// Its status.
        status: String,
    },
    /// `bootstrap` on a store that already has versions.
    #[error("the policy store already has versions; changes go through proposals")]
    AlreadyBootstrapped,
    /// The store has no active policy (bootstrap first).
    #[error("the policy store has no active policy")]
    NoActivePolicy,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
