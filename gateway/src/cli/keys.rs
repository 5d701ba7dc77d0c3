//! `stadttor keys …`: key management on the hardware the gateway uses.
//!
//! Every command resolves keys through the same key store as `serve`, so a
//! key that works here works in the gateway. Backend settings come from the
//! `[keys]` table of a configuration file (only that table is read, so a
//! CSR can be made before any certificate exists) or from flags; the
//! merge is [`KeyBackend::key_store`](super::KeyBackend::key_store).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Subcommand;
use stadttor_gateway::config::{ConfigError, Issue};
use stadttor_hsm::{KeyRef, KeyStore, KeyStoreConfig, KeyType, SigningKey};

use super::{finish, Exit};

/// `stadttor keys …`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Generate a key inside its backend (non-exportable in a TPM or token)
    /// and print its public key. Never overwrites an existing key.
    Generate {
        /// `tpm:handle=0x81010002`, `tpm:pem=FILE`, `pkcs11:token=…;object=…`, `file:PATH`.
        key: String,
        /// p256 (default), p384, ed25519, rsa3072 or rsa4096 (backend
        /// permitting; RSA keys sign RSA-PSS and decrypt RSA-OAEP). Anything
        /// else is a command-line error (exit 64).
        #[arg(long, default_value = "p256", value_parser = parse_algorithm)]
        algorithm: KeyType,
    },
    /// Show a key: backend, protection, algorithm, fingerprint, public key.
    Show {
        /// The key reference.
        key: String,
    },
    /// Write a PKCS#10 certificate signing request signed by the key (RSA
    /// keys sign it RSASSA-PSS SHA-256).
    Csr {
        /// The key reference.
        key: String,
        /// Subject common name.
        #[arg(long)]
        cn: String,
        /// Subject alternative names (DNS names or IP addresses), repeatable.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Output file (`-` for stdout).
        #[arg(long, short, default_value = "-")]
        out: PathBuf,
    },
    /// Write a self-signed X.509 certificate for the key (CA:false, key
    /// usage digitalSignature, and keyEncipherment for RSA keys), e.g. the
    /// `signing_certificate` / `decryption_certificate` of a SAML provider.
    /// RSA keys sign it RSASSA-PSS SHA-256.
    SelfSigned {
        /// The key reference.
        key: String,
        /// Subject (and issuer) common name.
        #[arg(long)]
        cn: String,
        /// Subject alternative names (DNS names or IP addresses), repeatable.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Validity in days, from one hour ago (at most 3650).
        #[arg(long, default_value_t = 730)]
        days: u32,
        /// Output file (`-` for stdout).
        #[arg(long, short, default_value = "-")]
        out: PathBuf,
    },
    /// Seal a gateway secret (e.g. a session-cookie or ticket key, at most
    /// 128 bytes) to the TPM, optionally bound to PCR values; writes a TSS2 PEM
    /// file (mode 0600) that only this TPM, in this platform state, can unseal.
    Seal {
        /// The secret: a file to read, or `-` for 32 fresh random bytes.
        #[arg(long, default_value = "-")]
        secret: PathBuf,
        /// PCR indices (sha256 bank) to bind to, e.g. `--pcr 7 --pcr 14`.
        #[arg(long = "pcr")]
        pcrs: Vec<u8>,
        /// The sealed file to write.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Unseal a secret sealed with `keys seal` and print its SHA-256
    /// fingerprint (the secret itself is never printed).
    Unseal {
        /// The sealed file.
        file: PathBuf,
    },
    /// Create or rotate the session-cookie key file (`[identity]
    /// session_key_file`): a new key goes on the first line and seals from
    /// the next start on; older keys stay below it and still open existing
    /// sessions. `--keep N` keeps at most N old keys.
    SessionKey {
        /// The key file (an existing file keeps its owner, group and mode;
        /// a new one is 0640 with its directory's group).
        file: PathBuf,
        /// Old keys to keep below the new one.
        #[arg(long, default_value_t = 2)]
        keep: usize,
    },
    /// TPM2_Certify: prove with an attestation key that the key lives in the TPM.
    Attest {
        /// The key to attest (`tpm:`).
        key: String,
        /// The attestation key (`tpm:`), a restricted signing key.
        #[arg(long)]
        ak: String,
        /// Verifier's nonce, hex.
        #[arg(long, default_value = "")]
        nonce: String,
        /// Folder for attest.bin, attest.sig and ak.pem.
        #[arg(long, short)]
        out: PathBuf,
    },
}

/// Runs a `keys` subcommand against `store`.
pub(super) fn run(store: &KeyStore, command: KeysCommand) -> Exit {
    finish(execute(store, command))
}

