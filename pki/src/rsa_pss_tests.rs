//! Tests of the RSASSA-PSS CSR and self-signed certificate: openssl and
//! x509-parser read both, the signatures verify (openssl, ring), the SPKI
//! is the key's, the SAML SP's certificate check accepts the certificate,
//! and a forged signature or a bad parameter is refused.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use stadttor_hsm::file::FileKey;
use stadttor_hsm::KeyType;
use stadttor_test_harness::TempDir;
use x509_parser::prelude::*;

use super::*;

/// One RSA-3072 file key for all tests (generation takes a moment).
fn rsa_key() -> Arc<dyn SigningKey> {
    static KEY: OnceLock<(TempDir, Arc<dyn SigningKey>)> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = TempDir::new("rsa-pss-key");
        let key = FileKey::generate(&dir.join("saml.p8"), KeyType::Rsa3072).unwrap();
        assert_eq!(SigningKey::algorithm(&key), Algorithm::RsaPssSha256);
        (dir, Arc::new(key))
    })
    .1
    .clone()
}

fn p256_key() -> Arc<dyn SigningKey> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .unwrap();
    Arc::new(FileKey::from_pkcs8("memory:p256".into(), pkcs8.as_ref()).unwrap())
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// Runs openssl; returns (success, stdout + stderr).
fn openssl(args: &[&str]) -> (bool, String) {
    stadttor_test_harness::require("openssl", "openssl");
    let out = Command::new("openssl").args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The signature AlgorithmIdentifier is exactly RFC 4055's RSASSA-PSS with
/// SHA-256, MGF1-SHA-256, salt 32.
fn assert_pss_alg_id(alg: &x509_parser::x509::AlgorithmIdentifier<'_>) {
    assert_eq!(alg.algorithm.to_id_string(), "1.2.840.113549.1.1.10");
    let params = alg.parameters.as_ref().expect("explicit RSASSA-PSS-params");
    let hex = crate::hex::encode(params.data);
    // [0] sha256 with NULL params, [1] mgf1(sha256), [2] 32
    assert_eq!(
        hex,
        "a00f300d06096086480165030402010500\
         a11c301a06092a864886f70d010108300d06096086480165030402010500\
         a203020120"
    );
}

fn ring_verify(key: &dyn SigningKey, message: &[u8], signature: &[u8]) {
    crate::sign::verify_raw(
        Algorithm::RsaPssSha256,
        key.public_key_spki(),
        message,
        signature,
        false,
    )
    .unwrap();
}

#[test]
fn rsa_csr_verifies_with_openssl_and_carries_the_key() {
    let key = rsa_key();
    let sans = vec!["sp.musterstadt.de".to_owned(), "192.0.2.7".to_owned()];
    let pem = crate::remote::csr_pem(key.clone(), "sp.musterstadt.de", &sans).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----\n"));
    assert!(pem.lines().all(|l| l.len() <= 64));

    let der = pem_to_der(&pem);
    let (rest, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
    assert!(rest.is_empty());
    let info = &csr.certification_request_info;
    assert_eq!(info.subject_pki.raw, key.public_key_spki());
    assert_eq!(info.subject.to_string(), "CN=sp.musterstadt.de");
    assert_pss_alg_id(&csr.signature_algorithm);
    ring_verify(key.as_ref(), info.raw, &csr.signature_value.data);
    let requested: Vec<String> = csr
        .requested_extensions()
        .unwrap()
        .filter_map(|e| match e {
            ParsedExtension::SubjectAlternativeName(san) => Some(
                san.general_names
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        requested,
        ["DNSName(sp.musterstadt.de)", "IPAddress(c0:00:02:07)"]
    );

    let dir = TempDir::new("rsa-pss-csr");
    let path = dir.write("sp.csr", &pem);
    let path = path.to_str().unwrap();
    let (ok, text) = openssl(&["req", "-verify", "-noout", "-in", path]);
    assert!(ok, "{text}");
    assert!(
        text.contains("verify OK") || text.contains("Certificate request self-signature verify OK"),
        "{text}"
    );
    let (ok, text) = openssl(&["req", "-noout", "-text", "-in", path]);
    assert!(ok, "{text}");
    for want in [
        "rsassaPss",
        "Hash Algorithm: sha256",
        "Mask Algorithm: mgf1 with sha256",
        "Salt Length: 0x20",
        "Public-Key: (3072 bit)",
        "DNS:sp.musterstadt.de, IP Address:192.0.2.7",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
}

#[test]
fn rsa_csr_without_sans_has_empty_attributes() {
    let key = rsa_key();
    let pem = csr_pem(key.as_ref(), "Stadt Musterstadt SAML", &[]).unwrap();
    let der = pem_to_der(&pem);
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
    assert!(csr.requested_extensions().is_none());
    let dir = TempDir::new("rsa-pss-csr-nosan");
    let path = dir.write("sp.csr", &pem);
    let (ok, text) = openssl(&["req", "-verify", "-noout", "-in", path.to_str().unwrap()]);
    assert!(ok, "{text}");
}

fn check_certificate(pem: &str, key: &dyn SigningKey, now: ::time::OffsetDateTime, days: i64) {
    let der = pem_to_der(pem);
    let (rest, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(rest.is_empty());
    assert_eq!(cert.version(), X509Version::V3);
    assert_eq!(cert.public_key().raw, key.public_key_spki());
    assert_eq!(cert.subject().to_string(), "CN=sp.musterstadt.de");
    assert_eq!(cert.issuer(), cert.subject());
    assert_pss_alg_id(&cert.signature_algorithm);
    assert_eq!(cert.signature_algorithm, cert.tbs_certificate.signature);
    ring_verify(
        key,
        cert.tbs_certificate.as_ref(),
        &cert.signature_value.data,
    );
    // Serial: 16 bytes, positive.
    let serial = cert.raw_serial();
    assert_eq!(serial.len(), 16, "{serial:02x?}");
    assert!(serial[0] & 0x80 == 0 && serial[0] != 0);
    let v = cert.validity();
    assert_eq!(
        v.not_before.timestamp(),
        (now - ::time::Duration::hours(1)).unix_timestamp()
    );
    assert_eq!(
        v.not_after.timestamp(),
        (now + ::time::Duration::days(days)).unix_timestamp()
    );
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && !bc.value.ca);
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical);
    assert!(ku.value.digital_signature() && ku.value.key_encipherment());
    assert!(!ku.value.key_cert_sign() && !ku.value.non_repudiation());
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(!san.critical);
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "DNSName(sp.musterstadt.de)",
            "IPAddress(20:01:0d:b8:00:00:00:00:00:00:00:00:00:00:00:01)"
        ]
    );
}

#[test]
fn rsa_self_signed_certificate_verifies_with_openssl_and_matches_the_key() {
    let key = rsa_key();
    let now = ::time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let sans = vec!["sp.musterstadt.de".to_owned(), "2001:db8::1".to_owned()];
    let pem = self_signed_pem(key.as_ref(), "sp.musterstadt.de", &sans, 730, now).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    check_certificate(&pem, key.as_ref(), now, 730);

    let dir = TempDir::new("rsa-pss-cert");
    let path = dir.write("sp.pem", &pem);
    let p = path.to_str().unwrap();
    let (ok, text) = openssl(&["x509", "-noout", "-text", "-in", p]);
    assert!(ok, "{text}");
    for want in [
        "Version: 3 (0x2)",
        "rsassaPss",
        "Mask Algorithm: mgf1 with sha256",
        "Salt Length: 0x20",
        "CA:FALSE",
        "Digital Signature, Key Encipherment",
        "X509v3 Subject Key Identifier",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    // Without -check_ss_sig openssl never checks a trust anchor's own
    // signature (see the forged-signature test).
    let (ok, text) = openssl(&["verify", "-check_ss_sig", "-CAfile", p, p]);
    assert!(ok && text.contains(": OK"), "{text}");

    // What the SAML SP checks at start: the certificate is the key's.
    let chain = crate::certs::load_chain(&path).unwrap();
    crate::certs::check_leaf_matches_key(&chain, &path, key.as_ref()).unwrap();
    let other = p256_key();
    assert!(matches!(
        crate::certs::check_leaf_matches_key(&chain, &path, other.as_ref()),
        Err(Error::KeyMismatch { .. })
    ));
}

#[test]
fn forged_certificate_signature_is_rejected_by_openssl() {
    let key = rsa_key();
    let pem = crate::remote::self_signed_pem(key.clone(), "sp.musterstadt.de", &[], 30).unwrap();
    let mut der = pem_to_der(&pem);
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let dir = TempDir::new("rsa-pss-forged");
    let path = dir.join("forged.pem");
    std::fs::write(&path, super::pem("CERTIFICATE", &der)).unwrap();
    let p = path.to_str().unwrap();
    let (ok, text) = openssl(&["verify", "-check_ss_sig", "-CAfile", p, p]);
    assert!(!ok, "a forged signature must not verify: {text}");
    assert!(text.contains("signature failure"), "{text}");
}

/// A certificate that ends in 2050 or later carries GeneralizedTime, as
/// RFC 5280 requires; openssl and x509-parser read both forms.
#[test]
fn validity_after_2049_is_generalized_time() {
    let key = rsa_key();
    // 2049-12-01 12:00:00 UTC
    let now = ::time::OffsetDateTime::from_unix_timestamp(2_521_972_800).unwrap();
    let sans = vec!["sp.musterstadt.de".to_owned(), "2001:db8::1".to_owned()];
    let pem = self_signed_pem(key.as_ref(), "sp.musterstadt.de", &sans, 60, now).unwrap();
    check_certificate(&pem, key.as_ref(), now, 60);
    let der = pem_to_der(&pem);
    // UTCTime 491201110000Z, then GeneralizedTime 20500130120000Z.
    let utc = der::tlv(tag::UTC_TIME, b"491201110000Z");
    let gen = der::tlv(tag::GENERALIZED_TIME, b"20500130120000Z");
    let validity = der::seq(&[&utc, &gen]);
    assert!(der.windows(validity.len()).any(|w| w == validity));
    let dir = TempDir::new("rsa-pss-2050");
    let path = dir.write("sp.pem", &pem);
    let (ok, text) = openssl(&["x509", "-noout", "-dates", "-in", path.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("notAfter=Jan 30 12:00:00 2050 GMT"), "{text}");
}

#[test]
fn encodings_are_exact() {
    assert_eq!(
        crate::hex::encode(&name("a").unwrap()),
        "300c310a300806035504030c0161"
    );
    assert_eq!(
        crate::hex::encode(&extension(
            KEY_USAGE,
            true,
            &der::tlv(tag::BIT_STRING, &[5, 0xa0])
        )),
        "300e0603551d0f0101ff0404030205a0"
    );
    assert_eq!(
        crate::hex::encode(&san_value(&["a.de".into(), "10.0.0.1".into()]).unwrap()),
        "300c8204612e646587040a000001"
    );
    let pem = pem("X", &[0u8; 60]);
    let lines: Vec<&str> = pem.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1].len(), 64);
    assert_eq!(lines[2], "A".repeat(16));
}

#[test]
fn bad_parameters_are_refused() {
    let key = rsa_key();
    let now = ::time::OffsetDateTime::now_utc();
    let refused = |r: Result<String, Error>| matches!(r, Err(Error::BadParameters { .. }));
    assert!(refused(csr_pem(key.as_ref(), "", &[])));
    assert!(refused(csr_pem(key.as_ref(), &"x".repeat(65), &[])));
    assert!(refused(csr_pem(key.as_ref(), "a\nb", &[])));
    assert!(refused(csr_pem(key.as_ref(), "ok", &["bürger.de".into()])));
    assert!(refused(csr_pem(key.as_ref(), "ok", &["a b".into()])));
    assert!(refused(csr_pem(key.as_ref(), "ok", &[String::new()])));
    assert!(refused(self_signed_pem(key.as_ref(), "ok", &[], 0, now)));
    assert!(refused(self_signed_pem(
        key.as_ref(),
        "ok",
        &[],
        MAX_DAYS + 1,
        now
    )));
    assert!(refused(crate::remote::self_signed_pem(
        p256_key(),
        "ok",
        &[],
        0
    )));
    // A non-RSA key is not signed RSA-PSS here.
    let ec = p256_key();
    assert!(matches!(
        csr_pem(ec.as_ref(), "ok", &[]),
        Err(Error::UnsupportedAlgorithm { .. })
    ));
}

/// ECDSA keys still go through rcgen, for CSRs and self-signed
/// certificates alike.
#[test]
fn ecdsa_self_signed_goes_through_rcgen_and_verifies() {
    let key = p256_key();
    let pem = crate::remote::self_signed_pem(
        key.clone(),
        "sp.musterstadt.de",
        &["sp.musterstadt.de".into()],
        365,
    )
    .unwrap();
    let der = pem_to_der(&pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    cert.verify_signature(None).unwrap();
    assert_eq!(cert.public_key().raw, key.public_key_spki());
    assert_eq!(cert.raw_serial().len(), 16);
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    assert!(cert.key_usage().unwrap().unwrap().value.digital_signature());
    crate::certs::check_leaf_matches_key(
        &[rustls_pki_types::CertificateDer::from(der.clone())],
        Path::new("ec.pem"),
        key.as_ref(),
    )
    .unwrap();
}
