//! Prometheus metrics, served on the admin listener at `/metrics`.
//!
//! Per-route handles are resolved once when the runtime state is built, so
//! the request path only increments atomics.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of per-route request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route name (`-` when no route matched).
    pub route: String,
    /// Status class: `2xx`, `3xx`, `4xx`, `5xx`, or `1xx`.
    pub class: String,
}

/// Labels of per-route histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// Route name (`-` when no route matched).
    pub route: String,
}

/// Labels naming one thing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabel {
    /// The name.
    pub name: String,
}

/// All gateway metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    durations: Family<RouteLabel, Histogram>,
    set_cookie_refused: Family<RouteLabel, Counter>,
    /// Connections currently open.
    pub connections_open: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Connections accepted.
    pub connections_total: Counter<u64, AtomicU64>,
    refused: Family<NameLabel, Counter>,
    /// Failed TLS handshakes.
    pub tls_handshake_failures: Counter<u64, AtomicU64>,
    upstream_failures: Family<NameLabel, Counter>,
    upstream_ejections: Family<NameLabel, Counter>,
    reloads: Family<NameLabel, Counter>,
    rejected_targets: Family<NameLabel, Counter>,
    certificates: crate::certs::CertCollector,
}

/// Pre-resolved metric handles for one route.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
    /// Upstream `Set-Cookie` headers refused because they named one of the
    /// gateway's cookies.
    pub set_cookie_refused: Counter,
}

impl RouteMetrics {
    /// Records one finished request.
    pub fn observe(&self, status: u16, seconds: f64) {
        let i = usize::from((status / 100).clamp(1, 5) - 1);
        self.by_class[i].inc();
        self.duration.observe(seconds);
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("stadttor");
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by route and status class",
            requests.clone(),
        );
        let durations = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from request head to response head, by route",
            durations.clone(),
        );
        let set_cookie_refused = Family::<RouteLabel, Counter>::default();
        registry.register(
            "upstream_set_cookie_refused",
            "Upstream Set-Cookie headers dropped because they named a gateway cookie, by route",
            set_cookie_refused.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections currently open",
            connections_open.clone(),
        );
        let connections_total = Counter::default();
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            connections_total.clone(),
        );
        let refused = Family::<NameLabel, Counter>::default();
        registry.register(
            "connections_refused",
            "Client connections refused at accept, by reason",
            refused.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            tls_handshake_failures.clone(),
        );
        let upstream_failures = Family::<NameLabel, Counter>::default();
        registry.register(
            "upstream_failures",
            "Failed upstream connection attempts, by upstream",
            upstream_failures.clone(),
        );
        let upstream_ejections = Family::<NameLabel, Counter>::default();
        registry.register(
            "upstream_ejections",
            "Upstream addresses taken out of rotation, by upstream",
            upstream_ejections.clone(),
        );
        let reloads = Family::<NameLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads, by result (ok, rejected)",
            reloads.clone(),
        );
        let rejected_targets = Family::<NameLabel, Counter>::default();
        registry.register(
            "requests_rejected_target",
            "Requests refused before routing or at the route because their target or credentials were ambiguous, by reason",
            rejected_targets.clone(),
        );
        let certificates = crate::certs::CertCollector::default();
        registry.register_collector(Box::new(certificates.clone()));
        Self {
            registry,
            certificates,
            rejected_targets,
            requests,
            durations,
            set_cookie_refused,
            connections_open,
            connections_total,
            refused,
            tls_handshake_failures,
            upstream_failures,
            upstream_ejections,
            reloads,
        }
    }

    /// Handles for `route`.
    pub fn route(&self, route: &str) -> RouteMetrics {
        let class = |c: &str| {
            self.requests
                .get_or_create(&RouteLabels {
                    route: route.to_owned(),
                    class: c.to_owned(),
                })
                .clone()
        };
        RouteMetrics {
            by_class: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            duration: self
                .durations
                .get_or_create(&RouteLabel {
                    route: route.to_owned(),
                })
                .clone(),
            set_cookie_refused: self
                .set_cookie_refused
                .get_or_create(&RouteLabel {
                    route: route.to_owned(),
                })
                .clone(),
        }
    }

    fn named(family: &Family<NameLabel, Counter>, name: &str) -> Counter {
        family
            .get_or_create(&NameLabel {
                name: name.to_owned(),
            })
            .clone()
    }

    /// Counts a request refused for an ambiguous target ([`crate::http::target`])
    /// or ambiguous credentials ([`crate::http::credentials`]).
    pub fn rejected_target(&self, reason: &str) {
        Self::named(&self.rejected_targets, reason).inc();
    }

    /// Counts a refused connection.
    pub fn refused(&self, reason: &str) {
        Self::named(&self.refused, reason).inc();
    }

    /// The certificates served now, for `stadttor_certificate_expiry_seconds`
    /// (seconds until each one's `notAfter`, computed at every scrape).
    /// Replaces the previous set: called at start and on every reload.
    pub fn set_certificates<'a>(&self, served: impl Iterator<Item = &'a crate::certs::Served>) {
        self.certificates.set(served.cloned().collect());
    }

    /// Adds the key store's per-key statistics to the exposition.
    pub fn register_keys(&mut self, keys: std::sync::Arc<crate::keys::Keys>) {
        self.registry
            .register_collector(Box::new(crate::keys::KeyCollector(keys)));
    }

    /// Registers the CAdES signature store's metrics and returns their
    /// handles: evictions by reason (`size`, `age`) and the bytes stored.
    pub fn register_signature_store(&mut self) -> (Family<NameLabel, Counter>, Gauge) {
        let evicted = Family::<NameLabel, Counter>::default();
        self.registry.register(
            "signature_store_evicted",
            "Stored detached signatures removed to keep [signing] store limits, by reason",
            evicted.clone(),
        );
        let bytes = Gauge::default();
        self.registry.register(
            "signature_store_bytes",
            "Bytes of detached signatures in [signing] store_dir",
            bytes.clone(),
        );
        (evicted, bytes)
    }

    /// Counter of failures for an upstream.
    pub fn upstream_failures(&self, upstream: &str) -> Counter {
        Self::named(&self.upstream_failures, upstream)
    }

    /// Counter of ejections for an upstream.
    pub fn upstream_ejections(&self, upstream: &str) -> Counter {
        Self::named(&self.upstream_ejections, upstream)
    }

    /// Counts a reload outcome.
    pub fn reload(&self, result: &str) {
        Self::named(&self.reloads, result).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
