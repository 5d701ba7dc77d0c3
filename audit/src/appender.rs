//! The appender shared by every storage: a bounded queue in front of one
//! writer thread that sequences, commits and signs on a fixed period.
//!
//! [`crate::Log`] (a directory, [`crate::store::Store`]) and
//! [`crate::pg::PgLog`] (PostgreSQL, [`crate::pg::PgStore`]) are thin
//! wrappers around one [`Appender`], which is generic over the small
//! [`Storage`] trait. Everything about queueing, waiting and failing lives
//! here once:
//!
//! - **Queue.** `append` checks the entry's size and the log's health, and
//!   pushes it under one short lock; it never blocks on I/O. A full queue
//!   refuses the event ([`Error::QueueFull`]).
//! - **Group commit.** Every 100 ms (or at once when 4,096 events are
//!   queued) the writer thread takes the whole queue and hands it to
//!   [`Storage::commit`] as one batch, which returns the index of its first
//!   entry.
//! - **Checkpoints.** Every `period`, on `flush` and on shutdown the writer
//!   runs a round: [`Storage::prepare`] returns the checkpoint to sign (or
//!   nothing, when the newest checkpoint already covers this writer's
//!   events), the writer signs it through the key store, and
//!   [`Storage::publish`] makes it the newest. A publish can lose a
//!   compare-and-swap to another writer ([`Publish::Conflict`]); the round
//!   then prepares again, at most [`MAX_SWAPS`] times.
//! - **Waiting.** Callers are released only when a published checkpoint
//!   covers their event (index < published size).
//! - **Failing closed.** A storage error is sticky: every later `append`
//!   and every waiter gets [`Error::Unavailable`] until the log is reopened
//!   (which runs recovery). A signing error refuses appends until a round
//!   signs again; waiters keep waiting (they are never told "recorded").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use stadttor_hsm::SigningKey;

use crate::event::EventError;
use crate::note::{self, Checkpoint};
use crate::tiles::MAX_ENTRY_LEN;
use crate::Error;

/// Entries are committed at least this often, so that a checkpoint round
/// only has the last few to write.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// A queue this long wakes the writer for a group commit at once.
const COMMIT_BATCH: usize = 4096;
/// Lost checkpoint swaps retried within one round before waiting for the
/// next period (each loss means another writer made progress).
pub(crate) const MAX_SWAPS: u32 = 8;
/// Extra rounds on shutdown when other writers keep winning the swap.
const SHUTDOWN_ROUNDS: u32 = 4;

/// The outcome of [`Storage::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "postgres"), allow(unreachable_pub, dead_code))]
pub enum Publish {
    /// The checkpoint was made the newest and added to the history.
    Published,
    /// Another writer published first; prepare again.
    Conflict,
}

/// What the appender needs from a storage: durable batches and published
/// checkpoints. Implemented by the file store and the PostgreSQL store.
pub(crate) trait Storage: Send + 'static {
    /// A storage failure (sticky: the log must be reopened).
    type Error: std::fmt::Display;

    /// Makes `entries` durable, in order, as one batch, and returns the
    /// index of the first. Called with non-empty batches only.
    fn commit(&mut self, entries: Vec<Vec<u8>>) -> Result<u64, Self::Error>;

    /// The checkpoint to sign next, or `None` if the newest published
    /// checkpoint already covers the first `need` entries (or the log did
    /// not grow). The signed note goes to [`Storage::publish`].
    fn prepare(&mut self, need: u64) -> Result<Option<Checkpoint>, Self::Error>;

    /// Publishes `note`, the signed `cp` from the last `prepare`.
    fn publish(&mut self, cp: &Checkpoint, note: &str) -> Result<Publish, Self::Error>;

    /// Size of the newest published checkpoint this writer knows.
    fn published_size(&self) -> Option<u64>;
}

/// The batch an event was queued in; its first index is set once the batch
/// is committed, and the tasks waiting for it ([`crate::Durable`]) are woken
/// then, or when it can never be committed.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    first: OnceLock<u64>,
    /// Why this batch will never be committed.
    lost: OnceLock<String>,
    wakers: Mutex<Vec<Waker>>,
}

impl Slot {
    /// The index of the entry at `offset` in this batch, once committed.
    pub(crate) fn index(&self, offset: u64) -> Option<u64> {
        self.first.get().map(|f| f + offset)
    }

    /// Why the batch will never be committed, once that is known.
    pub(crate) fn lost(&self) -> Option<&str> {
        self.lost.get().map(String::as_str)
    }

