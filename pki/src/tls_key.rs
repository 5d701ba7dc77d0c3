//! rustls `SigningKey` over any `stadttor-hsm` key.
//!
//! rustls signs synchronously inside the handshake. A software key signs in
//! microseconds and is called directly. A hardware key may take hundreds of
//! milliseconds, so its call is wrapped in [`tokio::task::block_in_place`]
//! when running on a multi-thread tokio runtime: the worker hands its other
//! tasks to a fresh thread and other connections keep being served.

use std::sync::Arc;

use rustls::sign::{Signer, SigningKey as RustlsSigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use stadttor_hsm::{Algorithm, Protection, SigningKey};

use crate::Error;

/// A TLS signing key backed by the key store.
#[derive(Debug, Clone)]
pub struct HsmTlsKey {
    key: Arc<dyn SigningKey>,
    scheme: SignatureScheme,
    algorithm: SignatureAlgorithm,
}

impl HsmTlsKey {
    /// Wraps `key`; fails for algorithms TLS cannot use.
    pub fn new(key: Arc<dyn SigningKey>) -> Result<Self, Error> {
        let (scheme, algorithm) = match key.algorithm() {
            Algorithm::EcdsaP256Sha256 => (
                SignatureScheme::ECDSA_NISTP256_SHA256,
                SignatureAlgorithm::ECDSA,
            ),
            Algorithm::EcdsaP384Sha384 => (
                SignatureScheme::ECDSA_NISTP384_SHA384,
                SignatureAlgorithm::ECDSA,
            ),
            Algorithm::Ed25519 => (SignatureScheme::ED25519, SignatureAlgorithm::ED25519),
            Algorithm::RsaPssSha256 => (SignatureScheme::RSA_PSS_SHA256, SignatureAlgorithm::RSA),
            other => {
                return Err(Error::UnsupportedAlgorithm {
                    key: key.reference().to_owned(),
                    algorithm: other.to_string(),
                })
            }
        };
        Ok(Self {
            key,
            scheme,
            algorithm,
        })
    }

    /// The underlying key.
    pub fn key(&self) -> &Arc<dyn SigningKey> {
        &self.key
    }
}

impl RustlsSigningKey for HsmTlsKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.contains(&self.scheme).then(|| {
            Box::new(HsmSigner {
                key: self.key.clone(),
                scheme: self.scheme,
            }) as Box<dyn Signer>
        })
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.key.public_key_spki()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }
}

#[derive(Debug)]
struct HsmSigner {
    key: Arc<dyn SigningKey>,
    scheme: SignatureScheme,
}

impl Signer for HsmSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let sign = || {
            self.key
                .sign(message)
                .map_err(|e| rustls::Error::General(e.to_string()))
        };
        if self.key.protection() == Protection::Software {
            return sign();
        }
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(sign)
            }
            _ => sign(),
        }
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}
