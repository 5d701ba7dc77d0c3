//! `stadttor-audit`: the tamper-evident audit log.
//!
//! Planned contents (issue "A tamper-evident, signed audit log"): an RFC 6962
//! Merkle tree stored as C2SP tlog-tiles, checkpoints signed through
//! `stadttor-hsm`, inclusion and consistency proofs, and a verifier that
//! needs neither keys nor network.
//!
//! Today the crate defines the sink interface the gateway hands events to,
//! so that every later stage already has a place to report to.

#![forbid(unsafe_code)]

/// Receives audit events. The log implementation will make them durable and
/// signed; until then the gateway uses [`Discard`] and says so at start-up.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Records one event, already serialised as a JSON object.
    fn record(&self, event_json: &[u8]);
}

/// A sink that keeps nothing, used until the log lands.
#[derive(Debug, Default)]
pub struct Discard;

impl AuditSink for Discard {
    fn record(&self, _event_json: &[u8]) {}
}
