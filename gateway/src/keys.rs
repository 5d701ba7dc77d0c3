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
use std::sync::{Arc, Mutex, Weak};

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
    seen: Mutex<Vec<Weak<dyn SigningKey>>>,
    /// Each live key's counters at the last usage report.
    reported: Mutex<Vec<(Weak<dyn SigningKey>, KeyStatsSnapshot)>>,
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
            seen: Mutex::new(Vec::new()),
            reported: Mutex::new(Vec::new()),
        })
    }

    /// Use of every live key since the previous call (the first call:
    /// since the key was opened), summed per key reference, keys without
    /// use left out. A key replaced by a reload counts from zero; what an
    /// old key did between the last report and its replacement is lost.
    pub fn usage_since_last_report(&self) -> Vec<KeyUse> {
        let live = self.live();
        let Ok(mut reported) = self.reported.lock() else {
            return Vec::new();
        };
        reported.retain(|(w, _)| w.strong_count() > 0);
        let mut sums: BTreeMap<(String, &'static str), (u64, u64, u64)> = BTreeMap::new();
        for k in &live {
            let Some(now) = k.stats().map(stadttor_hsm::KeyStats::snapshot) else {
                continue;
            };
            let weak = Arc::downgrade(k);
            let last = match reported.iter_mut().find(|(w, _)| Weak::ptr_eq(w, &weak)) {
                Some((_, last)) => std::mem::replace(last, now),
                None => {
                    reported.push((weak, now));
                    KeyStatsSnapshot::default()
                }
            };
            let e = sums
                .entry((k.reference().to_owned(), backend_name(k.as_ref())))
                .or_default();
            e.0 += now.signatures.saturating_sub(last.signatures);
            e.1 += now.failures.saturating_sub(last.failures);
            e.2 += now.rejected.saturating_sub(last.rejected);
        }
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

    /// Registers a key (e.g. a short-lived leaf) for the metrics.
    pub fn track(&self, key: &Arc<dyn SigningKey>) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.retain(|w| w.strong_count() > 0);
            seen.push(Arc::downgrade(key));
        }
    }

    fn live(&self) -> Vec<Arc<dyn SigningKey>> {
        self.seen
            .lock()
            .map(|s| s.iter().filter_map(Weak::upgrade).collect())
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
        let keys: Vec<_> = self
            .0
            .live()
            .into_iter()
            .filter_map(|k| {
                let s = k.stats()?.snapshot();
                let backend = backend_name(k.as_ref());
                Some((
                    KeyLabels {
                        key: k.reference().to_owned(),
                        backend: backend.to_owned(),
                    },
                    s,
                ))
            })
            .collect();
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
