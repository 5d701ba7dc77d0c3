//! The signing trait every backend implements, kept as small as rustls' own.

use std::fmt;

use crate::{Error, KeyStats};

/// A signature algorithm, including its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// ECDSA over P-256 with SHA-256; signatures are DER `ECDSA-Sig-Value`.
    EcdsaP256Sha256,
    /// ECDSA over P-384 with SHA-384; signatures are DER `ECDSA-Sig-Value`.
    EcdsaP384Sha384,
    /// Ed25519 (pure); signatures are 64 raw bytes.
    Ed25519,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, salt length 32.
    RsaPssSha256,
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Self::EcdsaP384Sha384 => "ecdsa-p384-sha384",
            Self::Ed25519 => "ed25519",
            Self::RsaPssSha256 => "rsa-pss-sha256",
        })
    }
}

/// How well the private key is protected; shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protection {
    /// The key is in process memory, loaded from a file: development only.
    Software,
    /// The key lives in a TPM 2.0 and cannot be exported.
    Tpm,
    /// The key lives in a PKCS#11 token.
    Pkcs11,
}

impl fmt::Display for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Software => "software (NOT hardware-protected)",
            Self::Tpm => "TPM 2.0 (non-exportable)",
            Self::Pkcs11 => "PKCS#11 token",
        })
    }
}

/// A private key that can sign, wherever it lives.
///
/// `sign` takes the **unhashed** message; the backend hashes it as the
/// algorithm requires. It may block (a TPM takes milliseconds to hundreds of
/// milliseconds), so async callers must not call it on a reactor thread.
pub trait SigningKey: fmt::Debug + Send + Sync {
    /// The algorithm this key signs with.
    fn algorithm(&self) -> Algorithm;
    /// The public key as DER `SubjectPublicKeyInfo`.
    fn public_key_spki(&self) -> &[u8];
    /// Where the private key lives.
    fn protection(&self) -> Protection;
    /// The reference this key was resolved from, for logs and errors.
    fn reference(&self) -> &str;
    /// Signs `message`.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error>;
    /// Live counters of this key (signatures, failures, queue depth,
    /// latency), if the backend keeps them; all built-in backends do.
    fn stats(&self) -> Option<&KeyStats> {
        None
    }
}
