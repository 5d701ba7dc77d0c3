//! `stadttor-audit`: the tamper-evident, signed audit log.
//!
//! What it is: an append-only log of [`event::Event`]s, kept as an RFC 6962
//! Merkle tree ([`merkle`]), stored as C2SP tlog-tiles that any static file
//! server can publish ([`tiles`]), with C2SP checkpoints signed through
//! `stadttor-hsm` ([`note`]). The gateway appends through [`Log`]
//! ([`writer`], on top of the crash-safe file [`store`]); the queue, group
//! commit, checkpoint rounds and fail-closed states are one appender
//! (`appender`) shared with the PostgreSQL log [`pg::PgLog`]; auditors check a
//! copy of the directory with [`verify`], which needs only the public
//! verifier key: no key store, no network. [`time`] turns an auditor's
//! `--since`/`--until` into bounds for a [`verify::Query`]. With the
//! `fetch` feature, `fetch` mirrors a log published over HTTP(S) into a
//! local directory for the verifier (the only code here that opens a
//! socket).
//!
//! What it is not: no HTTP serving (point any static file server at the
//! directory, or copy it), no CLI (the `stadttor audit` subcommands wrap
//! [`verify`] and `fetch`), no witness cosigning yet, one writer per
//! directory. With the `postgres` feature, [`pg`] stores one log in
//! PostgreSQL for several gateway processes, and exports it as tiles for
//! the same verifier.
//!
//! Formats, file layout and the auditor's workflow are in `docs/AUDIT.md`.
//!
//! ```no_run
//! # fn demo(key: std::sync::Arc<dyn stadttor_hsm::SigningKey>) -> Result<(), stadttor_audit::Error> {
//! use std::time::Duration;
//! use stadttor_audit::{event::{Event, Outcome}, Log, LogConfig};
//!
//! let (log, recovery) = Log::open(LogConfig::new("/var/lib/stadttor/audit", "audit.example.de/gw1"), key)?;
//! println!("audit log opened: {recovery}");
//! let ticket = log.append(&Event::new("config.reload", Outcome::Success))?;
//! log.wait(ticket, Duration::from_secs(5))?; // now it is in a signed checkpoint
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod appender;
mod durable;
pub mod event;
#[cfg(feature = "fetch")]
pub mod fetch;
pub mod merkle;
pub mod note;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod store;
pub mod tiles;
pub mod time;
pub mod verify;
pub mod writer;

pub use appender::{Committed, Status};
pub use durable::Durable;
pub use note::VerifierKey;
pub use store::RecoveryReport;
pub use writer::{Log, LogConfig, Ticket};

/// Errors of the writing side ([`Log`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The event could not be encoded.
    #[error(transparent)]
    Event(#[from] event::EventError),
    /// The signing key cannot sign checkpoints or the key name is invalid.
    #[error(transparent)]
    Note(#[from] note::NoteError),
    /// The store could not be opened or recovered.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The queue is full: the writer cannot keep up.
    #[error("audit queue full ({capacity} events waiting)")]
    QueueFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// The log cannot record events now (storage failed, or checkpoints
    /// cannot be signed); audited actions must not proceed.
    #[error("audit log unavailable: {0}")]
    Unavailable(String),
    /// Waiting for a checkpoint took longer than the timeout.
    #[error("timed out waiting for a signed checkpoint")]
    Timeout,
    /// The log was closed.
    #[error("audit log is closed")]
    Closed,
    /// The PostgreSQL storage could not be opened (unreachable server,
    /// inconsistent log, wrong key); see [`pg::PgError::is_unavailable`].
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Postgres(#[from] pg::PgError),
    /// The writer thread could not be started.
    #[error("cannot start the audit writer thread: {0}")]
    Spawn(#[source] std::io::Error),
}
