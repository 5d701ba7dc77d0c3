//! The `file:` backend: a PKCS#8 private key read into process memory.
//!
//! This is the embedded default for development and tests. It is honest
//! about what it is: [`Protection::Software`], and the gateway logs a warning
//! whenever it serves with such a key.

use std::path::Path;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{
    KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey, OAEP_SHA1_MGF1SHA1,
    OAEP_SHA256_MGF1SHA256,
};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use zeroize::Zeroizing;

use crate::{Algorithm, DecryptingKey, Error, KeyStats, KeyType, Oaep, Protection, SigningKey};

/// ECDSA and RSA signatures through ring, the workspace's crypto library;
/// Ed25519 through aws-lc-rs, whose signature costs 10 µs here against
/// ring's 29 µs (`bench/crypto.sh`), and Ed25519 is what signs every RFC
/// 9421 response with a delegated key and every audit checkpoint. RSA-OAEP
/// decryption and RSA key generation through aws-lc-rs (ring has neither).
enum Inner {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair, OaepPrivateDecryptingKey),
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
            let decrypting = PrivateDecryptingKey::from_pkcs8(der)
                .ok()
                .and_then(|k| OaepPrivateDecryptingKey::new(k).ok())
                .ok_or_else(|| Error::UnsupportedKey {
                    reference: reference.clone(),
                    reason: "RSA key refused for decryption by aws-lc-rs".into(),
                })?;
            (Algorithm::RsaPssSha256, Inner::Rsa(k, decrypting))
        } else {
            return Err(Error::UnsupportedKey {
                reference,
                reason: "not a PKCS#8 ECDSA P-256/P-384, Ed25519 or RSA key".into(),
            });
        };
        let spki = match &inner {
            Inner::Ecdsa(k) => crate::spki::ec(algorithm, k.public_key().as_ref()),
            Inner::Ed25519(k) => crate::spki::ed25519(k.public_key().as_ref()),
            Inner::Rsa(k, _) => crate::spki::rsa(k.public_key().as_ref()),
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

    /// Generates a new key (ECDSA P-256, P-384, Ed25519, RSA-3072 or
    /// RSA-4096) and writes it as PKCS#8 DER to `path` (mode 0600, never
    /// overwriting an existing file).
    pub fn generate(path: &Path, key_type: impl Into<KeyType>) -> Result<Self, Error> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;

        let reference = format!("file:{}", path.display());
        let failed = || Error::Signing {
            reference: reference.clone(),
            reason: "the key could not be generated".into(),
        };
        let key_type = key_type.into();
        let pkcs8: Zeroizing<Vec<u8>> = Zeroizing::new(match key_type {
            KeyType::EcdsaP256 | KeyType::EcdsaP384 => {
                let alg = if key_type == KeyType::EcdsaP256 {
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING
                } else {
                    &signature::ECDSA_P384_SHA384_ASN1_SIGNING
                };
                EcdsaKeyPair::generate_pkcs8(alg, &SystemRandom::new())
                    .map_err(|_| failed())?
                    .as_ref()
                    .to_vec()
            }
            KeyType::Ed25519 => signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| failed())?
                .as_ref()
                .to_vec(),
            KeyType::Rsa3072 | KeyType::Rsa4096 => {
                let size = if key_type == KeyType::Rsa3072 {
                    KeySize::Rsa3072
                } else {
                    KeySize::Rsa4096
                };
                aws_lc_rs::rsa::KeyPair::generate(size)
                    .map_err(|_| failed())?
                    .as_der()
                    .map_err(|_| failed())?
                    .as_ref()
                    .to_vec()
            }
        });
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
        file.write_all(&pkcs8).map_err(io)?;
        file.sync_all().map_err(io)?;
        Self::from_pkcs8(reference, &pkcs8)
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
            Inner::Rsa(k, _) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PSS_SHA256, &self.rng, message, &mut sig)
                    .map_err(failed)?;
                Ok(sig)
            }
        }
    }
}

impl DecryptingKey for FileKey {
    fn modulus_bits(&self) -> usize {
        match &self.inner {
            Inner::Rsa(_, k) => k.key_size_bits(),
            _ => 0,
        }
    }

    fn decrypt_oaep(&self, oaep: Oaep, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let Inner::Rsa(_, key) = &self.inner else {
            return Err(Error::NotDecrypting {
                reference: self.reference.clone(),
                algorithm: self.algorithm,
            });
        };
        let algorithm = match oaep {
            Oaep::Sha1 => &OAEP_SHA1_MGF1SHA1,
            Oaep::Sha256 => &OAEP_SHA256_MGF1SHA256,
            other => {
                return Err(Error::UnsupportedOaep {
                    reference: self.reference.clone(),
                    backend: "file",
                    oaep: other,
                    reason: "aws-lc-rs uses one hash for the digest and MGF1; \
                             SHA-1/SHA-1 and SHA-256/SHA-256 are offered"
                        .into(),
                })
            }
        };
        let failed = || Error::Decryption {
            reference: self.reference.clone(),
            oaep,
        };
        if ciphertext.len() != key.key_size_bytes() {
            return Err(failed());
        }
        let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
        let len = key
            .decrypt(algorithm, ciphertext, &mut out, None)
            .map_err(|_| failed())?
            .len();
        out.truncate(len);
        Ok(out)
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
            Algorithm::EcdsaP384Sha384 => &signature::ECDSA_P384_SHA384_ASN1,
            Algorithm::Ed25519 => &signature::ED25519,
            _ => unreachable!(),
        };
        let raw = &spki[spki.len()
            - match key.algorithm() {
                Algorithm::Ed25519 => 32,
                Algorithm::EcdsaP384Sha384 => 97,
                _ => 65,
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
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let key = FileKey::from_pkcs8("file:test".into(), pkcs8.as_ref()).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Ed25519);
        let sig = key.sign(b"hello").unwrap();
        assert!(verify(&key, b"hello", &sig));
        assert!(!verify(&key, b"hellO", &sig));
    }

    /// Ed25519 is deterministic (RFC 8032): aws-lc-rs, which signs, must
    /// give byte for byte the signature ring gives for the same key.
    #[test]
    fn ed25519_signature_equals_rings() {
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let ring_key = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let key = FileKey::from_pkcs8("file:test".into(), pkcs8.as_ref()).unwrap();
        for msg in [&b""[..], b"x", &[0xa5; 10_240]] {
            assert_eq!(key.sign(msg).unwrap(), ring_key.sign(msg).as_ref());
        }
    }

    #[test]
    fn generated_keys_load_and_sign() {
        let dir = std::env::temp_dir().join(format!("stadttor-hsm-gen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for alg in [
            Algorithm::EcdsaP256Sha256,
            Algorithm::EcdsaP384Sha384,
            Algorithm::Ed25519,
        ] {
            let path = dir.join(format!("{alg}.p8"));
            let _ = std::fs::remove_file(&path);
            let made = FileKey::generate(&path, alg).unwrap();
            let loaded = FileKey::load(&path).unwrap();
            assert_eq!(loaded.algorithm(), alg);
            assert_eq!(loaded.public_key_spki(), made.public_key_spki());
            let sig = loaded.sign(b"hello").unwrap();
            assert!(verify(&made, b"hello", &sig));
            assert!(matches!(
                FileKey::generate(&path, alg),
                Err(Error::AlreadyExists { .. })
            ));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_is_refused_with_reference() {
        let err = FileKey::from_pkcs8("file:/x".into(), b"nope").unwrap_err();
        assert!(err.to_string().contains("file:/x"), "{err}");
    }
}
