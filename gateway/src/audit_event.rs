//! Audit events from the gateway to the tamper-evident log.
//!
//! The gateway opens the log once per process (`[audit]`), records one
//! `http.access` event per audited request **before** forwarding it, and
//! events for configuration reloads, start and stop. Subjects are
//! pseudonymised with a keyed hash; paths, query strings, headers and
//! bodies are never recorded, only the route, method and request id.
//!
//! Fail closed: on a route with `audit = "required"` a request whose event
//! cannot be queued (queue full, storage or signing failing) is refused with
//! 503, `/readyz` reports the log's failure, and the transition is logged.
//! Audit events never go through `tracing`.
//!
//! No served request without its evidence: on required routes the event is
//! appended with [`AuditLog::record_durable_entry`] before the request is
//! forwarded, and the response head waits for its [`Evidence`] (the event in
//! the WAL after `fdatasync`, or committed in PostgreSQL). The writer
//! commits at once when someone waits, and requests arriving meanwhile share
//! the next commit, so the wait overlaps the upstream's work and stays
//! short. Logins, logouts, step-ups, policy changes and document seals use
//! [`AuditLog::record_durable`] before their response.

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stadttor_audit::event::{EntryBuilder, Event, Outcome, Pseudonymiser};
use stadttor_audit::{Log, LogConfig};

