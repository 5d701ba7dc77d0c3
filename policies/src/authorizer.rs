//! [`Authorizer`]: the gateway's handle on the active policy, and
//! [`watch`], which keeps it in step with a [`PolicyStore`].
//!
//! The compiled policy sits in an `ArcSwapOption`: `decide` is a lock-free
//! load plus the policy's own decision; a new version is compiled off the
//! hot path and swapped in whole, so requests in flight finish on the policy
//! they started with. Nothing loaded (missing, empty or broken store at
//! start) means every request is denied. A version that fails to compile
//! later is reported and the previous policy stays active; so does an
//! unreachable store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::engine::CompiledPolicy;
use crate::error::{PolicyError, StoreError};
use crate::request::{AccessRequest, DecisionRecord, Explanation};
use crate::store::PolicyStore;

/// Holds the active compiled policy; deny-all while there is none.
#[derive(Debug, Default)]
pub struct Authorizer {
    current: ArcSwapOption<CompiledPolicy>,
}

/// What [`Authorizer::sync`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Already on the store's active version (or the store has none).
    Unchanged(Option<u64>),
    /// Swapped to a new version.
    Activated {
        /// Previous version, if any.
        from: Option<u64>,
        /// New version.
        to: u64,
    },
}

/// Why [`Authorizer::sync`] kept the old policy.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store's active version does not compile.
    #[error("policy version {version} cannot be used, keeping the previous one: {error}")]
    Policy {
        /// The version.
        version: u64,
        /// Why.
        error: PolicyError,
    },
}

impl Authorizer {
    /// An authorizer with no policy: denies everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// An authorizer with `policy` active.
    pub fn with_policy(policy: CompiledPolicy) -> Self {
        let a = Self::new();
        a.install(Arc::new(policy));
        a
    }

    /// Decides one request against the active policy.
    pub fn decide(&self, req: &AccessRequest<'_>) -> DecisionRecord {
        match &*self.current.load() {
            Some(p) => p.decide(req),
            None => DecisionRecord::no_policy(),
        }
    }

    /// Decides and explains.
    pub fn explain(&self, req: &AccessRequest<'_>) -> Explanation {
        match &*self.current.load() {
            Some(p) => p.explain(req),
            None => Explanation {
                record: DecisionRecord::no_policy(),
                roles: vec![req.subject.to_string()],
                considered: Vec::new(),
            },
        }
    }

    /// Swaps in a compiled policy (atomic; in-flight decisions keep theirs).
    pub fn install(&self, policy: Arc<CompiledPolicy>) {
        self.current.store(Some(policy));
    }

    /// The active compiled policy.
    pub fn current(&self) -> Option<Arc<CompiledPolicy>> {
        self.current.load_full()
    }

    /// The active version, `None` while denying everything.
    pub fn version(&self) -> Option<u64> {
        self.current.load().as_ref().map(|p| p.version())
    }

    /// Loads the store's active version if it differs from ours, compiles
    /// it and swaps it in. On any error the current policy stays.
    pub fn sync(&self, store: &dyn PolicyStore) -> Result<SyncOutcome, SyncError> {
        let have = self.version();
        let Some(want) = store.active_version()? else {
            return Ok(SyncOutcome::Unchanged(have));
        };
        if have == Some(want) {
            return Ok(SyncOutcome::Unchanged(have));
        }
        let v = store.load(want)?;
        let compiled =
            CompiledPolicy::compile(&v.set, want).map_err(|error| SyncError::Policy {
                version: want,
                error,
            })?;
        self.install(Arc::new(compiled));
        Ok(SyncOutcome::Activated {
            from: have,
            to: want,
        })
    }
}

/// What a watcher did, as data for the gateway's log and audit.
#[derive(Debug)]
pub enum WatchEvent {
    /// A new version is active in this process.
    Activated {
        /// Previous version.
        from: Option<u64>,
        /// New version.
        to: u64,
    },
    /// Sync or waiting failed; the previous policy stays active.
    Failed(SyncError),
}

/// Stops the watcher thread when dropped (within about 200 ms).
#[derive(Debug)]
pub struct WatchHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WatchHandle {
    /// Stops the watcher and waits for its thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Keeps `authz` on the store's active version: syncs once at start, then
/// whenever the store signals a change (PostgreSQL `NOTIFY`; files: a
/// 100 ms poll) and at least every `poll` as a backstop. Runs on its own
/// thread; `on_event` gets every activation and failure.
pub fn watch(
    store: Arc<dyn PolicyStore>,
    authz: Arc<Authorizer>,
    poll: Duration,
    mut on_event: impl FnMut(WatchEvent) + Send + 'static,
) -> Result<WatchHandle, StoreError> {
    let mut waiter = store.subscribe()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let resub = Arc::clone(&store);
    let sync = move |on_event: &mut dyn FnMut(WatchEvent)| match authz.sync(&*store) {
        Ok(SyncOutcome::Activated { from, to }) => on_event(WatchEvent::Activated { from, to }),
        Ok(SyncOutcome::Unchanged(_)) => {}
        Err(e) => on_event(WatchEvent::Failed(e)),
    };
    sync(&mut on_event);
    // Wait in short slices so dropping the handle stops the thread quickly;
    // sync when signalled, and every `poll` regardless.
    let slice = poll.min(Duration::from_millis(200));
    let thread = std::thread::Builder::new()
        .name("policy-watch".into())
        .spawn(move || {
            let mut last_sync = Instant::now();
            while !stop2.load(Ordering::SeqCst) {
                let signalled = match waiter.wait(slice) {
                    Ok(s) => s,
                    Err(e) => {
                        // Lost the listening connection: report, back off,
                        // and listen anew (polling goes on meanwhile).
                        on_event(WatchEvent::Failed(SyncError::Store(e)));
                        std::thread::sleep(slice);
                        match resub.subscribe() {
                            Ok(w) => waiter = w,
                            Err(e) => on_event(WatchEvent::Failed(SyncError::Store(e))),
                        }
                        false
                    }
                };
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if signalled || last_sync.elapsed() >= poll {
                    last_sync = Instant::now();
                    sync(&mut on_event);
                }
            }
        })
        .map_err(|e| StoreError::Io {
            path: "policy-watch thread".into(),
            source: e,
        })?;
    Ok(WatchHandle {
        stop,
        thread: Some(thread),
    })
}
