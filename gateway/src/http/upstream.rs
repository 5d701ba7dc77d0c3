//! Upstream pools: round-robin over addresses with passive ejection.
//!
//! An address that fails to connect `eject_after_failures` times in a row
//! rests for `eject_for`; one success resets its count. When every address
//! rests, the pool still tries them in turn (panic mode) rather than failing
//! without trying, so a recovered upstream is noticed at once.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::uri::{Authority, Scheme};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use crate::config::{self, Issue};
use crate::http::body::ProxyBody;
use crate::keys::Keys;

/// The HTTP client used towards upstreams.
pub(crate) type UpstreamClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// One address of a pool and its health.
#[derive(Debug)]
pub(crate) struct Backend {
    /// `host:port`.
    pub(crate) authority: Authority,
    failures: AtomicU32,
    ejected_until_ms: AtomicU64,
}

/// A pool of upstream addresses.
#[derive(Debug)]
pub struct Pool {
    /// The upstream's name.
    pub(crate) name: String,
    /// `http` or `https`.
    pub(crate) scheme: Scheme,
    backends: Vec<Backend>,
    next: AtomicUsize,
    eject_after: u32,
    eject_for: Duration,
    epoch: Instant,
    failures: Counter,
    ejections: Counter,
    tls: Option<Arc<ClientConfig>>,
    server_name: Option<ServerName<'static>>,
    pool_idle_timeout: Duration,
}

impl Pool {
    /// Builds a pool; TLS material is loaded here.
    pub(crate) fn new(
        u: &config::Upstream,
        index: usize,
        keys: &Keys,
        metrics: &crate::metrics::Metrics,
    ) -> Result<Self, Vec<Issue>> {
        let key = format!("upstreams[{index}]");
        let mut issues = Vec::new();
        let mut backends = Vec::new();
        for a in &u.addresses {
            match a.parse::<Authority>() {
                Ok(authority) => backends.push(Backend {
                    authority,
                    failures: AtomicU32::new(0),
                    ejected_until_ms: AtomicU64::new(0),
                }),
                Err(e) => issues.push(Issue {
                    key: format!("{key}.addresses"),
                    reason: format!("`{a}`: {e}"),
                }),
            }
        }
        let (tls, server_name) = match &u.tls {
            None => (None, None),
            Some(t) => match upstream_tls(t, keys) {
                Ok(c) => (Some(c.0), c.1),
                Err(reason) => {
                    issues.push(Issue {
                        key: format!("{key}.tls"),
                        reason,
                    });
                    (None, None)
                }
            },
        };
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Self {
            name: u.name.clone(),
            scheme: if u.tls.is_some() {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            },
            backends,
            next: AtomicUsize::new(0),
            eject_after: u.eject_after_failures,
            eject_for: u.eject_for,
            epoch: Instant::now(),
            failures: metrics.upstream_failures(&u.name),
            ejections: metrics.upstream_ejections(&u.name),
            tls,
            server_name,
            pool_idle_timeout: u.pool_idle_timeout,
        })
    }

    /// Number of addresses.
    pub(crate) fn len(&self) -> usize {
        self.backends.len()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The next address in rotation, skipping resting ones when possible.
    pub(crate) fn pick(&self) -> &Backend {
        let n = self.backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        if n == 1 {
            return &self.backends[0];
        }
        let now = self.now_ms();
        for i in 0..n {
            let b = &self.backends[(start + i) % n];
            if b.ejected_until_ms.load(Ordering::Relaxed) <= now {
                return b;
            }
        }
        &self.backends[start % n]
    }

    /// Records a successful exchange with `b`.
    pub(crate) fn success(&self, b: &Backend) {
        if b.failures.load(Ordering::Relaxed) != 0 {
            b.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failed connection to `b`; may eject it.
    pub(crate) fn failure(&self, b: &Backend) {
        self.failures.inc();
        let f = b.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if f >= self.eject_after {
            b.failures.store(0, Ordering::Relaxed);
            b.ejected_until_ms.store(
                self.now_ms() + self.eject_for.as_millis() as u64,
                Ordering::Relaxed,
            );
            self.ejections.inc();
            tracing::warn!(upstream = %self.name, address = %b.authority,
                rest = ?self.eject_for, "upstream address ejected after consecutive failures");
        }
    }

    /// Builds a client for this pool with the given connect timeout.
    pub(crate) fn client(&self, connect_timeout: Duration) -> UpstreamClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let tls = self.tls.clone().unwrap_or_else(|| {
            // Never used for `http` upstreams; https_or_http needs one.
            Arc::new(
                ClientConfig::builder_with_provider(Arc::new(crate::http::tls::bsi_provider(
                    false,
                )))
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                })
                .unwrap_or_else(|_| {
                    // Unreachable in practice (the BSI provider has TLS
                    // 1.2 and 1.3); builder() needs the process default.
                    crate::http::tls::install_process_default();
                    ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                }),
            )
        });
        let b = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http();
        let b = match &self.server_name {
            Some(n) => {
                b.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(n.clone()))
            }
            None => b,
        };
        let connector = b.enable_http1().wrap_connector(http);
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector)
    }
}

