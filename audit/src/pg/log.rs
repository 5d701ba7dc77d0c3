//! [`PgLog`]: the appender for a log in PostgreSQL, one per gateway
//! process, with the same shape as [`crate::Log`]: a bounded queue in front
//! of one writer thread.
//!
//! Every 100 ms (or when 4,096 events are queued) the writer sequences the
//! whole queue in one transaction (group commit). Every `period`, on
//! [`PgLog::flush`] and on shutdown it integrates the newest checkpoint and,
//! if this writer's events are not covered yet, signs the tree at the
//! current head and swaps it in; a lost swap is re-read and retried at once
//! (at most 8 times per round). Only then are waiting
//! [`PgTicket`]s released. Unlike [`crate::Ticket`], a ticket's index is
//! known only once its batch is sequenced, because other processes append
//! to the same log.
//!
//! Failures are fail-closed as in [`crate::writer`]: a storage failure
//! (including a lost connection) is sticky until the log is reopened; a
//! signing failure refuses appends until a checkpoint succeeds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use stadttor_hsm::SigningKey;

use super::store::{PgOpenReport, PgStore, Publish};
use super::{PgConfig, PgError};
use crate::event::{Event, EventError};
use crate::note::{self, VerifierKey};
use crate::tiles::MAX_ENTRY_LEN;
use crate::{Committed, Error, Status};

/// Entries are sequenced at least this often.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// A queue this long wakes the writer for a group commit at once.
const COMMIT_BATCH: usize = 4096;
/// Lost checkpoint swaps retried within one round before waiting for the
/// next period (each loss means another writer made progress).
pub(crate) const MAX_SWAPS: u32 = 8;

/// The batch an event was queued in; its first index is set once the batch
/// is sequenced.
#[derive(Debug, Default)]
struct Batch {
    first: OnceLock<u64>,
}

/// An appended event; wait on it with [`PgLog::wait`].
#[derive(Debug, Clone)]
pub struct PgTicket {
    batch: Arc<Batch>,
    offset: u64,
}

impl PgTicket {
    /// The event's index in the log, once its batch is sequenced.
    pub fn index(&self) -> Option<u64> {
        self.batch.first.get().map(|f| f + self.offset)
    }
}

#[derive(Debug, Default)]
struct Queue {
    entries: Vec<Vec<u8>>,
    batch: Arc<Batch>,
    last: Option<PgTicket>,
    appended: u64,
    flush: bool,
    shutdown: bool,
}

