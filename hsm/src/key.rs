//! The signing trait every backend implements, kept as small as rustls' own.

use std::fmt;

use zeroize::Zeroizing;

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

/// What kind of key [`crate::KeyStore::generate`] creates.
///
/// An [`Algorithm`] converts into the matching type (RSA-PSS into
/// [`KeyType::Rsa3072`]), so `generate(&key, Algorithm::EcdsaP256Sha256)`
/// keeps working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA over P-256.
    EcdsaP256,
    /// ECDSA over P-384.
    EcdsaP384,
    /// Ed25519 (`file:` keys only).
    Ed25519,
    /// RSA with a 3072-bit modulus (BSI TR-02102-1: at least 3000 bits);
    /// signs RSA-PSS SHA-256 and decrypts RSA-OAEP.
    Rsa3072,
    /// RSA with a 4096-bit modulus; as [`KeyType::Rsa3072`]. Not every TPM
    /// offers it (swtpm 0.7 does not).
    Rsa4096,
}

impl KeyType {
    /// The signature algorithm a key of this type signs with.
    pub fn algorithm(self) -> Algorithm {
        match self {
            Self::EcdsaP256 => Algorithm::EcdsaP256Sha256,
            Self::EcdsaP384 => Algorithm::EcdsaP384Sha384,
            Self::Ed25519 => Algorithm::Ed25519,
            Self::Rsa3072 | Self::Rsa4096 => Algorithm::RsaPssSha256,
        }
    }

    /// The RSA modulus size in bits, for RSA types.
    pub fn rsa_bits(self) -> Option<usize> {
        match self {
            Self::Rsa3072 => Some(3072),
            Self::Rsa4096 => Some(4096),
            _ => None,
        }
    }
}

impl From<Algorithm> for KeyType {
    fn from(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::EcdsaP256Sha256 => Self::EcdsaP256,
            Algorithm::EcdsaP384Sha384 => Self::EcdsaP384,
            Algorithm::Ed25519 => Self::Ed25519,
            Algorithm::RsaPssSha256 => Self::Rsa3072,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Ed25519 => "ed25519",
            Self::Rsa3072 => "rsa3072",
            Self::Rsa4096 => "rsa4096",
        })
    }
}

/// The RSA-OAEP parameters of a decryption (RFC 8017 §7.1): the label hash
/// and the MGF1 hash. The label is always empty.
///
/// XML Encryption names them in the `EncryptedKey`'s `EncryptionMethod`:
/// `http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p` fixes MGF1 to SHA-1
/// and takes the digest from its `ds:DigestMethod` (SHA-1 when absent);
/// `http://www.w3.org/2009/xmlenc11#rsa-oaep` also names the MGF
/// (`xmlenc11#mgf1sha256`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Oaep {
    /// SHA-1 digest, MGF1 with SHA-1: `xmlenc#rsa-oaep-mgf1p` with its
    /// default digest, and PKCS#1's default. (SHA-1 is not used for
    /// collision resistance here; OAEP with SHA-1 is still sound.)
    Sha1,
    /// SHA-256 digest, MGF1 with SHA-1: `xmlenc#rsa-oaep-mgf1p` with a
    /// SHA-256 `DigestMethod`. Only PKCS#11 tokens that accept mixed
    /// parameters can do this (not SoftHSM 2.6, not a TPM, not `file:`).
    Sha256Mgf1Sha1,
    /// SHA-256 digest, MGF1 with SHA-256: `xmlenc11#rsa-oaep` with
    /// `xmlenc11#mgf1sha256`, and what BSI TR-02102-1 recommends.
    Sha256,
}

impl fmt::Display for Oaep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Self::Sha1 => "OAEP SHA-1/MGF1-SHA-1",
            Self::Sha256Mgf1Sha1 => "OAEP SHA-256/MGF1-SHA-1",
            Self::Sha256 => "OAEP SHA-256/MGF1-SHA-256",
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

/// An RSA private key that also decrypts (RSA-OAEP), wherever it lives.
///
/// Every decrypting key is a [`SigningKey`] too (RSA-PSS SHA-256), so one
/// `Arc<dyn DecryptingKey>` can be handed on as an `Arc<dyn SigningKey>`.
/// Decryptions are not counted in [`SigningKey::stats`].
pub trait DecryptingKey: SigningKey {
    /// The modulus size in bits (3072, 4096, …); ciphertexts are exactly
    /// this many bits rounded up to bytes.
    fn modulus_bits(&self) -> usize;

    /// Decrypts an RSA-OAEP `ciphertext` (exactly the modulus length, as
    /// XML Encryption's `CipherValue` carries it) with an empty label.
    ///
    /// Every ciphertext that does not decrypt (another key, altered bytes,
    /// other OAEP parameters) gives the same [`Error::Decryption`], which
    /// says nothing about why, so the error cannot serve as a padding oracle
    /// (Manger's attack). The plaintext is zeroized when dropped; never log it.
    fn decrypt_oaep(&self, oaep: Oaep, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error>;
}
