//! The signature formats with keys that never leave hardware: a software
//! TPM (swtpm, feature `tpm`) and a PKCS#11 token (SoftHSM2, feature
//! `pkcs11`). CAdES is checked by `openssl cms -verify -cades` and
//! pyHanko, PAdES by `pdfsig` and pyHanko, JWS by jwcrypto; tampering
//! must fail each.

#![cfg(any(feature = "tpm", feature = "pkcs11"))]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{check_pades, hw, openssl_cms_verify, pyhanko_cms, verify_py, Pki, PkiExt, TempDir};
use stadttor_hsm::{Algorithm, KeyStore, KeyStoreConfig, SigningKey};
use stadttor_pki::sign::cms::{self, CmsOptions};
use stadttor_pki::sign::jws;
use stadttor_pki::sign::pades::{self, PadesOptions};
use stadttor_pki::sign::tsa::HttpTsa;

/// CAdES-B-B, PAdES-B-B on every test PDF and PAdES-B-T, JWS: all
/// with `key`, all checked independently.
fn all_formats(key: Arc<dyn SigningKey>, tag: &str) {
    let pki = Pki::new();
    let dir = TempDir::new(tag);
    let (seal, seal_pem) = pki.seal_for(key.as_ref());

    let body = b"Bescheid: Ihr Antrag ist bewilligt.\n".repeat(20);
    let opts = CmsOptions {
        signing_time: Some(time::OffsetDateTime::now_utc()),
        tsa: None,
    };
    let sig = cms::sign_detached(key.as_ref(), &seal, &body, &opts).unwrap();
    let (ok, out) = openssl_cms_verify(&pki, &sig, &body, &dir);
    assert!(
        ok && out.contains("CAdES Verification successful"),
        "{tag}: {out}"
    );
    let (ok, out) = pyhanko_cms(&pki, &dir, &body, false);
    assert!(ok, "{tag}: {out}");
    let mut tampered = body.clone();
    tampered[0] ^= 1;
    let (ok, out) = openssl_cms_verify(&pki, &sig, &tampered, &dir);
    assert!(!ok, "{tag}: tampered body verified: {out}");

    for (name, pdf) in common::test_pdfs() {
        let signed = pades::sign_pdf(key.as_ref(), &seal, &pdf, &PadesOptions::default()).unwrap();
        check_pades(&pki, &dir, &format!("{tag}-{name}"), &signed, false);
    }
    let url = pki.start_tsa();
    let tsa = HttpTsa::new(&url, Duration::from_secs(20)).unwrap();
    let opts = PadesOptions {
        tsa: Some(&tsa),
        ..Default::default()
    };
    let signed = pades::sign_pdf(key.as_ref(), &seal, &common::minimal_pdf(), &opts).unwrap();
    check_pades(&pki, &dir, &format!("{tag}-bt"), &signed, true);

    let payload = b"{\"antrag\": 42}";
    let token = jws::sign_detached(key.as_ref(), &seal, payload, None).unwrap();
    std::fs::write(dir.join("token"), &token).unwrap();
    std::fs::write(dir.join("payload"), payload).unwrap();
    let (ok, out) = verify_py(&[
        "jws",
        dir.join("token").to_str().unwrap(),
        dir.join("payload").to_str().unwrap(),
        seal_pem.to_str().unwrap(),
    ]);
    assert!(ok, "{tag}: {out}");
}

#[cfg(feature = "tpm")]
#[test]
fn tpm_key_signs_every_format() {
    hw::init();
    let tpm = hw::Swtpm::start();
    let mut config = KeyStoreConfig::default();
    config.tpm_tcti = Some(tpm.tcti());
    config.request_timeout = Duration::from_secs(30);
    let store = KeyStore::new(config);
    let pem = tpm.dir.join("seal.tss2.pem");
    let reference = format!("tpm:handle=0x81010003;pem={}", pem.display())
        .parse()
        .unwrap();
    let key = store
        .generate(&reference, Algorithm::EcdsaP256Sha256)
        .unwrap();
    assert_eq!(key.protection(), stadttor_hsm::Protection::Tpm);
    all_formats(key, "tpm");
}

#[cfg(feature = "pkcs11")]
#[test]
fn pkcs11_key_signs_every_format() {
    let softhsm = hw::init();
    let token = softhsm.token();
    let mut config = KeyStoreConfig::default();
    config.pkcs11_module = Some(hw::SOFTHSM_MODULE.into());
    config.pkcs11_pin_file = Some(token.pin_file.clone());
    let store = KeyStore::new(config);
    let reference = format!("pkcs11:token={};object=seal;id=%07", token.label)
        .parse()
        .unwrap();
    let key = store
        .generate(&reference, Algorithm::EcdsaP256Sha256)
        .unwrap();
    assert_eq!(key.protection(), stadttor_hsm::Protection::Pkcs11);
    all_formats(key, "pkcs11");
}
