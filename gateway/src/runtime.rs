//! What the whole process shares: the swappable state, the metrics, the
//! key store and the optional subsystems (audit log, logins, signing,
//! policies, officers' logins). Built once by [`crate::server`], read by
//! the request path ([`crate::proxy`]) and the admin listener
//! ([`crate::admin`], [`crate::officer`]).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::metrics::Metrics;
use crate::state::State;

/// What the whole process shares: the swappable state and the metrics.
#[derive(Debug)]
pub struct Shared {
    /// The current runtime state.
    pub(crate) state: ArcSwap<State>,
    /// Metrics.
    pub(crate) metrics: Metrics,
    /// Set once SIGTERM arrived.
    pub(crate) draining: AtomicBool,
    /// The key store, for the life of the process.
    pub(crate) keys: Arc<crate::keys::Keys>,
    /// The audit log, if configured.
    pub(crate) audit: Option<Arc<crate::audit_event::AuditLog>>,
    /// Logins and sessions, if `[identity]` is configured.
    pub(crate) auth: Option<Arc<crate::authn::Auth>>,
    /// Document signing, if `[signing]` is configured.
    pub(crate) signer: Option<Arc<crate::signing::Signer>>,
    /// The policy store and active policy, if `[policies]` is configured.
    pub(crate) policy: Option<Arc<crate::policy::PolicyRuntime>>,
    /// Officers' logins on the admin listener, if configured.
    pub(crate) officers: Option<Arc<crate::admin::officer::Officers>>,
    /// The admin listener's certificates (fixed at start, like its TLS).
    pub(crate) admin_certificates: Vec<crate::certs::Served>,
}
