//! Running the gateway: bind, serve, reload on SIGHUP, drain on SIGTERM.
//!
//! Reload builds a complete new [`State`] from the file (every certificate
//! and key loaded) and swaps it in only if that succeeded; otherwise the old
//! state keeps serving and the reason is logged. Listener addresses cannot
//! change on reload (sockets are bound once); such a reload is rejected.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{self, Config, ConfigError};
use crate::http::listener::ConnLimits;
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::runtime::Shared;
use crate::signing::Signer;
use crate::state::State;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration or its files are unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A socket could not be bound.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: String,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

/// The addresses actually bound (port 0 resolved).
#[derive(Debug, Clone)]
pub struct Bound {
    /// Public listeners by name.
    pub listeners: Vec<(String, SocketAddr)>,
    /// The admin listener.
    pub admin: Option<SocketAddr>,
    /// Whether the admin listener speaks HTTPS.
    pub admin_https: bool,
}

/// Builds the state and binds every socket, without serving yet: first
/// the one load-and-validate path [`crate::preflight::check`] (exactly
/// what `stadttor config check` runs), then the subsystems and the
/// sockets.
pub async fn prepare(path: &std::path::Path) -> Result<Prepared, ServeError> {
    let mut metrics = Metrics::new();
    let checked =
        crate::preflight::check(path, &metrics, crate::preflight::Options::default()).await?;
    for w in &checked.warnings {
        tracing::warn!(key = %w.key, "{}", w.reason);
    }
    let crate::preflight::Checked {
        state,
        keys,
        admin_tls,
        admin_certificates,
        ..
    } = checked;
    metrics.register_keys(keys.clone());
    metrics.set_certificates(state.certificates.iter().chain(&admin_certificates));
    let audit = open_audit(&state.config, &keys)?;
    let auth = crate::authn::Auth::new(&state.config, &keys, audit.clone())
        .await
        .map_err(|reason| ConfigError {
            file: state.config.path.clone(),
            issues: vec![config::Issue {
                key: "identity".into(),
                reason,
            }],
        })?
        .map(Arc::new);
    let signer = open_signer(&state.config, &keys, audit.clone(), &mut metrics)?;
    let policy = state
        .config
        .policies
        .as_ref()
        .map(|p| crate::policy::PolicyRuntime::start(p, audit.clone()));
    if let Some(a) = &audit {
        announce_start(&state.config, a, &keys);
    }
    let officers = crate::admin::officer::Officers::new(&state.config)
        .map_err(|e| ConfigError {
            file: state.config.path.clone(),
            issues: vec![config::Issue {
                key: "admin.officer_provider".into(),
                reason: e.to_string(),
            }],
        })?
        .map(Arc::new);
    let (sockets, admin, bound) = bind_all(&state.config).await?;
    let limits = ConnLimits::new(&state.config.server);
    // Handlers are installed before the sockets are announced: a SIGHUP
    // that follows the "listening" line at once must reload, not kill.
    let signals = Signals {
        hup: signal(SignalKind::hangup()).map_err(ServeError::Signals)?,
        term: signal(SignalKind::terminate()).map_err(ServeError::Signals)?,
        int: signal(SignalKind::interrupt()).map_err(ServeError::Signals)?,
    };
    Ok(Prepared {
        signals,
        shared: Arc::new(Shared {
            state: ArcSwap::from_pointee(state),
            metrics,
            keys,
            audit,
            auth,
            signer,
            policy,
            officers,
            admin_certificates,
            draining: AtomicBool::new(false),
        }),
        sockets,
        admin,
        admin_tls,
        bound,
        limits,
    })
}

/// Opens the audit log if `[audit]` is configured; errors name the
/// `audit` key.
fn open_audit(
    config: &Config,
    keys: &Keys,
) -> Result<Option<Arc<crate::audit_event::AuditLog>>, ConfigError> {
    let Some(a) = &config.audit else {
        return Ok(None);
    };
    // Opening may block (recovery, a PostgreSQL client with its own
    // runtime): keep it off the async worker.
    let log = tokio::task::block_in_place(|| crate::audit_event::AuditLog::open(a, keys)).map_err(
        |e| ConfigError {
            file: config.path.clone(),
            issues: vec![config::Issue {
                key: "audit".into(),
                reason: crate::respond::error_chain(&e),
            }],
        },
    )?;
    Ok(Some(log))
}

