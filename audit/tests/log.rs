//! End-to-end behaviour of the writer, the store and the verifier.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use stadttor_audit::event::{Event, Outcome, Pseudonymiser};
use stadttor_audit::verify::{self, LogReader, Query};
use stadttor_audit::{Error, Log, LogConfig};
use stadttor_hsm::{Algorithm, SigningKey};

/// Appended events become verifiable only through signed checkpoints, and
/// proofs, export and search work on the result (Ed25519 and ECDSA keys).
#[test]
fn append_wait_verify_prove() {
    for pkcs8 in [ed25519_pkcs8(), p256_pkcs8()] {
        let dir = TempDir::new("e2e");
        let key = key_from(&pkcs8);
        let vk = verifier(&key);
        let (log, report) = Log::open(config(dir.path()), key.clone()).unwrap();
        assert_eq!(report.entries, 0);
        assert_eq!(log.verifier_key(), &vk);
        let tickets: Vec<_> = (0..600).map(|i| log.append(&event(i)).unwrap()).collect();
        for (i, t) in tickets.iter().enumerate() {
            assert_eq!(t.index, i as u64);
        }
        let last = log.wait(tickets[599], Duration::from_secs(10)).unwrap();
        assert!(last.tree_size >= 600);
        for i in 600..1000 {
            log.append(&event(i)).unwrap();
        }
        assert_eq!(log.flush(Duration::from_secs(10)).unwrap(), 1000);
        let status = log.status();
        assert_eq!(status.checkpoint_size, 1000);
        assert!(status.failure.is_none());
        log.close().unwrap();

        let report = verify::verify_dir(dir.path(), &vk).unwrap();
        assert_eq!(report.entries, 1000);
        assert!(report.history >= 2, "{report}");
        assert!(report.unreadable.is_empty());

        let reader = LogReader::open(dir.path(), &vk).unwrap();
        for i in [0u64, 1, 255, 256, 613, 999] {
            let p = reader.prove(i).unwrap();
            let json = serde_json::to_string(&p).unwrap();
            let back: verify::InclusionProof = serde_json::from_str(&json).unwrap();
            verify::check_inclusion(&back, &vk).unwrap();
            assert_eq!(
                Event::from_entry(p.entry.as_bytes()).unwrap(),
                event(i).clone_time(&p.entry)
            );
            let mut forged = back.clone();
            forged.entry = forged.entry.replace("req-", "REQ-");
            assert!(verify::check_inclusion(&forged, &vk).is_err());
        }
        // Consistency from every historical checkpoint to the newest.
        let hist = std::fs::read_to_string(dir.path().join("checkpoints.jsonl")).unwrap();
        for line in hist.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let size = v["size"].as_u64().unwrap();
            let p = reader.prove_consistency(size).unwrap();
            let (old, new) = verify::check_consistency(&p, &vk).unwrap();
            assert_eq!((old.size, new.size), (size, 1000));
        }

        let mut out = Vec::new();
        assert_eq!(reader.export(&mut out).unwrap(), 1000);
        let lines: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().collect();
        assert_eq!(lines.len(), 1000);
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["index"], 0);
        assert_eq!(first["event"]["v"], 1);

        let p = Pseudonymiser::new(&[42; 32]).unwrap();
        let mut q = Query::new();
        q.subject = Some(p.pseudonym("user", "user3").to_string());
        q.kind = Some("authn.".into());
        let hits = reader.search(&q).unwrap();
        assert!(!hits.is_empty());
        assert!(hits
            .iter()
            .all(|(i, e)| i % 10 == 3 && i % 3 == 0 && e.kind == "authn.login"));
        assert_eq!(hits.len(), (0..1000).filter(|i| i % 30 == 3).count());

        // Reopening a cleanly closed log repairs nothing.
        let (log, report) = Log::open(config(dir.path()), key.clone()).unwrap();
        assert!(report.clean(), "{report}");
        assert_eq!(report.entries, 1000);
        assert_eq!(report.unpublished, 0);
        drop(log);
    }
}

trait CloneTime {
    fn clone_time(self, entry: &str) -> Event;
}

impl CloneTime for Event {
    /// The test events carry the time of their creation; compare the rest.
    fn clone_time(mut self, entry: &str) -> Event {
        self.time = Event::from_entry(entry.as_bytes()).unwrap().time;
        self
    }
}