fn upstream_tls(
    t: &config::UpstreamTls,
    keys: &Keys,
) -> Result<(Arc<ClientConfig>, Option<ServerName<'static>>), String> {
    let roots = crate::http::tls::ca_roots(&t.ca).map_err(|e| format!("ca: {e}"))?;
    let builder =
        ClientConfig::builder_with_provider(Arc::new(crate::http::tls::bsi_provider(true)))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
    let cfg = match &t.client_cert {
        None => builder.with_no_client_auth(),
        Some((chain_path, key_ref)) => {
            let chain = stadttor_pki::certs::load_chain(chain_path).map_err(|e| e.to_string())?;
            let key = keys.resolve(key_ref).map_err(|e| e.to_string())?;
            stadttor_pki::certs::check_leaf_matches_key(&chain, chain_path, key.as_ref())
                .map_err(|e| e.to_string())?;
            let signing = stadttor_pki::tls_key::HsmTlsKey::new(key).map_err(|e| e.to_string())?;
            builder.with_client_cert_resolver(Arc::new(OneClientCert(Arc::new(CertifiedKey::new(
                chain,
                Arc::new(signing),
            )))))
        }
    };
    let server_name = match &t.server_name {
        None => None,
        Some(n) => {
            Some(ServerName::try_from(n.clone()).map_err(|e| format!("server_name `{n}`: {e}"))?)
        }
    };
    Ok((Arc::new(cfg), server_name))
}

#[derive(Debug)]
struct OneClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for OneClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(addrs: &[&str]) -> Pool {
        let m = crate::metrics::Metrics::new();
        let u = config::Upstream {
            name: "u".into(),
            addresses: addrs.iter().map(|s| s.to_string()).collect(),
            tls: None,
            eject_after_failures: 2,
            eject_for: Duration::from_secs(60),
            pool_idle_timeout: Duration::from_secs(1),
        };
        Pool::new(&u, 0, &Keys::new(Default::default()), &m).unwrap()
    }

    #[test]
    fn round_robin_then_ejection_then_panic_mode() {
        let p = pool(&["a:1", "b:2"]);
        let seq: Vec<_> = (0..4).map(|_| p.pick().authority.to_string()).collect();
        assert_eq!(seq, ["a:1", "b:2", "a:1", "b:2"]);
        let a = &p.backends[0];
        p.failure(a);
        assert_eq!(p.pick().authority, "a:1"); // one failure: still in rotation
        p.failure(a);
        for _ in 0..4 {
            assert_eq!(p.pick().authority, "b:2");
        }
        p.failure(&p.backends[1]);
        p.failure(&p.backends[1]);
        // Both resting: rotation goes on over all of them.
        let seq: std::collections::HashSet<_> =
            (0..4).map(|_| p.pick().authority.to_string()).collect();
        assert_eq!(seq.len(), 2);
    }

    #[test]
    fn success_resets_the_count() {
        let p = pool(&["a:1", "b:2"]);
        let a = &p.backends[0];
        p.failure(a);
        p.success(a);
        p.failure(a);
        assert_eq!(a.ejected_until_ms.load(Ordering::Relaxed), 0);
    }
}
