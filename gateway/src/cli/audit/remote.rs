//! `stadttor audit verify URL`: mirror the published files into a
//! directory (a temporary one, or the auditor's `--mirror DIR`) with
//! [`fetch::mirror`], then verify the copy offline. The TLS client uses the
//! gateway's BSI TLS profile and trusts the auditor's `--ca` file or the
//! system bundle.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use stadttor_audit::fetch;
use stadttor_audit::note::VerifierKey;
use stadttor_audit::verify::{self, VerifyReport};

use super::{io_err, AuditCmdError};

/// Where a system CA bundle is looked for when `--ca` is not given.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// A directory that is removed on drop unless it was given by the user.
struct Mirror {
    path: PathBuf,
    remove: bool,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

impl Mirror {
    fn new(keep: Option<&Path>) -> Result<Self, AuditCmdError> {
        if let Some(dir) = keep {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            let empty = std::fs::read_dir(dir)
                .map_err(io_err(dir))?
                .next()
                .is_none();
            if !empty {
                return Err(AuditCmdError::Usage(format!(
                    "--mirror {}: the directory is not empty",
                    dir.display()
                )));
            }
            return Ok(Self {
                path: dir.to_owned(),
                remove: false,
            });
        }
        let mut nonce = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| io_err(Path::new("<random>"))(io::Error::other("no randomness")))?;
        let name = format!(
            "stadttor-audit-{}-{}",
            std::process::id(),
            stadttor_pki::hex::encode(&nonce)
        );
        let path = std::env::temp_dir().join(name);
        // create_dir, not create_dir_all: refuses a directory planted in advance.
        std::fs::create_dir(&path).map_err(io_err(&path))?;
        Ok(Self { path, remove: true })
    }
}

/// Mirrors the log published under `base` and verifies the copy.
pub(super) fn verify_url(
    base: &str,
    key: &VerifierKey,
    ca: Option<&Path>,
    keep: Option<&Path>,
) -> Result<VerifyReport, AuditCmdError> {
    let https = base.to_ascii_lowercase().starts_with("https://");
    if ca.is_some() && !https {
        return Err(AuditCmdError::Usage(
            "--ca applies only to an https URL".into(),
        ));
    }
    let tls = client_tls(ca, https)?;
    let mirror = Mirror::new(keep)?;
    fetch::mirror(base, key, tls, &mirror.path)?;
    Ok(verify::verify_dir(&mirror.path, key)?)
}

fn client_tls(ca: Option<&Path>, https: bool) -> Result<ClientConfig, AuditCmdError> {
    let mut roots = rustls::RootCertStore::empty();
    if https {
        let path = match ca {
            Some(p) => p.to_owned(),
            None => SYSTEM_CA_BUNDLES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    AuditCmdError::Usage(
                        "no system CA bundle found; give the server's CA with --ca FILE".into(),
                    )
                })?,
        };
        let bytes = std::fs::read(&path)
            .map_err(|e| AuditCmdError::Usage(format!("--ca {}: {e}", path.display())))?;
        for c in CertificateDer::pem_slice_iter(&bytes) {
            let c = c.map_err(|e| AuditCmdError::Usage(format!("--ca {}: {e}", path.display())))?;
            // A system bundle may hold a certificate rustls cannot use;
            // skip it there, but refuse it in a file the auditor chose.
            if let Err(e) = roots.add(c) {
                if ca.is_some() {
                    return Err(AuditCmdError::Usage(format!(
                        "--ca {}: unusable CA certificate: {e}",
                        path.display()
                    )));
                }
            }
        }
        if roots.is_empty() {
            return Err(AuditCmdError::Usage(format!(
                "--ca {}: no PEM certificate found",
                path.display()
            )));
        }
    }
    let provider = Arc::new(stadttor_gateway::http::tls::bsi_provider(true));
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AuditCmdError::Usage(format!("TLS client configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
