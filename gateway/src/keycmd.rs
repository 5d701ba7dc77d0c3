//! `stadttor keys …`: key management on the hardware the gateway uses.
//!
//! Every command resolves keys through the same key store as `serve`, so a
//! key that works here works in the gateway. Backend settings come from the
//! `[keys]` table of a configuration file (only that table is read, so a
//! CSR can be made before any certificate exists) or from flags.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stadttor_hsm::{Algorithm, KeyRef, KeyStore, KeyStoreConfig, SigningKey};

use crate::config::{ConfigError, Issue};

/// Errors of the key commands.
#[derive(Debug, thiserror::Error)]
pub enum KeyCmdError {
    /// The `[keys]` table could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key store refused.
    #[error(transparent)]
    Key(#[from] stadttor_hsm::Error),
    /// Certificate or CSR generation failed.
    #[error(transparent)]
    Pki(#[from] stadttor_pki::Error),
    /// Writing an output file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Anything else the operator must fix.
    #[error("{0}")]
    Usage(String),
}

/// Reads only the `[keys]` table of a configuration file.
pub fn keys_config_from_file(path: &Path) -> Result<KeyStoreConfig, ConfigError> {
    let fail = |key: &str, reason: String| ConfigError {
        file: path.to_owned(),
        issues: vec![Issue {
            key: key.to_owned(),
            reason,
        }],
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail("(file)", format!("cannot read the file: {e}")))?;
    let value: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| fail("(top level)", e.message().to_owned()))?;
    let keys = value
        .get("keys")
        .cloned()
        .unwrap_or_else(|| toml::Value::Table(Default::default()));
    let raw: crate::config::raw::Keys = keys
        .try_into()
        .map_err(|e: toml::de::Error| fail("keys", e.message().to_owned()))?;
    let cfg = crate::config::key_store_config(&raw, path.parent().unwrap_or(Path::new(".")));
    Ok(cfg)
}

/// Parses an algorithm name as used on the command line.
pub fn parse_algorithm(s: &str) -> Result<Algorithm, KeyCmdError> {
    match s {
        "p256" | "ecdsa-p256" => Ok(Algorithm::EcdsaP256Sha256),
        "p384" | "ecdsa-p384" => Ok(Algorithm::EcdsaP384Sha384),
        "ed25519" => Ok(Algorithm::Ed25519),
        other => Err(KeyCmdError::Usage(format!(
            "unknown algorithm `{other}`; use p256 (default), p384 or ed25519"
        ))),
    }
}

/// What `keys show` prints.
pub fn describe(key: &Arc<dyn SigningKey>) -> String {
    use ring::digest::{digest, SHA256};
    let spki = key.public_key_spki();
    let fp = digest(&SHA256, spki)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki.to_vec()));
    format!(
        "key:         {}\nalgorithm:   {}\nprotection:  {}\nfingerprint: SHA256:{fp}\n{pem}",
        key.reference(),
        key.algorithm(),
        key.protection(),
    )
}

/// Generates a key in its backend (non-exportable in hardware).
pub fn generate(
    store: &KeyStore,
    key: &KeyRef,
    algorithm: Algorithm,
) -> Result<Arc<dyn SigningKey>, KeyCmdError> {
    Ok(store.generate(key, algorithm)?)
}

/// A PKCS#10 request signed by the key, for the municipal CA.
pub fn csr(
    store: &KeyStore,
    key: &KeyRef,
    common_name: &str,
    sans: &[String],
) -> Result<String, KeyCmdError> {
    let k = store.resolve(key)?;
    Ok(stadttor_pki::remote::csr_pem(k, common_name, sans)?)
}

/// Writes `contents` to `path` (or stdout for `-`).
pub fn write_out(path: &Path, contents: &[u8]) -> Result<(), KeyCmdError> {
    if path == Path::new("-") {
        use std::io::Write;
        let mut out = std::io::stdout();
        return out
            .write_all(contents)
            .map_err(|source| KeyCmdError::Write {
                path: path.to_owned(),
                source,
            });
    }
    std::fs::write(path, contents).map_err(|source| KeyCmdError::Write {
        path: path.to_owned(),
        source,
    })
}

/// TPM2_Certify of `key` by the attestation key `ak`, written as three files
/// in `dir`: `attest.bin` (TPMS_ATTEST), `attest.sig` (DER ECDSA) and
/// `ak.pem`; returns the openssl command that checks them.
#[cfg(feature = "tpm")]
pub fn attest(
    store: &KeyStore,
    key: &KeyRef,
    ak: &KeyRef,
    nonce: &[u8],
    dir: &Path,
) -> Result<String, KeyCmdError> {
    let k = store.resolve_tpm(key)?;
    let a = store.resolve_tpm(ak)?;
    let c = k.certify(&a, nonce)?;
    std::fs::create_dir_all(dir).map_err(|source| KeyCmdError::Write {
        path: dir.to_owned(),
        source,
    })?;
    write_out(&dir.join("attest.bin"), &c.attest)?;
    write_out(&dir.join("attest.sig"), &c.signature)?;
    let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", c.signer_spki.clone()));
    write_out(&dir.join("ak.pem"), pem.as_bytes())?;
    Ok(format!(
        "openssl dgst -sha256 -verify {0}/ak.pem -signature {0}/attest.sig {0}/attest.bin",
        dir.display()
    ))
}

/// Puts a fresh session-cookie key on the first line of `file`, keeping at
/// most `keep` older keys; creates the file (mode 0600) if missing. Returns
/// how many old keys were kept.
pub fn rotate_session_key(file: &Path, keep: usize) -> Result<usize, KeyCmdError> {
    use std::io::Write as _;
    let old = match std::fs::read_to_string(file) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(KeyCmdError::Usage(format!("{}: {e}", file.display()))),
    };
    let old: Vec<&str> = old
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .take(keep)
        .collect();
    let new = crate::authn::cookie::CookieKeys::generate()
        .ok_or_else(|| KeyCmdError::Usage("no randomness from the operating system".into()))?;
    let mut text = format!("{new}\n");
    for k in &old {
        text.push_str(k);
        text.push('\n');
    }
    let tmp = file.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let io = |e: std::io::Error| KeyCmdError::Usage(format!("{}: {e}", tmp.display()));
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, file)
        .map_err(|e| KeyCmdError::Usage(format!("{}: {e}", file.display())))?;
    Ok(old.len())
}
