//! The key store: resolves [`KeyRef`]s from the configuration to keys, and
//! generates new keys where a backend can.
//!
//! The store owns the per-device state that keys share: one TPM owner
//! thread (all TPM keys of a store go through it) and the PKCS#11 module,
//! which is process-wide by the PKCS#11 standard.

use std::path::PathBuf;
use std::sync::Arc;
#[cfg(feature = "tpm")]
use std::sync::Mutex;
use std::time::Duration;

use crate::file::FileKey;
use crate::{DecryptingKey, Error, KeyRef, KeyType, SigningKey};

/// Backend settings for the key store, taken from the gateway config.
///
/// Build it from [`KeyStoreConfig::default`] and set the fields you need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KeyStoreConfig {
    /// TCTI for the TPM backend (`device:/dev/tpmrm0`, `swtpm:host=…,port=…`,
    /// `tabrmd:`).
    pub tpm_tcti: Option<String>,
    /// Path of the PKCS#11 module (`.so`).
    pub pkcs11_module: Option<PathBuf>,
    /// File holding the PKCS#11 user PIN (one line; a trailing newline is ignored).
    pub pkcs11_pin_file: Option<PathBuf>,
    /// How many requests may wait for the TPM before new ones are refused
    /// with [`Error::Busy`]. Default 32.
    pub tpm_queue_capacity: usize,
    /// Sessions per PKCS#11 key (at most this many concurrent signatures per
    /// key). Default 4.
    pub pkcs11_sessions: usize,
    /// How long a PKCS#11 signer waits for a free session when all
    /// `pkcs11_sessions` are in use, before it is refused with
    /// [`Error::Busy`] (capped at `request_timeout`). Default 50 ms.
    pub pkcs11_busy_wait: Duration,
    /// Deadline for one device request, queueing included; later answers are
    /// dropped and the caller gets [`Error::Timeout`]. Default 5 s.
    pub request_timeout: Duration,
}

