//! The gateway's view of the key store: one store for the process, hardware
//! keys resolved once and kept, and their statistics as Prometheus metrics.
//!
//! A TPM has few object slots and (without a resource manager) one client at
//! a time, so reloads must not open a second context or load the same key
//! again: hardware keys are cached by reference for the life of the process.
//! Software keys are re-read on every resolve, so a reload picks up a
//! renewed key file.
//!
//! Key use reaches the audit log as periodic `key.use` events (signatures
//! and failures per key since the last report, see
//! [`Keys::usage_since_last_report`]) rather than one event per TLS
//! handshake, which would double the log's volume for nothing an auditor
//! can act on; document seals and delegations are audited one by one.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use stadttor_hsm::{KeyRef, KeyStatsSnapshot, KeyStore, KeyStoreConfig, Protection, SigningKey};

/// Keys of the process.
#[derive(Debug)]
pub struct Keys {
    store: KeyStore,
    hardware: Mutex<HashMap<String, Arc<dyn SigningKey>>>,
    /// Every key in use, and each one's counters at the last usage report.
    /// Held strongly: a key nobody else holds any more (replaced by a
    /// reload, a rotated leaf) stays here until a report has counted its
    /// last signatures, then goes.
    tracked: Mutex<Vec<Tracked>>,
    /// Whether usage reports are being made (else nothing waits for a
    /// dropped key's last counters).
    reporting: AtomicBool,
}

#[derive(Debug)]
struct Tracked {
    key: Arc<dyn SigningKey>,
    reported: KeyStatsSnapshot,
}

impl Tracked {
    /// Whether anyone but this list still holds the key.
    fn in_use(&self) -> bool {
        Arc::strong_count(&self.key) > 1
    }

    /// Whether the key was used since the last report.
    fn unreported(&self) -> bool {
        self.key.stats().is_some_and(|s| {
            let now = s.snapshot();
            now.signatures != self.reported.signatures || now.failures != self.reported.failures
        })
    }
}

/// How much one key was used since the last report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    /// The key reference (`tpm:handle=…`, `pkcs11:…`, `file:…`).
    pub reference: String,
    /// `file`, `tpm`, `pkcs11` or `other`.
    pub backend: &'static str,
    /// Signatures made.
    pub signatures: u64,
    /// Failed signing requests (refusals included).
    pub failures: u64,
    /// Of those, refused at once because the device queue was full.
    pub rejected: u64,
}

fn backend_name(k: &dyn SigningKey) -> &'static str {
    match k.protection() {
        Protection::Software => "file",
        Protection::Tpm => "tpm",
        Protection::Pkcs11 => "pkcs11",
        _ => "other",
    }
}

impl Keys {
    /// Opens the store; hardware is contacted on first resolve.
    pub fn new(config: KeyStoreConfig) -> Arc<Self> {
        Arc::new(Self {
            store: KeyStore::new(config),
            hardware: Mutex::new(HashMap::new()),
            tracked: Mutex::new(Vec::new()),
            reporting: AtomicBool::new(false),
        })
    }

