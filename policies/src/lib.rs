//! `stadttor-policies`: who may reach which service.
//!
//! * [`CompiledPolicy`] decides [`AccessRequest`]s: casbin RBAC with one
//!   domain per municipality, path patterns, methods and the identity's
//!   attributes (eIDAS level, identity provider, client certificate), deny by
//!   default. The default model runs on a precomputed index with casbin's
//!   semantics (see [`engine`]); other models run on casbin itself.
//! * [`Authorizer`] is what the gateway holds: an `ArcSwap` of the active
//!   compiled policy; no policy (missing or broken store) means deny.
//! * [`store`]: versioned policy stores, [`FileStore`] and, with the
//!   `postgres` feature, `PgStore`, with a [`watch`](authorizer::watch) that
//!   hot-swaps the policy in every process.
//! * [`Workflow`]: the security officers' four-eyes change process
//!   (propose, test, approve, emergency, reject, rollback, history, diff).
//!
//! Every decision and change comes back as data ([`DecisionRecord`],
//! [`ChangeEvent`]); the gateway writes the audit events. The crate knows
//! nothing of TLS or HTTP and writes no logs.

#![forbid(unsafe_code)]

pub mod authorizer;
mod csv;
pub mod diff;
pub mod emergency;
pub mod engine;
pub mod error;
pub mod path;
mod pattern;
pub mod request;
pub mod set;
pub mod store;
pub mod workflow;

use serde::{Deserialize, Serialize};

pub use authorizer::{watch, Authorizer, SyncOutcome, WatchEvent, WatchHandle};
pub use diff::{DiffSummary, LineDiff, PolicyDiff};
pub use engine::{CompiledPolicy, TestFailure, TestReport};
pub use error::{PolicyError, PolicyFile, Problem, StoreError, WorkflowError};
pub use request::{AccessRequest, ConsideredRule, DecisionRecord, Explanation, Level, Reason};
pub use set::{PolicySet, PolicyTest, ADMIN_DOMAIN, OFFICER_ROLE};
#[cfg(feature = "postgres")]
pub use store::pg::{plain_connector, PgConnector, PgStore};
pub use store::{
    file::FileStore, ChangeKind, PolicyStore, Proposal, ProposalStatus, StoredVersion, VersionMeta,
};
pub use workflow::{ChangeAction, ChangeEvent, Changed, HistoryEntry, Proposed, Workflow};

/// The outcome of an access decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The request may pass.
    Allow,
    /// The request is refused. Default when anything is missing or broken.
    Deny,
}

impl Decision {
    /// The name used in JSON and audit events (`allow`, `deny`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

impl Default for Decision {
    /// Fail closed: no policy means deny.
    fn default() -> Self {
        Self::Deny
    }
}
