//! The SP's keys in hardware: a BundID login against the real test SAML
//! IdP (tests/saml-idp: pysaml2 + xmlsec1) with the AuthnRequest signing
//! key and the assertion decryption key each an RSA-3072 key generated in
//! a software TPM (swtpm), in a PKCS#11 token (SoftHSM2), or (the
//! baseline) in a `file:` key. The AuthnRequest is signed RSA-PSS SHA-256
//! by the key store and verified by the IdP's independent verifier (lxml +
//! Python `cryptography`) against the SP metadata that
//! [`stadttor_saml::SpMetadata`] wrote; the IdP's encrypted Response (key
//! transport `rsa-oaep-mgf1p`) is read with the key store's
//! `DecryptingKey`. A Response encrypted to another key is refused as
//! `Refused::Decrypt`.
//!
//! The certificates in the SP metadata are issued for each key's public
//! key by a throwaway CA (the private keys never leave their device).
//! Each test prints (`--nocapture`) how long one ACS read took with its
//! backend; nothing is asserted about the time.
//!
//! The swtpm and SoftHSM2 tests need `--features tpm,pkcs11` (CI runs
//! `--all-features`); a missing tool fails them (the harness does not
//! skip).

// Test code: panicking on failure is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use stadttor_hsm::{Algorithm, DecryptingKey, KeyRef, KeyStore, KeyType, SigningKey};
use stadttor_saml::profile::AkdbRequest;
use stadttor_saml::request::{AuthnRequest, Comparison, SignedMessage};
use stadttor_saml::response::{self, Expect, Refused};
use stadttor_saml::{Assertion, IdpMetadata, SpMetadata};
use stadttor_test_harness::signing::key_usage;
use stadttor_test_harness::TempDir;
use testkit::saml_idp::{SamlIdp, SpKeys, BPK2, CITIZEN_HIGH, GIVEN_NAME};

const SP: &str = "https://kommune.example/saml/sp";
const ACS: &str = "https://kommune.example/.stadttor/acs/bundid";
/// How many further ACS reads of the same Response give the median.
const REPEATS: usize = 9;

fn key_ref(s: &str) -> KeyRef {
    s.parse().unwrap()
}

/// A throwaway CA that certifies the SP's public keys (SPKI) without ever
/// holding their private halves: what the municipal CA does from a CSR.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name
            .push(DnType::CommonName, "Stadt Musterstadt SAML Test-CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut p);
        let cert = p.self_signed(&key).unwrap();
        Self { cert, key }
    }

    /// A DER certificate for `spki` with the key usage bit `usage`
    /// (0 digitalSignature, 2 keyEncipherment).
    fn issue(&self, cn: &str, spki: &[u8], usage: u8) -> Vec<u8> {
        let public = rcgen::SubjectPublicKeyInfo::from_der(spki).unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.custom_extensions = vec![key_usage(&[usage])];
        validity(&mut p);
        let der = p
            .signed_by(&public, &self.cert, &self.key)
            .unwrap()
            .der()
            .to_vec();
        // The certificate carries exactly the device's public key.
        assert!(der.windows(spki.len()).any(|w| w == spki), "{cn}: SPKI");
        der
    }
}

