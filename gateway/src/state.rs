//! The runtime state built from a validated [`Config`]: TLS configurations,
//! upstream pools and clients, and the route table with its
//! [`RouteIndex`].
//!
//! Building a `State` loads every certificate and key, so a reload that
//! would fail does so here, before anything is swapped in. The running
//! gateway holds the current `State` in an `ArcSwap`; each request takes a
//! cheap snapshot of it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rustls::ServerConfig;

use crate::config::{self, Config, ConfigError, Issue};
use crate::http::upstream::{Pool, UpstreamClient};
use crate::keys::Keys;
use crate::metrics::{Metrics, RouteMetrics};
use crate::route_index::{RouteIndex, RouteKey};

/// Response headers a route adds when the response lacks them.
pub type SecurityHeaders = Arc<[(HeaderName, HeaderValue)]>;

/// A route, ready to serve.
#[derive(Debug)]
pub struct Route {
    /// The validated route config.
    pub cfg: config::Route,
    /// Indexes of the listeners it applies to (empty: all).
    pub listeners: Vec<usize>,
    /// Its upstream pool.
    pub pool: Arc<Pool>,
    /// Client with this route's connect timeout, shared (with its
    /// connection pool) by every route to the same upstream with the same
    /// connect timeout.
    pub client: UpstreamClient,
    /// Metric handles.
    pub metrics: RouteMetrics,
    /// Security headers added to responses, shared by every route with
    /// the same `response_headers`.
    pub security_headers: SecurityHeaders,
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
    /// Every certificate the listeners serve (not the admin listener's).
    pub certificates: Vec<crate::certs::Served>,
    /// Routes, most specific first.
    pub routes: Vec<Route>,
    /// `routes` indexed by listener, host and path prefix.
    index: RouteIndex,
    /// Metric handles for requests that match no route.
    pub unrouted: RouteMetrics,
    /// Security headers for answers outside any route (the defaults).
    pub unrouted_headers: SecurityHeaders,
}

impl State {
    /// Builds the state, loading every key and certificate.
    pub fn build(config: Config, metrics: &Metrics, keys: &Arc<Keys>) -> Result<Self, ConfigError> {
        let mut issues: Vec<Issue> = Vec::new();
        let mut tls = Vec::new();
        let mut leaves = Vec::new();
        let mut certificates = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            match crate::http::tls::server_config(l, i, keys) {
                Ok(c) => {
                    tls.push(c.config);
                    leaves.extend(c.leaves);
                    certificates.extend(c.served);
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
        let routes = build_routes(&config, &pools, metrics);
        let index = RouteIndex::build(routes.iter().map(|r| RouteKey {
            listeners: &r.listeners,
            host: r.cfg.host.as_deref(),
            path_prefix: &r.cfg.path_prefix,
        }));
        Ok(Self {
            config,
            tls,
            leaves,
            certificates,
            routes,
            index,
            unrouted: metrics.route("-"),
            unrouted_headers: crate::http::headers::security_headers_for(&BTreeMap::new()).into(),
        })
    }

    /// Finds the route for a request on `listener` to `host` and `path`:
    /// the first of [`State::routes`] that matches, found through the
    /// index. `host` is lowercase and has no port.
    pub fn route(&self, listener: usize, host: &str, path: &str) -> Option<&Route> {
        self.index
            .find(listener, host, path)
            .and_then(|i| self.routes.get(i))
    }
}

/// The routes of `config`, most specific first: exact host, then
/// wildcard, then any host; within each, the longest path prefix; ties keep
/// file order. Each with its pool, metrics and security headers. Routes to
/// the same upstream with the same connect timeout share one client and so
/// its connections (a client per route cost kilobytes each and kept a
/// connection pool per route); routes with the same `response_headers`
/// share one list of security headers.
fn build_routes(config: &Config, pools: &[Arc<Pool>], metrics: &Metrics) -> Vec<Route> {
    let mut listener_index: HashMap<&str, usize> = HashMap::new();
    for (i, l) in config.listeners.iter().enumerate() {
        listener_index.entry(l.name.as_str()).or_insert(i);
    }
    // Sorting indexes, not routes: a route is large, and a stable sort of
    // ten thousand of them needs a buffer of as many.
    let mut order: Vec<usize> = (0..config.routes.len()).collect();
    order.sort_by_key(|&i| {
        let r = &config.routes[i];
        let host_rank = match &r.host {
            Some(h) if h.starts_with("*.") => 1,
            Some(_) => 0,
            None => 2,
        };
        (host_rank, std::cmp::Reverse(r.path_prefix.len()))
    });
    let mut clients: HashMap<(usize, Duration), UpstreamClient> = HashMap::new();
    let mut headers: HashMap<&BTreeMap<String, String>, SecurityHeaders> = HashMap::new();
    let mut routes = Vec::with_capacity(order.len());
    for r in order.into_iter().map(|i| &config.routes[i]) {
        let pool = pools[r.upstream].clone();
        let client = clients
            .entry((r.upstream, r.timeouts.connect))
            .or_insert_with(|| pool.client(r.timeouts.connect))
            .clone();
        let security_headers = headers
            .entry(&r.response_headers)
            .or_insert_with(|| {
                crate::http::headers::security_headers_for(&r.response_headers).into()
            })
            .clone();
        routes.push(Route {
            client,
            listeners: r
                .listeners
                .iter()
                .filter_map(|n| listener_index.get(n.as_str()).copied())
                .collect(),
            pool,
            metrics: metrics.route(&r.name),
            security_headers,
            cfg: r.clone(),
        });
    }
    routes
}
