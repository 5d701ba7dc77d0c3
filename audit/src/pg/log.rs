//! [`PgLog`]: the log in PostgreSQL, one per gateway process; other
//! processes may append to the same log at the same time.
//!
//! The queue, group commit, checkpoint rounds and fail-closed states are
//! the shared [`crate::appender`]; this module plugs [`PgStore`] into it.
//! Every 100 ms (or when 4,096 events are queued) the writer sequences the
//! whole queue in one transaction (group commit). Every `period`, on
//! [`PgLog::flush`] and on shutdown it integrates the newest checkpoint and,
//! if this writer's events are not covered yet, signs the tree at the
//! current head and swaps it in; a lost swap is re-read and retried at once
//! (at most 8 times per round). Only then are waiting [`PgTicket`]s
//! released. Unlike [`crate::Ticket`], a ticket's index is known only once
//! its batch is sequenced, because other processes append to the same log.
//!
//! Failures are fail-closed as for [`crate::Log`]: a storage failure
//! (including a lost connection) is sticky until the log is reopened; a
//! signing failure refuses appends until a checkpoint succeeds.

use std::sync::Arc;
use std::time::Duration;

use stadttor_hsm::SigningKey;

use super::store::{PgOpenReport, PgStore};
use super::{PgConfig, PgError};
use crate::appender::{Appender, Options, Publish, Slot, Storage};
use crate::event::Event;
use crate::note::{Checkpoint, VerifierKey};
use crate::{Committed, Error, Status};

/// An appended event; wait on it with [`PgLog::wait`].
#[derive(Debug, Clone)]
pub struct PgTicket {
    slot: Arc<Slot>,
    offset: u64,
}

impl PgTicket {
    /// The event's index in the log, once its batch is sequenced.
    pub fn index(&self) -> Option<u64> {
        self.slot.index(self.offset)
    }
}

/// A log in PostgreSQL, open for appending by this process; other processes
/// may append to the same log at the same time.
#[derive(Debug)]
pub struct PgLog {
    appender: Appender,
    verifier: VerifierKey,
}

impl PgLog {
    /// Connects (see [`PgStore::open`], which verifies the stored log) and
    /// starts the writer thread. If no checkpoint exists yet, or entries are
    /// not covered by one, the writer signs one at once.
    pub fn open(config: PgConfig, key: Arc<dyn SigningKey>) -> Result<(Self, PgOpenReport), Error> {
        let verifier =
            VerifierKey::from_spki(&config.origin, key.algorithm(), key.public_key_spki())?;
        let (store, report) = PgStore::open(&config, &verifier)?;
        let opts = Options {
            period: config.period,
            capacity: config.queue_capacity,
            seq_base: 0,
            sign_at_once: report.unpublished > 0 || store.checkpoint_size().is_none(),
            thread_name: "audit-pg-writer",
            origin: config.origin,
        };
        let appender = Appender::start(store, key, opts)?;
        Ok((Self { appender, verifier }, report))
    }

    /// The verifier key string auditors need.
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.verifier
    }

    /// Queues `event`. `Ok` means it is queued, not recorded: call
    /// [`PgLog::wait`] for that.
    pub fn append(&self, event: &Event) -> Result<PgTicket, Error> {
        self.append_entry(event.to_entry()?)
    }

    /// Queues an already encoded entry.
    pub fn append_entry(&self, entry: Vec<u8>) -> Result<PgTicket, Error> {
        self.appender.append(entry, |q| PgTicket {
            slot: q.slot.clone(),
            offset: q.offset,
        })
    }

    /// Queues an encoded entry and commits it (with whatever else is
    /// queued) at once; the [`crate::Durable`] resolves when the
    /// transaction holding it committed.
    pub fn append_durable(&self, entry: Vec<u8>) -> Result<crate::Durable, Error> {
        self.appender.append_durable(entry)
    }

    /// Waits until `ticket` is covered by a signed checkpoint (signed by
    /// this or another writer), at most `timeout`.
    pub fn wait(&self, ticket: &PgTicket, timeout: Duration) -> Result<Committed, Error> {
        self.appender.wait(|| ticket.index(), timeout)
    }

    /// Asks for a checkpoint round now and waits (at most `timeout`) until
    /// every event this process appended before the call is covered.
    /// Returns the newest signed size.
    pub fn flush(&self, timeout: Duration) -> Result<u64, Error> {
        self.appender.flush(timeout)
    }

    /// A snapshot of this writer's state (`appended` counts this process's
    /// events; `cas_conflicts` the checkpoint swaps it lost).
    pub fn status(&self) -> Status {
        self.appender.status()
    }

    /// Stops accepting events, sequences and signs what is queued, and stops
    /// the writer. Called by `Drop` as well.
    pub fn close(&self) -> Result<(), Error> {
        self.appender.close()
    }
}

impl Storage for PgStore {
    type Error = PgError;

    fn commit(&mut self, entries: Vec<Vec<u8>>) -> Result<u64, PgError> {
        self.append_batch(&entries)
    }

    fn prepare(&mut self, need: u64) -> Result<Option<Checkpoint>, PgError> {
        PgStore::prepare(self, need)
    }

    fn publish(&mut self, cp: &Checkpoint, note: &str) -> Result<Publish, PgError> {
        PgStore::publish(self, cp, note)
    }

    fn published_size(&self) -> Option<u64> {
        self.checkpoint_size()
    }
}
