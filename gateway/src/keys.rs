//! The gateway's view of the key store: one store for the process, hardware
//! keys resolved once and kept, and their statistics as Prometheus metrics.
//!
//! A TPM has few object slots and (without a resource manager) one client at
//! a time, so reloads must not open a second context or load the same key
//! again: hardware keys are cached by reference for the life of the process.
//! Software keys are re-read on every resolve, so a reload picks up a
//! renewed key file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use stadttor_hsm::{KeyRef, KeyStore, KeyStoreConfig, Protection, SigningKey};

/// Keys of the process.
#[derive(Debug)]
pub struct Keys {
    store: KeyStore,
    hardware: Mutex<HashMap<String, Arc<dyn SigningKey>>>,
    seen: Mutex<Vec<Weak<dyn SigningKey>>>,
}

impl Keys {
    /// Opens the store; hardware is contacted on first resolve.
    pub fn new(config: KeyStoreConfig) -> Arc<Self> {
        Arc::new(Self {
            store: KeyStore::new(config),
            hardware: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
        })
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
                let backend = match k.protection() {
                    Protection::Software => "file",
                    Protection::Tpm => "tpm",
                    Protection::Pkcs11 => "pkcs11",
                    _ => "other",
                };
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
