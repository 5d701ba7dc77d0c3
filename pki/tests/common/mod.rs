//! Shared parts of the signature tests that need stadttor's types: software
//! keys, seal certificates loaded as [`SealCertificate`], and PAdES checks
//! that add our own verifier to the independent tools. Everything else (test
//! PKI, TSA, pdfsig, pyHanko, `openssl cms`, swtpm/SoftHSM2) comes from
//! `stadttor-test-harness`, re-exported here.

#![allow(dead_code, unreachable_pub, missing_docs)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use rustls_pki_types::CertificateDer;
use stadttor_hsm::file::FileKey;
use stadttor_hsm::SigningKey;
use stadttor_pki::sign::pades;
use stadttor_pki::sign::SealCertificate;

pub use stadttor_test_harness::signing::*;
pub use stadttor_test_harness::{hw, TempDir};

/// A software P-256 key (the `file:` backend).
pub fn p256_key() -> FileKey {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .unwrap();
    FileKey::from_pkcs8("file:test-p256".into(), pkcs8.as_ref()).unwrap()
}

/// A software Ed25519 key.
pub fn ed25519_key() -> FileKey {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    FileKey::from_pkcs8("file:test-ed25519".into(), pkcs8.as_ref()).unwrap()
}

/// The test PKI's certificates for stadttor keys.
pub trait PkiExt {
    /// A seal certificate for `key` (KU digitalSignature +
    /// nonRepudiation), written as `seal-N.pem`; checked.
    fn seal_for(&self, key: &dyn SigningKey) -> (SealCertificate, PathBuf);
    /// A seal certificate with the given key usages, for negative tests.
    fn cert_with_usages(&self, key: &dyn SigningKey, usages: &[u8]) -> CertificateDer<'static>;
}

impl PkiExt for Pki {
    fn seal_for(&self, key: &dyn SigningKey) -> (SealCertificate, PathBuf) {
        let path = self.seal_cert_for_spki(key.public_key_spki());
        let seal = SealCertificate::load(&path, key).unwrap();
        (seal, path)
    }

    fn cert_with_usages(&self, key: &dyn SigningKey, usages: &[u8]) -> CertificateDer<'static> {
        self.cert_with_usages_for_spki(key.public_key_spki(), usages)
    }
}

/// PAdES checks: pdfsig, pyHanko, OpenSSL's print of the CMS
/// ([`check_pades_independent`]), and our verifier; the same file tampered
/// must fail all of them.
pub fn check_pades(pki: &Pki, dir: &TempDir, name: &str, signed: &[u8], with_ts: bool) {
    check_pades_independent(pki, dir, name, signed, with_ts);
    let v = pades::verify_pdf(signed).unwrap();
    assert!(v.covers_whole_file && v.cms.signing_time.is_none() && v.cms.signing_certificate_v2);
    assert_eq!(v.cms.timestamp.is_some(), with_ts);
    assert!(pades::verify_pdf(&tamper_pdf(signed)).is_err());
}