fn validity(p: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(2);
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// The SP as the IdP sees it: metadata written by `SpMetadata::to_xml`
/// with the two certificates. There are no key files: the key fields name
/// where a file would be and stay absent (only the xmlsec1-CLI helpers of
/// `SpKeys`, unused here, would read them).
fn sp_keys(dir: &TempDir, signing_cert: &[u8], encryption_cert: &[u8]) -> SpKeys {
    let metadata = SpMetadata {
        entity_id: SP,
        acs_url: ACS,
        slo_url: None,
        signing_cert,
        encryption_cert: Some(encryption_cert),
        organization: Some(("Stadt Musterstadt", "https://kommune.example/")),
        contact: None,
    }
    .to_xml();
    let no_file = |name: &str| -> PathBuf { dir.join(format!("{name}.in-hardware")) };
    SpKeys {
        entity_id: SP.into(),
        acs_url: ACS.into(),
        signing_cert: dir.write("sp-signing.crt", &pem(signing_cert)),
        signing_key: no_file("sp-signing.key"),
        encryption_cert: dir.write("sp-encryption.crt", &pem(encryption_cert)),
        encryption_key: no_file("sp-encryption.key"),
        metadata: dir.write("sp-metadata.xml", &metadata),
    }
}

fn bundid_request(idp: &SamlIdp) -> AuthnRequest {
    let attributes = vec![BPK2.to_owned(), GIVEN_NAME.to_owned()];
    let methods = vec!["eID".to_owned()];
    AuthnRequest {
        destination: idp.sso_url(),
        sp_entity_id: SP.into(),
        acs_url: ACS.into(),
        force_authn: false,
        authn_context: Some((Comparison::Minimum, vec!["STORK-QAA-Level-3".into()])),
        extensions: Some(
            AkdbRequest {
                attributes: &attributes,
                methods: &methods,
                organization_display_name: Some("Stadt Musterstadt"),
                online_service_id: None,
            }
            .to_xml(),
        ),
        name_id_format: None,
    }
}

/// One login at the IdP: the request signed by `signing` (RSA-PSS in the
/// key store), verified by the IdP's own verifier; returns the request,
/// the base64 `SAMLResponse` and how long signing took.
fn login(
    idp: &SamlIdp,
    signing: &dyn SigningKey,
    cert: &[u8],
) -> (SignedMessage, String, Duration) {
    let start = Instant::now();
    let signed = bundid_request(idp)
        .sign(signing, Some(cert), SystemTime::now())
        .unwrap();
    let sign_time = start.elapsed();
    assert!(
        signed
            .xml
            .contains("http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1"),
        "RSA-PSS SignatureMethod"
    );
    let answer = idp.post_sso(&signed.xml, Some("relay"), &[("user", CITIZEN_HIGH.name)]);
    assert_eq!(answer.status, 200, "IdP refused: {}", answer.body);
    let last = idp.last_request();
    assert_eq!(last["signature_verified_by"], "cryptography+lxml", "{last}");
    assert_eq!(last["id"], signed.id.as_str(), "{last}");
    let b64 = answer.form_field("SAMLResponse").unwrap();
    // The assertion travels encrypted: the bPK2 is nowhere in the clear.
    let xml = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .unwrap();
    let xml = String::from_utf8(xml).unwrap();
    assert!(xml.contains("EncryptedAssertion"), "{xml}");
    assert!(!xml.contains(CITIZEN_HIGH.bpk2), "bPK2 in the clear");
    (signed, b64, sign_time)
}

/// The IdP's metadata, read once (as the gateway does at start).
fn idp_metadata(idp: &SamlIdp) -> IdpMetadata {
    IdpMetadata::parse(idp.metadata().as_bytes(), None, SystemTime::now()).unwrap()
}

/// `response::read` of `b64` as the ACS does it, with `key`.
fn acs_read(
    metadata: &IdpMetadata,
    request_id: &str,
    b64: &str,
    key: &dyn DecryptingKey,
) -> Result<Assertion, Refused> {
    let expect = Expect {
        sp_entity_id: SP,
        acs_url: ACS,
        idp_entity_id: &metadata.entity_id,
        idp_certs: &metadata.signing_certs,
        request_id,
        now: SystemTime::now(),
        skew: Duration::from_secs(60),
        require_encryption: true,
    };
    response::read(b64, &expect, Some(key))
}

/// The SP's two keys in one backend, and what to call it in the output.
struct SpHardware {
    backend: &'static str,
    signing: Arc<dyn SigningKey>,
    decrypting: Arc<dyn DecryptingKey>,
}

/// The whole check for one backend: certificates, IdP, login, ACS read
/// (timed), and a Response encrypted to another key.
fn bundid_login_with(hw: &SpHardware, dir: &TempDir) {
    let who = hw.backend;
    for key in [&*hw.signing, &*hw.decrypting as &dyn SigningKey] {
        assert_eq!(key.algorithm(), Algorithm::RsaPssSha256, "{who}");
        // RSA-3072: 384-byte signatures.
        assert_eq!(key.sign(b"probe").unwrap().len(), 384, "{who}");
    }
    assert_eq!(hw.decrypting.modulus_bits(), 3072, "{who}");
    assert_ne!(
        hw.signing.public_key_spki(),
        hw.decrypting.public_key_spki(),
        "{who}: two keys"
    );
    let ca = Ca::new();
    let signing_cert = ca.issue("SP signing", hw.signing.public_key_spki(), 0);
    let encryption_cert = ca.issue("SP encryption", hw.decrypting.public_key_spki(), 2);
    let sp = sp_keys(dir, &signing_cert, &encryption_cert);
    let idp = SamlIdp::start(dir, &sp);
    let metadata = idp_metadata(&idp);

    let (signed, b64, sign_time) = login(&idp, &*hw.signing, &signing_cert);
    let start = Instant::now();
    let a = acs_read(&metadata, &signed.id, &b64, &*hw.decrypting)
        .unwrap_or_else(|e| panic!("{who}: ACS refused: {e}"));
    let first = start.elapsed();
    assert_eq!(
        a.attribute(BPK2),
        Some("bPK2-ERIKA-7f3a9c21e4b8d05a"),
        "{who}"
    );
    assert_eq!(a.authn_context.as_deref(), Some("STORK-QAA-Level-4"));
    let bpk = a.attributes.iter().find(|x| x.name == BPK2).unwrap();
    assert_eq!(bpk.trust_level.as_deref(), Some("HOCH"));
    assert_eq!(a.attributes.len(), 2, "only what was asked for");

    response_encrypted_to_another_key_is_refused(hw, &signing_cert, &ca);

    // The refusal left the device key working: the same Response again.
    let mut times: Vec<Duration> = (0..REPEATS)
        .map(|_| {
            let start = Instant::now();
            let again = acs_read(&metadata, &signed.id, &b64, &*hw.decrypting).unwrap();
            let took = start.elapsed();
            assert_eq!(again, a, "{who}: the same Response reads the same");
            took
        })
        .collect();
    times.sort();
    eprintln!(
        "saml hardware_keys [{who}]: one ACS read (verify + RSA-3072 OAEP unwrap + AES-GCM) \
         first {:.1} ms, then of {REPEATS} more median {:.1} ms, fastest {:.1} ms; AuthnRequest \
         build + RSA-PSS sign {:.1} ms",
        ms(first),
        ms(times[REPEATS / 2]),
        ms(times[0]),
        ms(sign_time),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// An IdP whose SP metadata names another encryption key (a `file:` key):
/// its Response, read with the device key, is `Refused::Decrypt` (not a
/// panic) and carries nothing of the assertion. The other key reads the
/// same Response, so nothing but the key is wrong.
fn response_encrypted_to_another_key_is_refused(hw: &SpHardware, signing_cert: &[u8], ca: &Ca) {
    let who = hw.backend;
    let dir = TempDir::new("saml-hw-other");
    let other_ref = key_ref(&format!("file:{}", dir.join("other-enc.p8").display()));
    let store = KeyStore::default();
    store.generate(&other_ref, KeyType::Rsa3072).unwrap();
    let other = store.resolve_decrypting(&other_ref).unwrap();
    let other_cert = ca.issue("another SP encryption key", other.public_key_spki(), 2);
    let sp = sp_keys(&dir, signing_cert, &other_cert);
    let idp = SamlIdp::start(&dir, &sp);
    let metadata = idp_metadata(&idp);
    let (signed, b64, _) = login(&idp, &*hw.signing, signing_cert);

    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        acs_read(&metadata, &signed.id, &b64, &*hw.decrypting)
    }))
    .unwrap_or_else(|_| panic!("{who}: reading a Response for another key panicked"));
    match refused {
        Err(e @ Refused::Decrypt(_)) => {
            let text = format!("{e} {e:?}");
            assert!(!text.contains(CITIZEN_HIGH.bpk2), "{who}: {text}");
            assert!(!text.contains("Erika"), "{who}: {text}");
        }
        other => panic!("{who}: a Response for another key: {other:?}"),
    }
    let control = acs_read(&metadata, &signed.id, &b64, &*other).unwrap();
    assert_eq!(control.attribute(BPK2), Some(CITIZEN_HIGH.bpk2), "{who}");
}

