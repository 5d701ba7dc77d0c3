//! Threat: the gateway is killed (SIGKILL, OOM killer, power cut of the
//! process) in the middle of heavy appends. Afterwards the log must verify,
//! recovery must report what it did, and every event that was acknowledged
//! (its `wait` returned `Ok`) must be in the signed log.
//!
//! The writer is this very test binary, re-executed with
//! `STADTTOR_AUDIT_CRASH_DIR` set so that only `crash_writer_child` runs; it
//! prints `ACK <from> <to>` for each range of acknowledged sequence numbers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use stadttor_audit::event::{Event, Outcome};
use stadttor_audit::verify::{self, LogReader};
use stadttor_audit::Log;

const ENV_DIR: &str = "STADTTOR_AUDIT_CRASH_DIR";
const ENV_KEY: &str = "STADTTOR_AUDIT_CRASH_KEY";
const ENV_START: &str = "STADTTOR_AUDIT_CRASH_START";
const THREADS: u64 = 4;
const BATCH: u64 = 200;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The writer process: appends as fast as it can from several threads and
/// reports acknowledged ranges. Does nothing in a normal test run.
#[test]
fn crash_writer_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let key = key_from(&unhex(&std::env::var(ENV_KEY).unwrap()));
    let start: u64 = std::env::var(ENV_START).unwrap().parse().unwrap();
    let mut cfg = config(std::path::Path::new(&dir));
    cfg.period = Duration::from_millis(50);
    let (log, report) = Log::open(cfg, key).unwrap();
    println!("RECOVERED {report}");
    let log = Arc::new(log);
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (log, out) = (log.clone(), out.clone());
            std::thread::spawn(move || {
                // Thread t owns sequence numbers start + t, + THREADS, ...
                for round in 0u64.. {
                    let first = start + t + round * BATCH * THREADS;
                    let mut last = None;
                    for k in 0..BATCH {
                        let seq = first + k * THREADS;
                        let ev = Event::new("request", Outcome::Success)
                            .target("route:crash")
                            .attr("seq", seq)
                            .attr("pad", "x".repeat(200));
                        last = Some(log.append(&ev).unwrap());
                    }
                    log.wait(last.unwrap(), Duration::from_secs(30)).unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {t} {first} {}", first + (BATCH - 1) * THREADS).unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn seqs_in(dir: &std::path::Path, vk: &stadttor_audit::VerifierKey) -> BTreeSet<u64> {
    let reader = LogReader::open(dir, vk).unwrap();
    let mut seqs = BTreeSet::new();
    reader
        .for_each_entry(|_, e| {
            let ev = Event::from_entry(e).unwrap();
            if let Some(s) = ev.attrs.get("seq").and_then(|v| v.as_u64()) {
                assert!(seqs.insert(s), "sequence number {s} recorded twice");
            }
            true
        })
        .unwrap();
    seqs
}

#[test]
fn sigkill_during_heavy_appends_loses_nothing_acknowledged() {
    let dir = TempDir::new("crash");
    let pkcs8 = ed25519_pkcs8();
    let key = key_from(&pkcs8);
    let vk = verifier(&key);
    let mut rng = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut next_rand = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let mut start = 0u64;
    let rounds = 6;
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, dir.path())
            .env(ENV_KEY, hex(&pkcs8))
            .env(ENV_START, start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(stdout).lines() {
                    let Ok(l) = l else { break };
                    lines.lock().unwrap().push(l);
                }
            })
        };
        // Wait until the child has recovered and is appending, then kill it
        // at a random moment.
        let t0 = Instant::now();
        while !lines.lock().unwrap().iter().any(|l| l.contains("ACK ")) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "child made no progress"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50 + next_rand(1200)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();

        let lines = lines.lock().unwrap();
        let mut round_acks = 0;
        for l in lines.iter() {
            // libtest may print "test crash_writer_child ... " before the
            // first line of output, so look for the markers anywhere.
            if let Some(rest) = l.find("ACK ").map(|i| &l[i + 4..]) {
                let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                let mut s = v[1];
                while s <= v[2] {
                    acked.insert(s);
                    s += THREADS;
                }
                round_acks += 1;
            } else if let Some(r) = l.find("RECOVERED ").map(|i| &l[i + 10..]) {
                println!("round {round}: child recovery: {r}");
            }
        }
        assert!(round_acks > 0);

        // Before any repair: the served files verify and hold every
        // acknowledged event.
        let report = verify::verify_dir(dir.path(), &vk)
            .unwrap_or_else(|e| panic!("round {round}: log does not verify after SIGKILL: {e}"));
        let present = seqs_in(dir.path(), &vk);
        let missing: Vec<_> = acked.difference(&present).take(5).collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged but missing: {missing:?}"
        );
        println!(
            "round {round}: killed; {} acknowledged so far, signed checkpoint holds {}",
            acked.len(),
            report.entries
        );
        start += 10_000_000;
    }
    // Final recovery by a normal open; everything verifies afterwards.
    let (log, report) = Log::open(config(dir.path()), key).unwrap();
    println!("final recovery: {report}");
    log.close().unwrap();
    let report = verify::verify_dir(dir.path(), &vk).unwrap();
    let present = seqs_in(dir.path(), &vk);
    assert!(acked.is_subset(&present));
    println!("final: {report}");
}
