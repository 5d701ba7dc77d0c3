//! The `file:` backend: a PKCS#8 private key read into process memory.
//!
//! This is the embedded default for development and tests. It is honest
//! about what it is: [`Protection::Software`], and the gateway logs a warning
//! whenever it serves with such a key.

use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;

use crate::{Algorithm, Error, KeyStats, Protection, SigningKey};

enum Inner {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A software key loaded from a PKCS#8 file (PEM `PRIVATE KEY` or DER).
pub struct FileKey {
    reference: String,
    algorithm: Algorithm,
    spki: Vec<u8>,
    inner: Inner,
    rng: SystemRandom,
    stats: KeyStats,
}

impl std::fmt::Debug for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("FileKey")
            .field("reference", &self.reference)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl FileKey {
    /// Loads a key file; PEM is recognised by its `-----BEGIN` line.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let reference = format!("file:{}", path.display());
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let der = if bytes.starts_with(b"-----BEGIN") {
            PrivatePkcs8KeyDer::from_pem_slice(&bytes)
                .map_err(|e| Error::UnsupportedKey {
                    reference: reference.clone(),
                    reason: format!(
                        "expected a PEM `PRIVATE KEY` (PKCS#8) block: {e}; convert with `openssl pkcs8 -topk8 -nocrypt`"
                    ),
                })?
                .secret_pkcs8_der()
                .to_vec()
        } else {
            bytes
        };
        Self::from_pkcs8(reference, &der)
    }

    /// Builds a key from PKCS#8 DER; `reference` is used in messages.
    pub fn from_pkcs8(reference: String, der: &[u8]) -> Result<Self, Error> {
        let rng = SystemRandom::new();
        let (algorithm, inner) = if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
        {
            (Algorithm::EcdsaP256Sha256, Inner::Ecdsa(k))
        } else if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, der, &rng)
        {
            (Algorithm::EcdsaP384Sha384, Inner::Ecdsa(k))
        } else if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            (Algorithm::Ed25519, Inner::Ed25519(k))
        } else if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
            (Algorithm::RsaPssSha256, Inner::Rsa(k))
        } else {
            return Err(Error::UnsupportedKey {
                reference,
                reason: "not a PKCS#8 ECDSA P-256/P-384, Ed25519 or RSA key".into(),
            });
        };
        let spki = match &inner {
            Inner::Ecdsa(k) => crate::spki::ec(algorithm, k.public_key().as_ref()),
            Inner::Ed25519(k) => crate::spki::ed25519(k.public_key().as_ref()),
            Inner::Rsa(k) => crate::spki::rsa(k.public_key().as_ref()),
        };
        Ok(Self {
            reference,
            algorithm,
            spki,
            inner,
            rng,
            stats: KeyStats::default(),
        })
    }

    /// Generates a new ECDSA key and writes it as PKCS#8 DER to `path`
    /// (mode 0600, never overwriting an existing file).
    pub fn generate(path: &Path, algorithm: Algorithm) -> Result<Self, Error> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;

        let reference = format!("file:{}", path.display());
        let alg = match algorithm {
            Algorithm::EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Algorithm::EcdsaP384Sha384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            other => {
                return Err(Error::UnsupportedKey {
                    reference,
                    reason: format!("generation supports ECDSA P-256 and P-384, not {other}"),
                })
            }
        };
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|_| Error::Signing {
            reference: reference.clone(),
            reason: "ring could not generate a key".into(),
        })?;
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Error::AlreadyExists {
                    reference: reference.clone(),
                },
                _ => io(e),
            })?;
        file.write_all(pkcs8.as_ref()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Self::from_pkcs8(reference, pkcs8.as_ref())
    }
}

impl SigningKey for FileKey {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn public_key_spki(&self) -> &[u8] {
        &self.spki
    }

    fn protection(&self) -> Protection {
        Protection::Software
    }

    fn reference(&self) -> &str {
        &self.reference
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.stats.track(|| self.sign_untracked(message), |_| false)
    }

    fn stats(&self) -> Option<&KeyStats> {
        Some(&self.stats)
    }
}

impl FileKey {
    fn sign_untracked(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let failed = |_| Error::Signing {
            reference: self.reference.clone(),
            reason: "ring refused to sign".into(),
        };
        match &self.inner {
            Inner::Ecdsa(k) => k
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(failed),
            Inner::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
            Inner::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PSS_SHA256, &self.rng, message, &mut sig)
                    .map_err(failed)?;
                Ok(sig)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(key: &FileKey, msg: &[u8], sig: &[u8]) -> bool {
        let spki = key.public_key_spki();
        // The raw public key sits after the fixed SPKI prefix for EC keys.
        let alg: &dyn signature::VerificationAlgorithm = match key.algorithm() {
            Algorithm::EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_ASN1,
            Algorithm::Ed25519 => &signature::ED25519,
            _ => unreachable!(),
        };
        let raw = &spki[spki.len()
            - if key.algorithm() == Algorithm::Ed25519 {
                32
            } else {
                65
            }..];
        signature::UnparsedPublicKey::new(alg, raw)
            .verify(msg, sig)
            .is_ok()
    }

    #[test]
    fn p256_signs_and_verifies() {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key = FileKey::from_pkcs8("file:test".into(), pkcs8.as_ref()).unwrap();
        assert_eq!(key.algorithm(), Algorithm::EcdsaP256Sha256);
        assert_eq!(key.public_key_spki().len(), 91);
        let sig = key.sign(b"hello").unwrap();
        assert!(verify(&key, b"hello", &sig));
        assert!(!verify(&key, b"hellO", &sig));
    }

    #[test]
    fn ed25519_signs_and_verifies() {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let key = FileKey::from_pkcs8("file:test".into(), pkcs8.as_ref()).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Ed25519);
        let sig = key.sign(b"hello").unwrap();
        assert!(verify(&key, b"hello", &sig));
    }

    #[test]
    fn garbage_is_refused_with_reference() {
        let err = FileKey::from_pkcs8("file:/x".into(), b"nope").unwrap_err();
        assert!(err.to_string().contains("file:/x"), "{err}");
    }
}