    /// Wakes `waker` when the batch is committed or lost.
    pub(crate) fn register(&self, waker: &Waker) {
        let mut w = lock(&self.wakers);
        if !w.iter().any(|old| old.will_wake(waker)) {
            w.push(waker.clone());
        }
    }

    fn settle(&self, outcome: Result<u64, String>) {
        match outcome {
            Ok(first) => {
                let _ = self.first.set(first);
            }
            Err(why) => {
                let _ = self.lost.set(why);
            }
        }
        for w in std::mem::take(&mut *lock(&self.wakers)) {
            w.wake();
        }
    }
}

/// Where an event went, as seen under the queue lock: enough for either
/// kind of ticket.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct Queued<'a> {
    /// This writer's running count before the event (for a sole writer
    /// that starts at the log's size, so it is the event's index).
    pub(crate) seq: u64,
    /// The batch being filled.
    pub(crate) slot: &'a Arc<Slot>,
    /// The event's position in that batch.
    pub(crate) offset: u64,
}

/// Settings of the appender.
pub(crate) struct Options {
    /// How often a checkpoint is signed while events arrive.
    pub(crate) period: Duration,
    /// Events that may wait before `append` refuses more.
    pub(crate) capacity: usize,
    /// The first value of [`Queued::seq`].
    pub(crate) seq_base: u64,
    /// Sign a checkpoint at once (new log, or unsigned entries).
    pub(crate) sign_at_once: bool,
    /// Name of the writer thread.
    pub(crate) thread_name: &'static str,
    /// The checkpoint origin (key name).
    pub(crate) origin: String,
}

#[derive(Debug, Default)]
struct Queue {
    entries: Vec<Vec<u8>>,
    slot: Arc<Slot>,
    /// The last event of the newest batch taken by the writer.
    last: Option<(Arc<Slot>, u64)>,
    seq: u64,
    flush: bool,
    /// Someone waits for the queued events to be durable: commit now.
    urgent: bool,
    /// Flush requests so far; a round serves those made before it started.
    flush_requests: u64,
    shutdown: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Size of the newest published checkpoint, if there is one.
    published: Option<u64>,
    checkpoints: u64,
    conflicts: u64,
    /// Flush requests served by a round that ended without error.
    flushes_done: u64,
    /// Storage failed: sticky until reopened.
    failed: Option<String>,
    /// Signing failed: cleared by the next successful round.
    signing: Option<String>,
    /// The writer thread has stopped.
    stopped: bool,
}

/// A snapshot of the log's state, for metrics and health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Indexes handed out so far (a directory log), or events this process
    /// appended (PostgreSQL).
    pub appended: u64,
    /// Size of the newest signed checkpoint.
    pub checkpoint_size: u64,
    /// Events waiting for the writer.
    pub queued: usize,
    /// Checkpoints signed since open.
    pub checkpoints_signed: u64,
    /// Checkpoint swaps lost to another writer since open (PostgreSQL
    /// storage only; always 0 for a directory).
    pub cas_conflicts: u64,
    /// Why appends are currently refused, if they are.
    pub failure: Option<String>,
}

/// Proof that an event is recorded: it is covered by a signed checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The entry's index.
    pub index: u64,
    /// Size of the signed checkpoint that covers it.
    pub tree_size: u64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    state: Mutex<State>,
    changed: Condvar,
    healthy: AtomicBool,
    capacity: usize,
}

