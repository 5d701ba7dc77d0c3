//! Request-path cost of auditing: what the gateway spends per audited
//! request before forwarding it (`gateway/src/audit_event.rs`:
//! `access_event` + `AuditLog::record` → `Log::append`).
//!
//!     cargo bench -p stadttor-audit --bench append
//!
//! - `event/build`: the `http.access` event as the gateway builds it
//!   (time stamp, route, request id, method, listener);
//! - `event/encode`: `Event::to_entry` (compact JSON);
//! - `pseudonym`: one HMAC-SHA256 pseudonym (requests with an identity);
//! - `append/file`: build + encode + queue on an open file log (the writer
//!   thread commits and signs in the background, period 1 s);
//! - `append/file-2threads`: the same from two threads at once, the queue
//!   lock contended as with a multi-threaded runtime.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use stadttor_audit::event::{Event, Outcome, Pseudonymiser};
use stadttor_audit::{Log, LogConfig};
use stadttor_hsm::file::FileKey;
use stadttor_hsm::SigningKey;

fn access_event(n: u64) -> Event {
    Event::new("http.access", Outcome::Success)
        .target("app")
        .request_id(format!("01JDXK3V8Q{n:016}"))
        .attr("method", "GET")
        .attr("listener", "public")
}

fn key() -> Arc<dyn SigningKey> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    Arc::new(FileKey::from_pkcs8("bench".into(), pkcs8.as_ref()).unwrap())
}

/// Appends `iters` events from each of `threads` threads and returns the
/// time per event. Only the appends are timed: between chunks the queue is
/// flushed, since criterion appends faster than a writer commits.
fn timed_appends(log: &Arc<Log>, iters: u64, threads: u64) -> Duration {
    const CHUNK: u64 = 50_000;
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = CHUNK.min(iters - done);
        let start = Instant::now();
        let others: Vec<_> = (1..threads)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..n {
                        log.append(&access_event(i)).unwrap();
                    }
                })
            })
            .collect();
        for i in 0..n {
            log.append(&access_event(i)).unwrap();
        }
        for o in others {
            o.join().unwrap();
        }
        total += start.elapsed() / threads as u32;
        done += n;
        log.flush(Duration::from_secs(60)).unwrap();
    }
    total
}

fn bench(c: &mut Criterion) {
    let mut n = 0u64;
    c.bench_function("event/build", |b| {
        b.iter(|| {
            n += 1;
            access_event(n)
        })
    });
    let ev = access_event(1);
    c.bench_function("event/encode", |b| b.iter(|| ev.to_entry().unwrap()));
    let p = Pseudonymiser::new(&[7; 32]).unwrap();
    c.bench_function("pseudonym", |b| {
        b.iter(|| p.pseudonym("https://idp.example", "user-123456"))
    });

    let dir = std::env::temp_dir().join(format!("stadttor-append-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (log, _) = Log::open(LogConfig::new(&dir, "bench/append"), key()).unwrap();
    let log = Arc::new(log);
    c.bench_function("append/file", |b| {
        b.iter_custom(|iters| timed_appends(&log, iters, 1))
    });
    c.bench_function("append/file-2threads", |b| {
        b.iter_custom(|iters| timed_appends(&log, iters, 2))
    });
    log.flush(Duration::from_secs(60)).unwrap();
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
