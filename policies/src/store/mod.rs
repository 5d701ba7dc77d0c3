//! Versioned policy storage.
//!
//! A store keeps every activated [`PolicySet`] as an immutable, numbered
//! version with its [`VersionMeta`] (author, approver, time, emergency flag,
//! diff summary), the officers' [`Proposal`]s, and a pointer to the active
//! version that only moves by compare-and-swap ([`PolicyStore::activate`]).
//! A rollback is a new version with old content, so history only grows.
//!
//! Implementations: [`file::FileStore`] (a directory) and, with the
//! `postgres` feature, [`pg::PgStore`]. The store decides nothing and
//! checks no permissions: that is [`crate::Workflow`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::diff::DiffSummary;
use crate::error::StoreError;
use crate::set::PolicySet;

pub mod file;
#[cfg(feature = "postgres")]
pub mod pg;

/// How a version came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ChangeKind {
    /// The first policy of an empty store (installation).
    Bootstrap,
    /// An ordinary change.
    Change,
    /// Restores the content of an earlier version.
    Rollback {
        /// The version restored.
        to: u64,
    },
}

/// Metadata of one stored version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// Version number, from 1, assigned by the store.
    pub version: u64,
    /// The version that was active when this one was activated.
    pub parent: Option<u64>,
    /// Who proposed it.
    pub author: String,
    /// Who approved it before activation; `None` for bootstrap and for
    /// emergency changes (their later approval is on the [`Proposal`]).
    pub approver: Option<String>,
    /// Activated without prior approval.
    pub emergency: bool,
    /// Change, rollback or bootstrap.
    pub kind: ChangeKind,
    /// The proposal it came from.
    pub proposal: Option<String>,
    /// The author's comment.
    pub comment: String,
    /// Activation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// What changed against the parent.
    pub diff: DiffSummary,
}

/// A version with its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVersion {
    /// Metadata.
    pub meta: VersionMeta,
    /// Content.
    pub set: PolicySet,
}

/// Where a proposal stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ProposalStatus {
    /// Waiting for a second officer.
    Pending,
    /// Became this version (approved first, or an emergency change).
    Activated {
        /// The version it became.
        version: u64,
    },
    /// Turned down.
    Rejected {
        /// The officer.
        by: String,
        /// Why.
        reason: String,
        /// When, ms since the epoch.
        at_unix_ms: u64,
    },
}

/// A second officer's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The approving officer.
    pub by: String,
    /// When, ms since the epoch.
    pub at_unix_ms: u64,
}

/// A proposed change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Unique id.
    pub id: String,
    /// The proposing officer.
    pub author: String,
    /// When proposed, ms since the epoch.
    pub created_unix_ms: u64,
    /// The active version it was written against.
    pub base_version: Option<u64>,
    /// Emergency: activated at once, approved afterwards.
    pub emergency: bool,
    /// Change or rollback.
    pub kind: ChangeKind,
    /// The author's comment.
    pub comment: String,
    /// The proposed policy.
    pub set: PolicySet,
    /// Against the base version.
    pub diff: DiffSummary,
    /// Rows of its tests table that passed (all did, or it was refused).
    pub tests_passed: usize,
    /// Where it stands.
    pub status: ProposalStatus,
    /// The second officer's approval, before or (emergency) after activation.
    pub approval: Option<Approval>,
}

impl Proposal {
    /// An emergency change that is active but not yet approved.
    pub fn awaiting_approval(&self) -> bool {
        self.emergency
            && matches!(self.status, ProposalStatus::Activated { .. })
            && self.approval.is_none()
    }
}

/// Blocks until the store may have changed.
pub trait ChangeWaiter: Send {
    /// Waits at most `timeout`; `Ok(true)` if a change was signalled.
    fn wait(&mut self, timeout: Duration) -> Result<bool, StoreError>;
}

/// Storage of versions, proposals and the active pointer. All methods are
/// blocking; call them from a thread that may block (in async code:
/// `spawn_blocking`).
pub trait PolicyStore: Send + Sync {
    /// The active version, `None` if the store is empty.
    fn active_version(&self) -> Result<Option<u64>, StoreError>;
    /// One version with its content.
    fn load(&self, version: u64) -> Result<StoredVersion, StoreError>;
    /// Metadata of every version, oldest first.
    fn versions(&self) -> Result<Vec<VersionMeta>, StoreError>;
    /// Every proposal, oldest first.
    fn proposals(&self) -> Result<Vec<Proposal>, StoreError>;
    /// One proposal.
    fn proposal(&self, id: &str) -> Result<Proposal, StoreError>;
    /// Stores a new proposal.
    fn insert_proposal(&self, p: &Proposal) -> Result<(), StoreError>;
    /// Replaces a proposal if its stored status is still `expected`
    /// ([`StoreError::ProposalConflict`] otherwise).
    fn update_proposal(&self, p: &Proposal, expected: &ProposalStatus) -> Result<(), StoreError>;
    /// Atomically: if the active version is `expected_active` (else
    /// [`StoreError::Conflict`]) and `proposal`, if given, is still pending
    /// (else [`StoreError::ProposalConflict`]), store `set` as the next
    /// version with `meta` (its `version` is assigned here), mark the
    /// proposal activated, move the active pointer and notify watchers.
    /// Returns the new version number.
    fn activate(
        &self,
        expected_active: Option<u64>,
        set: &PolicySet,
        meta: VersionMeta,
        proposal: Option<&Proposal>,
    ) -> Result<u64, StoreError>;
    /// A waiter for changes of the active pointer.
    fn subscribe(&self) -> Result<Box<dyn ChangeWaiter>, StoreError>;
}

/// Now, ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
