//! The TPM owner thread: the only code that touches the tss-esapi `Context`.
//!
//! A `Context` is not `Sync` and a TPM serialises commands anyway, so each
//! [`Device`] runs one thread that owns the context and executes jobs from a
//! bounded queue (`sync_channel`). Callers submit with `try_send`: a full
//! queue fails at once with [`Error::Busy`] instead of piling up. Every job
//! carries a deadline; the caller stops waiting at the deadline
//! ([`Error::Timeout`]) and the owner skips jobs whose deadline has passed.
//!
//! Keys stay loaded in the TPM for the life of their [`super::TpmKey`]
//! (no load/sign/flush per operation). Note that a TPM has few transient
//! object slots (swtpm: 3); use the kernel resource manager
//! (`device:/dev/tpmrm0`) or persistent handles when many keys are needed.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use tss_esapi::handles::{KeyHandle, ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::Public;
use tss_esapi::{Context, TctiNameConf};

use crate::Error;

/// A job for the owner thread.
type Job = Box<dyn FnOnce(&mut Worker) + Send>;

struct Envelope {
    deadline: Instant,
    job: Job,
}

/// Handle to one TPM and its owner thread; cheap to share behind an `Arc`.
#[derive(Debug)]
pub(crate) struct Device {
    tcti: String,
    tx: SyncSender<Envelope>,
    capacity: usize,
    timeout: Duration,
}

impl Device {
    /// Opens the TPM through `tcti` on a new owner thread.
    pub(crate) fn open(tcti: &str, capacity: usize, timeout: Duration) -> Result<Self, Error> {
        let unavailable = |source: super::BoxError| Error::TpmUnavailable {
            tcti: tcti.to_owned(),
            source,
        };
        let conf = TctiNameConf::from_str(tcti).map_err(|e| unavailable(e.into()))?;
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::sync_channel::<Envelope>(capacity);
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), tss_esapi::Error>>(1);
        thread::Builder::new()
            .name("stadttor-tpm".into())
            .spawn(move || {
                let ctx = match Context::new(conf) {
                    Ok(ctx) => ctx,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let mut worker = Worker::new(ctx);
                // Ends when the last `Device` (sender) is dropped; dropping the
                // worker then flushes what it loaded.
                while let Ok(envelope) = rx.recv() {
                    if Instant::now() < envelope.deadline {
                        (envelope.job)(&mut worker);
                    }
                }
            })
            .map_err(|e| unavailable(e.into()))?;
        match ready_rx.recv_timeout(timeout) {
            Ok(Ok(())) => Ok(Self {
                tcti: tcti.to_owned(),
                tx,
                capacity,
                timeout,
            }),
            Ok(Err(e)) => Err(unavailable(e.into())),
            Err(RecvTimeoutError::Timeout) => {
                Err(unavailable(format!("no answer within {timeout:?}").into()))
            }
            Err(RecvTimeoutError::Disconnected) => {
                Err(unavailable("the TPM thread stopped while opening".into()))
            }
        }
    }

    /// The deadline of one ordinary request.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The TCTI this device was opened with.
    pub(crate) fn tcti(&self) -> &str {
        &self.tcti
    }

    /// Runs `op` on the owner thread and waits for it, at most until the deadline.
    pub(crate) fn call<T, F>(&self, reference: &str, op: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Worker) -> Result<T, Error> + Send + 'static,
    {
        self.call_within(reference, self.timeout, op)
    }

    /// [`Device::call`] with its own deadline, for the rare commands that
    /// take far longer than a signature (RSA key generation: seconds on
    /// swtpm, up to a minute on hardware TPMs).
    pub(crate) fn call_within<T, F>(
        &self,
        reference: &str,
        timeout: Duration,
        op: F,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Worker) -> Result<T, Error> + Send + 'static,
    {
        let deadline = Instant::now() + timeout;
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |worker| {
            // The caller may have given up; then nobody listens.
            let _ = reply_tx.send(op(worker));
        });
        match self.tx.try_send(Envelope { deadline, job }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Error::Busy {
                    reference: reference.to_owned(),
                    backend: "tpm",
                    capacity: self.capacity,
                })
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Error::device(
                    reference,
                    "submit to TPM",
                    format!("the TPM thread for `{}` has stopped", self.tcti),
                ))
            }
        }
        match reply_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(result) => result,
            // Dropped unanswered before the deadline: the owner thread died.
            Err(RecvTimeoutError::Disconnected) if Instant::now() < deadline => Err(Error::device(
                reference,
                "TPM request",
                format!("the TPM thread for `{}` stopped", self.tcti),
            )),
            // Otherwise the owner skipped it as expired, or is still busy.
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                Err(Error::Timeout {
                    reference: reference.to_owned(),
                    backend: "tpm",
                    timeout,
                })
            }
        }
    }

    /// Queues `op` without waiting for it (best effort; used on drop).
    pub(crate) fn post<F>(&self, op: F)
    where
        F: FnOnce(&mut Worker) + Send + 'static,
    {
        let _ = self.tx.try_send(Envelope {
            deadline: Instant::now() + self.timeout,
            job: Box::new(op),
        });
    }
}