/// Every level of tiles is written and served: 70,000 entries need full
/// level-0 tiles, a full level-1 tile and a partial level-2 tile.
#[test]
fn multi_level_tiles_verify() {
    let dir = TempDir::new("levels");
    let key = key_from(&ed25519_pkcs8());
    build_log(dir.path(), &key, 70_000, 25_000);
    let vk = verifier(&key);
    let report = verify::verify_dir(dir.path(), &vk).unwrap();
    assert_eq!(report.entries, 70_000);
    assert!(dir.path().join("tile/1/000").exists());
    assert!(dir.path().join("tile/2/000.p/1").exists());
    assert!(dir.path().join("tile/entries/273.p/112").exists());
    // Partial tiles are removed once the full tile exists (the
    // checkpoints at 25,000 and 50,000 left partials in tiles that filled
    // later).
    assert!(!dir.path().join("tile/entries/000.p").exists());
    fn walk(d: &std::path::Path, partials: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.extension().is_some_and(|x| x == "p") {
                    partials.push(p.clone());
                }
                walk(&p, partials);
            }
        }
    }
    let mut partials = Vec::new();
    walk(&dir.path().join("tile"), &mut partials);
    assert!(partials.len() >= 3, "{partials:?}");
    for p in &partials {
        let full = p.with_extension("");
        assert!(!full.exists(), "{} left beside its full tile", p.display());
    }
    let reader = LogReader::open(dir.path(), &vk).unwrap();
    verify::check_inclusion(&reader.prove(65_536).unwrap(), &vk).unwrap();
}

/// A full queue is refused instead of blocking the caller.
#[test]
fn backpressure_queue_full() {
    let dir = TempDir::new("full");
    let key = key_from(&ed25519_pkcs8());
    let mut c = LogConfig::new(dir.path(), ORIGIN);
    c.period = Duration::from_secs(3600);
    c.queue_capacity = 10;
    let (log, _) = Log::open(c, key).unwrap();
    log.flush(Duration::from_secs(10)).unwrap(); // the initial empty checkpoint
    for i in 0..10 {
        log.append(&event(i)).unwrap();
    }
    assert!(matches!(
        log.append(&event(10)),
        Err(Error::QueueFull { capacity: 10 })
    ));
    assert_eq!(log.flush(Duration::from_secs(10)).unwrap(), 10);
    log.append(&event(11)).unwrap();
}

/// A key that signs until told to fail, like an unplugged token.
#[derive(Debug)]
struct FlakyKey {
    inner: Arc<dyn SigningKey>,
    fail: std::sync::atomic::AtomicBool,
}

impl SigningKey for FlakyKey {
    fn algorithm(&self) -> Algorithm {
        self.inner.algorithm()
    }
    fn public_key_spki(&self) -> &[u8] {
        self.inner.public_key_spki()
    }
    fn protection(&self) -> stadttor_hsm::Protection {
        self.inner.protection()
    }
    fn reference(&self) -> &str {
        "flaky"
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, stadttor_hsm::Error> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            // Any error will do: borrow one from a broken key load.
            return Err(stadttor_hsm::file::FileKey::from_pkcs8("flaky".into(), b"")
                .err()
                .unwrap());
        }
        self.inner.sign(message)
    }
}

/// While checkpoints cannot be signed, appends fail closed and waiters get
/// no success; once signing works again, the log resumes without loss.
#[test]
fn signing_failure_fails_closed_and_recovers() {
    let dir = TempDir::new("flaky");
    let flaky = Arc::new(FlakyKey {
        inner: key_from(&ed25519_pkcs8()),
        fail: false.into(),
    });
    let key: Arc<dyn SigningKey> = flaky.clone();
    let vk = verifier(&key);
    let (log, _) = Log::open(config(dir.path()), key).unwrap();
    let t0 = log.append(&event(0)).unwrap();
    log.wait(t0, Duration::from_secs(10)).unwrap();
    flaky.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let t1 = log.append(&event(1)).unwrap();
    assert!(matches!(
        log.wait(t1, Duration::from_millis(500)),
        Err(Error::Timeout)
    ));
    assert!(matches!(log.append(&event(2)), Err(Error::Unavailable(_))));
    assert!(log.status().failure.is_some());
    flaky.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    log.wait(t1, Duration::from_secs(10)).unwrap();
    log.append(&event(3)).unwrap();
    log.close().unwrap();
    assert_eq!(verify::verify_dir(dir.path(), &vk).unwrap().entries, 3);
}

