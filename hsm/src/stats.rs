//! Per-key counters (signatures, failures, queue depth, latency) without a
//! metrics crate: plain atomics the gateway reads and exports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Live counters of one key; cheap to update from any thread.
#[derive(Debug, Default)]
pub struct KeyStats {
    signatures: AtomicU64,
    failures: AtomicU64,
    rejected: AtomicU64,
    queued: AtomicU64,
    latency_micros: AtomicU64,
}

/// A point-in-time copy of [`KeyStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyStatsSnapshot {
    /// Signatures produced.
    pub signatures: u64,
    /// Sign requests that failed (device error or deadline), rejections included.
    pub failures: u64,
    /// Of those failures, requests refused at once because the queue was full.
    pub rejected: u64,
    /// Requests of this key waiting for or being served by the device now.
    pub queue_depth: u64,
    /// Summed wall-clock latency of all finished sign requests (including
    /// failures), queueing included. Divide by signatures + failures for a mean.
    pub total_latency: Duration,
}

impl KeyStats {
    /// Copies the counters.
    pub fn snapshot(&self) -> KeyStatsSnapshot {
        KeyStatsSnapshot {
            signatures: self.signatures.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            queue_depth: self.queued.load(Ordering::Relaxed),
            total_latency: Duration::from_micros(self.latency_micros.load(Ordering::Relaxed)),
        }
    }

    /// Runs one sign request and counts it: `queue_depth` is raised while it runs.
    pub(crate) fn track<T, E>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
        rejected: impl FnOnce(&E) -> bool,
    ) -> Result<T, E> {
        let start = Instant::now();
        self.queued.fetch_add(1, Ordering::Relaxed);
        let result = f();
        self.queued.fetch_sub(1, Ordering::Relaxed);
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.latency_micros.fetch_add(micros, Ordering::Relaxed);
        match &result {
            Ok(_) => {
                self.signatures.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if rejected(e) {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_success_failure_and_rejection() {
        let stats = KeyStats::default();
        let _ = stats.track(|| Ok::<_, bool>(()), |_| false);
        let _ = stats.track(|| Err::<(), _>(true), |busy| *busy);
        let _ = stats.track(|| Err::<(), _>(false), |busy| *busy);
        let s = stats.snapshot();
        assert_eq!(
            (s.signatures, s.failures, s.rejected, s.queue_depth),
            (1, 2, 1, 0)
        );
    }
}