/// An object the worker holds open.
#[derive(Debug, Clone, Copy)]
enum Held {
    /// A persistent object, opened with `tr_from_tpm_public` (closed, not flushed).
    Persistent(ObjectHandle),
    /// A transient object loaded by us (flushed when released).
    Transient(KeyHandle),
}

impl Held {
    fn key(self) -> KeyHandle {
        match self {
            Self::Persistent(o) => KeyHandle::from(o),
            Self::Transient(k) => k,
        }
    }
}

/// State of the owner thread: the context and the objects it holds.
pub(crate) struct Worker {
    ctx: Context,
    objects: HashMap<u64, Held>,
    persistent: HashMap<u32, ObjectHandle>,
    next_id: u64,
}

/// Identifies an object held by the worker; valid only on its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ObjectId(u64);

impl Worker {
    fn new(ctx: Context) -> Self {
        Self {
            ctx,
            objects: HashMap::new(),
            persistent: HashMap::new(),
            next_id: 1,
        }
    }

    /// The raw context, for commands without object bookkeeping.
    pub(crate) fn ctx(&mut self) -> &mut Context {
        &mut self.ctx
    }

    /// Opens a persistent handle (cached), without holding it as a key.
    pub(crate) fn persistent(&mut self, handle: u32) -> Result<ObjectHandle, tss_esapi::Error> {
        if let Some(h) = self.persistent.get(&handle) {
            return Ok(*h);
        }
        let tpm_handle = TpmHandle::Persistent(PersistentTpmHandle::new(handle)?);
        let object = self
            .ctx
            .execute_without_session(|c| c.tr_from_tpm_public(tpm_handle))?;
        self.persistent.insert(handle, object);
        Ok(object)
    }

    /// Forgets a cached persistent handle (after it was evicted).
    pub(crate) fn forget_persistent(&mut self, handle: u32) {
        if let Some(mut object) = self.persistent.remove(&handle) {
            self.objects.retain(|_, held| match held {
                Held::Persistent(o) => *o != object,
                Held::Transient(_) => true,
            });
            let _ = self.ctx.tr_close(&mut object);
        }
    }

    /// Holds a persistent key and returns its id and public area.
    pub(crate) fn hold_persistent(
        &mut self,
        handle: u32,
    ) -> Result<(ObjectId, Public), tss_esapi::Error> {
        let object = self.persistent(handle)?;
        let public = self.read_public(KeyHandle::from(object))?;
        Ok((self.insert(Held::Persistent(object)), public))
    }

    /// Loads a key blob under a persistent parent and holds it.
    pub(crate) fn hold_loaded(
        &mut self,
        parent: u32,
        private: tss_esapi::structures::Private,
        public: Public,
    ) -> Result<(ObjectId, Public), tss_esapi::Error> {
        let parent = KeyHandle::from(self.persistent(parent)?);
        let key = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.load(parent, private, public)
            })?;
        let public = match self.read_public(key) {
            Ok(p) => p,
            Err(e) => {
                let _ = self.ctx.flush_context(key.into());
                return Err(e);
            }
        };
        Ok((self.insert(Held::Transient(key)), public))
    }

    /// The key handle of a held object.
    pub(crate) fn key(&self, id: ObjectId) -> Option<KeyHandle> {
        self.objects.get(&id.0).map(|h| h.key())
    }

    /// Releases a held object: flushes transient keys.
    pub(crate) fn release(&mut self, id: ObjectId) {
        if let Some(Held::Transient(key)) = self.objects.remove(&id.0) {
            let _ = self.ctx.flush_context(key.into());
        }
    }

    /// Reads the public area of a loaded object.
    pub(crate) fn read_public(&mut self, key: KeyHandle) -> Result<Public, tss_esapi::Error> {
        self.ctx
            .execute_without_session(|c| c.read_public(key))
            .map(|(public, _, _)| public)
    }

    fn insert(&mut self, held: Held) -> ObjectId {
        let id = self.next_id;
        self.next_id += 1;
        self.objects.insert(id, held);
        ObjectId(id)
    }
}