#[derive(Debug, Default)]
struct State {
    published: Option<u64>,
    checkpoints: u64,
    conflicts: u64,
    rounds: u64,
    failed: Option<String>,
    signing: Option<String>,
    stopped: bool,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    state: Mutex<State>,
    changed: Condvar,
    healthy: AtomicBool,
    capacity: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A log in PostgreSQL, open for appending by this process; other processes
/// may append to the same log at the same time.
#[derive(Debug)]
pub struct PgLog {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
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
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                flush: report.unpublished > 0 || store.checkpoint_size().is_none(),
                ..Queue::default()
            }),
            wake: Condvar::new(),
            state: Mutex::new(State {
                published: store.checkpoint_size(),
                ..State::default()
            }),
            changed: Condvar::new(),
            healthy: AtomicBool::new(true),
            capacity: config.queue_capacity.max(1),
        });
        let thread = {
            let shared = shared.clone();
            let name = config.origin.clone();
            let period = config.period;
            std::thread::Builder::new()
                .name("audit-pg-writer".into())
                .spawn(move || run(store, key, name, period, shared))
                .map_err(Error::Spawn)?
        };
        Ok((
            Self {
                shared,
                thread: Mutex::new(Some(thread)),
                verifier,
            },
            report,
        ))
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
        if entry.len() > MAX_ENTRY_LEN {
            return Err(Error::Event(EventError::TooLarge(entry.len())));
        }
        if !self.shared.healthy.load(Ordering::Acquire) {
            return Err(Error::Unavailable(self.failure().unwrap_or_default()));
        }
        let mut q = lock(&self.shared.queue);
        if q.shutdown {
            return Err(Error::Closed);
        }
        if q.entries.len() >= self.shared.capacity {
            return Err(Error::QueueFull {
                capacity: self.shared.capacity,
            });
        }
        let ticket = PgTicket {
            batch: q.batch.clone(),
            offset: q.entries.len() as u64,
        };
        q.entries.push(entry);
        q.appended += 1;
        q.last = Some(ticket.clone());
        let wake = q.entries.len() == COMMIT_BATCH;
        drop(q);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(ticket)
    }

    /// Waits until `ticket` is covered by a signed checkpoint (signed by
    /// this or another writer), at most `timeout`.
    pub fn wait(&self, ticket: &PgTicket, timeout: Duration) -> Result<Committed, Error> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.state);
        loop {
            if let Some(index) = ticket.index() {
                if let Some(p) = st.published.filter(|p| *p > index) {
                    return Ok(Committed {
                        index,
                        tree_size: p,
                    });
                }
            }
            if let Some(f) = &st.failed {
                return Err(Error::Unavailable(f.clone()));
            }
            if st.stopped {
                return Err(Error::Closed);
            }
            st = self.wait_changed(st, deadline)?;
        }
    }

    fn wait_changed<'a>(
        &self,
        st: MutexGuard<'a, State>,
        deadline: Instant,
    ) -> Result<MutexGuard<'a, State>, Error> {
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout);
        }
        Ok(self
            .shared
            .changed
            .wait_timeout(st, deadline - now)
            .map(|r| r.0)
            .unwrap_or_else(|e| e.into_inner().0))
    }

    /// Asks for a checkpoint round now and waits (at most `timeout`) until
    /// every event this process appended before the call is covered.
    /// Returns the newest signed size.
    pub fn flush(&self, timeout: Duration) -> Result<u64, Error> {
        let deadline = Instant::now() + timeout;
        let last = {
            let mut q = lock(&self.shared.queue);
            q.flush = true;
            q.last.clone()
        };
        self.shared.wake.notify_one();
        if let Some(t) = last {
            return self
                .wait(&t, deadline.saturating_duration_since(Instant::now()))
                .map(|c| c.tree_size);
        }
        // Nothing appended: wait for one complete round after this call.
        let mut st = lock(&self.shared.state);
        let target = st.rounds + 2;
        loop {
            if let Some(f) = &st.failed {
                return Err(Error::Unavailable(f.clone()));
            }
            if st.rounds >= target || st.stopped {
                return Ok(st.published.unwrap_or(0));
            }
            st = self.wait_changed(st, deadline)?;
        }
    }

    /// A snapshot of this writer's state (`appended` counts this process's
    /// events; `cas_conflicts` the checkpoint swaps it lost).
    pub fn status(&self) -> Status {
        let (appended, queued) = {
            let q = lock(&self.shared.queue);
            (q.appended, q.entries.len())
        };
        let st = lock(&self.shared.state);
        Status {
            appended,
            checkpoint_size: st.published.unwrap_or(0),
            queued,
            checkpoints_signed: st.checkpoints,
            cas_conflicts: st.conflicts,
            failure: st.failed.clone().or_else(|| st.signing.clone()),
        }
    }

    fn failure(&self) -> Option<String> {
        let st = lock(&self.shared.state);
        st.failed.clone().or_else(|| st.signing.clone())
    }

    /// Stops accepting events, sequences and signs what is queued, and stops
    /// the writer. Called by `Drop` as well.
    pub fn close(&self) -> Result<(), Error> {
        lock(&self.shared.queue).shutdown = true;
        self.shared.wake.notify_one();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        match self.failure() {
            Some(f) => Err(Error::Unavailable(f)),
            None => Ok(()),
        }
    }
}