/// The baseline: both SP keys `file:` RSA-3072 keys of the key store.
#[test]
fn bundid_login_with_file_keys() {
    let dir = TempDir::new("saml-hw-file");
    let store = KeyStore::default();
    let signing = key_ref(&format!("file:{}", dir.join("sp-sign.p8").display()));
    let decrypting = key_ref(&format!("file:{}", dir.join("sp-dec.p8").display()));
    store.generate(&signing, KeyType::Rsa3072).unwrap();
    store.generate(&decrypting, KeyType::Rsa3072).unwrap();
    let hw = SpHardware {
        backend: "file",
        signing: store.resolve(&signing).unwrap(),
        decrypting: store.resolve_decrypting(&decrypting).unwrap(),
    };
    bundid_login_with(&hw, &dir);
}

#[cfg(feature = "tpm")]
mod tpm {
    use super::*;
    use stadttor_test_harness::hw::{self as support, Swtpm};

    /// Both SP keys generated in swtpm: the signing key persistent at a
    /// handle, the decryption key as a TSS2 PEM (loaded under the SRK).
    #[test]
    fn bundid_login_with_keys_in_swtpm() {
        support::init();
        let tpm = Swtpm::start();
        let mut config = stadttor_hsm::KeyStoreConfig::default();
        config.tpm_tcti = Some(tpm.tcti());
        config.request_timeout = Duration::from_secs(30);
        let store = KeyStore::new(config);
        let signing = key_ref("tpm:handle=0x81010020");
        let decrypting = key_ref(&format!(
            "tpm:pem={}",
            tpm.dir.join("sp-dec.tss2.pem").display()
        ));
        let start = Instant::now();
        drop(store.generate(&signing, KeyType::Rsa3072).unwrap());
        drop(store.generate(&decrypting, KeyType::Rsa3072).unwrap());
        eprintln!(
            "saml hardware_keys [tpm swtpm]: two RSA-3072 keys generated in {:?}",
            start.elapsed()
        );
        let hw = SpHardware {
            backend: "tpm swtpm",
            signing: store.resolve(&signing).unwrap(),
            decrypting: store.resolve_decrypting(&decrypting).unwrap(),
        };
        bundid_login_with(&hw, &tpm.dir);
    }
}

