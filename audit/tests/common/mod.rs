//! Shared helpers for the audit integration tests.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use stadttor_audit::event::{Event, Outcome, Pseudonymiser};
use stadttor_audit::{Log, LogConfig, VerifierKey};
use stadttor_hsm::file::FileKey;
use stadttor_hsm::SigningKey;

pub const ORIGIN: &str = "audit.musterstadt.example/gw1";

pub use stadttor_test_harness::TempDir;

pub fn ed25519_pkcs8() -> Vec<u8> {
    let rng = ring::rand::SystemRandom::new();
    ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .unwrap()
        .as_ref()
        .to_vec()
}

pub fn p256_pkcs8() -> Vec<u8> {
    let rng = ring::rand::SystemRandom::new();
    ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .unwrap()
    .as_ref()
    .to_vec()
}

pub fn key_from(pkcs8: &[u8]) -> Arc<dyn SigningKey> {
    Arc::new(FileKey::from_pkcs8("file:test".into(), pkcs8).unwrap())
}

pub fn verifier(key: &Arc<dyn SigningKey>) -> VerifierKey {
    VerifierKey::from_spki(ORIGIN, key.algorithm(), key.public_key_spki()).unwrap()
}

pub fn event(i: u64) -> Event {
    let p = Pseudonymiser::new(&[42; 32]).unwrap();
    Event::new(
        if i.is_multiple_of(3) {
            "authn.login"
        } else {
            "request"
        },
        if i.is_multiple_of(7) {
            Outcome::Denied
        } else {
            Outcome::Success
        },
    )
    .subject(p.pseudonym("user", &format!("user{}", i % 10)))
    .tenant("musterstadt")
    .target("route:buergerportal")
    .request_id(format!("req-{i}"))
    .attr("seq", i)
}

pub fn config(dir: &Path) -> LogConfig {
    let mut c = LogConfig::new(dir, ORIGIN);
    c.period = Duration::from_millis(100);
    c
}

/// Builds a log of `n` events in `dir`, flushing after every `chunk`
/// events (so there are several checkpoints in the history).
pub fn build_log(dir: &Path, key: &Arc<dyn SigningKey>, n: u64, chunk: u64) {
    let (log, _) = Log::open(config(dir), key.clone()).unwrap();
    for i in 0..n {
        log.append(&event(i)).unwrap();
        if (i + 1) % chunk == 0 {
            log.flush(Duration::from_secs(30)).unwrap();
        }
    }
    log.flush(Duration::from_secs(30)).unwrap();
    log.close().unwrap();
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Rewrites entry bundle `n` (a full bundle) with `f` applied to its entries.
pub fn edit_bundle(dir: &Path, n: u64, f: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let path = dir.join(stadttor_audit::tiles::entries_path(n, 0));
    let bytes = std::fs::read(&path).unwrap();
    let (entries, clean) = stadttor_audit::tiles::decode_bundle(&bytes);
    assert!(clean);
    let mut entries: Vec<Vec<u8>> = entries.into_iter().map(<[u8]>::to_vec).collect();
    f(&mut entries);
    let out = stadttor_audit::tiles::encode_bundle(entries.iter().map(Vec::as_slice)).unwrap();
    std::fs::write(&path, out).unwrap();
}

/// Replaces `from` by `to` (same length) in entry `i` of its full bundle.
pub fn change_entry(dir: &Path, i: u64, from: &str, to: &str) {
    edit_bundle(dir, i / 256, |entries| {
        let e = &mut entries[(i % 256) as usize];
        let s = String::from_utf8(e.clone()).unwrap();
        assert!(s.contains(from), "{s}");
        *e = s.replacen(from, to, 1).into_bytes();
    });
}
