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
    pub state: ArcSwap<State>,
    /// Metrics.
    pub metrics: Metrics,
    /// Set once SIGTERM arrived.
    pub draining: AtomicBool,
    /// The key store, for the life of the process.
    pub keys: Arc<crate::keys::Keys>,
    /// The audit log, if configured.
    pub audit: Option<Arc<crate::audit_event::AuditLog>>,
    /// Logins and sessions, if `[identity]` is configured.
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// Document signing, if `[signing]` is configured.
    pub signer: Option<Arc<crate::signing::Signer>>,
    /// The policy store and active policy, if `[policies]` is configured.
    pub policy: Option<Arc<crate::policy::PolicyRuntime>>,
    /// Officers' logins on the admin listener, if configured.
    pub officers: Option<Arc<crate::officer::Officers>>,
}
