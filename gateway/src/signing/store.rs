//! The store of detached CAdES signatures served at
//! `/.stadttor/signatures/ID.p7s`, with limits: anyone who can fetch a
//! sealed document from a public route makes the gateway write a file, so
//! the store must not be able to fill the disk.
//!
//! Two limits from `[signing]`: `store_max_bytes` (the oldest signatures
//! are deleted first when a new one would exceed it) and `store_max_age`
//! (older signatures are deleted when a new one is stored and are no
//! longer served). Every eviction is counted in
//! `stadttor_signature_store_evicted_total{name="size"|"age"}`; the first
//! eviction for size after a calm period is logged as a warning (the store
//! is too small for the traffic, or someone is flooding a sealed route).
//! The index is rebuilt from the directory at start, oldest first by
//! modification time. Delegation statements (`key-*.jws`) are not part of
//! it: there are at most two per route and delegation lifetime.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::NameLabel;

/// One stored signature.
#[derive(Debug)]
struct Stored {
    file: String,
    size: u64,
    written: SystemTime,
}

#[derive(Debug, Default)]
struct Index {
    /// Oldest first.
    files: VecDeque<Stored>,
    total: u64,
    /// Whether the last store evicted for size (the warning is logged once
    /// per episode).
    full: bool,
}

/// The signature directory with its limits.
#[derive(Debug)]
pub struct SignatureStore {
    dir: PathBuf,
    max_bytes: u64,
    max_age: Duration,
    index: Mutex<Index>,
    evicted: Family<NameLabel, Counter>,
    bytes: Gauge,
}

