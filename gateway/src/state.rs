//! The runtime state built from a validated [`Config`]: TLS configurations,
//! upstream pools and clients, and the route table.
//!
//! Building a `State` loads every certificate and key, so a reload that
//! would fail does so here, before anything is swapped in. The running
//! gateway holds the current `State` in an `ArcSwap`; each request takes a
//! cheap snapshot of it.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use rustls::ServerConfig;

use crate::config::{self, Config, ConfigError, Issue};
use crate::http::upstream::{Pool, UpstreamClient};
use crate::keys::Keys;
use crate::metrics::{Metrics, RouteMetrics};

/// A route, ready to serve.
#[derive(Debug)]
pub struct Route {
    /// The validated route config.
    pub cfg: config::Route,
    /// Indexes of the listeners it applies to (empty: all).
    pub listeners: Vec<usize>,
    /// Its upstream pool.
    pub pool: Arc<Pool>,
    /// Client with this route's connect timeout.
    pub client: UpstreamClient,
    /// Metric handles.
    pub metrics: RouteMetrics,
    /// Security headers added to responses.
    pub security_headers: Vec<(HeaderName, HeaderValue)>,
}

/// Everything the request path needs, swapped atomically on reload.
#[derive(Debug)]
pub struct State {
    /// The configuration this state was built from.
    pub config: Config,
    /// rustls configuration per listener, by listener index.
    pub tls: Vec<Arc<ServerConfig>>,
    /// Short-lived leaves to rotate.
    pub leaves: Vec<Arc<crate::http::tls::LeafSlot>>,
    /// Routes, most specific first.
    pub routes: Vec<Route>,
    /// Metric handles for requests that match no route.
    pub unrouted: RouteMetrics,
}

impl State {
    /// Builds the state, loading every key and certificate.
    pub fn build(config: Config, metrics: &Metrics, keys: &Arc<Keys>) -> Result<Self, ConfigError> {
        let mut issues: Vec<Issue> = Vec::new();
        let mut tls = Vec::new();
        let mut leaves = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            match crate::http::tls::server_config(l, i, keys) {
                Ok(c) => {
                    tls.push(c.config);
                    leaves.extend(c.leaves);
                }
                Err(mut e) => issues.append(&mut e),
            }
        }
        let mut pools = Vec::new();
        for (i, u) in config.upstreams.iter().enumerate() {
            match Pool::new(u, i, keys, metrics) {
                Ok(p) => pools.push(Arc::new(p)),
                Err(mut e) => issues.append(&mut e),
            }
        }
        if !issues.is_empty() {
            return Err(ConfigError {
                file: config.path.clone(),
                issues,
            });
        }
        let mut routes: Vec<Route> = config
            .routes
            .iter()
            .map(|r| {
                let pool = pools[r.upstream].clone();
                Route {
                    client: pool.client(r.timeouts.connect),
                    listeners: r
                        .listeners
                        .iter()
                        .filter_map(|n| config.listeners.iter().position(|l| &l.name == n))
                        .collect(),
                    pool,
                    metrics: metrics.route(&r.name),
                    security_headers: crate::http::headers::security_headers_for(
                        &r.response_headers,
                    ),
                    cfg: r.clone(),
                }
            })
            .collect();
        // Most specific first: exact host, then wildcard, then any host;
        // within each, the longest path prefix. Ties keep file order.
        routes.sort_by_key(|r| {
            let host_rank = match &r.cfg.host {
                Some(h) if h.starts_with("*.") => 1,
                Some(_) => 0,
                None => 2,
            };
            (host_rank, std::cmp::Reverse(r.cfg.path_prefix.len()))
        });
        Ok(Self {
            config,
            tls,
            leaves,
            routes,
            unrouted: metrics.route("-"),
        })
    }

    /// Finds the route for a request on `listener` to `host` and `path`.
    /// `host` is lowercase and has no port.
    pub fn route(&self, listener: usize, host: &str, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| {
            (r.listeners.is_empty() || r.listeners.contains(&listener))
                && host_matches(r.cfg.host.as_deref(), host)
                && prefix_matches(&r.cfg.path_prefix, path)
        })
    }
}

fn host_matches(pattern: Option<&str>, host: &str) -> bool {
    match pattern {
        None => true,
        Some(p) => match p.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => p == host,
        },
    }
}

/// `/app` matches `/app`, `/app/` and `/app/x`, not `/apple`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        assert!(host_matches(None, "x"));
        assert!(host_matches(Some("a.example"), "a.example"));
        assert!(!host_matches(Some("a.example"), "b.example"));
        assert!(host_matches(Some("*.example"), "a.example"));
        assert!(!host_matches(Some("*.example"), "a.b.example"));
        assert!(!host_matches(Some("*.example"), "example"));
    }

    #[test]
    fn prefixes_respect_segments() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/app", "/app"));
        assert!(prefix_matches("/app", "/app/x"));
        assert!(!prefix_matches("/app", "/apple"));
        assert!(prefix_matches("/app/", "/app/x"));
        assert!(!prefix_matches("/app/", "/app"));
    }
}