use crate::config::{Audit, AuditStorage};
use crate::keys::Keys;

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AuditOpenError {
    /// The checkpoint key could not be resolved.
    #[error("audit.key: {0}")]
    Key(#[from] stadttor_hsm::Error),
    /// The pseudonym key file is unusable.
    #[error("audit.pseudonym_key_file {path}: {reason}")]
    PseudonymKey {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The storage is not compiled in.
    #[error("audit: {0}")]
    Unsupported(&'static str),
    /// TLS to PostgreSQL cannot be set up (the CA file).
    #[error("audit.postgres_ca_file: {0}")]
    StoreTls(String),
    /// The log itself refused to open (recovery failed, locked, …).
    #[error("audit.dir: {0}")]
    Log(#[from] stadttor_audit::Error),
}

/// The log, in a directory or in PostgreSQL.
#[derive(Debug)]
enum Backend {
    Dir(Log),
    #[cfg(feature = "postgres")]
    Postgres(stadttor_audit::pg::PgLog),
}

/// How long a response waits for its event to become durable before it is
/// refused with 503 (a disk or database that slow is a failing one).
pub const DURABLE_TIMEOUT: Duration = Duration::from_secs(5);

/// An event on its way to durable storage. The response it vouches for may
/// leave only after [`Evidence::settled`] returned `Ok`.
#[derive(Debug)]
#[must_use = "the response must wait for its evidence"]
pub struct Evidence(stadttor_audit::Durable);

impl Evidence {
    /// Waits until the event is durable, at most [`DURABLE_TIMEOUT`].
    pub async fn settled(self) -> Result<(), stadttor_audit::Error> {
        match tokio::time::timeout(DURABLE_TIMEOUT, self.0).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(stadttor_audit::Error::Timeout),
        }
    }

    /// Runs `work` (e.g. the upstream exchange) while the event becomes
    /// durable, and returns both outcomes; without evidence (an optional
    /// or unaudited route) only `work` runs.
    pub async fn along<F: Future>(
        evidence: Option<Self>,
        work: F,
    ) -> (F::Output, Result<(), stadttor_audit::Error>) {
        match evidence {
            Some(e) => tokio::join!(work, e.settled()),
            None => (work.await, Ok(())),
        }
    }
}

impl Backend {
    fn append_durable(
        &self,
        entry: Vec<u8>,
    ) -> Result<stadttor_audit::Durable, stadttor_audit::Error> {
        match self {
            Self::Dir(l) => l.append_durable(entry),
            #[cfg(feature = "postgres")]
            Self::Postgres(l) => l.append_durable(entry),
        }
    }

    fn append_entry(&self, entry: Vec<u8>) -> Result<(), stadttor_audit::Error> {
        match self {
            Self::Dir(l) => l.append_entry(entry).map(|_| ()),
            #[cfg(feature = "postgres")]
            Self::Postgres(l) => l.append_entry(entry).map(|_| ()),
        }
    }

    fn failure(&self) -> Option<String> {
        match self {
            Self::Dir(l) => l.status().failure,
            #[cfg(feature = "postgres")]
            Self::Postgres(l) => l.status().failure,
        }
    }

    fn flush(&self, timeout: Duration) -> Result<u64, stadttor_audit::Error> {
        match self {
            Self::Dir(l) => l.flush(timeout),
            #[cfg(feature = "postgres")]
            Self::Postgres(l) => l.flush(timeout),
        }
    }

    fn close(&self) -> Result<(), stadttor_audit::Error> {
        match self {
            Self::Dir(l) => l.close(),
            #[cfg(feature = "postgres")]
            Self::Postgres(l) => l.close(),
        }
    }
}

/// Reads the pseudonym key (`audit.pseudonym_key_file`, a secret file:
/// `stadttor_hsm::secret_file`) and builds the pseudonymiser. Used by
/// [`AuditLog::open`] and by the start-up check.
pub fn load_pseudonymiser(cfg: &Audit) -> Result<Pseudonymiser, AuditOpenError> {
    let err = |reason: String| AuditOpenError::PseudonymKey {
        path: cfg.pseudonym_key_file.display().to_string(),
        reason,
    };
    let secret =
        stadttor_hsm::secret_file::read(&cfg.pseudonym_key_file).map_err(|e| err(e.to_string()))?;
    Pseudonymiser::new(&secret).map_err(|e| err(e.to_string()))
}

/// The process's audit log.
#[derive(Debug)]
pub struct AuditLog {
    log: Backend,
    pseudonyms: Pseudonymiser,
    failing: AtomicBool,
}

impl AuditLog {
    /// Opens the log (running crash recovery, which is logged).
    pub fn open(cfg: &Audit, keys: &Keys) -> Result<Arc<Self>, AuditOpenError> {
        let key = keys.resolve(&cfg.key)?;
        let pseudonyms = load_pseudonymiser(cfg)?;
        let log = match &cfg.storage {
            AuditStorage::Dir(dir) => {
                let mut lc = LogConfig::new(dir, &cfg.origin);
                lc.period = cfg.checkpoint_period;
                lc.queue_capacity = cfg.queue_capacity;
                let (log, report) = Log::open(lc, key)?;
                tracing::info!(dir = %dir.display(), verifier_key = %log.verifier_key(), recovery = %report, "audit log open");
                Backend::Dir(log)
            }
            #[cfg(feature = "postgres")]
            AuditStorage::Postgres { url, schema, tls } => {
                let mut pc = stadttor_audit::pg::PgConfig::new(url, schema, &cfg.origin);
                pc.connector = crate::store_tls::sync_connector(tls.as_ref())
                    .map_err(|e| AuditOpenError::StoreTls(e.to_string()))?;
                pc.period = cfg.checkpoint_period;
                pc.queue_capacity = cfg.queue_capacity;
                let (log, report) = stadttor_audit::pg::PgLog::open(pc, key)?;
                tracing::info!(schema = %schema, verifier_key = %log.verifier_key(), recovery = %report, "audit log open (PostgreSQL)");
                Backend::Postgres(log)
            }
            #[cfg(not(feature = "postgres"))]
            AuditStorage::Postgres { .. } => {
                return Err(AuditOpenError::Unsupported(
                    "PostgreSQL audit storage needs the cargo feature `postgres`",
                ))
            }
        };
        Ok(Arc::new(Self {
            log,
            pseudonyms,
            failing: AtomicBool::new(false),
        }))
    }

    /// Queues an event. On failure the caller decides (required routes
    /// refuse the request); the first failure after a healthy period and
    /// the recovery are logged.
    pub fn record(&self, event: &Event) -> Result<(), stadttor_audit::Error> {
        self.record_entry(event.to_entry().map_err(stadttor_audit::Error::Event)?)
    }

    /// [`AuditLog::record`] of an encoded event (see [`EntryBuilder`]).
    pub fn record_entry(&self, entry: Vec<u8>) -> Result<(), stadttor_audit::Error> {
        self.noted(self.log.append_entry(entry))
    }

    /// Queues an encoded event for an immediate commit; the response it
    /// vouches for waits for the returned [`Evidence`].
    pub fn record_durable_entry(&self, entry: Vec<u8>) -> Result<Evidence, stadttor_audit::Error> {
        self.noted(self.log.append_durable(entry)).map(Evidence)
    }

    /// Records `event` and waits until it is durable (logins, logouts,
    /// step-ups, policy changes, document seals).
    pub async fn record_durable(&self, event: &Event) -> Result<(), stadttor_audit::Error> {
        let entry = event.to_entry().map_err(stadttor_audit::Error::Event)?;
        let settled = self.record_durable_entry(entry)?.settled().await;
        self.noted(settled)
    }

    /// Logs the first failure after a healthy period, and the recovery.
    fn noted<T>(&self, r: Result<T, stadttor_audit::Error>) -> Result<T, stadttor_audit::Error> {
        match &r {
            Ok(_) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::warn!("audit log records again");
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, "audit log cannot record: audited routes are refused (fail closed)");
                }
            }
        }
        r
    }

    /// The C2SP verifier key auditors check checkpoints with.
    pub fn verifier_key(&self) -> String {
        match &self.log {
            Backend::Dir(l) => l.verifier_key().to_string(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(l) => l.verifier_key().to_string(),
        }
    }

    /// A pseudonym for `value` in the namespace `kind`.
    pub fn pseudonym(&self, kind: &str, value: &str) -> stadttor_audit::event::Pseudonym {
        self.pseudonyms.pseudonym(kind, value)
    }

    /// `Err(reason)` while the log cannot record (for `/readyz`).
    pub fn health(&self) -> Result<(), String> {
        match self.log.failure() {
            Some(f) => Err(f),
            None if self.failing.load(Ordering::Relaxed) => {
                Err("the audit log refused recent events".into())
            }
            None => Ok(()),
        }
    }

    /// Records a lifecycle event (start, stop, reload), best effort.
    pub fn lifecycle(&self, kind: &str, outcome: Outcome, detail: Option<&str>) {
        let mut ev = Event::new(kind, outcome);
        if let Some(d) = detail {
            ev = ev.attr("detail", d);
        }
        let _ = self.record(&ev);
    }

    /// Records one `key.use` event per key used since the last report
    /// (outcome `failure` when the key had failed requests), best effort.
    pub fn key_use(&self, uses: &[crate::keys::KeyUse]) {
        for u in uses {
            let outcome = if u.failures > 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            let ev = EntryBuilder::new("key.use", outcome)
                .target(&u.reference)
                .attr("backend", u.backend)
                .attr("signatures", u.signatures)
                .attr("failures", u.failures)
                .attr("rejected", u.rejected);
            if let Ok(entry) = ev.to_entry() {
                let _ = self.record_entry(entry);
            }
        }
    }

    /// Signs a final checkpoint and stops the writer.
    pub fn close(&self, timeout: Duration) {
        if let Err(e) = self.log.flush(timeout) {
            tracing::error!(error = %e, "audit log: final flush failed");
        }
        if let Err(e) = self.log.close() {
            tracing::error!(error = %e, "audit log: final checkpoint failed");
        }
    }
}

/// Records `http.rejected`: a request refused before it reached a service
/// because its target could not be made unambiguous (`reason` is the
/// refusal's code; the path itself is never recorded). Best effort: the
/// request is refused either way.
pub fn record_rejected(
    audit: &AuditLog,
    reason: &str,
    route: &str,
    method: &http::Method,
    request_id: &str,
    listener: &str,
    client: IpAddr,
) {
    let client = client_pseudonym(audit, client);
    let ev = EntryBuilder::new("http.rejected", Outcome::Denied)
        .target(route)
        .request_id(request_id)
        .attr("method", method.as_str())
        .attr("listener", listener)
        .attr("client", client.as_str())
        .attr("reason", reason);
    if let Ok(entry) = ev.to_entry() {
        let _ = audit.record_entry(entry);
    }
}

/// The pseudonym of a client address (namespace `ip`; IPv4-mapped IPv6
/// written as IPv4): the `client` attribute of request events. The address
/// is the one [`crate::http::client_addr`] determined, so behind a trusted
/// load balancer it is the client's, not the balancer's.
pub fn client_pseudonym(audit: &AuditLog, client: IpAddr) -> stadttor_audit::event::Pseudonym {
    audit.pseudonym("ip", &client.to_canonical().to_string())
}

/// What the policy decided about a request, for its audit event.
pub type AuditedDecision<'a> = (
    &'a crate::config::RouteAuthz,
    &'a stadttor_policies::DecisionRecord,
);

