//! [`Log`]: the audit log in a directory, for one gateway process.
//!
//! The queue, group commit, checkpoint rounds, tickets and fail-closed
//! states are the shared [`crate::appender`]; this module plugs the file
//! [`Store`] into it. [`Log::append`] encodes the event on the caller's
//! thread and gives it the next index (this process is the only writer, so
//! the index is known at once); it never blocks on I/O. Every 100 ms (or
//! when 4,096 events are queued) the writer thread writes the queue to the
//! WAL with one `fdatasync` (group commit) and updates the tiles. Every
//! `period` (default 1 s), on [`Log::flush`] and on shutdown it also signs
//! a checkpoint through the key store and publishes it. Only then are
//! waiting [`Ticket`]s released: an event counts as recorded once
//! [`Log::wait`] returned `Ok`. A checkpoint is signed only when the tree
//! grew, so an idle log does not rewrite identical checkpoints.
//!
//! Backpressure and failure are fail-closed: `append` returns an error when
//! the queue is full, when storage failed (the log must be reopened, which
//! runs recovery), or while checkpoints cannot be signed (retried every
//! period; appends resume when a checkpoint succeeds). Tickets whose events
//! could not be stored are answered with an error, never with success.

use std::sync::Arc;
use std::time::Duration;

use stadttor_hsm::SigningKey;

use crate::appender::{Appender, Committed, Options, Publish, Status, Storage};
use crate::event::Event;
use crate::note::{Checkpoint, VerifierKey};
use crate::store::{RecoveryReport, Store, StoreError};
use crate::Error;

/// Settings of an audit log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogConfig {
    /// Directory holding the WAL and the served files.
    pub dir: std::path::PathBuf,
    /// The checkpoint origin and key name, e.g. `audit.musterstadt.de/gw1`.
    pub origin: String,
    /// How often a checkpoint is signed while events arrive.
    pub period: Duration,
    /// Events that may wait for the writer before `append` refuses more.
    pub queue_capacity: usize,
}

impl LogConfig {
    /// Defaults: period 1 s, queue of 262,144 events.
    pub fn new(dir: impl Into<std::path::PathBuf>, origin: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            origin: origin.into(),
            period: Duration::from_secs(1),
            queue_capacity: 1 << 18,
        }
    }
}

/// The position an appended event was given; wait on it with [`Log::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket {
    /// The entry's index in the log.
    pub index: u64,
}

/// A tamper-evident audit log open for appending.
#[derive(Debug)]
pub struct Log {
    appender: Appender,
    verifier: VerifierKey,
}

impl Log {
    /// Opens the log (running crash recovery, see [`crate::store`]) and
    /// starts its writer thread. `key` signs checkpoints; it must be Ed25519
    /// or ECDSA P-256. If no checkpoint exists yet, or recovered entries are
    /// not yet covered by one, the writer signs one at once.
    pub fn open(
        config: LogConfig,
        key: Arc<dyn SigningKey>,
    ) -> Result<(Self, RecoveryReport), Error> {
        let verifier =
            VerifierKey::from_spki(&config.origin, key.algorithm(), key.public_key_spki())?;
        let (store, report) = Store::open(&config.dir, &config.origin, &verifier)?;
        let size = store.size();
        let opts = Options {
            period: config.period,
            capacity: config.queue_capacity,
            // The only writer: the running count is the index.
            seq_base: size,
            sign_at_once: store.published_size() != Some(size),
            thread_name: "audit-writer",
            origin: config.origin,
        };
        let appender = Appender::start(store, key, opts)?;
        Ok((Self { appender, verifier }, report))
    }

    /// The verifier key string auditors need (`<origin>+<id>+<key>`).
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.verifier
    }

    /// Queues `event`. `Ok` means the event has an index, not that it is
    /// recorded: call [`Log::wait`] for that.
    pub fn append(&self, event: &Event) -> Result<Ticket, Error> {
        self.append_entry(event.to_entry()?)
    }

    /// Queues an already encoded entry (compact JSON of an [`Event`]).
    pub fn append_entry(&self, entry: Vec<u8>) -> Result<Ticket, Error> {
        self.appender.append(entry, |q| Ticket { index: q.seq })
    }

    /// Queues an encoded entry and commits it (with whatever else is
    /// queued) at once; the [`crate::Durable`] resolves when it is in the
    /// WAL. For events whose response must not leave before them.
    pub fn append_durable(&self, entry: Vec<u8>) -> Result<crate::Durable, Error> {
        self.appender.append_durable(entry)
    }

    /// Waits until `ticket` is covered by a signed checkpoint, at most
    /// `timeout`.
    pub fn wait(&self, ticket: Ticket, timeout: Duration) -> Result<Committed, Error> {
        self.appender.wait(|| Some(ticket.index), timeout)
    }

    /// Asks for a checkpoint now and waits (at most `timeout`) until every
    /// event appended before the call is covered. Returns the signed size.
    pub fn flush(&self, timeout: Duration) -> Result<u64, Error> {
        self.appender.flush(timeout)
    }

    /// A snapshot of the log's state.
    pub fn status(&self) -> Status {
        self.appender.status()
    }

    /// Stops accepting events, commits and signs what is queued, and stops
    /// the writer. Returns the failure if the final checkpoint could not be
    /// written. Called by `Drop` as well.
    pub fn close(&self) -> Result<(), Error> {
        self.appender.close()
    }
}

impl Storage for Store {
    type Error = StoreError;

    fn commit(&mut self, entries: Vec<Vec<u8>>) -> Result<u64, StoreError> {
        let first = self.size();
        self.append_batch(entries)?;
        Ok(first)
    }

    /// The only writer signs whenever the tree grew; `need` is always
    /// covered by that.
    fn prepare(&mut self, _need: u64) -> Result<Option<Checkpoint>, StoreError> {
        self.checkpoint_to_sign()
    }

    fn publish(&mut self, cp: &Checkpoint, note: &str) -> Result<Publish, StoreError> {
        Store::publish(self, cp, note).map(|()| Publish::Published)
    }

    fn published_size(&self) -> Option<u64> {
        Store::published_size(self)
    }
}
