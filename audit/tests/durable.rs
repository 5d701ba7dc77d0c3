//! Threat: an attacker (or the OOM killer) kills the gateway right after it
//! answered requests whose access events are only queued: the evidence of
//! served requests vanishes. `append_durable` must not resolve before the
//! event is in the WAL, so every resolved event survives SIGKILL, even
//! when no checkpoint was signed since (the period here is one hour).
//!
//! The writer is this test binary re-executed with `STADTTOR_AUDIT_DURABLE_DIR`
//! set; it prints `DURABLE <seq>` after each resolved append.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::pin::pin;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::*;
use stadttor_audit::event::{Event, Outcome};
use stadttor_audit::verify::{self, LogReader};
use stadttor_audit::Log;

const ENV_DIR: &str = "STADTTOR_AUDIT_DURABLE_DIR";
const ENV_KEY: &str = "STADTTOR_AUDIT_DURABLE_KEY";
const THREADS: u64 = 4;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives one future on this thread (the writer thread wakes it).
fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn open(dir: &std::path::Path, key: Arc<dyn stadttor_hsm::SigningKey>) -> Log {
    let mut cfg = config(dir);
    cfg.period = Duration::from_secs(3600);
    Log::open(cfg, key).unwrap().0
}

/// The writer process. Does nothing in a normal test run.
#[test]
fn durable_writer_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let key = key_from(&unhex(&std::env::var(ENV_KEY).unwrap()));
    let log = Arc::new(open(std::path::Path::new(&dir), key));
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (log, out) = (log.clone(), out.clone());
            std::thread::spawn(move || {
                for k in 0u64.. {
                    let seq = t + k * THREADS;
                    let ev = Event::new("http.access", Outcome::Success)
                        .target("route:durable")
                        .attr("seq", seq);
                    let durable = log.append_durable(ev.to_entry().unwrap()).unwrap();
                    block_on(durable).unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "DURABLE {seq}").unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn sigkill_loses_no_event_reported_durable() {
    let dir = TempDir::new("durable");
    let pkcs8 = ed25519_pkcs8();
    let key = key_from(&pkcs8);
    let vk = verifier(&key);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durable_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DIR, dir.path())
        .env(ENV_KEY, hex(&pkcs8))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let durable = Arc::new(Mutex::new(BTreeSet::new()));
    let reader = {
        let durable = durable.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if let Some(seq) = l.find("DURABLE ").map(|i| &l[i + 8..]) {
                    durable.lock().unwrap().insert(seq.parse::<u64>().unwrap());
                }
            }
        })
    };
    let t0 = Instant::now();
    while durable.lock().unwrap().len() < 2000 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "writer made no progress: {} durable events",
            durable.lock().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL, between two checkpoints
    child.wait().unwrap();
    reader.join().unwrap();
    let durable = durable.lock().unwrap().clone();

    // Recovery replays the WAL and signs what it holds.
    let log = open(dir.path(), key);
    log.flush(Duration::from_secs(10)).unwrap();
    log.close().unwrap();
    verify::verify_dir(dir.path(), &vk).unwrap();
    let reader = LogReader::open(dir.path(), &vk).unwrap();
    let mut present = BTreeSet::new();
    reader
        .for_each_entry(|_, e| {
            let ev = Event::from_entry(e).unwrap();
            if let Some(s) = ev.attrs.get("seq").and_then(|v| v.as_u64()) {
                present.insert(s);
            }
            true
        })
        .unwrap();
    let missing: Vec<_> = durable.difference(&present).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events reported durable are missing after SIGKILL, e.g. {missing:?}",
        durable.difference(&present).count(),
        durable.len()
    );
    println!(
        "{} events reported durable in {:?} before SIGKILL, all recovered ({} in the log)",
        durable.len(),
        t0.elapsed(),
        present.len()
    );
}

/// A durable append on a log whose storage failed resolves to an error,
/// never hangs and never reports success.
#[test]
fn durable_append_fails_closed_when_storage_fails() {
    let dir = TempDir::new("durable-fail");
    let key = key_from(&ed25519_pkcs8());
    let log = open(dir.path(), key);
    for i in 0..300 {
        block_on(log.append_durable(event(i).to_entry().unwrap()).unwrap()).unwrap();
    }
    log.flush(Duration::from_secs(10)).unwrap();
    let bad = dir.path().join("tile/entries/001.p");
    std::fs::remove_dir_all(&bad).unwrap();
    std::fs::write(&bad, b"in the way").unwrap();
    let mut failed = false;
    for i in 300..600 {
        match log.append_durable(event(i).to_entry().unwrap()) {
            Ok(d) => {
                if block_on(d).is_err() {
                    failed = true;
                    break;
                }
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "durable appends kept succeeding on a broken store");
    assert!(log.append_durable(event(601).to_entry().unwrap()).is_err());
}
