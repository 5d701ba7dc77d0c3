//! The PostgreSQL storage against a real server (feature `postgres`).
//!
//! Threats: two gateways writing one log fork it (two checkpoints of the
//! same log that no single append-only tree explains), lose or duplicate
//! acknowledged events, or keep acknowledging when the database is gone;
//! someone with write access to the database edits a row.
//!
//! The server is `STADTTOR_AUDIT_PG_URL` (default
//! `host=127.0.0.1 port=5432 user=postgres dbname=test`). Each test uses its
//! own schema with a random name and drops it at the end. The concurrent
//! writers are this test binary re-executed twice with
//! `STADTTOR_AUDIT_PG_CHILD` set, as in `crash.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use stadttor_audit::event::{Event, Outcome};
use stadttor_audit::merkle;
use stadttor_audit::note::{self, Checkpoint};
use stadttor_audit::pg::{self, PgConfig, PgError, PgLog, PgStore, Publish};
use stadttor_audit::tiles::TileHashes;
use stadttor_audit::verify::{self, LogReader, VerifyError};
use stadttor_audit::{Error, VerifierKey};
use stadttor_hsm::SigningKey;

const ENV_CHILD: &str = "STADTTOR_AUDIT_PG_CHILD";
const ENV_SCHEMA: &str = "STADTTOR_AUDIT_PG_SCHEMA";
const ENV_KEY: &str = "STADTTOR_AUDIT_PG_KEY";
const WRITER_THREADS: u64 = 2;
const BATCHES: u64 = 15;
const BATCH: u64 = 100;

fn url() -> String {
    std::env::var("STADTTOR_AUDIT_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

/// A schema with a random name, dropped on drop.
struct Schema(String);

impl Schema {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Schema(format!(
            "stadttor_test_{}_{nanos}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }
    fn config(&self) -> PgConfig {
        let mut c = PgConfig::new(url(), &self.0, ORIGIN);
        c.period = Duration::from_millis(50);
        c
    }
    fn sql(&self, stmt: &str) -> u64 {
        let mut c = admin();
        c.batch_execute(&format!("SET search_path TO \"{}\"", self.0))
            .unwrap();
        c.execute(stmt, &[]).unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&url(), postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0));
        }
    }
}

fn admin() -> postgres::Client {
    postgres::Client::connect(&url(), postgres::NoTls)
        .expect("PostgreSQL at STADTTOR_AUDIT_PG_URL (or 127.0.0.1:5432) must be running")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn seq_event(seq: u64) -> Event {
    Event::new("request", Outcome::Success)
        .target("route:cluster")
        .attr("seq", seq)
}

/// Exports the log and verifies it; checks that every pair of successive
/// historical checkpoints is linked by a consistency proof. Returns the
/// export directory and the `seq` attributes, each asserted unique.
fn export_and_verify(schema: &Schema, vk: &VerifierKey) -> (TempDir, BTreeSet<u64>, u64) {
    let dir = TempDir::new("pg-export");
    let exported = pg::export(&schema.config(), dir.path()).unwrap();
    let report = verify::verify_dir(dir.path(), vk).unwrap();
    assert_eq!(report.entries, exported.checkpoint_size);
    assert_eq!(report.history, exported.checkpoints);
    let history = successive_checkpoints_are_consistent(dir.path(), vk);
    assert_eq!(history as u64, exported.checkpoints);
    let mut seqs = BTreeSet::new();
    LogReader::open(dir.path(), vk)
        .unwrap()
        .for_each_entry(|_, e| {
            let ev = Event::from_entry(e).unwrap();
            if let Some(s) = ev.attrs.get("seq").and_then(|v| v.as_u64()) {
                assert!(seqs.insert(s), "event {s} recorded twice");
            }
            true
        })
        .unwrap();
    (dir, seqs, exported.checkpoint_size)
}

/// No fork: each checkpoint in the history is proven to extend the one
/// before it (RFC 9162 consistency proofs over the exported tiles).
fn successive_checkpoints_are_consistent(dir: &Path, vk: &VerifierKey) -> usize {
    let latest = LogReader::open(dir, vk).unwrap().checkpoint().clone();
    let hashes = TileHashes::new(dir, latest.size);
    let text = std::fs::read_to_string(dir.join("checkpoints.jsonl")).unwrap();
    let cps: Vec<Checkpoint> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            note::verify_checkpoint(v["note"].as_str().unwrap(), vk).unwrap()
        })
        .collect();
    assert_eq!(cps.last(), Some(&latest), "history ends at the checkpoint");
    for w in cps.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        assert!(a.size < b.size, "sizes grow: {} then {}", a.size, b.size);
        let proof = merkle::consistency_proof(&hashes, a.size, b.size).unwrap();
        merkle::verify_consistency(a.size, b.size, &a.root, &b.root, &proof)
            .unwrap_or_else(|e| panic!("checkpoint {} does not extend {}: {e}", b.size, a.size));
    }
    cps.len()
}