fn execute(store: &KeyStore, command: KeysCommand) -> anyhow::Result<()> {
    let parse = |s: &str| s.parse::<KeyRef>();
    match command {
        KeysCommand::Generate { key, algorithm } => {
            let k = generate(store, &parse(&key)?, algorithm)?;
            print!("{}", describe(&k));
        }
        KeysCommand::Show { key } => {
            let k = store.resolve(&parse(&key)?)?;
            print!("{}", describe(&k));
        }
        KeysCommand::Csr { key, cn, sans, out } => {
            let pem = csr(store, &parse(&key)?, &cn, &sans)?;
            write_out(&out, pem.as_bytes())?;
        }
        KeysCommand::SelfSigned {
            key,
            cn,
            sans,
            days,
            out,
        } => {
            let k = store.resolve(&parse(&key)?)?;
            let pem = stadttor_pki::remote::self_signed_pem(k, &cn, &sans, days)?;
            write_out(&out, pem.as_bytes())?;
        }
        KeysCommand::Seal { secret, pcrs, out } => tpm::seal(store, &secret, &pcrs, &out)?,
        KeysCommand::Unseal { file } => tpm::unseal(store, &file)?,
        KeysCommand::SessionKey { file, keep } => {
            let n = rotate_session_key(&file, keep)?;
            println!(
                "{}: new session key on the first line, {n} older key(s) kept",
                file.display()
            );
        }
        KeysCommand::Attest {
            key,
            ak,
            nonce,
            out,
        } => {
            let nonce = stadttor_pki::hex::decode(&nonce).context("--nonce must be hex")?;
            tpm::attest(store, &parse(&key)?, &parse(&ak)?, &nonce, &out)?;
        }
    }
    Ok(())
}

/// Errors of the key commands.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyCmdError {
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
pub(crate) fn keys_config_from_file(path: &Path) -> Result<KeyStoreConfig, ConfigError> {
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
    let raw: stadttor_gateway::config::raw::Keys = keys
        .try_into()
        .map_err(|e: toml::de::Error| fail("keys", e.message().to_owned()))?;
    let cfg =
        stadttor_gateway::config::key_store_config(&raw, path.parent().unwrap_or(Path::new(".")));
    Ok(cfg)
}

/// Parses a key type name as used on the command line (clap's value
/// parser, so a wrong name is a usage error like any other flag).
pub(crate) fn parse_algorithm(s: &str) -> Result<KeyType, String> {
    match s {
        "p256" | "ecdsa-p256" => Ok(KeyType::EcdsaP256),
        "p384" | "ecdsa-p384" => Ok(KeyType::EcdsaP384),
        "ed25519" => Ok(KeyType::Ed25519),
        "rsa3072" => Ok(KeyType::Rsa3072),
        "rsa4096" => Ok(KeyType::Rsa4096),
        other => Err(format!(
            "unknown algorithm `{other}`; use p256 (default), p384, ed25519, rsa3072 or rsa4096 \
             (RSA below 3000 bits is not offered: BSI TR-02102-1)"
        )),
    }
}

/// What `keys show` prints: reference, algorithm, protection, the SPKI's
/// SHA-256 fingerprint, the public key as JWK (RFC 7517, `kid` its RFC
/// 7638 thumbprint: what an OpenID Provider wants for `private_key_jwt`)
/// and as PEM SPKI.
pub(crate) fn describe(key: &Arc<dyn SigningKey>) -> String {
    use ring::digest::{digest, SHA256};
    let spki = key.public_key_spki();
    let fp = digest(&SHA256, spki)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let jwk = match stadttor_pki::jose::public_jwk(key.as_ref()) {
        Ok(jwk) => jwk.to_json().to_string(),
        Err(e) => format!("(none: {e})"),
    };
    let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki.to_vec()));
    format!(
        "key:         {}\nalgorithm:   {}\nprotection:  {}\nfingerprint: SHA256:{fp}\njwk:         {jwk}\n{pem}",
        key.reference(),
        key.algorithm(),
        key.protection(),
    )
}

/// Generates a key in its backend (non-exportable in hardware).
pub(crate) fn generate(
    store: &KeyStore,
    key: &KeyRef,
    key_type: KeyType,
) -> Result<Arc<dyn SigningKey>, KeyCmdError> {
    Ok(store.generate(key, key_type)?)
}

/// A PKCS#10 request signed by the key, for the municipal CA.
pub(crate) fn csr(
    store: &KeyStore,
    key: &KeyRef,
    common_name: &str,
    sans: &[String],
) -> Result<String, KeyCmdError> {
    let k = store.resolve(key)?;
    Ok(stadttor_pki::remote::csr_pem(k, common_name, sans)?)
}

