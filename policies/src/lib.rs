//! `stadttor-policies`: who may reach which service.
//!
//! Planned contents (issue "Access policies with casbin"): the casbin
//! enforcer with one domain per municipality, the versioned policy store
//! (files, PostgreSQL), the four-eyes change workflow and the policy test
//! runner. It returns decisions and changes as data; the gateway writes the
//! matching audit events. It knows nothing of TLS or HTTP.
//!
//! Today the crate only defines the shape of a decision so that the gateway's
//! authorization stage has a stable type to build on.

#![forbid(unsafe_code)]

/// The outcome of an access decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The request may pass.
    Allow,
    /// The request is refused. Default when anything is missing or broken.
    Deny,
}

impl Default for Decision {
    /// Fail closed: no policy means deny.
    fn default() -> Self {
        Self::Deny
    }
}