impl Default for KeyStoreConfig {
    fn default() -> Self {
        Self {
            tpm_tcti: None,
            pkcs11_module: None,
            pkcs11_pin_file: None,
            tpm_queue_capacity: 32,
            pkcs11_sessions: 4,
            pkcs11_busy_wait: Duration::from_millis(50),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Resolves key references to signing keys.
#[derive(Debug, Default)]
pub struct KeyStore {
    #[cfg_attr(not(any(feature = "tpm", feature = "pkcs11")), allow(dead_code))]
    config: KeyStoreConfig,
    /// The TPM owner thread, started on first use and shared by all TPM keys.
    #[cfg(feature = "tpm")]
    tpm: Mutex<Option<Arc<crate::tpm::Device>>>,
}

impl KeyStore {
    /// Opens the store. Hardware is contacted lazily, on first resolve.
    pub fn new(config: KeyStoreConfig) -> Self {
        Self {
            config,
            #[cfg(feature = "tpm")]
            tpm: Mutex::new(None),
        }
    }

    /// The configuration this store was opened with.
    pub fn config(&self) -> &KeyStoreConfig {
        &self.config
    }

    /// Resolves `key` to a loaded key, ready to sign.
    pub fn resolve(&self, key: &KeyRef) -> Result<Arc<dyn SigningKey>, Error> {
        self.resolve_rsa_capable(key)
            .map(|k| -> Arc<dyn SigningKey> { k })
    }

    /// Resolves `key` to a loaded RSA key that decrypts RSA-OAEP (and signs
    /// RSA-PSS: the result also serves as an `Arc<dyn SigningKey>`).
    /// Any other key is refused with [`Error::NotDecrypting`].
    pub fn resolve_decrypting(&self, key: &KeyRef) -> Result<Arc<dyn DecryptingKey>, Error> {
        let resolved = self.resolve_rsa_capable(key)?;
        if resolved.modulus_bits() == 0 {
            return Err(Error::NotDecrypting {
                reference: resolved.reference().to_owned(),
                algorithm: resolved.algorithm(),
            });
        }
        Ok(resolved)
    }

    /// Every backend's key type implements [`DecryptingKey`]; non-RSA keys
    /// report a modulus of 0 bits and refuse to decrypt.
    fn resolve_rsa_capable(&self, key: &KeyRef) -> Result<Arc<dyn DecryptingKey>, Error> {
        match key {
            KeyRef::File(path) => Ok(Arc::new(FileKey::load(path)?)),
            #[cfg(feature = "tpm")]
            KeyRef::Tpm(spec) => {
                let spec = crate::tpm::TpmKeySpec::parse(spec)?;
                Ok(Arc::new(crate::tpm::TpmKey::open(
                    self.tpm_device(key)?,
                    &spec,
                )?))
            }
            #[cfg(feature = "pkcs11")]
            KeyRef::Pkcs11(uri) => Ok(Arc::new(crate::pkcs11::Pkcs11Key::open(
                &self.config,
                &crate::pkcs11::Pkcs11Uri::parse(uri)?,
            )?)),
            #[allow(unreachable_patterns)] // reachable without some features
            _ => Err(not_compiled(key)),
        }
    }

    /// Generates a new non-exportable key where `key` says, and resolves it.
    ///
    /// - `file:PATH` writes a PKCS#8 file (software; for development);
    /// - `tpm:handle=…` and/or `tpm:pem=…` creates the key under the
    ///   persistent SRK (created if missing), then persists it at the handle
    ///   and/or writes it as TSS2 PEM;
    /// - `pkcs11:token=…;object=…[;id=…]` generates a key pair on the token.
    ///
    /// `key_type` is a [`KeyType`] or an [`Algorithm`](crate::Algorithm)
    /// (RSA-PSS means RSA-3072). RSA keys both sign and decrypt; resolve
    /// them with [`KeyStore::resolve_decrypting`] to decrypt.
    ///
    /// Never overwrites: an existing file, handle or object is
    /// [`Error::AlreadyExists`].
    pub fn generate(
        &self,
        key: &KeyRef,
        key_type: impl Into<KeyType>,
    ) -> Result<Arc<dyn SigningKey>, Error> {
        let key_type = key_type.into();
        match key {
            KeyRef::File(path) => Ok(Arc::new(FileKey::generate(path, key_type)?)),
            #[cfg(feature = "tpm")]
            KeyRef::Tpm(spec) => {
                let spec = crate::tpm::TpmKeySpec::parse_for_generate(spec)?;
                Ok(Arc::new(crate::tpm::TpmKey::generate(
                    self.tpm_device(key)?,
                    &spec,
                    key_type,
                )?))
            }
            #[cfg(feature = "pkcs11")]
            KeyRef::Pkcs11(uri) => Ok(Arc::new(crate::pkcs11::Pkcs11Key::generate(
                &self.config,
                &crate::pkcs11::Pkcs11Uri::parse(uri)?,
                key_type,
            )?)),
            #[allow(unreachable_patterns)] // reachable without some features
            _ => Err(not_compiled(key)),
        }
    }

    /// Resolves a `tpm:` reference to the concrete TPM key, for TPM-only
    /// operations such as [`crate::tpm::TpmKey::certify`].
    #[cfg(feature = "tpm")]
    pub fn resolve_tpm(&self, key: &KeyRef) -> Result<Arc<crate::tpm::TpmKey>, Error> {
        match key {
            KeyRef::Tpm(spec) => {
                let spec = crate::tpm::TpmKeySpec::parse(spec)?;
                Ok(Arc::new(crate::tpm::TpmKey::open(
                    self.tpm_device(key)?,
                    &spec,
                )?))
            }
            other => Err(Error::InvalidReference {
                reference: other.to_string(),
                reason: "expected a `tpm:` key reference".into(),
            }),
        }
    }

    /// A [`crate::tpm::Sealer`] for sealing small secrets to this store's TPM
    /// (under [`crate::tpm::DEFAULT_SRK`]); it shares the TPM owner thread
    /// with the store's TPM keys.
    #[cfg(feature = "tpm")]
    pub fn tpm_sealer(&self) -> Result<crate::tpm::Sealer, Error> {
        Ok(crate::tpm::Sealer::new(
            self.tpm_device_for("tpm sealed secrets")?,
        ))
    }

    /// The TPM owner thread, started on first use.
    #[cfg(feature = "tpm")]
    pub(crate) fn tpm_device(&self, key: &KeyRef) -> Result<Arc<crate::tpm::Device>, Error> {
        self.tpm_device_for(&key.to_string())
    }

    /// [`KeyStore::tpm_device`], naming `reference` in errors.
    #[cfg(feature = "tpm")]
    fn tpm_device_for(&self, reference: &str) -> Result<Arc<crate::tpm::Device>, Error> {
        let tcti = self
            .config
            .tpm_tcti
            .as_deref()
            .ok_or_else(|| Error::MissingSetting {
                reference: reference.to_owned(),
                setting: "tpm_tcti",
            })?;
        // A poisoned lock only means another thread panicked while opening;
        // the slot itself is still a valid Option.
        let mut slot = self.tpm.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(device) = slot.as_ref() {
            return Ok(device.clone());
        }
        let device = Arc::new(crate::tpm::Device::open(
            tcti,
            self.config.tpm_queue_capacity,
            self.config.request_timeout,
        )?);
        *slot = Some(device.clone());
        Ok(device)
    }
}

fn not_compiled(key: &KeyRef) -> Error {
    Error::BackendNotCompiled {
        reference: key.to_string(),
        feature: key.backend(),
    }
}
