//! The operator's side of `stadttor audit`: `key` and `pseudonym`.
//!
//! Unlike the auditor's commands (which need only the public verifier key),
//! these read the gateway's configuration: `key` resolves `[audit] key` in
//! the key store (TPM, PKCS#11 or file) and prints the verifier key that
//! auditors pass to `audit verify --key`; `pseudonym` computes, with
//! `[audit] pseudonym_key_file`, the pseudonym under which a subject's
//! events are recorded, so that a data subject's access request (GDPR
//! Art. 15) is answered with `audit search --subject` and no code.

use std::path::{Path, PathBuf};

use clap::Args;
use stadttor_audit::event::Pseudonymiser;
use stadttor_audit::note::VerifierKey;
use stadttor_gateway::config::{self, Audit, Config};
use stadttor_gateway::keys::Keys;
use zeroize::Zeroizing;

use super::AuditCmdError;

/// `audit key --config FILE`.
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    /// The gateway's configuration file (its `[audit]` and `[keys]` tables).
    #[arg(long, short, default_value = "/etc/stadttor/stadttor.toml")]
    config: PathBuf,
}

/// `audit pseudonym --config FILE --kind KIND VALUE`.
#[derive(Debug, Args)]
pub(crate) struct PseudonymArgs {
    /// The subject's identifier as the gateway saw it: the `sub` of an
    /// OpenID Connect login, an officer's name, a client certificate's
    /// subject.
    value: String,
    /// The namespace: the identity provider's issuer URL (`iss`) for a
    /// login's `sub`, `officer` for an officer, `x509-subject` for a
    /// client certificate's subject DN.
    #[arg(long)]
    kind: String,
    /// The gateway's configuration file (its `[audit] pseudonym_key_file`).
    #[arg(long, short, default_value = "/etc/stadttor/stadttor.toml")]
    config: PathBuf,
}

/// The configuration at `path` and its `[audit]` table.
fn load(path: &Path) -> Result<(Config, Audit), AuditCmdError> {
    let cfg = config::load(path).map_err(|e| AuditCmdError::Config(e.to_string()))?;
    let audit = cfg.audit.clone().ok_or_else(|| {
        AuditCmdError::Config(format!(
            "{}: no [audit] table: this gateway keeps no audit log",
            path.display()
        ))
    })?;
    Ok((cfg, audit))
}

/// The verifier key of the configured audit key (`<origin>+<id>+<key>`).
pub(crate) fn verifier_key(args: &KeyArgs) -> Result<String, AuditCmdError> {
    let (cfg, audit) = load(&args.config)?;
    let keys = Keys::new(cfg.keys.clone());
    let key = keys
        .resolve(&audit.key)
        .map_err(|e| AuditCmdError::Config(format!("audit.key: {e}")))?;
    let vk = VerifierKey::from_spki(&audit.origin, key.algorithm(), key.public_key_spki())
        .map_err(|e| AuditCmdError::Config(format!("audit.key: {e}")))?;
    Ok(vk.to_string())
}

/// The pseudonym of `args.value` in the namespace `args.kind`.
pub(crate) fn pseudonym(args: &PseudonymArgs) -> Result<String, AuditCmdError> {
    let (_, audit) = load(&args.config)?;
    let path = &audit.pseudonym_key_file;
    let secret = Zeroizing::new(std::fs::read(path).map_err(|source| AuditCmdError::Io {
        path: path.clone(),
        source,
    })?);
    let p = Pseudonymiser::new(&secret).map_err(|e| {
        AuditCmdError::Config(format!("audit.pseudonym_key_file {}: {e}", path.display()))
    })?;
    Ok(p.pseudonym(&args.kind, &args.value).as_str().to_owned())
}
