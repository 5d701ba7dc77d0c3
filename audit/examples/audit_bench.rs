//! Throughput and time-to-checkpoint of the audit log on this machine.
//!
//! ```text
//! cargo run --release -p stadttor-audit --example audit-bench -- \
//!     [--secs 10] [--threads 2] [--rate 0] [--period-ms 1000] [--dir /var/tmp/x]
//! ```
//!
//! Appender threads append realistic events (about 330 bytes of JSON,
//! pseudonymised subject) as fast as they can (`--rate 0`) or at a fixed
//! total rate. Every 16th ticket is sampled; a monitor thread waits for each
//! sample in order and records how long it took from `append` to being
//! covered by a signed, fsynced checkpoint. "Durable events/s" counts only
//! events covered by a signed checkpoint at the end of the run.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stadttor_audit::event::{Event, Outcome, Pseudonymiser};
use stadttor_audit::{Error, Log, LogConfig, Ticket};
use stadttor_hsm::file::FileKey;
use stadttor_hsm::SigningKey;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("numeric argument"))
        .unwrap_or(default)
}

fn main() {
    let secs = arg("--secs", 10);
    let threads = arg("--threads", 2);
    let rate = arg("--rate", 0);
    let period = arg("--period-ms", 1000);
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| format!("/var/tmp/stadttor-audit-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key: Arc<dyn SigningKey> =
        Arc::new(FileKey::from_pkcs8("bench".into(), pkcs8.as_ref()).unwrap());
    let mut cfg = LogConfig::new(&dir, "bench.stadttor.example/audit");
    cfg.period = Duration::from_millis(period);
    let (log, _) = Log::open(cfg, key).unwrap();
    let log = Arc::new(log);
    log.flush(Duration::from_secs(10)).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let rejected = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel::<(Ticket, Instant)>();
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..threads {
        let (log, stop, rejected, tx) = (log.clone(), stop.clone(), rejected.clone(), tx.clone());
        handles.push(std::thread::spawn(move || {
            let p = Pseudonymiser::new(&[9; 32]).unwrap();
            let per_thread = if rate == 0 { 0 } else { rate / threads };
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if per_thread > 0 {
                    let due = start + Duration::from_secs_f64(n as f64 / per_thread as f64);
                    if let Some(d) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
                let ev = Event::new("request", Outcome::Success)
                    .subject(p.pseudonym("user", &format!("user-{}", n % 5000)))
                    .tenant("musterstadt")
                    .target("route:buergerportal/antrag")
                    .request_id(format!("{t:02}-{n:012}"))
                    .attr("status", 200)
                    .attr("method", "POST")
                    .attr("bytes", 18_432);
                let now = Instant::now();
                match log.append(&ev) {
                    Ok(ticket) => {
                        if n.is_multiple_of(16) {
                            let _ = tx.send((ticket, now));
                        }
                        n += 1;
                    }
                    Err(Error::QueueFull { .. }) => {
                        rejected.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("append: {e}"),
                }
            }
        }));
    }
    drop(tx);
    let monitor = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut lat = Vec::new();
            for (ticket, at) in rx {
                if log.wait(ticket, Duration::from_secs(60)).is_ok() {
                    lat.push(at.elapsed());
                }
            }
            lat
        })
    };
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let appended = log.status().appended;
    let run = start.elapsed();
    let committed = log.flush(Duration::from_secs(60)).unwrap();
    let total = start.elapsed();
    let mut lat = monitor.join().unwrap();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1000.0;
    let status = log.status();
    log.close().unwrap();
    let wal = std::fs::metadata(format!("{dir}/wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "threads={threads} period={period}ms rate={} secs={secs}",
        if rate == 0 {
            "max".to_owned()
        } else {
            rate.to_string()
        }
    );
    println!(
        "appended {appended} in {:.2}s = {:.0}/s; durable (signed) {committed} by {:.2}s = {:.0}/s; rejected (queue full) {}",
        run.as_secs_f64(),
        appended as f64 / run.as_secs_f64(),
        total.as_secs_f64(),
        committed as f64 / total.as_secs_f64(),
        rejected.load(Ordering::Relaxed)
    );
    println!(
        "time-to-checkpoint over {} samples: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {} checkpoints; {:.0} bytes/event in the WAL",
        lat.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        status.checkpoints_signed,
        wal as f64 / committed.max(1) as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
