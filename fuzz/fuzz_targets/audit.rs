//! The audit log's decoders and proof checks (`stadttor_audit`): entry
//! bundles (tiles), verifier keys, checkpoint notes, inclusion and
//! consistency proofs (JSON and raw), events. The first byte picks the
//! decoder. Checkpoints that parse are signed with a fixed key before
//! checking, so the fuzzer reaches the Merkle path checks behind the
//! signature; a tree built in memory checks that every honest proof
//! verifies and a changed one does not.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::LazyLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use stadttor_audit::event::Event;
use stadttor_audit::merkle::{self, Hash, HashSource, ProofError};
use stadttor_audit::note::{self, Checkpoint};
use stadttor_audit::tiles;
use stadttor_audit::verify::{self, ConsistencyProof, InclusionProof};
use stadttor_audit::VerifierKey;
use stadttor_hsm::file::FileKey;
use stadttor_hsm::SigningKey as _;

const ORIGIN: &str = "fuzz.example/log";

static KEY: LazyLock<FileKey> = LazyLock::new(|| {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[42u8; 32]);
    FileKey::from_pkcs8("fuzz".into(), &der).unwrap()
});

static VK: LazyLock<VerifierKey> = LazyLock::new(|| {
    VerifierKey::from_spki(ORIGIN, KEY.algorithm(), KEY.public_key_spki()).unwrap()
});

/// Re-signs a checkpoint note's body with the fixed key, if it parses.
fn resign(note_text: &str) -> Option<String> {
    let cp = note::parse_unverified(note_text).ok()?;
    let cp = Checkpoint {
        origin: ORIGIN.to_owned(),
        ..cp
    };
    note::sign_checkpoint(&cp, ORIGIN, &*KEY).ok()
}

struct MemTree(Vec<Hash>);

impl HashSource for MemTree {
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        if level == 0 {
            return self
                .0
                .get(index as usize)
                .copied()
                .ok_or_else(|| ProofError::Unavailable(format!("leaf {index}")));
        }
        let l = self.subtree(level - 1, 2 * index)?;
        let r = self.subtree(level - 1, 2 * index + 1)?;
        Ok(merkle::node_hash(&l, &r))
    }
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    for (k, x) in b.iter().skip(i).take(8).enumerate() {
        a[k] = *x;
    }
    u64::from_le_bytes(a)
}

fn hashes(b: &[u8]) -> Vec<Hash> {
    b.chunks_exact(32)
        .map(|c| Hash::try_from(c).unwrap())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = std::str::from_utf8(rest).ok();
    match mode % 9 {
        0 => {
            let (entries, clean) = tiles::decode_bundle(rest);
            if clean {
                let again = tiles::encode_bundle(entries.iter().copied()).unwrap();
                assert_eq!(again, rest, "bundle does not round-trip");
            }
        }
        1 => {
            if let Some(s) = text {
                if let Ok(vk) = VerifierKey::parse(s) {
                    let again = VerifierKey::parse(&vk.to_string()).unwrap();
                    assert_eq!(again.key_id(), vk.key_id());
                }
            }
        }
        2 => {
            if let Some(s) = text {
                let _ = note::parse_unverified(s);
                if let Ok(cp) = Checkpoint::parse_body(s) {
                    assert_eq!(Checkpoint::parse_body(&cp.body()).unwrap(), cp);
                }
            }
        }
        3 => {
            if let Some(s) = text {
                // Signatures from the input: must not verify (nobody has the key).
                assert!(note::verify_checkpoint(s, &VK).is_err() || s.contains("\u{2014} "));
                let _ = note::open_note(s, &VK);
                // The same body, honestly signed: verifies iff it parses.
                if let Ok(n) = note::sign_note(s, ORIGIN, &*KEY) {
                    assert_eq!(
                        note::verify_checkpoint(&n, &VK).ok(),
                        Checkpoint::parse_body(s).ok()
                    );
                }
            }
        }
        4 => {
            if let Ok(mut p) = serde_json::from_slice::<InclusionProof>(rest) {
                let _ = verify::check_inclusion(&p, &VK);
                if let Some(n) = resign(&p.checkpoint) {
                    p.checkpoint = n;
                    let _ = verify::check_inclusion(&p, &VK);
                }
            }
        }
        5 => {
            if let Ok(mut p) = serde_json::from_slice::<ConsistencyProof>(rest) {
                let _ = verify::check_consistency(&p, &VK);
                if let (Some(a), Some(b)) = (resign(&p.old_checkpoint), resign(&p.new_checkpoint)) {
                    p.old_checkpoint = a;
                    p.new_checkpoint = b;
                    let _ = verify::check_consistency(&p, &VK);
                }
            }
        }
        6 => {
            // Raw proof checks with arbitrary sizes and hashes.
            let (index, size, old) = (u64_at(rest, 0), u64_at(rest, 8), u64_at(rest, 16));
            let body = rest.get(24..).unwrap_or_default();
            let hs = hashes(body);
            let leaf = merkle::leaf_hash(b"x");
            let root = hs.first().copied().unwrap_or(leaf);
            let _ = merkle::verify_inclusion(&leaf, index, size, &hs, &root);
            let _ = merkle::verify_consistency(old, size, &leaf, &root, &hs);
        }
        7 => {
            // Honest proofs from a tree of up to 64 leaves verify; a proof
            // with one changed byte does not.
            let n = u64::from(rest.first().copied().unwrap_or(1) % 64) + 1;
            let leaves: Vec<Hash> = (0..n)
                .map(|i| merkle::leaf_hash(&i.to_le_bytes()))
                .collect();
            let tree = MemTree(leaves.clone());
            let root = merkle::tree_hash(&tree, n).unwrap();
            let i = u64::from(rest.get(1).copied().unwrap_or(0)) % n;
            let mut proof = merkle::inclusion_proof(&tree, i, n).unwrap();
            merkle::verify_inclusion(&leaves[i as usize], i, n, &proof, &root).unwrap();
            let m = u64::from(rest.get(2).copied().unwrap_or(0)) % (n + 1);
            let old_root = merkle::tree_hash(&tree, m).unwrap();
            let mut cproof = merkle::consistency_proof(&tree, m, n).unwrap();
            merkle::verify_consistency(m, n, &old_root, &root, &cproof).unwrap();
            if let Some(&flip) = rest.get(3) {
                let pos = usize::from(rest.get(4).copied().unwrap_or(0));
                let at = pos % proof.len().max(1);
                if let Some(h) = proof.get_mut(at) {
                    h[usize::from(flip) % 32] ^= 1;
                    assert!(
                        merkle::verify_inclusion(&leaves[i as usize], i, n, &proof, &root).is_err()
                    );
                }
                let at = pos % cproof.len().max(1);
                if let Some(h) = cproof.get_mut(at) {
                    h[usize::from(flip) % 32] ^= 1;
                    assert!(merkle::verify_consistency(m, n, &old_root, &root, &cproof).is_err());
                }
            }
        }
        _ => {
            if let Ok(ev) = Event::from_entry(rest) {
                let entry = ev.to_entry();
                if let Ok(e) = entry {
                    assert!(Event::from_entry(&e).is_ok(), "event does not round-trip");
                }
            }
            let _ = B64.encode(rest);
        }
    }
});
