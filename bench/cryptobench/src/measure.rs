//! Thread CPU time and the bounded measuring loop every figure goes through.
//!
//! Every figure is CPU time of this one thread (`CLOCK_THREAD_CPUTIME_ID`),
//! not wall time: on a shared machine the thread may be preempted, and
//! the time it waits does not count. The wall time is kept beside it so a
//! report can show how much of the run the thread actually got.

use std::time::{Duration, Instant};

/// CPU time this thread has used so far.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which is a
    // valid, exclusively borrowed local; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// What one bounded run measured.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sample {
    /// Operations (signatures, records, handshakes) completed.
    pub ops: u64,
    /// Bytes processed (AEAD), 0 otherwise.
    pub bytes: u64,
    /// CPU time of the whole run.
    pub cpu: Duration,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Handshakes only: CPU time spent in the server's calls.
    pub server_cpu: Duration,
    /// Handshakes only: CPU time spent in the client's calls.
    pub client_cpu: Duration,
    /// Handshakes only: bytes client → server, per handshake.
    pub c2s_bytes: u64,
    /// Handshakes only: bytes server → client, per handshake.
    pub s2c_bytes: u64,
}

impl Sample {
    /// CPU µs per operation.
    pub fn us_per_op(&self) -> f64 {
        per_op(self.cpu, self.ops)
    }

    /// MB/s (10^6 bytes per CPU second).
    pub fn mb_per_s(&self) -> f64 {
        let s = self.cpu.as_secs_f64();
        if s == 0.0 {
            0.0
        } else {
            self.bytes as f64 / s / 1e6
        }
    }

    /// The share of the wall time the thread was on a CPU.
    pub fn on_cpu(&self) -> f64 {
        let w = self.wall.as_secs_f64();
        if w == 0.0 {
            0.0
        } else {
            self.cpu.as_secs_f64() / w
        }
    }
}

/// µs of `d` per one of `n` operations.
pub fn per_op(d: Duration, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        d.as_secs_f64() * 1e6 / n as f64
    }
}

/// Calls `op` in batches of `batch` until `seconds` of CPU time have passed
/// (or four times that in wall time, so a starved thread still stops).
/// `op` returns the bytes it processed. Runs `warmup` seconds first,
/// uncounted.
pub fn run_for<F>(seconds: f64, warmup: f64, batch: u64, mut op: F) -> Result<Sample, String>
where
    F: FnMut() -> Result<u64, String>,
{
    let warm_end = Instant::now() + Duration::from_secs_f64(warmup);
    while Instant::now() < warm_end {
        op()?;
    }
    let budget = Duration::from_secs_f64(seconds);
    let wall_cap = budget * 4;
    let (c0, w0) = (thread_cpu(), Instant::now());
    let mut s = Sample::default();
    loop {
        for _ in 0..batch {
            s.bytes += op()?;
        }
        s.ops += batch;
        let cpu = thread_cpu().saturating_sub(c0);
        if cpu >= budget || w0.elapsed() >= wall_cap {
            s.cpu = cpu;
            s.wall = w0.elapsed();
            return Ok(s);
        }
    }
}

/// The CPU cost of one `thread_cpu()` call, in ns (the handshake figures
/// read the clock a dozen times per handshake).
pub fn clock_cost_ns() -> f64 {
    let n = 20_000u32;
    let c0 = thread_cpu();
    for _ in 0..n {
        std::hint::black_box(thread_cpu());
    }
    thread_cpu().saturating_sub(c0).as_secs_f64() * 1e9 / f64::from(n)
}