/// Creates the signer if `[signing]` is configured; errors name the
/// `signing` key.
fn open_signer(
    config: &Config,
    keys: &Keys,
    audit: Option<Arc<crate::audit_event::AuditLog>>,
    metrics: &mut Metrics,
) -> Result<Option<Arc<Signer>>, ConfigError> {
    let Some(s) = &config.signing else {
        return Ok(None);
    };
    let signer =
        tokio::task::block_in_place(|| Signer::new(s, keys, audit, metrics)).map_err(|reason| {
            ConfigError {
                file: config.path.clone(),
                issues: vec![config::Issue {
                    key: "signing".into(),
                    reason,
                }],
            }
        })?;
    Ok(Some(Arc::new(signer)))
}

/// Records the `gateway.start` audit event and starts the periodic
/// key-use reports.
fn announce_start(config: &Config, a: &Arc<crate::audit_event::AuditLog>, keys: &Arc<Keys>) {
    a.lifecycle(
        "gateway.start",
        stadttor_audit::event::Outcome::Success,
        None,
    );
    if let Some(every) = config.audit.as_ref().map(|c| c.key_use_interval) {
        let (a, keys) = (a.clone(), keys.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate
            loop {
                tick.tick().await;
                a.key_use(&keys.usage_since_last_report());
            }
        });
    }
}

/// A listening socket on `addr` with the configured backlog (`listen(2)`;
/// the kernel caps it at `net.core.somaxconn`) and `SO_REUSEADDR`, so a
/// restart does not wait for old connections in TIME_WAIT.
fn listen(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(backlog)
}

/// Binds every public listener and the admin listener; returns the
/// sockets and the addresses actually bound.
async fn bind_all(
    config: &Config,
) -> Result<(Vec<TcpListener>, Option<TcpListener>, Bound), ServeError> {
    let mut sockets = Vec::new();
    let mut bound = Bound {
        listeners: Vec::new(),
        admin: None,
        admin_https: config.admin_tls.is_some(),
    };
    for l in &config.listeners {
        let sock =
            listen(l.listen, config.server.listen_backlog).map_err(|source| ServeError::Bind {
                what: format!("listener `{}`", l.name),
                addr: l.listen,
                source,
            })?;
        let addr = sock.local_addr().map_err(|source| ServeError::Bind {
            what: format!("listener `{}`", l.name),
            addr: l.listen,
            source,
        })?;
        bound.listeners.push((l.name.clone(), addr));
        sockets.push(sock);
    }
    let admin = match config.admin {
        None => None,
        Some(addr) => {
            let sock =
                listen(addr, config.server.listen_backlog).map_err(|source| ServeError::Bind {
                    what: "admin listener".into(),
                    addr,
                    source,
                })?;
            bound.admin = sock.local_addr().ok();
            Some(sock)
        }
    };
    Ok((sockets, admin, bound))
}

/// The admin listener's TLS configuration and the certificates it serves.
pub type AdminTls = (Arc<rustls::ServerConfig>, Vec<crate::certs::Served>);

/// The admin listener's TLS configuration (`[admin.tls]`), HTTP/1.1 only;
/// errors name `admin.…` keys. Part of [`crate::preflight::check`].
pub fn admin_tls_config(
    config: &config::Config,
    keys: &Arc<Keys>,
) -> Result<Option<AdminTls>, ConfigError> {
    let Some(t) = &config.admin_tls else {
        return Ok(None);
    };
    let l = config::Listener {
        name: "admin".into(),
        listen: config.admin.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
        tls: t.clone(),
        client_addr: Default::default(),
    };
    let built = crate::http::tls::server_config(&l, 0, keys).map_err(|issues| ConfigError {
        file: config.path.clone(),
        issues: issues
            .into_iter()
            .map(|i| config::Issue {
                key: i.key.replace("listeners[0]", "admin"),
                reason: i.reason,
            })
            .collect(),
    })?;
    // The admin listener speaks HTTP/1.1 only.
    let mut c = (*built.config).clone();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some((Arc::new(c), built.served)))
}