impl Shared {
    /// Why nothing more will be committed (storage failed, or the writer
    /// stopped), if that is so.
    pub(crate) fn gone(&self) -> Option<Error> {
        let st = lock(&self.state);
        if let Some(f) = &st.failed {
            return Some(Error::Unavailable(f.clone()));
        }
        st.stopped.then_some(Error::Closed)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The queue and its writer thread, over one [`Storage`].
#[derive(Debug)]
pub(crate) struct Appender {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Appender {
    /// Starts the writer thread over `storage`.
    pub(crate) fn start<S: Storage>(
        storage: S,
        key: Arc<dyn SigningKey>,
        opts: Options,
    ) -> Result<Self, Error> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                seq: opts.seq_base,
                flush: opts.sign_at_once,
                ..Queue::default()
            }),
            wake: Condvar::new(),
            state: Mutex::new(State {
                published: storage.published_size(),
                ..State::default()
            }),
            changed: Condvar::new(),
            healthy: AtomicBool::new(true),
            capacity: opts.capacity.max(1),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(opts.thread_name.into())
                .spawn(move || run(storage, key, opts, shared))
                .map_err(Error::Spawn)?
        };
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `entry`; `ticket` builds the caller's ticket under the lock.
    pub(crate) fn append<T>(
        &self,
        entry: Vec<u8>,
        ticket: impl FnOnce(Queued<'_>) -> T,
    ) -> Result<T, Error> {
        self.push(entry, false, ticket)
    }

    /// Queues `entry` and has the writer commit at once (together with
    /// whatever else is queued by then). The returned [`crate::Durable`]
    /// resolves when the entry is durable in the storage: in the WAL (a
    /// directory) or committed (PostgreSQL); its checkpoint follows within
    /// a period.
    pub(crate) fn append_durable(&self, entry: Vec<u8>) -> Result<crate::Durable, Error> {
        let (slot, offset) = self.push(entry, true, |q| (q.slot.clone(), q.offset))?;
        Ok(crate::Durable::new(slot, offset, self.shared.clone()))
    }

    fn push<T>(
        &self,
        entry: Vec<u8>,
        urgent: bool,
        ticket: impl FnOnce(Queued<'_>) -> T,
    ) -> Result<T, Error> {
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
        let len = q.entries.len();
        if len >= self.shared.capacity {
            return Err(Error::QueueFull {
                capacity: self.shared.capacity,
            });
        }
        let t = ticket(Queued {
            seq: q.seq,
            slot: &q.slot,
            offset: len as u64,
        });
        q.seq += 1;
        q.entries.push(entry);
        // Only the first urgent entry of a batch needs to wake the writer.
        let wake = (urgent && !std::mem::replace(&mut q.urgent, true)) || len + 1 == COMMIT_BATCH;
        drop(q);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(t)
    }

    /// Waits (at most `timeout`) until the event `index` names is covered
    /// by a published checkpoint. `index` returns `None` while the event's
    /// index is not known yet.
    pub(crate) fn wait(
        &self,
        index: impl Fn() -> Option<u64>,
        timeout: Duration,
    ) -> Result<Committed, Error> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.state);
        loop {
            if let Some(index) = index() {
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
    /// every event this writer appended before the call is covered; if it
    /// appended none, until a round that started after the call signed
    /// what it had to. Returns the newest published size.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<u64, Error> {
        let deadline = Instant::now() + timeout;
        let (last, request) = {
            let mut q = lock(&self.shared.queue);
            q.flush = true;
            q.flush_requests += 1;
            let last = match q.entries.len() {
                0 => q.last.clone(),
                n => Some((q.slot.clone(), n as u64 - 1)),
            };
            (last, q.flush_requests)
        };
        self.shared.wake.notify_one();
        if let Some((slot, offset)) = last {
            return self
                .wait(
                    || slot.index(offset),
                    deadline.saturating_duration_since(Instant::now()),
                )
                .map(|c| c.tree_size);
        }
        let mut st = lock(&self.shared.state);
        loop {
            if st.flushes_done >= request {
                return Ok(st.published.unwrap_or(0));
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

    /// A snapshot of the state.
    pub(crate) fn status(&self) -> Status {
        let (appended, queued) = {
            let q = lock(&self.shared.queue);
            (q.seq, q.entries.len())
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

    /// Stops accepting events, commits and signs what is queued, and stops
    /// the writer. Returns the failure, if the log is failing.
    pub(crate) fn close(&self) -> Result<(), Error> {
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

impl Drop for Appender {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Why a checkpoint round failed.
enum RoundError<E> {
    Signing(note::NoteError),
    Storage(E),
}

/// One checkpoint round: prepare, sign, publish, re-preparing after each
/// lost swap. Returns (signed, lost swaps).
fn round<S: Storage>(
    storage: &mut S,
    key: &dyn SigningKey,
    origin: &str,
    need: u64,
) -> Result<(bool, u64), RoundError<S::Error>> {
    let mut lost = 0;
    for _ in 0..MAX_SWAPS {
        let Some(cp) = storage.prepare(need).map_err(RoundError::Storage)? else {
            return Ok((false, lost));
        };
        let note = note::sign_checkpoint(&cp, origin, key).map_err(RoundError::Signing)?;
        match storage.publish(&cp, &note).map_err(RoundError::Storage)? {
            Publish::Published => return Ok((true, lost)),
            Publish::Conflict => lost += 1,
        }
    }
    Ok((false, lost))
}

/// What the writer took from the queue for one pass of its loop.
struct Taken {
    /// The events to commit (may be empty).
    batch: Vec<Vec<u8>>,
    /// The slot those events wait on.
    slot: Arc<Slot>,
    /// Whether this pass signs a checkpoint.
    sign: bool,
    /// Flush requests made before this pass started.
    serves: u64,
    /// Whether the appender is shutting down.
    shutdown: bool,
}

/// Waits until there is work (shutdown, flush, urgency, a due tick or
/// commit, or a full batch) and takes the queued batch and its slot.
fn take_batch(shared: &Shared, next_tick: Instant, next_commit: Instant) -> Taken {
    let mut q = lock(&shared.queue);
    loop {
        let now = Instant::now();
        if q.shutdown
            || q.flush
            || q.urgent
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
    q.urgent = false;
    let slot = std::mem::take(&mut q.slot);
    if !q.entries.is_empty() {
        q.last = Some((slot.clone(), q.entries.len() as u64 - 1));
    }
    Taken {
        batch: std::mem::take(&mut q.entries),
        slot,
        sign,
        serves: q.flush_requests,
        shutdown: q.shutdown,
    }
}

/// Signs a checkpoint covering `need`; on shutdown keeps trying (up to
/// `SHUTDOWN_ROUNDS` more rounds) while other writers win the swap.
fn sign_rounds<S: Storage>(
    storage: &mut S,
    key: &dyn SigningKey,
    origin: &str,
    need: u64,
    shutdown: bool,
) -> Result<(bool, u64), RoundError<S::Error>> {
    let mut result = round(storage, key, origin, need);
    // On shutdown, do not leave this writer's events unsigned because
    // other writers kept winning the swap.
    let mut tries = 0;
    while shutdown && tries < SHUTDOWN_ROUNDS && storage.published_size().is_some_and(|s| s < need)
    {
        let Ok((signed, lost)) = result else { break };
        tries += 1;
        result = round(storage, key, origin, need).map(|(s, l)| (s || signed, l + lost));
    }
    result
}

/// Records the outcome of a signing pass in the shared state. Returns
/// `false` if storage failed and the writer must stop.
fn record_rounds<S: Storage>(
    storage: &S,
    shared: &Shared,
    result: Result<(bool, u64), RoundError<S::Error>>,
    serves: u64,
) -> bool {
    match result {
        Ok((signed, lost)) => {
            let mut st = lock(&shared.state);
            st.published = storage.published_size();
            st.checkpoints += u64::from(signed);
            st.conflicts += lost;
            st.flushes_done = serves;
            st.signing = None;
            shared.healthy.store(true, Ordering::Release);
            drop(st);
            shared.changed.notify_all();
            true
        }
        Err(RoundError::Signing(e)) => {
            lock(&shared.state).signing =
                Some(format!("audit checkpoint could not be signed: {e}"));
            shared.healthy.store(false, Ordering::Release);
            shared.changed.notify_all();
            true
        }
        Err(RoundError::Storage(e)) => {
            fail(shared, format!("audit log storage failed: {e}"));
            false
        }
    }
}

/// The writer thread: commits batches, signs checkpoints on each tick or
/// flush, and settles what is left when it stops.
fn run<S: Storage>(mut storage: S, key: Arc<dyn SigningKey>, opts: Options, shared: Arc<Shared>) {
    let period = opts.period;
    let commit_every = period.min(COMMIT_INTERVAL);
    let mut next_tick = Instant::now() + period;
    let mut next_commit = Instant::now() + commit_every;
    // Entries this writer needs covered: the end of its newest batch (0
    // asks for a first checkpoint if there is none).
    let mut need = 0u64;
    loop {
        let Taken {
            batch,
            slot,
            sign,
            serves,
            shutdown,
        } = take_batch(&shared, next_tick, next_commit);
        let now = Instant::now();
        next_commit = now + commit_every;
        if !batch.is_empty() {
            let n = batch.len() as u64;
            match storage.commit(batch) {
                Ok(first) => {
                    slot.settle(Ok(first));
                    need = first + n;
                }
                Err(e) => {
                    let why = format!("audit log storage failed: {e}");
                    // Mark the log failed before any waiter learns of the
                    // failure: whoever saw a durable append fail must find
                    // the next append refused, never accepted.
                    fail(&shared, why.clone());
                    slot.settle(Err(why));
                    break;
                }
            }
        }
        if !sign {
            continue;
        }
        next_tick = now + period;
        let result = sign_rounds(&mut storage, key.as_ref(), &opts.origin, need, shutdown);
        if !record_rounds(&storage, &shared, result, serves) {
            break;
        }
        if shutdown {
            break;
        }
    }
    lock(&shared.state).stopped = true;
    shared.changed.notify_all();
    // Events queued after the last batch will never be committed.
    let pending = lock(&shared.queue).slot.clone();
    pending.settle(Err("the audit log was closed".into()));
}

fn fail(shared: &Shared, why: String) {
    shared.healthy.store(false, Ordering::Release);
    lock(&shared.state).failed = Some(why);
    shared.changed.notify_all();
}
