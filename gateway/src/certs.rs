//! The certificates the gateway serves: the checks made when one is loaded
//! (BSI TR-02102-2 key profile, validity, names against `server_names`),
//! and their lifecycle while it runs: what expires soon (a warning in
//! `config check`, in the log at start, on reload and once a day, and on
//! `/readyz`) and the `stadttor_certificate_expiry_seconds` gauge
//! ([`crate::metrics::Metrics::set_certificates`]).
//!
//! The certificate questions themselves (key kind, names, dates) are
//! answered by `stadttor_pki::served`; this module decides what is an error
//! and what a warning.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use rustls_pki_types::CertificateDer;
use stadttor_pki::served;

use crate::config::{self, Issue};
use crate::runtime::Shared;

/// One certificate being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The listener serving it (`admin` for the admin listener).
    pub listener: String,
    /// Its key in the configuration (`listeners[0].tls.certificates[1]`).
    pub origin: String,
    /// The chain file.
    pub chain: PathBuf,
    /// The leaf's serial number (hex). For short-lived leaves, the
    /// issuing certificate's.
    pub serial: String,
    /// The leaf's `notAfter`, seconds since the Unix epoch.
    pub not_after: i64,
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A Unix time as `YYYY-MM-DD HH:MM UTC`, for messages.
pub fn utc(ts: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ts) {
        Ok(t) => format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()),
        Err(_) => format!("@{ts}"),
    }
}

/// Checks the leaf of `chain`, configured as `cert` on `listener`, at
/// time `now`: key type and size (BSI TR-02102-2), not expired, already
/// valid, and, for a directly served certificate, names covering every
/// configured `server_names` entry. `Err` is the reason, naming the file.
pub(crate) fn check(
    cert: &config::Certificate,
    chain: &[CertificateDer<'_>],
    listener: &str,
    now: i64,
) -> Result<Served, String> {
    let path = cert.chain.display();
    let leaf = chain
        .first()
        .ok_or_else(|| format!("{path}: no certificate"))?;
    let info = served::inspect(leaf, &cert.chain).map_err(|e| e.to_string())?;
    if let Some(why) = info.key.bsi_refusal() {
        return Err(format!("{path}: {why}"));
    }
    if info.not_after < now {
        return Err(format!(
            "{path}: expired on {}; renew it (docs/OPERATIONS.md, \"Renewing a certificate\")",
            utc(info.not_after)
        ));
    }
    if info.not_before > now {
        return Err(format!(
            "{path}: not valid before {}; check the clock or wait before installing it",
            utc(info.not_before)
        ));
    }
    if cert.mode == config::CertMode::Direct {
        let missing: Vec<&str> = cert
            .server_names
            .iter()
            .filter(|n| !served::names_cover(&info.dns_names, n))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{path}: does not cover server_names {missing:?}; its DNS names are {:?}",
                info.dns_names
            ));
        }
    }
    Ok(Served {
        listener: listener.to_owned(),
        origin: cert.origin.clone(),
        chain: cert.chain.clone(),
        serial: info.serial,
        not_after: info.not_after,
    })
}

/// The certificates of `served` that expire within `threshold` of `now`,
/// as warnings naming the certificate's key and its expiry.
pub fn expiring(served: &[Served], now: i64, threshold: Duration) -> Vec<Issue> {
    let limit = now.saturating_add(i64::try_from(threshold.as_secs()).unwrap_or(i64::MAX));
    served
        .iter()
        .filter(|s| s.not_after <= limit)
        .map(|s| Issue {
            key: s.origin.clone(),
            reason: format!(
                "certificate {} (serial {}) on listener `{}` expires on {}, in {} days; renew it \
                 (docs/OPERATIONS.md, \"Renewing a certificate\")",
                s.chain.display(),
                s.serial,
                s.listener,
                utc(s.not_after),
                (s.not_after - now).max(0) / 86_400
            ),
        })
        .collect()
}

/// Logs a warning for every served certificate of `shared` that expires
/// within the configured threshold.
pub fn log_expiring(shared: &Shared) {
    let state = shared.state.load();
    let threshold = state.config.server.certificate_expiry_warning;
    let all: Vec<Served> = state
        .certificates
        .iter()
        .chain(shared.admin_certificates.iter())
        .cloned()
        .collect();
    for w in expiring(&all, now_unix(), threshold) {
        tracing::warn!(certificate = %w.key, "{}", w.reason);
    }
}

/// Once a day: the expiry warnings again (start and reload log them
/// themselves).
pub async fn daily_warnings(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(24 * 3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; start logged already
    loop {
        tick.tick().await;
        log_expiring(&shared);
    }
}

/// What `/readyz` says about certificates: one line per certificate that
/// expires within the threshold (the gateway stays ready).
pub fn readiness_detail(shared: &Shared) -> Vec<String> {
    let state = shared.state.load();
    let all: Vec<Served> = state
        .certificates
        .iter()
        .chain(shared.admin_certificates.iter())
        .cloned()
        .collect();
    expiring(
        &all,
        now_unix(),
        state.config.server.certificate_expiry_warning,
    )
    .into_iter()
    .map(|w| format!("certificate expiring: {}: {}", w.key, w.reason))
    .collect()
}

/// Labels of `stadttor_certificate_expiry_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    /// The certificate's key in the configuration.
    certificate: String,
    /// The listener serving it.
    listener: String,
}

/// The `stadttor_certificate_expiry_seconds` gauge: seconds until each
/// served certificate's `notAfter` (negative once expired), computed when
/// scraped from the set last given to [`CertCollector::set`].
#[derive(Debug, Clone, Default)]
pub struct CertCollector(Arc<Mutex<Vec<Served>>>);

impl CertCollector {
    /// Replaces the certificates reported.
    pub fn set(&self, served: Vec<Served>) {
        match self.0.lock() {
            Ok(mut g) => *g = served,
            Err(p) => *p.into_inner() = served,
        }
    }
}

impl Collector for CertCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let served = match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let now = now_unix();
        let g = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "certificate_expiry_seconds",
            "Seconds until a served certificate's notAfter, by certificate (config key) and listener",
            None,
            g.metric_type(),
        )?;
        for s in &served {
            let labels = CertLabels {
                certificate: s.origin.clone(),
                listener: s.listener.clone(),
            };
            ConstGauge::new(s.not_after - now).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(origin: &str, not_after: i64) -> Served {
        Served {
            listener: "public".into(),
            origin: origin.into(),
            chain: "/etc/stadttor/tls/a.pem".into(),
            serial: "0a".into(),
            not_after,
        }
    }

    #[test]
    fn expiring_lists_only_certificates_within_the_threshold() {
        let now = 1_800_000_000;
        let day = 86_400;
        let all = [
            served("soon", now + 10 * day),
            served("later", now + 40 * day),
            served("edge", now + 30 * day),
        ];
        let w = expiring(&all, now, Duration::from_secs(30 * 86_400));
        let keys: Vec<&str> = w.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["soon", "edge"]);
        assert!(w[0].reason.contains("in 10 days"), "{}", w[0].reason);
        assert!(w[0].reason.contains("serial 0a"), "{}", w[0].reason);
        assert!(w[0].reason.contains("listener `public`"), "{}", w[0].reason);
    }

    #[test]
    fn utc_formats_a_date() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
    }
}