#[cfg(feature = "pkcs11")]
mod pkcs11 {
    use super::*;
    use stadttor_test_harness::hw::{self as support, SOFTHSM_MODULE};

    /// Both SP keys generated in a SoftHSM2 token (never extractable).
    #[test]
    fn bundid_login_with_keys_in_softhsm2() {
        let softhsm = support::init();
        let token = softhsm.token();
        let mut config = stadttor_hsm::KeyStoreConfig::default();
        config.pkcs11_module = Some(SOFTHSM_MODULE.into());
        config.pkcs11_pin_file = Some(token.pin_file.clone());
        let store = KeyStore::new(config);
        let signing = key_ref(&format!(
            "pkcs11:token={};object=saml-sign;id=%20",
            token.label
        ));
        let decrypting = key_ref(&format!(
            "pkcs11:token={};object=saml-dec;id=%21",
            token.label
        ));
        let start = Instant::now();
        store.generate(&signing, KeyType::Rsa3072).unwrap();
        store.generate(&decrypting, KeyType::Rsa3072).unwrap();
        eprintln!(
            "saml hardware_keys [pkcs11 SoftHSM2]: two RSA-3072 keys generated in {:?}",
            start.elapsed()
        );
        let hw = SpHardware {
            backend: "pkcs11 SoftHSM2",
            signing: store.resolve(&signing).unwrap(),
            decrypting: store.resolve_decrypting(&decrypting).unwrap(),
        };
        bundid_login_with(&hw, &TempDir::new("saml-hw-p11"));
        // The private keys are in the token and never leave it.
        let out = support::run(token.tool().args(["--list-objects", "--type", "privkey"]));
        let listing = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            listing.matches("Private Key Object; RSA").count(),
            2,
            "{listing}"
        );
        assert_eq!(listing.matches("never extractable").count(), 2, "{listing}");
    }
}
