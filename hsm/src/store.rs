//! The key store: resolves [`KeyRef`]s from the configuration to keys.

use std::path::PathBuf;
use std::sync::Arc;

use crate::file::FileKey;
use crate::{Error, KeyRef, SigningKey};

/// Backend settings for the key store, taken from the gateway config.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct KeyStoreConfig {
    /// TCTI for the TPM backend (`device:/dev/tpmrm0`, `swtpm:host=…,port=…`).
    pub tpm_tcti: Option<String>,
    /// Path of the PKCS#11 module (`.so`).
    pub pkcs11_module: Option<PathBuf>,
    /// File holding the PKCS#11 user PIN.
    pub pkcs11_pin_file: Option<PathBuf>,
}

/// Resolves key references to signing keys.
#[derive(Debug, Default)]
pub struct KeyStore {
    #[allow(dead_code)] // read by the hardware backends
    config: KeyStoreConfig,
}

impl KeyStore {
    /// Opens the store. Hardware is contacted lazily, on first resolve.
    pub fn new(config: KeyStoreConfig) -> Self {
        Self { config }
    }

    /// Resolves `key` to a loaded key, ready to sign.
    pub fn resolve(&self, key: &KeyRef) -> Result<Arc<dyn SigningKey>, Error> {
        match key {
            KeyRef::File(path) => Ok(Arc::new(FileKey::load(path)?)),
            KeyRef::Tpm(_) => Err(Error::BackendNotCompiled {
                reference: key.to_string(),
                feature: "tpm",
            }),
            KeyRef::Pkcs11(_) => Err(Error::BackendNotCompiled {
                reference: key.to_string(),
                feature: "pkcs11",
            }),
        }
    }
}