/// Encodes the event about one request (`http.access`, or
/// `authz.decision` for a request the policy refused) with the
/// pseudonymised subject and the policy's decision. Encoded straight into
/// the entry (no intermediate [`Event`]): this runs on every audited
/// request. The caller records it, durably on required routes.
#[allow(clippy::too_many_arguments)]
pub fn request_entry(
    audit: &AuditLog,
    kind: &str,
    outcome: Outcome,
    route: &str,
    method: &http::Method,
    request_id: &str,
    listener: &str,
    client: IpAddr,
    client_subject: Option<&str>,
    identity: Option<&crate::identity::Identity>,
    decision: Option<AuditedDecision<'_>>,
) -> Result<Vec<u8>, stadttor_audit::Error> {
    let subject = match (identity, client_subject) {
        (Some(id), _) => Some(audit.pseudonym(&id.issuer, &id.sub)),
        (None, Some(s)) => Some(audit.pseudonym("x509-subject", s)),
        (None, None) => None,
    };
    let client = client_pseudonym(audit, client);
    let mut ev = EntryBuilder::new(kind, outcome)
        .target(route)
        .request_id(request_id)
        .attr("method", method.as_str())
        .attr("listener", listener)
        .attr("client", client.as_str());
    if let Some(p) = &subject {
        ev = ev.subject(p);
    }
    if let Some(id) = identity {
        ev = ev
            .attr("auth", id.method.name())
            .attr("idp", id.provider.as_str());
        if let Some(l) = id.level {
            ev = ev.attr("level", l.as_str());
        }
    }
    if let Some((z, d)) = decision {
        ev = audit_attrs(ev, z, d);
    }
    ev.to_entry().map_err(stadttor_audit::Error::Event)
}

/// Adds a decision's attributes to an audit event.
fn audit_attrs<'a>(
    ev: EntryBuilder<'a>,
    route: &'a crate::config::RouteAuthz,
    d: &stadttor_policies::DecisionRecord,
) -> EntryBuilder<'a> {
    ev.tenant(route.domain.as_str())
        .attr("authz_domain", route.domain.as_str())
        .attr("authz_decision", d.decision.as_str())
        .attr("authz_reason", d.reason.as_str())
        .attr("authz_line", d.line.unwrap_or(0))
        .attr("policy_version", d.version)
}