/// Writes `contents` to `path` (or stdout for `-`).
pub(crate) fn write_out(path: &Path, contents: &[u8]) -> Result<(), KeyCmdError> {
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

/// Puts a fresh session-cookie key on the first line of `file`, keeping at
/// most `keep` older keys. Returns how many old keys were kept.
///
/// The new file replaces the old one atomically (a temporary file in the
/// same directory, renamed over it) and keeps the old file's owner, group
/// and mode, so a rotation by root leaves the service able to read it. A
/// new file gets the documented secret-file permissions: mode 0640, owned
/// by the caller, group of its directory (`root:stadttor` in
/// `/etc/stadttor`).
pub(crate) fn rotate_session_key(file: &Path, keep: usize) -> Result<usize, KeyCmdError> {
    use std::io::Write as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};

    let usage = |p: &Path, e: std::io::Error| KeyCmdError::Usage(format!("{}: {e}", p.display()));
    let (old, meta) = match std::fs::read_to_string(file) {
        Ok(s) => (
            s,
            Some(std::fs::metadata(file).map_err(|e| usage(file, e))?),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), None),
        Err(e) => return Err(usage(file, e)),
    };
    let old: Vec<&str> = old
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .take(keep)
        .collect();
    let new = stadttor_gateway::authn::cookie::CookieKeys::generate()
        .ok_or_else(|| KeyCmdError::Usage("no randomness from the operating system".into()))?;
    let text = zeroize::Zeroizing::new(
        std::iter::once(new.as_str())
            .chain(old.iter().copied())
            .fold(String::new(), |mut t, k| {
                t.push_str(k);
                t.push('\n');
                t
            }),
    );
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Owner, group and mode: the old file's, or the documented ones.
    let (uid, gid, mode) = match &meta {
        Some(m) => (Some(m.uid()), m.gid(), m.mode() & 0o7777),
        None => (
            None,
            std::fs::metadata(dir).map_err(|e| usage(dir, e))?.gid(),
            0o640,
        ),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file.file_name()
            .map_or("session-keys".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let io = |e: std::io::Error| usage(&tmp, e);
    // create_new: never follows a link planted at the temporary name; 0600
    // until owner and mode are set.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    let written = (|| {
        std::os::unix::fs::fchown(&f, uid, Some(gid))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    })();
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, file)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(old.len())
}

/// The TPM-only commands (`seal`, `unseal`, `attest`); without the cargo
/// feature `tpm` they explain that this build cannot do them.
#[cfg(feature = "tpm")]
mod tpm {
    use std::path::Path;

    use anyhow::Context as _;
    use stadttor_hsm::{KeyRef, KeyStore};

    use super::{write_out, KeyCmdError};

    /// TPM2_Certify of `key` by the attestation key `ak`, written as three files
    /// in `dir`: `attest.bin` (TPMS_ATTEST), `attest.sig` (DER ECDSA) and
    /// `ak.pem`; returns the openssl command that checks them.
    fn certify(
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

    pub(super) fn attest(
        store: &KeyStore,
        key: &KeyRef,
        ak: &KeyRef,
        nonce: &[u8],
        out: &Path,
    ) -> anyhow::Result<()> {
        let cmd = certify(store, key, ak, nonce, out)?;
        println!(
            "attestation written to {}; verify with:\n  {cmd}",
            out.display()
        );
        Ok(())
    }

    pub(super) fn seal(
        store: &KeyStore,
        secret: &Path,
        pcrs: &[u8],
        out: &Path,
    ) -> anyhow::Result<()> {
        let bytes = if secret == Path::new("-") {
            let mut b = vec![0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
                .map_err(|_| anyhow::anyhow!("no randomness"))?;
            zeroize::Zeroizing::new(b)
        } else {
            zeroize::Zeroizing::new(
                std::fs::read(secret)
                    .with_context(|| format!("cannot read {}", secret.display()))?,
            )
        };
        store.tpm_sealer()?.seal_to_file(out, &bytes, pcrs)?;
        println!(
            "sealed {} bytes to {}{}; fingerprint SHA256:{}",
            bytes.len(),
            out.display(),
            if pcrs.is_empty() {
                String::new()
            } else {
                format!(" (bound to PCR {pcrs:?})")
            },
            fingerprint(&bytes)
        );
        Ok(())
    }

    pub(super) fn unseal(store: &KeyStore, file: &Path) -> anyhow::Result<()> {
        let secret = store.tpm_sealer()?.unseal_file(file)?;
        println!(
            "unsealed {} bytes from {}; fingerprint SHA256:{}",
            secret.len(),
            file.display(),
            fingerprint(&secret)
        );
        Ok(())
    }

    fn fingerprint(bytes: &[u8]) -> String {
        stadttor_pki::hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
    }
}

/// Without the TPM backend: every TPM-only command explains why it cannot
/// run.
#[cfg(not(feature = "tpm"))]
mod tpm {
    use std::path::Path;

    use stadttor_hsm::{KeyRef, KeyStore};

    pub(super) fn seal(_: &KeyStore, _: &Path, _: &[u8], _: &Path) -> anyhow::Result<()> {
        anyhow::bail!("`keys seal` needs the TPM backend: this stadttor was built without the cargo feature `tpm`")
    }

    pub(super) fn unseal(_: &KeyStore, _: &Path) -> anyhow::Result<()> {
        anyhow::bail!("`keys unseal` needs the TPM backend: this stadttor was built without the cargo feature `tpm`")
    }

    pub(super) fn attest(
        _: &KeyStore,
        _: &KeyRef,
        _: &KeyRef,
        _: &[u8],
        _: &Path,
    ) -> anyhow::Result<()> {
        anyhow::bail!("`keys attest` needs the TPM backend: this stadttor was built without the cargo feature `tpm`")
    }
}
