//! Durable appends/s of the audit log stored in PostgreSQL.
//!
//! ```text
//! cargo run --release -p stadttor-audit --features postgres --example audit-bench-pg -- \
//!     [--url 'host=127.0.0.1 user=postgres dbname=test'] [--secs 10] [--writers 2] \
//!     [--threads 2] [--period-ms 1000]
//! ```
//!
//! `--writers` independent [`PgLog`]s (each its own connection and writer
//! thread, as separate gateways would be) append to one log in a fresh
//! schema, `--threads` appender threads each. Every thread appends batches
//! of 256 events and waits for the last one, so the figure counts only
//! events covered by a signed checkpoint that was swapped in. The schema
//! is dropped at the end.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stadttor_audit::event::{Event, Outcome, Pseudonymiser};
use stadttor_audit::pg::{PgConfig, PgLog};
use stadttor_audit::Error;
use stadttor_hsm::file::FileKey;
use stadttor_hsm::SigningKey;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(name: &str, default: u64) -> u64 {
    arg(name).map_or(default, |v| v.parse().expect("numeric argument"))
}

fn main() {
    let url =
        arg("--url").unwrap_or_else(|| "host=127.0.0.1 port=5432 user=postgres dbname=test".into());
    let secs = num("--secs", 10);
    let writers = num("--writers", 2);
    let threads = num("--threads", 2);
    let period = num("--period-ms", 1000);
    let schema = format!("stadttor_bench_{}", std::process::id());

    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let key: Arc<dyn SigningKey> =
        Arc::new(FileKey::from_pkcs8("bench".into(), pkcs8.as_ref()).unwrap());
    let logs: Vec<Arc<PgLog>> = (0..writers)
        .map(|_| {
            let mut cfg = PgConfig::new(&url, &schema, "bench.stadttor.example/audit");
            cfg.period = Duration::from_millis(period);
            let (log, _) = PgLog::open(cfg, key.clone()).unwrap();
            log.flush(Duration::from_secs(10)).unwrap();
            Arc::new(log)
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let durable = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for (w, log) in logs.iter().enumerate() {
        for t in 0..threads {
            let (log, stop, durable) = (log.clone(), stop.clone(), durable.clone());
            handles.push(std::thread::spawn(move || {
                let p = Pseudonymiser::new(&[9; 32]).unwrap();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut last = None;
                    let mut count = 0;
                    for _ in 0..256 {
                        let ev = Event::new("request", Outcome::Success)
                            .subject(p.pseudonym("user", &format!("user-{}", n % 5000)))
                            .tenant("musterstadt")
                            .target("route:buergerportal/antrag")
                            .request_id(format!("{w:02}-{t:02}-{n:012}"))
                            .attr("status", 200)
                            .attr("method", "POST")
                            .attr("bytes", 18_432);
                        n += 1;
                        match log.append(&ev) {
                            Ok(ticket) => {
                                last = Some(ticket);
                                count += 1;
                            }
                            Err(Error::QueueFull { .. }) => {
                                std::thread::sleep(Duration::from_millis(1))
                            }
                            Err(e) => panic!("append: {e}"),
                        }
                    }
                    if let Some(t) = last {
                        log.wait(&t, Duration::from_secs(60)).unwrap();
                        durable.fetch_add(count, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let total = durable.load(Ordering::Relaxed);
    let mut signed = 0;
    let mut lost = 0;
    for log in &logs {
        let s = log.status();
        signed += s.checkpoints_signed;
        lost += s.cas_conflicts;
        log.close().unwrap();
    }
    println!(
        "writers={writers} threads/writer={threads} period={period}ms secs={secs}: \
         {total} events durable (covered by a signed, swapped-in checkpoint) in {elapsed:.2}s = {:.0}/s; \
         {signed} checkpoints signed, {lost} swaps lost",
        total as f64 / elapsed
    );
    if let Ok(mut c) = postgres::Client::connect(&url, postgres::NoTls) {
        let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
    }
}