/// When the disk refuses writes, waiters and appenders get errors, never a
/// false acknowledgement; reopening recovers everything acknowledged.
#[test]
fn storage_failure_fails_closed() {
    let dir = TempDir::new("storage");
    let key = key_from(&ed25519_pkcs8());
    let vk = verifier(&key);
    let (log, _) = Log::open(config(dir.path()), key.clone()).unwrap();
    for i in 0..300 {
        log.append(&event(i)).unwrap();
    }
    log.flush(Duration::from_secs(10)).unwrap();
    // Make tile writes impossible: a file where a directory must be.
    let bad = dir.path().join("tile/entries/001.p");
    std::fs::remove_dir_all(&bad).unwrap();
    std::fs::write(&bad, b"in the way").unwrap();
    let t = log.append(&event(300)).unwrap();
    assert!(matches!(
        log.wait(t, Duration::from_secs(10)),
        Err(Error::Unavailable(_))
    ));
    assert!(matches!(
        log.append(&event(301)),
        Err(Error::Unavailable(_))
    ));
    assert!(log.close().is_err());
    drop(log);
    std::fs::remove_file(&bad).unwrap();
    let (log, report) = Log::open(config(dir.path()), key).unwrap();
    assert_eq!(report.checkpoint_size, 300, "{report}");
    log.flush(Duration::from_secs(10)).unwrap();
    log.close().unwrap();
    let r = verify::verify_dir(dir.path(), &vk).unwrap();
    assert!(r.entries >= 300);
}

/// Recovery cuts a torn WAL tail, rewrites lost tiles and restores the
/// checkpoint file, and says so.
#[test]
fn recovery_repairs_and_reports() {
    let dir = TempDir::new("recover");
    let key = key_from(&ed25519_pkcs8());
    let vk = verifier(&key);
    build_log(dir.path(), &key, 700, 300);
    // A torn record at the end of the WAL, a lost tile, a lost checkpoint.
    use std::io::Write;
    let mut wal = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("wal"))
        .unwrap();
    wal.write_all(b"STW1\0\0\0\0\0\0\x02\xbc\0\0").unwrap();
    drop(wal);
    std::fs::remove_file(dir.path().join("tile/0/001")).unwrap();
    std::fs::remove_file(dir.path().join("checkpoint")).unwrap();
    let (log, report) = Log::open(config(dir.path()), key.clone()).unwrap();
    assert!(!report.clean());
    assert_eq!(report.wal_bytes_cut, 14);
    assert_eq!(report.tiles_rewritten, 1);
    assert!(report.checkpoint_restored);
    assert_eq!(report.entries, 700);
    assert_eq!(report.checkpoint_size, 700);
    let text = report.to_string();
    assert!(text.contains("cut 14 bytes of torn WAL tail"), "{text}");
    drop(log);
    verify::verify_dir(dir.path(), &vk).unwrap();
}

/// Losing acknowledged entries is not papered over: opening fails.
#[test]
fn lost_acknowledged_entries_refuse_to_open() {
    let dir = TempDir::new("lost");
    let key = key_from(&ed25519_pkcs8());
    build_log(dir.path(), &key, 500, 500);
    let wal = dir.path().join("wal");
    let len = std::fs::metadata(&wal).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wal)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let err = Log::open(config(dir.path()), key).unwrap_err();
    assert!(
        err.to_string().contains("acknowledged entries are missing"),
        "{err}"
    );
}

/// A second writer on the same directory is refused.
#[test]
fn second_writer_is_refused() {
    let dir = TempDir::new("lock");
    let key = key_from(&ed25519_pkcs8());
    let (_log, _) = Log::open(config(dir.path()), key.clone()).unwrap();
    // Same process: pretend the lock belongs to a live other process (PID 1).
    std::fs::write(dir.path().join("lock"), "1\n").unwrap();
    let err = Log::open(config(dir.path()), key).unwrap_err();
    assert!(err.to_string().contains("in use by process 1"), "{err}");
}

/// Outcome and kinds round-trip through the log.
#[test]
fn events_round_trip_through_the_log() {
    let dir = TempDir::new("rt");
    let key = key_from(&p256_pkcs8());
    let vk = verifier(&key);
    let (log, _) = Log::open(config(dir.path()), key).unwrap();
    let ev = Event::new("policy.change", Outcome::Success).attr("policy", "p-17");
    let t = log.append(&ev).unwrap();
    log.wait(t, Duration::from_secs(10)).unwrap();
    drop(log);
    let reader = LogReader::open(dir.path(), &vk).unwrap();
    assert_eq!(Event::from_entry(&reader.entry(0).unwrap()).unwrap(), ev);
}