impl SignatureStore {
    /// Opens (creates) `dir`, indexes the signatures in it and applies the
    /// limits at once.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        max_age: Duration,
        (evicted, bytes): (Family<NameLabel, Counter>, Gauge),
    ) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("signing.store_dir {}: {e}", dir.display()))?;
        let mut files = Vec::new();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("signing.store_dir {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Ok(meta) = entry.metadata() else { continue };
            if !file.ends_with(".p7s") || !meta.is_file() {
                continue;
            }
            let written = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            files.push(Stored {
                file,
                size: meta.len(),
                written,
            });
        }
        files.sort_by(|a, b| (a.written, &a.file).cmp(&(b.written, &b.file)));
        let total = files.iter().map(|s| s.size).sum();
        let store = Self {
            dir: dir.to_owned(),
            max_bytes,
            max_age,
            index: Mutex::new(Index {
                files: files.into(),
                total,
                full: false,
            }),
            evicted,
            bytes,
        };
        store.with_index(|ix| store.evict(ix, 0))?;
        Ok(store)
    }

    fn with_index<T>(&self, f: impl FnOnce(&mut Index) -> T) -> Result<T, String> {
        let mut ix = self
            .index
            .lock()
            .map_err(|_| "signature store index poisoned".to_owned())?;
        Ok(f(&mut ix))
    }

    /// Stores signature `id`, deleting the oldest ones as the limits need.
    pub fn put(&self, id: &str, sig: &[u8]) -> Result<(), String> {
        let size = sig.len() as u64;
        if size > self.max_bytes {
            return Err(format!(
                "a signature of {size} bytes is larger than signing.store_max_bytes"
            ));
        }
        let file = format!("{id}.p7s");
        std::fs::write(self.dir.join(&file), sig).map_err(|e| e.to_string())?;
        self.with_index(|ix| {
            ix.files.push_back(Stored {
                file,
                size,
                written: SystemTime::now(),
            });
            ix.total += size;
            self.evict(ix, size);
        })
    }

    /// Deletes signature `id` (its response was withheld).
    pub fn remove(&self, id: &str) {
        let file = format!("{id}.p7s");
        let _ = std::fs::remove_file(self.dir.join(&file));
        let _ = self.with_index(|ix| {
            if let Some(at) = ix.files.iter().rposition(|s| s.file == file) {
                if let Some(s) = ix.files.remove(at) {
                    ix.total -= s.size;
                }
            }
            self.bytes.set(i64::try_from(ix.total).unwrap_or(i64::MAX));
        });
    }

    /// The stored signature `file` (`ID.p7s`), unless missing or expired.
    pub fn get(&self, file: &str) -> Option<Vec<u8>> {
        let path = self.dir.join(file);
        let written = std::fs::metadata(&path).ok()?.modified().ok()?;
        if SystemTime::now()
            .duration_since(written)
            .is_ok_and(|age| age > self.max_age)
        {
            return None;
        }
        std::fs::read(path).ok()
    }

    /// Deletes from the oldest end while over a limit. `incoming` is the
    /// size of the signature just added (never evicted itself unless it is
    /// older than the age limit, which it cannot be).
    fn evict(&self, ix: &mut Index, incoming: u64) {
        let now = SystemTime::now();
        let mut for_size = 0u64;
        while let Some(oldest) = ix.files.front() {
            let expired = now
                .duration_since(oldest.written)
                .is_ok_and(|age| age > self.max_age);
            let over = ix.total > self.max_bytes && ix.files.len() > 1;
            if !expired && !over {
                break;
            }
            let Some(s) = ix.files.pop_front() else { break };
            if let Err(e) = std::fs::remove_file(self.dir.join(&s.file)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %s.file, error = %e, "cannot delete an old signature");
                }
            }
            ix.total -= s.size;
            let reason = if expired { "age" } else { "size" };
            self.evicted
                .get_or_create(&NameLabel {
                    name: reason.to_owned(),
                })
                .inc();
            for_size += u64::from(!expired);
        }
        if for_size > 0 && !ix.full {
            tracing::warn!(
                max_bytes = self.max_bytes,
                incoming,
                "signature store full (signing.store_max_bytes): the oldest signatures are deleted"
            );
        }
        ix.full = for_size > 0;
        self.bytes.set(i64::try_from(ix.total).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, max_bytes: u64, max_age: Duration) -> SignatureStore {
        SignatureStore::open(
            dir,
            max_bytes,
            max_age,
            (Family::default(), Gauge::default()),
        )
        .unwrap()
    }

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("stadttor-sigstore-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn on_disk(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn a_flood_of_signatures_cannot_grow_the_store_beyond_its_limit() {
        let dir = tmp("flood");
        let s = store(&dir, 10_000, Duration::from_secs(3600));
        for i in 0..100 {
            s.put(&format!("sig{i:03}"), &[7u8; 1000]).unwrap();
            assert!(on_disk(&dir) <= 10_000);
        }
        // The newest ten stay, the oldest went first.
        assert!(s.get("sig099.p7s").is_some() && s.get("sig090.p7s").is_some());
        assert!(s.get("sig089.p7s").is_none() && s.get("sig000.p7s").is_none());
        let evicted = s
            .evicted
            .get_or_create(&NameLabel {
                name: "size".into(),
            })
            .get();
        assert_eq!(evicted, 90);
        assert_eq!(s.bytes.get(), 10_000);
        assert!(s.put("huge", &[0u8; 10_001]).is_err());
        // Reopened (a restart): the index is rebuilt and still within limits.
        drop(s);
        let s = store(&dir, 5_000, Duration::from_secs(3600));
        assert_eq!(on_disk(&dir), 5_000);
        assert!(s.get("sig099.p7s").is_some() && s.get("sig094.p7s").is_none());
        s.remove("sig099");
        assert!(s.get("sig099.p7s").is_none());
        assert_eq!(s.bytes.get(), 4_000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn signatures_older_than_the_age_limit_are_not_served_and_are_deleted() {
        let dir = tmp("age");
        let s = store(&dir, 1_000_000, Duration::from_secs(60));
        s.put("old", b"old").unwrap();
        let past = SystemTime::now() - Duration::from_secs(120);
        std::fs::File::options()
            .write(true)
            .open(dir.join("old.p7s"))
            .unwrap()
            .set_modified(past)
            .unwrap();
        assert!(s.get("old.p7s").is_none(), "expired: not served");
        // At restart the index takes the file's time.
        drop(s);
        let s = store(&dir, 1_000_000, Duration::from_secs(60));
        assert!(!dir.join("old.p7s").exists(), "expired: deleted");
        assert_eq!(
            s.evicted
                .get_or_create(&NameLabel { name: "age".into() })
                .get(),
            1
        );
        s.put("new", b"new").unwrap();
        assert!(s.get("new.p7s").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
