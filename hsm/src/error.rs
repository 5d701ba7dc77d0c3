//! Errors of the key store; each names the key reference (or device) it is about.

use std::time::Duration;

/// A boxed cause from a backend library (tss-esapi, cryptoki).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong when resolving a key or signing with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key reference string could not be parsed.
    #[error("invalid key reference `{reference}`: {reason}")]
    InvalidReference {
        /// The reference as written in the configuration.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The reference names a backend that this binary was built without.
    #[error("key reference `{reference}` needs the `{feature}` backend, but this stadttor was built without the cargo feature `{feature}`")]
    BackendNotCompiled {
        /// The reference as written in the configuration.
        reference: String,
        /// The cargo feature that would enable it.
        feature: &'static str,
    },
    /// A setting the backend needs is missing from [`crate::KeyStoreConfig`].
    #[error(
        "key {reference}: the key store setting `{setting}` is not set, but this backend needs it"
    )]
    MissingSetting {
        /// The key reference.
        reference: String,
        /// The name of the missing [`crate::KeyStoreConfig`] field.
        setting: &'static str,
    },
    /// A secret file (a PIN file) is missing, unreadable or too open.
    #[error(transparent)]
    SecretFile(#[from] crate::secret_file::SecretFileError),
    /// Reading or writing a key file failed.
    #[error("cannot access key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key material is not in a supported format or algorithm.
    #[error("key {reference}: {reason}")]
    UnsupportedKey {
        /// The key reference.
        reference: String,
        /// Why it was refused.
        reason: String,
    },
    /// The referenced key does not exist on the device.
    #[error("key {reference} not found: {reason}")]
    NotFound {
        /// The key reference.
        reference: String,
        /// What was looked for and where.
        reason: String,
    },
    /// Generation refused to overwrite an existing key.
    #[error("key {reference} already exists; refusing to overwrite it")]
    AlreadyExists {
        /// The key reference.
        reference: String,
    },
    /// The TPM could not be opened through its TCTI.
    #[error("cannot open the TPM through TCTI `{tcti}`: {source}; check that the device exists and is accessible, or that the simulator / resource manager is running")]
    TpmUnavailable {
        /// The TCTI string from the configuration.
        tcti: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("cannot use PKCS#11 module {module}: {source}")]
    Pkcs11Module {
        /// The module path from the configuration.
        module: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// Logging in to a PKCS#11 token failed. Never retried automatically, so
    /// a wrong PIN cannot exhaust the token's retry counter.
    #[error("login to PKCS#11 token `{token}` failed: {reason} (not retried, so the token is not locked by stadttor)")]
    Login {
        /// The token label.
        token: String,
        /// Why, e.g. "incorrect PIN".
        reason: String,
    },
    /// The device's request queue (TPM) or session pool (PKCS#11) is full:
    /// fail fast instead of piling up.
    #[error("key {reference}: the {backend} device is busy ({capacity} requests already in flight or queued); request refused")]
    Busy {
        /// The key reference.
        reference: String,
        /// `tpm` or `pkcs11`.
        backend: &'static str,
        /// The configured queue capacity.
        capacity: usize,
    },
    /// The device did not answer within the request deadline.
    #[error("key {reference}: the {backend} device did not answer within {timeout:?}")]
    Timeout {
        /// The key reference.
        reference: String,
        /// `tpm` or `pkcs11`.
        backend: &'static str,
        /// The configured deadline.
        timeout: Duration,
    },
    /// A device operation failed.
    #[error("{operation} failed for {reference}: {source}")]
    Device {
        /// The key reference (or TCTI / token).
        reference: String,
        /// What was attempted ("sign", "load key", …).
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BoxError,
    },
    /// A secret to seal, or a sealed-secret file, was refused before the
    /// TPM was asked (size, PCR list, file format).
    #[error("sealed secret {reference}: {reason}")]
    SealedSecret {
        /// The file (or "new sealed secret").
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// A PCR-bound secret cannot be unsealed because the PCRs it is bound to
    /// no longer hold the values they had when it was sealed.
    #[error("sealed secret {reference}: the platform state changed since it was sealed: PCR {pcrs} (sha256 bank) no longer hold the values the secret is bound to, so the TPM refuses to unseal it; if the change was intended (firmware, boot loader or kernel update), seal the secret again")]
    PlatformStateChanged {
        /// The file.
        reference: String,
        /// The bound PCR indices, e.g. `7,16`.
        pcrs: String,
    },
    /// A sealed secret does not load under its parent in this TPM: it was
    /// sealed by another TPM (or under another SRK), or the file was altered.
    #[error("sealed secret {reference} was not sealed by this TPM (or was sealed under a different SRK, or the file was modified); it cannot be unsealed here: {source}")]
    ForeignTpm {
        /// The file.
        reference: String,
        /// The TPM's answer to TPM2_Load.
        #[source]
        source: BoxError,
    },
    /// Decryption was asked of a key that cannot decrypt (not RSA).
    #[error("key {reference} cannot decrypt: it is an {algorithm} key, and RSA-OAEP decryption needs an RSA key (generate one with `--algorithm rsa3072`)")]
    NotDecrypting {
        /// The key reference.
        reference: String,
        /// What the key is.
        algorithm: crate::Algorithm,
    },
    /// The backend (or this device) does not offer these OAEP parameters.
    #[error("key {reference}: the {backend} backend cannot decrypt with {oaep}: {reason}")]
    UnsupportedOaep {
        /// The key reference.
        reference: String,
        /// `file`, `tpm` or `pkcs11`.
        backend: &'static str,
        /// The parameters asked for.
        oaep: crate::Oaep,
        /// Why not, and what works instead.
        reason: String,
    },
    /// The ciphertext does not decrypt under this key. Deliberately one
    /// message for every cause (wrong key, altered ciphertext, other OAEP
    /// parameters, wrong length), so it cannot serve as a padding oracle.
    #[error("decryption with key {reference} failed: the ciphertext does not decrypt under this key with {oaep} (another key, altered bytes or other OAEP parameters)")]
    Decryption {
        /// The key reference.
        reference: String,
        /// The parameters used.
        oaep: crate::Oaep,
    },
    /// The backend failed to produce a signature.
    #[error("signing with key {reference} failed: {reason}")]
    Signing {
        /// The key reference.
        reference: String,
        /// The backend's reason.
        reason: String,
    },
}

impl Error {
    /// A [`Error::Device`] from any backend error.
    #[cfg(any(feature = "tpm", feature = "pkcs11"))]
    pub(crate) fn device(
        reference: impl Into<String>,
        operation: &'static str,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Device {
            reference: reference.into(),
            operation,
            source: source.into(),
        }
    }
}