    /// Use of every key since the previous call (the first call: since
    /// the key was opened), summed per key reference, keys without use
    /// left out. A key that a reload replaced is counted up to its last
    /// signature: it is kept until this report, then let go.
    pub fn usage_since_last_report(&self) -> Vec<KeyUse> {
        self.reporting.store(true, Ordering::Relaxed);
        let Ok(mut tracked) = self.tracked.lock() else {
            return Vec::new();
        };
        let mut sums: BTreeMap<(String, &'static str), (u64, u64, u64)> = BTreeMap::new();
        for t in tracked.iter_mut() {
            let Some(now) = t.key.stats().map(stadttor_hsm::KeyStats::snapshot) else {
                continue;
            };
            let last = std::mem::replace(&mut t.reported, now);
            let e = sums
                .entry((t.key.reference().to_owned(), backend_name(t.key.as_ref())))
                .or_default();
            e.0 += now.signatures.saturating_sub(last.signatures);
            e.1 += now.failures.saturating_sub(last.failures);
            e.2 += now.rejected.saturating_sub(last.rejected);
        }
        // Counted to the end: nobody else can sign with these any more.
        tracked.retain(Tracked::in_use);
        sums.into_iter()
            .filter(|(_, (s, f, _))| *s + *f > 0)
            .map(
                |((reference, backend), (signatures, failures, rejected))| KeyUse {
                    reference,
                    backend,
                    signatures,
                    failures,
                    rejected,
                },
            )
            .collect()
    }

    /// The backend settings this store was opened with.
    pub fn config(&self) -> &KeyStoreConfig {
        self.store.config()
    }

    /// The underlying store (for key management commands).
    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    /// Resolves a key, reusing a hardware key resolved before.
    pub fn resolve(&self, key: &KeyRef) -> Result<Arc<dyn SigningKey>, stadttor_hsm::Error> {
        let name = key.to_string();
        if !matches!(key, KeyRef::File(_)) {
            if let Some(k) = self
                .hardware
                .lock()
                .ok()
                .and_then(|m| m.get(&name).cloned())
            {
                return Ok(k);
            }
        }
        let k = self.store.resolve(key)?;
        if k.protection() != Protection::Software {
            if let Ok(mut m) = self.hardware.lock() {
                m.insert(name, k.clone());
            }
        }
        self.track(&k);
        Ok(k)
    }

    /// Registers a key (e.g. a short-lived leaf) for the metrics and the
    /// usage reports.
    pub fn track(&self, key: &Arc<dyn SigningKey>) {
        let reporting = self.reporting.load(Ordering::Relaxed);
        if let Ok(mut tracked) = self.tracked.lock() {
            // Keys nobody holds go now unless a report still has to count
            // their last signatures.
            tracked.retain(|t| t.in_use() || (reporting && t.unreported()));
            tracked.push(Tracked {
                key: key.clone(),
                reported: KeyStatsSnapshot::default(),
            });
        }
    }

    fn live(&self) -> Vec<Arc<dyn SigningKey>> {
        self.tracked
            .lock()
            .map(|t| t.iter().map(|t| t.key.clone()).collect())
            .unwrap_or_default()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    key: String,
    backend: String,
}

/// Exposes every live key's statistics on each scrape.
#[derive(Debug)]
pub struct KeyCollector(pub Arc<Keys>);

impl Collector for KeyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // One series per key reference: a file key re-read by a reload (or
        // named twice in the config) is one key to the operator.
        let mut keys: Vec<(KeyLabels, KeyStatsSnapshot)> = Vec::new();
        for k in self.0.live() {
            let Some(s) = k.stats().map(stadttor_hsm::KeyStats::snapshot) else {
                continue;
            };
            let labels = KeyLabels {
                key: k.reference().to_owned(),
                backend: backend_name(k.as_ref()).to_owned(),
            };
            match keys.iter_mut().find(|(l, _)| *l == labels) {
                Some((_, sum)) => {
                    sum.signatures += s.signatures;
                    sum.failures += s.failures;
                    sum.rejected += s.rejected;
                    sum.queue_depth += s.queue_depth;
                    sum.total_latency += s.total_latency;
                }
                None => keys.push((labels, s)),
            }
        }
        type Get = fn(&stadttor_hsm::KeyStatsSnapshot) -> u64;
        let counters: [(&str, &str, Get); 3] = [
            ("key_signatures", "Signatures made, by key", |s| {
                s.signatures
            }),
            ("key_failures", "Failed signing requests, by key", |s| {
                s.failures
            }),
            (
                "key_rejected",
                "Signing requests refused because the device queue was full, by key",
                |s| s.rejected,
            ),
        ];
        for (name, help, get) in counters {
            let c = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            for (labels, s) in &keys {
                ConstCounter::new(get(s)).encode(family.encode_family(labels)?)?;
            }
        }
        let g = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "key_queue_depth",
            "Signing requests waiting for the device, by key",
            None,
            g.metric_type(),
        )?;
        for (labels, s) in &keys {
            ConstGauge::new(s.queue_depth as i64).encode(family.encode_family(labels)?)?;
        }
        let c = ConstCounter::new(0f64);
        let mut family = encoder.encode_descriptor(
            "key_signing_seconds",
            "Time spent signing (queueing included), by key",
            None,
            c.metric_type(),
        )?;
        for (labels, s) in &keys {
            ConstCounter::new(s.total_latency.as_secs_f64())
                .encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stadttor_hsm::Algorithm;

    fn key_file(name: &str) -> KeyRef {
        let path = std::env::temp_dir().join(format!(
            "stadttor-keys-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let key = KeyRef::File(path);
        KeyStore::new(KeyStoreConfig::default())
            .generate(&key, Algorithm::EcdsaP256Sha256)
            .unwrap();
        key
    }

    fn signatures(uses: &[KeyUse]) -> Vec<(String, u64)> {
        uses.iter()
            .map(|u| (u.reference.clone(), u.signatures))
            .collect()
    }

    #[test]
    fn a_key_replaced_by_a_reload_is_counted_to_its_last_signature() {
        let keys = Keys::new(KeyStoreConfig::default());
        let r = key_file("reload");
        let name = r.to_string();
        let old = keys.resolve(&r).unwrap();
        for _ in 0..3 {
            old.sign(b"x").unwrap();
        }
        assert_eq!(
            signatures(&keys.usage_since_last_report()),
            [(name.clone(), 3)]
        );

        // A reload re-reads the file: a new key object; the old one signs
        // a little longer (a handshake in flight) and is then dropped.
        let new = keys.resolve(&r).unwrap();
        old.sign(b"x").unwrap();
        old.sign(b"x").unwrap();
        drop(old);
        new.sign(b"x").unwrap();
        assert_eq!(
            signatures(&keys.usage_since_last_report()),
            [(name.clone(), 3)],
            "2 by the replaced key + 1 by the new one"
        );
        // Counted to the end, the old key is let go.
        assert_eq!(keys.live().len(), 1);
        assert!(keys.usage_since_last_report().is_empty());
        std::fs::remove_file(r.to_string().trim_start_matches("file:")).unwrap();
    }

    #[test]
    fn without_usage_reports_dropped_keys_are_not_kept() {
        let keys = Keys::new(KeyStoreConfig::default());
        let r = key_file("noreport");
        for _ in 0..5 {
            let k = keys.resolve(&r).unwrap();
            k.sign(b"x").unwrap();
        }
        // Only the last one resolved may linger until the next resolve.
        assert_eq!(keys.live().len(), 1);
        std::fs::remove_file(r.to_string().trim_start_matches("file:")).unwrap();
    }
}