impl Drop for PgLog {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Why a checkpoint round failed.
enum RoundError {
    Signing(note::NoteError),
    Store(PgError),
}

/// Integrates the newest checkpoint and, unless it covers the first `need`
/// entries, signs and swaps in a new one, re-reading after each lost swap.
/// Returns (signed, lost swaps).
fn round(
    store: &mut PgStore,
    key: &dyn SigningKey,
    name: &str,
    need: u64,
) -> Result<(bool, u64), RoundError> {
    let mut lost = 0;
    for _ in 0..MAX_SWAPS {
        let Some(cp) = store.prepare(need).map_err(RoundError::Store)? else {
            return Ok((false, lost));
        };
        let note = note::sign_checkpoint(&cp, name, key).map_err(RoundError::Signing)?;
        match store.publish(&cp, &note).map_err(RoundError::Store)? {
            Publish::Published => return Ok((true, lost)),
            Publish::Conflict => lost += 1,
        }
    }
    Ok((false, lost))
}

fn run(
    mut store: PgStore,
    key: Arc<dyn SigningKey>,
    name: String,
    period: Duration,
    shared: Arc<Shared>,
) {
    let commit_every = period.min(COMMIT_INTERVAL);
    let mut next_tick = Instant::now() + period;
    let mut next_commit = Instant::now() + commit_every;
    // Entries this writer needs covered: the end of its newest batch (0
    // asks for a first checkpoint if there is none).
    let mut need = 0u64;
    loop {
        let (batch, slot, sign, shutdown) = {
            let mut q = lock(&shared.queue);
            loop {
                let now = Instant::now();
                if q.shutdown
                    || q.flush
                    || now >= next_tick
                    || now >= next_commit
                    || q.entries.len() >= COMMIT_BATCH
                {
                    break;
                }
                let wake_at = next_tick.min(next_commit);
                q = shared
                    .wake
                    .wait_timeout(q, wake_at - now)
                    .map(|r| r.0)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            let now = Instant::now();
            let sign = q.shutdown || q.flush || now >= next_tick;
            q.flush = false;
            let slot = std::mem::take(&mut q.batch);
            (std::mem::take(&mut q.entries), slot, sign, q.shutdown)
        };
        let now = Instant::now();
        next_commit = now + commit_every;
        if !batch.is_empty() {
            match store.append_batch(&batch) {
                Ok(first) => {
                    let _ = slot.first.set(first);
                    need = first + batch.len() as u64;
                }
                Err(e) => {
                    fail(&shared, format!("audit log storage failed: {e}"));
                    break;
                }
            }
        }
        drop(batch);
        if !sign {
            continue;
        }
        next_tick = now + period;
        let mut result = round(&mut store, key.as_ref(), &name, need);
        // On shutdown, do not leave this writer's events unsigned because
        // other writers kept winning the swap.
        let mut tries = 0;
        while shutdown && tries < 4 && store.checkpoint_size().is_some_and(|s| s < need) {
            let Ok((signed, lost)) = result else { break };
            tries += 1;
            result =
                round(&mut store, key.as_ref(), &name, need).map(|(s, l)| (s || signed, l + lost));
        }
        match result {
            Ok((signed, lost)) => {
                let mut st = lock(&shared.state);
                st.published = store.checkpoint_size();
                st.checkpoints += u64::from(signed);
                st.conflicts += lost;
                st.rounds += 1;
                st.signing = None;
                shared.healthy.store(true, Ordering::Release);
                drop(st);
                shared.changed.notify_all();
            }
            Err(RoundError::Signing(e)) => {
                let mut st = lock(&shared.state);
                st.signing = Some(format!("audit checkpoint could not be signed: {e}"));
                st.rounds += 1;
                shared.healthy.store(false, Ordering::Release);
                drop(st);
                shared.changed.notify_all();
            }
            Err(RoundError::Store(e)) => {
                fail(&shared, format!("audit log storage failed: {e}"));
                break;
            }
        }
        if shutdown {
            break;
        }
    }
    lock(&shared.state).stopped = true;
    shared.changed.notify_all();
}

fn fail(shared: &Shared, why: String) {
    shared.healthy.store(false, Ordering::Release);
    lock(&shared.state).failed = Some(why);
    shared.changed.notify_all();
}
