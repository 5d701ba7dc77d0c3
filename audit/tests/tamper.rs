//! Threat: someone with write access to the served files (or to a copy
//! handed to an auditor) edits history. Each kind of edit must be caught by
//! the offline verifier, and the first bad entry named.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, OnceLock};

use common::*;
use stadttor_audit::note::{self, NoteError};
use stadttor_audit::verify::{self, VerifyError};
use stadttor_audit::VerifierKey;
use stadttor_hsm::SigningKey;

/// One pristine log of 1000 entries (checkpoints at 0, 400, 800, 1000),
/// shared by the tests, each of which tampers with its own copy.
struct Fixture {
    dir: TempDir,
    pkcs8: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = TempDir::new("tamper-src");
        let pkcs8 = ed25519_pkcs8();
        build_log(dir.path(), &key_from(&pkcs8), 1000, 400);
        Fixture { dir, pkcs8 }
    })
}

fn copy() -> (TempDir, Arc<dyn SigningKey>, VerifierKey) {
    let f = fixture();
    let dir = TempDir::new("tamper");
    copy_dir(f.dir.path(), dir.path());
    let key = key_from(&f.pkcs8);
    let vk = verifier(&key);
    (dir, key, vk)
}

#[test]
fn pristine_log_verifies() {
    let (dir, _, vk) = copy();
    let r = verify::verify_dir(dir.path(), &vk).unwrap();
    assert_eq!(r.entries, 1000);
    assert_eq!(r.history, 4);
}

#[test]
fn changed_entry_is_named() {
    let (dir, _, vk) = copy();
    change_entry(dir.path(), 613, "req-613", "req-614");
    match verify::verify_dir(dir.path(), &vk) {
        Err(VerifyError::BadEntry { index: 613, reason }) => {
            assert!(reason.contains("was changed"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn changed_entry_with_rewritten_leaf_hash_is_named() {
    let (dir, _, vk) = copy();
    change_entry(dir.path(), 10, "req-10\"", "req-11\"");
    // The forger also puts the new leaf hash into the hash tile.
    let tile = dir.path().join("tile/0/000");
    let mut bytes = std::fs::read(&tile).unwrap();
    let reader_entry = {
        let b = std::fs::read(dir.path().join("tile/entries/000")).unwrap();
        let (e, _) = stadttor_audit::tiles::decode_bundle(&b);
        e[10].to_vec()
    };
    bytes[320..352].copy_from_slice(&stadttor_audit::merkle::leaf_hash(&reader_entry));
    std::fs::write(&tile, bytes).unwrap();
    match verify::verify_dir(dir.path(), &vk) {
        // The signed level-8 hash pins the change to entries 0..=255; which
        // of them changed cannot be known once the leaf tile is forged too.
        Err(VerifyError::BadEntry { index: 0, reason }) => {
            assert!(reason.contains("0..=255"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn removed_entry_is_named() {
    let (dir, _, vk) = copy();
    edit_bundle(dir.path(), 1, |e| {
        e.remove(300 - 256);
    });
    match verify::verify_dir(dir.path(), &vk) {
        Err(VerifyError::BadEntry { index: 300, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn changed_checkpoint_size_is_rejected() {
    let (dir, _, vk) = copy();
    let path = dir.path().join("checkpoint");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\n1000\n", "\n999\n", 1)).unwrap();
    match verify::verify_dir(dir.path(), &vk) {
        Err(VerifyError::Checkpoint {
            source: NoteError::InvalidSignature(_),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn foreign_key_is_rejected() {
    let (dir, _, vk) = copy();
    // A checkpoint re-signed by someone else under the same name.
    let path = dir.path().join("checkpoint");
    let text = std::fs::read_to_string(&path).unwrap();
    let cp = note::parse_unverified(&text).unwrap();
    let other = key_from(&ed25519_pkcs8());
    std::fs::write(
        &path,
        note::sign_checkpoint(&cp, ORIGIN, other.as_ref()).unwrap(),
    )
    .unwrap();
    match verify::verify_dir(dir.path(), &vk) {
        Err(VerifyError::Checkpoint {
            source: NoteError::NoTrustedSignature(_),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // And the genuine log does not verify under a foreign verifier key.
    let (dir, _, _) = copy();
    assert!(verify::verify_dir(dir.path(), &verifier(&other)).is_err());
}

#[test]
fn flipped_hash_tile_bit_is_caught() {
    let (dir, _, vk) = copy();
    let tile = dir.path().join("tile/0/001");
    let mut bytes = std::fs::read(&tile).unwrap();
    bytes[1000] ^= 0x10;
    std::fs::write(&tile, bytes).unwrap();
    match verify::verify_dir(dir.path(), &vk) {
        Err(VerifyError::BadTile { path }) => assert_eq!(path, "tile/0/001"),
        other => panic!("{other:?}"),
    }
}

/// Threat: a byte of a partial tile published for an older checkpoint (and
/// still served to clients that verified that checkpoint) is changed.
#[test]
fn flipped_byte_in_a_superseded_partial_tile_is_named() {
    let (dir, _, vk) = copy();
    // The checkpoints at 400 and 800 published these partials of tiles
    // that are still partial (the current tree has 1000 entries), so they
    // stay next to the current ones (`003.p/232`, `1/000.p/3`).
    let r = verify::verify_dir(dir.path(), &vk).unwrap();
    assert_eq!(r.partial_tiles, 3, "{r}");
    for rel in ["tile/0/003.p/32", "tile/entries/003.p/32", "tile/1/000.p/1"] {
        let (dir, _, vk) = copy();
        let path = dir.path().join(rel);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        match verify::verify_dir(dir.path(), &vk) {
            Err(e @ VerifyError::BadPartialTile { .. }) => {
                assert!(e.to_string().starts_with(&format!("{rel}: ")), "{e}")
            }
            other => panic!("{rel}: {other:?}"),
        }
    }
}

#[test]
fn flipped_entry_bundle_bit_is_caught() {
    let (dir, _, vk) = copy();
    let path = dir.path().join("tile/entries/002");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    match verify::verify_dir(dir.path(), &vk) {
        Err(VerifyError::BadEntry { index, .. }) => assert!((512..768).contains(&index)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn forked_history_is_caught() {
    // The key holder signs a second, different tree (a fork) and slips one of
    // its checkpoints into the history: it is validly signed, but not a head
    // of the published tree.
    let (dir, key, vk) = copy();
    let fork = TempDir::new("fork");
    let (log, _) = stadttor_audit::Log::open(config(fork.path()), key).unwrap();
    for i in 0..400 {
        log.append(&event(i + 5000)).unwrap();
    }
    log.flush(std::time::Duration::from_secs(10)).unwrap();
    drop(log);
    let forked = std::fs::read_to_string(fork.path().join("checkpoint")).unwrap();
    let hist = dir.path().join("checkpoints.jsonl");
    let text = std::fs::read_to_string(&hist).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[1] = serde_json::json!({"size": 400, "note": forked}).to_string();
    std::fs::write(&hist, lines.join("\n") + "\n").unwrap();
    match verify::verify_dir(dir.path(), &vk) {
        Err(VerifyError::History { line: 2, reason }) => {
            assert!(reason.contains("forked"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn truncated_log_is_caught() {
    // Dropping the newest bundle while keeping the checkpoint.
    let (dir, _, vk) = copy();
    std::fs::remove_dir_all(dir.path().join("tile/entries/003.p")).unwrap();
    assert!(verify::verify_dir(dir.path(), &vk).is_err());
}