/// One gateway process: `WRITER_THREADS` threads append batches of events
/// numbered `writer * 1e6 + k`, wait for each batch and print `ACK from to
/// step`. Does nothing in a normal test run.
#[test]
fn pg_writer_child() {
    let Ok(writer) = std::env::var(ENV_CHILD) else {
        return;
    };
    let writer: u64 = writer.parse().unwrap();
    let schema = Schema(std::env::var(ENV_SCHEMA).unwrap());
    let key = key_from(&unhex(&std::env::var(ENV_KEY).unwrap()));
    let (log, report) = PgLog::open(schema.config(), key).unwrap();
    std::mem::forget(schema); // the parent drops it
    println!("OPENED {report}");
    let log = Arc::new(log);
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..WRITER_THREADS)
        .map(|t| {
            let (log, out) = (log.clone(), out.clone());
            std::thread::spawn(move || {
                for b in 0..BATCHES {
                    let first = writer * 1_000_000 + (t * BATCHES + b) * BATCH;
                    let mut last = None;
                    for k in 0..BATCH {
                        last = Some(log.append(&seq_event(first + k)).unwrap());
                    }
                    let c = log.wait(&last.unwrap(), Duration::from_secs(60)).unwrap();
                    assert!(c.tree_size > c.index);
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {first} {}", first + BATCH - 1).unwrap();
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let status = log.status();
    log.close().unwrap();
    println!(
        "STATUS writer {writer}: {} appended, {} checkpoints signed, {} swaps lost",
        status.appended, status.checkpoints_signed, status.cas_conflicts
    );
}

/// (1) Two gateway processes append to one log at the same time. The
/// exported log verifies, holds every acknowledged event exactly once,
/// and its checkpoint history is one chain of consistent heads.
#[test]
fn two_processes_append_concurrently_without_fork() {
    let schema = Schema::new();
    let pkcs8 = ed25519_pkcs8();
    let vk = verifier(&key_from(&pkcs8));
    let children: Vec<_> = (1..=2u64)
        .map(|w| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "pg_writer_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(ENV_CHILD, w.to_string())
                .env(ENV_SCHEMA, &schema.0)
                .env(ENV_KEY, hex(&pkcs8))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut acked = BTreeSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "writer failed:\n{text}");
        for l in text.lines() {
            if let Some(rest) = l.find("ACK ").map(|i| &l[i + 4..]) {
                let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
                acked.extend(v[0]..=v[1]);
            } else if let Some(i) = l.find("STATUS ").or_else(|| l.find("OPENED ")) {
                println!("{}", &l[i..]);
            }
        }
    }
    assert_eq!(acked.len() as u64, 2 * WRITER_THREADS * BATCHES * BATCH);
    let (_dir, seqs, size) = export_and_verify(&schema, &vk);
    assert_eq!(
        seqs, acked,
        "every acknowledged event exactly once, nothing else"
    );
    assert_eq!(size, acked.len() as u64);
}

fn sign(key: &Arc<dyn SigningKey>, cp: &Checkpoint) -> String {
    note::sign_checkpoint(cp, ORIGIN, key.as_ref()).unwrap()
}

fn entries(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range.map(|i| seq_event(i).to_entry().unwrap()).collect()
}

/// (2) Compare-and-swap, forced deterministically with two stores: a
/// writer whose view is stale loses the swap (for the first checkpoint and
/// for a later one), the stored checkpoint is untouched, and the loser
/// re-reads, re-integrates and publishes a checkpoint that extends the
/// winner's.
#[test]
fn checkpoint_swap_conflict_is_detected_and_resolved() {
    let schema = Schema::new();
    let key = key_from(&ed25519_pkcs8());
    let vk = verifier(&key);
    let (mut a, _) = PgStore::open(&schema.config(), &vk).unwrap();
    let (mut b, _) = PgStore::open(&schema.config(), &vk).unwrap();

    // The first checkpoint: both see none; B inserts first.
    assert_eq!(a.append_batch(&entries(0..3)).unwrap(), 0);
    let cp_a = a.prepare(u64::MAX).unwrap().unwrap();
    assert_eq!(b.append_batch(&entries(3..5)).unwrap(), 3);
    let cp_b = b.prepare(u64::MAX).unwrap().unwrap();
    assert_eq!((cp_a.size, cp_b.size), (3, 5));
    assert_eq!(
        b.publish(&cp_b, &sign(&key, &cp_b)).unwrap(),
        Publish::Published
    );
    assert_eq!(
        a.publish(&cp_a, &sign(&key, &cp_a)).unwrap(),
        Publish::Conflict
    );
    // A stale candidate cannot be published without preparing again.
    assert!(matches!(
        a.publish(&cp_a, &sign(&key, &cp_a)),
        Err(PgError::NotPrepared)
    ));
    // Re-integrating: B's checkpoint covers A's entries, nothing to sign.
    assert!(a.prepare(3).unwrap().is_none());
    assert_eq!(a.checkpoint_size(), Some(5));

    // A later checkpoint: both extend 5; A swaps first, B loses.
    assert_eq!(a.append_batch(&entries(5..8)).unwrap(), 5);
    let cp_a = a.prepare(8).unwrap().unwrap();
    assert_eq!(b.append_batch(&entries(8..9)).unwrap(), 8);
    let cp_b = b.prepare(9).unwrap().unwrap();
    assert_eq!((cp_a.size, cp_b.size), (8, 9));
    // B read the head after A prepared, so B's candidate is the larger one;
    // A still wins because it swaps first.
    assert_eq!(
        a.publish(&cp_a, &sign(&key, &cp_a)).unwrap(),
        Publish::Published
    );
    assert_eq!(
        b.publish(&cp_b, &sign(&key, &cp_b)).unwrap(),
        Publish::Conflict
    );
    schema_checkpoint_is(&schema, 8);
    // B re-reads, checks that 8 extends its tree, and signs 9 on top.
    let cp_b = b.prepare(9).unwrap().unwrap();
    assert_eq!(cp_b.size, 9);
    assert_eq!(
        b.publish(&cp_b, &sign(&key, &cp_b)).unwrap(),
        Publish::Published
    );
    schema_checkpoint_is(&schema, 9);

    let (_dir, seqs, size) = export_and_verify(&schema, &vk);
    assert_eq!(size, 9);
    assert_eq!(seqs, (0..9).collect());
    let sizes = history_sizes(&schema);
    assert_eq!(sizes, vec![5, 8, 9], "lost swaps left no history rows");
}

fn schema_checkpoint_is(schema: &Schema, size: i64) {
    let mut c = admin();
    let row = c
        .query_one(
            &format!("SELECT size FROM \"{}\".checkpoint", schema.0),
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), size);
}

fn history_sizes(schema: &Schema) -> Vec<i64> {
    admin()
        .query(
            &format!(
                "SELECT size FROM \"{}\".checkpoints ORDER BY size",
                schema.0
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// (3) PostgreSQL unreachable: opening fails at once with an
/// `Unavailable` error; a connection lost while running makes appends and
/// waits fail (fail closed), never succeed.
#[test]
fn unavailable_postgres_fails_closed() {
    let key = key_from(&ed25519_pkcs8());
    let mut cfg = PgConfig::new(
        "host=127.0.0.1 port=1 user=postgres dbname=test",
        "stadttor_unreachable",
        ORIGIN,
    );
    cfg.connect_timeout = Duration::from_secs(2);
    let t0 = Instant::now();
    match PgLog::open(cfg, key.clone()) {
        Err(Error::Postgres(e)) => {
            assert!(e.is_unavailable(), "{e}");
            assert!(e.to_string().contains("unavailable"), "{e}");
        }
        other => panic!("expected an Unavailable error, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(5));

    // Lost connection while running.
    let schema = Schema::new();
    let (log, _) = PgLog::open(schema.config(), key).unwrap();
    let t = log.append(&seq_event(1)).unwrap();
    log.wait(&t, Duration::from_secs(10)).unwrap();
    let killed = admin()
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("stadttor-audit {}", schema.0)],
        )
        .unwrap();
    assert_eq!(killed, 1);
    let t = log.append(&seq_event(2)).unwrap();
    match log.wait(&t, Duration::from_secs(10)) {
        Err(Error::Unavailable(why)) => assert!(why.contains("unavailable"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(matches!(
        log.append(&seq_event(3)),
        Err(Error::Unavailable(_))
    ));
    assert!(log.status().failure.is_some());
    assert!(log.close().is_err());
}

/// (4) A changed or deleted row is caught: the export fails verification,
/// and a writer refuses to open (and so to sign over) the log, naming the
/// first checkpoint whose root no longer matches.
/// A writer with another key is refused as well.
#[test]
fn tampered_row_is_caught() {
    let schema = Schema::new();
    let key = key_from(&ed25519_pkcs8());
    let vk = verifier(&key);
    {
        let (log, _) = PgLog::open(schema.config(), key.clone()).unwrap();
        for i in 0..1000 {
            log.append(&event(i)).unwrap();
            if (i + 1) % 400 == 0 {
                log.flush(Duration::from_secs(10)).unwrap();
            }
        }
        assert_eq!(log.flush(Duration::from_secs(10)).unwrap(), 1000);
        log.close().unwrap();
    }
    let (_dir, _, size) = export_and_verify(&schema, &vk);
    assert_eq!(size, 1000);

    // Another key cannot join the log.
    let other = key_from(&ed25519_pkcs8());
    match PgLog::open(schema.config(), other) {
        Err(Error::Postgres(PgError::Corrupt { reason, .. })) => {
            assert!(reason.contains("key"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    let changed = schema.sql(
        "UPDATE entries SET data = convert_to(replace(convert_from(data, 'UTF8'), \
         'req-613', 'req-614'), 'UTF8') WHERE idx = 613",
    );
    assert_eq!(changed, 1);
    let dir = TempDir::new("pg-tampered");
    pg::export(&schema.config(), dir.path()).unwrap();
    // The export recomputes the hash tiles from the rows, so the tiles
    // agree with the changed entry and only the signed root catches it: the
    // verifier reports that the entries do not hash to the signed root
    // (it cannot name entry 613 without hash tiles kept from before).
    match verify::verify_dir(dir.path(), &vk) {
        Err(VerifyError::BadEntry { reason, .. }) => {
            assert!(reason.contains("signed root"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    match PgLog::open(schema.config(), key.clone()) {
        Err(Error::Postgres(PgError::Corrupt { reason, .. })) => {
            assert!(
                reason.contains("forked or an entry was changed"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }

    // A deleted row: the export is short, and verification fails.
    schema.sql("DELETE FROM entries WHERE idx = 100");
    let dir = TempDir::new("pg-deleted");
    pg::export(&schema.config(), dir.path()).unwrap();
    let err = verify::verify_dir(dir.path(), &vk).unwrap_err();
    println!("deleted row: {err}");
}