#[derive(Debug)]
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

/// A gateway with its sockets bound, ready to [`Prepared::run`].
#[derive(Debug)]
pub struct Prepared {
    signals: Signals,
    shared: Arc<Shared>,
    sockets: Vec<TcpListener>,
    admin: Option<TcpListener>,
    admin_tls: Option<Arc<rustls::ServerConfig>>,
    /// What was bound.
    pub bound: Bound,
    limits: Arc<ConnLimits>,
}

impl Prepared {
    /// The audit log's verifier key, if a log is configured.
    pub fn audit_verifier_key(&self) -> Option<String> {
        self.shared.audit.as_ref().map(|a| a.verifier_key())
    }

    /// Serves until SIGTERM or SIGINT, reloading on SIGHUP.
    pub async fn run(self) -> Result<(), ServeError> {
        let Signals {
            mut hup,
            mut term,
            mut int,
        } = self.signals;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());
        let mut tasks = Vec::new();
        for (i, sock) in self.sockets.into_iter().enumerate() {
            tasks.push(tokio::spawn(crate::http::listener::run(
                self.shared.clone(),
                i,
                sock,
                self.limits.clone(),
                graceful.clone(),
                stop_rx.clone(),
            )));
        }
        if let Some(sock) = self.admin {
            tokio::spawn(crate::admin::run(self.shared.clone(), sock, self.admin_tls));
        }
        tokio::spawn(rotate_leaves(self.shared.clone()));
        crate::certs::log_expiring(&self.shared);
        tokio::spawn(crate::certs::daily_warnings(self.shared.clone()));
        let signal_name = loop {
            tokio::select! {
                _ = hup.recv() => reload(&self.shared),
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
            }
        };
        // The drain's order is a promise to load balancers: first the state
        // (`/readyz` answers 503 from here on), then the log line, then the
        // listeners close. Whoever sees the log line or a refused connection
        // finds `/readyz` already at 503.
        self.shared.draining.store(true, Ordering::SeqCst);
        let drain = self.shared.state.load().config.server.drain_timeout;
        tracing::info!(signal = signal_name, deadline = ?drain, "draining: no new connections, finishing in-flight requests");
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        let Ok(graceful) = Arc::try_unwrap(graceful) else {
            tracing::warn!("listeners still running; cutting connections");
            return Ok(());
        };
        match tokio::time::timeout(drain, graceful.shutdown()).await {
            Ok(()) => tracing::info!("drained; all connections closed"),
            Err(_) => tracing::warn!("drain deadline passed; remaining connections are cut"),
        }
        if let Some(a) = &self.shared.audit {
            a.key_use(&self.shared.keys.usage_since_last_report());
            a.lifecycle(
                "gateway.stop",
                stadttor_audit::event::Outcome::Success,
                Some(signal_name),
            );
            let close = a.clone();
            let _ =
                tokio::task::spawn_blocking(move || close.close(std::time::Duration::from_secs(5)))
                    .await;
        }
        Ok(())
    }
}

/// `[server]` settings that are fixed when the sockets and the process are
/// set up; a reload that changes them is rejected rather than half-applied.
fn restart_needed(old: &config::Server, new: &config::Server) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.max_connections != new.max_connections {
        keys.push("max_connections");
    }
    if old.max_connections_per_ip != new.max_connections_per_ip {
        keys.push("max_connections_per_ip");
    }
    if old.header_read_timeout != new.header_read_timeout {
        keys.push("header_read_timeout");
    }
    if old.max_header_bytes != new.max_header_bytes {
        keys.push("max_header_bytes");
    }
    if old.h2_max_concurrent_streams != new.h2_max_concurrent_streams {
        keys.push("h2_max_concurrent_streams");
    }
    if old.log_format != new.log_format {
        keys.push("log_format");
    }
    if old.listen_backlog != new.listen_backlog {
        keys.push("listen_backlog");
    }
    keys
}

