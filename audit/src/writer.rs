//! The appender: a bounded queue in front of one writer thread that
//! sequences, commits and signs on a fixed period.
//!
//! [`Log::append`] encodes the event on the caller's thread, gives it the
//! next index and queues it; it never blocks on I/O. Every 100 ms (or when
//! 4,096 events are queued) the writer thread takes the whole queue, writes
//! it to the WAL with one `fdatasync` (group commit) and updates the tiles.
//! Every `period` (default 1 s), on [`Log::flush`] and on shutdown it also
//! signs a checkpoint through the key store and publishes it. Only then are
//! waiting [`Ticket`]s released: an event counts as recorded once
//! [`Log::wait`] returned `Ok`. A checkpoint is signed only when the tree
//! grew, so an idle log does not rewrite identical checkpoints.
//!
//! Backpressure and failure are fail-closed: `append` returns an error when
//! the queue is full, when storage failed (the log must be reopened, which
//! runs recovery), or while checkpoints cannot be signed (retried every
//! period; appends resume when a checkpoint succeeds). Tickets whose events
//! could not be stored are answered with an error, never with success.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use stadttor_hsm::SigningKey;

use crate::event::Event;
use crate::note::{self, VerifierKey};
use crate::store::{RecoveryReport, Store};
use crate::tiles::MAX_ENTRY_LEN;
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

/// Proof that an event is recorded: it is covered by a signed checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The entry's index.
    pub index: u64,
    /// Size of the signed checkpoint that covers it.
    pub tree_size: u64,
}

/// A snapshot of the log's state, for metrics and health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// Indexes handed out so far.
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

#[derive(Debug, Default)]
struct Queue {
    entries: Vec<Vec<u8>>,
    next: u64,
    flush: bool,
    shutdown: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Size of the newest signed checkpoint, if there is one.
    published: Option<u64>,
    checkpoints: u64,
    /// Storage failed: sticky until reopened.
    failed: Option<String>,
    /// Signing failed: cleared by the next successful checkpoint.
    signing: Option<String>,
    /// The writer thread has stopped.
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

/// A tamper-evident audit log open for appending.
#[derive(Debug)]
pub struct Log {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
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
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                next: size,
                // Sign at once if the log is new or has unsigned entries.
                flush: store.published_size() != Some(size),
                ..Queue::default()
            }),
            wake: Condvar::new(),
            state: Mutex::new(State {
                published: store.published_size(),
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
                .name("audit-writer".into())
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

    /// The verifier key string auditors need (`<origin>+<id>+<key>`).
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.verifier
    }

    /// Queues `event`. `Ok` means the event has an index, not that it is
    /// recorded: call [`Log::wait`] for that.
    pub fn append(&self, event: &Event) -> Result<Ticket, Error> {
        let entry = event.to_entry()?;
        self.append_entry(entry)
    }

    /// Queues an already encoded entry (compact JSON of an [`Event`]).
    pub fn append_entry(&self, entry: Vec<u8>) -> Result<Ticket, Error> {
        if entry.len() > MAX_ENTRY_LEN {
            return Err(Error::Event(crate::event::EventError::TooLarge(
                entry.len(),
            )));
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
        let index = q.next;
        q.next += 1;
        q.entries.push(entry);
        let wake = q.entries.len() == COMMIT_BATCH;
        drop(q);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(Ticket { index })
    }

    /// Waits until `ticket` is covered by a signed checkpoint, at most
    /// `timeout`.
    pub fn wait(&self, ticket: Ticket, timeout: Duration) -> Result<Committed, Error> {
        self.wait_for_size(ticket.index + 1, timeout)
            .map(|tree_size| Committed {
                index: ticket.index,
                tree_size,
            })
    }

    fn wait_for_size(&self, size: u64, timeout: Duration) -> Result<u64, Error> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.state);
        loop {
            if let Some(p) = st.published.filter(|p| *p >= size) {
                return Ok(p);
            }
            if let Some(f) = &st.failed {
                return Err(Error::Unavailable(f.clone()));
            }
            if st.stopped {
                return Err(Error::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout);
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .map(|r| r.0)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Asks for a checkpoint now and waits (at most `timeout`) until every
    /// event appended before the call is covered. Returns the signed size.
    pub fn flush(&self, timeout: Duration) -> Result<u64, Error> {
        let target = {
            let mut q = lock(&self.shared.queue);
            q.flush = true;
            q.next
        };
        self.shared.wake.notify_one();
        self.wait_for_size(target, timeout)
    }

    /// A snapshot of the log's state.
    pub fn status(&self) -> Status {
        let (appended, queued) = {
            let q = lock(&self.shared.queue);
            (q.next, q.entries.len())
        };
        let st = lock(&self.shared.state);
        Status {
            appended,
            checkpoint_size: st.published.unwrap_or(0),
            queued,
            checkpoints_signed: st.checkpoints,
            cas_conflicts: 0,
            failure: st.failed.clone().or_else(|| st.signing.clone()),
        }
    }

    fn failure(&self) -> Option<String> {
        let st = lock(&self.shared.state);
        st.failed.clone().or_else(|| st.signing.clone())
    }

    /// Stops accepting events, commits and signs what is queued, and stops
    /// the writer. Returns the failure if the final checkpoint could not be
    /// written. Called by `Drop` as well.
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

impl Drop for Log {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Entries are committed to the WAL at least this often, so that the
/// checkpoint tick only has the last few to write.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// A queue this long wakes the writer for a group commit at once.
const COMMIT_BATCH: usize = 4096;

fn run(
    mut store: Store,
    key: Arc<dyn SigningKey>,
    name: String,
    period: Duration,
    shared: Arc<Shared>,
) {
    let commit_every = period.min(COMMIT_INTERVAL);
    let mut next_tick = Instant::now() + period;
    let mut next_commit = Instant::now() + commit_every;
    loop {
        let (batch, sign, shutdown) = {
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
            (std::mem::take(&mut q.entries), sign, q.shutdown)
        };
        let now = Instant::now();
        next_commit = now + commit_every;
        if let Err(e) = store.append_batch(&batch) {
            fail(&shared, format!("audit log storage failed: {e}"));
            break;
        }
        drop(batch);
        if !sign {
            continue;
        }
        next_tick = now + period;
        match store.checkpoint_to_sign() {
            Ok(None) => {}
            Ok(Some(cp)) => match note::sign_checkpoint(&cp, &name, key.as_ref()) {
                Ok(note) => {
                    if let Err(e) = store.publish(&cp, &note) {
                        fail(&shared, format!("audit log storage failed: {e}"));
                        break;
                    }
                    let mut st = lock(&shared.state);
                    st.published = Some(cp.size);
                    st.checkpoints += 1;
                    st.signing = None;
                    shared.healthy.store(true, Ordering::Release);
                    drop(st);
                    shared.changed.notify_all();
                }
                Err(e) => {
                    lock(&shared.state).signing =
                        Some(format!("audit checkpoint could not be signed: {e}"));
                    shared.healthy.store(false, Ordering::Release);
                }
            },
            Err(e) => {
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
