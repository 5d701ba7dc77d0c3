//! The one load-and-validate path: [`check`] is what `stadttor serve` runs
//! before it binds a port and what `stadttor config check` runs instead of
//! serving, so the two cannot disagree about a configuration.
//!
//! It loads the file ([`config::load`]), every certificate and key of the
//! listeners and of the admin listener (with the certificate checks of
//! [`crate::certs`]: BSI key profile, expiry, names), every secret file
//! (session keys, client secrets, the audit pseudonym key, the PKCS#11 PIN
//! file; each through `stadttor_hsm::secret_file`, the one permissions
//! rule), every key the subsystems sign with (assertions, audit
//! checkpoints, seals) and, unless `offline`, connects to the state stores
//! that are reached over the network (policy store, session store, audit
//! log in PostgreSQL). Every problem is collected and reported at once.
//!
//! It does not create directories, open the audit log or start anything:
//! `serve` does that afterwards ([`crate::server::prepare`]).

use std::path::Path;
use std::sync::Arc;

use crate::certs::Served;
use crate::config::{self, Config, ConfigError, Issue};
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::state::State;

/// What [`check`] may skip.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Skip only the network connections to state stores (build hosts
    /// without access to the databases). Files and keys are still checked.
    pub offline: bool,
}

/// A configuration that passed: the built state and what `serve` reuses.
#[derive(Debug)]
pub struct Checked {
    /// The runtime state (every listener's certificates and keys loaded).
    pub state: State,
    /// The key store, with the keys loaded by the check.
    pub keys: Arc<Keys>,
    /// The admin listener's TLS configuration, if `[admin.tls]`.
    pub admin_tls: Option<Arc<rustls::ServerConfig>>,
    /// The certificates the admin listener serves.
    pub admin_certificates: Vec<Served>,
    /// Warnings: plaintext stores, certificates expiring soon. They do not
    /// stop the gateway.
    pub warnings: Vec<Issue>,
}

/// Loads and validates the configuration at `path` as `serve` needs it;
/// route metrics are registered in `metrics`.
pub async fn check(path: &Path, metrics: &Metrics, opts: Options) -> Result<Checked, ConfigError> {
    let cfg = config::load(path)?;
    let keys = Keys::new(cfg.keys.clone());
    let file = cfg.path.clone();
    let mut issues = Vec::new();
    let admin = match crate::server::admin_tls_config(&cfg, &keys) {
        Ok(a) => a,
        Err(e) => {
            issues.extend(e.issues);
            None
        }
    };
    issues.extend(tokio::task::block_in_place(|| secret_files(&cfg, &keys)));
    if !opts.offline {
        issues.extend(stores(&cfg).await);
    }
    let mut warnings: Vec<Issue> = config::plaintext_warnings(&cfg)
        .into_iter()
        .map(|(key, reason)| Issue { key, reason })
        .collect();
    let state = match State::build(cfg, metrics, &keys) {
        Ok(s) => Some(s),
        Err(e) => {
            // The listeners' problems come first, as in the file.
            issues.splice(0..0, e.issues);
            None
        }
    };
    let Some(state) = state.filter(|_| issues.is_empty()) else {
        return Err(ConfigError { file, issues });
    };
    let (admin_tls, admin_certificates) = admin.map_or((None, Vec::new()), |(c, s)| (Some(c), s));
    let served: Vec<Served> = state
        .certificates
        .iter()
        .chain(&admin_certificates)
        .cloned()
        .collect();
    warnings.extend(crate::certs::expiring(
        &served,
        crate::certs::now_unix(),
        state.config.server.certificate_expiry_warning,
    ));
    Ok(Checked {
        state,
        keys,
        admin_tls,
        admin_certificates,
        warnings,
    })
}

/// Every secret file and subsystem key the configuration names, loaded with
/// the constructors `serve` uses.
fn secret_files(cfg: &Config, keys: &Keys) -> Vec<Issue> {
    let mut issues: Vec<(String, String)> = Vec::new();
    if let Some(pin) = &cfg.keys.pkcs11_pin_file {
        if let Err(e) = stadttor_hsm::secret_file::read(pin) {
            issues.push(("keys.pkcs11_pin_file".into(), e.to_string()));
        }
    }
    if let Some(identity) = &cfg.identity {
        issues.extend(crate::authn::check_files(identity, keys));
    }
    if let Some(audit) = &cfg.audit {
        if let Err(e) = keys.resolve(&audit.key) {
            issues.push(("audit.key".into(), e.to_string()));
        }
        if let Err(e) = crate::audit_event::load_pseudonymiser(audit) {
            issues.push(("audit.pseudonym_key_file".into(), e.to_string()));
        }
    }
    if let Some(signing) = &cfg.signing {
        if let Err(e) = crate::signing::Signer::load_key(signing, keys) {
            let key = if e.starts_with("signing.certificate") {
                "signing.certificate"
            } else {
                "signing.key"
            };
            issues.push((key.into(), e));
        }
    }
    issues
        .into_iter()
        .map(|(key, reason)| Issue { key, reason })
        .collect()
}

/// Connects to every state store reached over the network and closes the
/// connection again.
async fn stores(cfg: &Config) -> Vec<Issue> {
    let mut issues = Vec::new();
    if let Some(identity) = &cfg.identity {
        if let Err(reason) = crate::authn::check_store(identity).await {
            issues.push(Issue {
                key: "identity.store".into(),
                reason: format!("{}the session store: {reason}", config::UNREACHABLE),
            });
        }
    }
    if let Some(p) = &cfg.policies {
        if !matches!(p.storage, config::PolicyStorage::Dir(_)) {
            let storage = p.storage.clone();
            let opened =
                tokio::task::spawn_blocking(move || crate::policy::open_store(&storage).map(drop))
                    .await;
            if let Some(reason) = joined_error(opened) {
                issues.push(Issue {
                    key: "policies.store".into(),
                    reason: format!("{}the policy store: {reason}", config::UNREACHABLE),
                });
            }
        }
    }
    #[cfg(feature = "postgres")]
    if let Some(config::Audit {
        storage: config::AuditStorage::Postgres { url, tls, .. },
        ..
    }) = &cfg.audit
    {
        let (url, tls) = (url.clone(), tls.clone());
        let connected = tokio::task::spawn_blocking(move || {
            let c: postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
            let connect =
                crate::store_tls::sync_connector(tls.as_ref()).map_err(|e| e.to_string())?;
            connect(&c).map(drop).map_err(|e| e.to_string())
        })
        .await;
        if let Some(reason) = joined_error(connected) {
            issues.push(Issue {
                key: "audit.postgres_url".into(),
                reason: format!("{}the audit database: {reason}", config::UNREACHABLE),
            });
        }
    }
    issues
}

/// The error of a blocking task's result, or of the task itself.
fn joined_error<E: std::fmt::Display>(
    r: Result<Result<(), E>, tokio::task::JoinError>,
) -> Option<String> {
    match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(format!("the check task failed: {e}")),
    }
}