/// Re-issues short-lived TLS leaves at half their lifetime. A failed
/// rotation is logged and retried; the current leaf serves until it expires.
async fn rotate_leaves(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
    loop {
        tick.tick().await;
        let state = shared.state.load_full();
        for slot in state.leaves.iter().filter(|s| s.due()) {
            let slot = slot.clone();
            let origin = slot.origin.clone();
            match tokio::task::spawn_blocking(move || slot.rotate()).await {
                Ok(Ok(())) => tracing::info!(certificate = %origin, "short-lived leaf rotated"),
                Ok(Err(e)) => {
                    tracing::error!(certificate = %origin, error = %e, "leaf rotation failed; retrying")
                }
                Err(e) => {
                    tracing::error!(certificate = %origin, error = %e, "leaf rotation task failed")
                }
            }
        }
    }
}

/// Re-reads the config file and swaps in a new state if, and only if, it is
/// valid in every part.
pub fn reload(shared: &Shared) {
    let current = shared.state.load_full();
    let path = current.config.path.clone();
    let result = config::load(&path).and_then(|new| {
        check_reloadable(&current.config, &new)?;
        State::build(new, &shared.metrics, &shared.keys)
    });
    match result {
        Ok(state) => {
            shared
                .metrics
                .set_certificates(state.certificates.iter().chain(&shared.admin_certificates));
            shared.state.store(Arc::new(state));
            shared.metrics.reload("ok");
            crate::certs::log_expiring(shared);
            if let Some(a) = &shared.audit {
                a.lifecycle(
                    "config.reload",
                    stadttor_audit::event::Outcome::Success,
                    None,
                );
            }
            tracing::info!(config = %path.display(), "configuration reloaded");
        }
        Err(e) => {
            shared.metrics.reload("rejected");
            if let Some(a) = &shared.audit {
                a.lifecycle(
                    "config.reload",
                    stadttor_audit::event::Outcome::Failure,
                    None,
                );
            }
            tracing::error!(error = %e, "reload rejected; the previous configuration keeps serving");
        }
    }
}

/// A reload error at `key` of `current`'s file: the setting needs a restart.
fn needs_restart(current: &Config, key: &str, reason: &str) -> ConfigError {
    ConfigError {
        file: current.path.clone(),
        issues: vec![config::Issue {
            key: key.into(),
            reason: reason.into(),
        }],
    }
}

/// Rejects a reload from `current` to `new` that changes anything fixed at
/// start-up (signing, identity, policies, admin TLS and officers, audit,
/// key store, fixed server settings, listeners).
fn check_reloadable(current: &Config, new: &Config) -> Result<(), ConfigError> {
    let old_l: Vec<_> = current
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.listen))
        .collect();
    let new_l: Vec<_> = new
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.listen))
        .collect();
    if current.signing != new.signing {
        return Err(needs_restart(
            current,
            "signing",
            "the [signing] settings changed; that needs a restart",
        ));
    }
    if format!("{:?}", current.identity) != format!("{:?}", new.identity) {
        return Err(needs_restart(
            current,
            "identity",
            "the [identity] settings changed; that needs a restart",
        ));
    }
    if current.policies != new.policies {
        return Err(needs_restart(
            current,
            "policies",
            "the [policies] settings changed; that needs a restart",
        ));
    }
    if format!("{:?}{:?}", current.admin_tls, current.officers)
        != format!("{:?}{:?}", new.admin_tls, new.officers)
    {
        return Err(needs_restart(
            current,
            "admin",
            "the admin listener's TLS or officer settings changed; that needs a restart",
        ));
    }
    if current.audit != new.audit {
        return Err(needs_restart(
            current,
            "audit",
            "the audit log settings changed; that needs a restart",
        ));
    }
    if format!("{:?}", current.keys) != format!("{:?}", new.keys) {
        return Err(needs_restart(
            current,
            "keys",
            "the key store settings changed; that needs a restart",
        ));
    }
    let restart = restart_needed(&current.server, &new.server);
    if !restart.is_empty() {
        return Err(ConfigError {
            file: current.path.clone(),
            issues: restart
                .into_iter()
                .map(|k| config::Issue {
                    key: format!("server.{k}"),
                    reason: "changed; this setting is fixed at start-up and needs a restart".into(),
                })
                .collect(),
        });
    }
    if old_l != new_l || current.admin != new.admin {
        return Err(needs_restart(
            current,
            "listeners",
            "listener names or addresses changed; that needs a restart",
        ));
    }
    Ok(())
}
