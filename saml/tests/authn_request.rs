//! AuthnRequests built and signed by `stadttor_saml::request` with an
//! `hsm` key (RSA-PSS SHA-256, what BundID asks for), checked by the real
//! test IdP's independent verifier (lxml exclusive C14N + Python
//! `cryptography`), then answered and read back: the whole SP round trip
//! without the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use stadttor_hsm::{KeyRef, KeyStore, KeyStoreConfig};
use stadttor_saml::profile::AkdbRequest;
use stadttor_saml::request::{AuthnRequest, Comparison};
use stadttor_saml::response::{self, Expect};
use stadttor_saml::IdpMetadata;
use stadttor_test_harness::TempDir;
use testkit::saml_idp::{SamlIdp, SpKeys, BPK2, GIVEN_NAME};

const SP: &str = "https://kommune.example/saml/sp";
const ACS: &str = "https://kommune.example/.stadttor/acs/bundid";

fn pem_der(path: &std::path::Path) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn bundid_request(idp: &SamlIdp, force: bool) -> AuthnRequest {
    let attributes = vec![BPK2.to_owned(), GIVEN_NAME.to_owned()];
    let methods = vec!["eID".to_owned(), "Elster".to_owned()];
    AuthnRequest {
        destination: idp.sso_url(),
        sp_entity_id: SP.into(),
        acs_url: ACS.into(),
        force_authn: force,
        authn_context: Some((Comparison::Minimum, vec!["STORK-QAA-Level-3".into()])),
        extensions: Some(
            AkdbRequest {
                attributes: &attributes,
                methods: &methods,
                organization_display_name: Some("Stadt Musterstadt"),
                online_service_id: Some("test-service-4711"),
            }
            .to_xml(),
        ),
        name_id_format: None,
    }
}

#[test]
fn pss_signed_request_from_an_hsm_key_is_verified_independently_and_answered() {
    let dir = TempDir::new("saml-req");
    let sp = SpKeys::generate(&dir, SP, ACS);
    let idp = SamlIdp::start(&dir, &sp);
    let store = KeyStore::new(KeyStoreConfig::default());
    let signing: KeyRef = format!("file:{}", sp.signing_key.display())
        .parse()
        .unwrap();
    let signing = store.resolve(&signing).unwrap();
    let cert = pem_der(&sp.signing_cert);
    let signed = bundid_request(&idp, true)
        .sign(signing.as_ref(), Some(&cert), SystemTime::now())
        .unwrap();
    let answer = idp.post_sso(&signed.xml, Some("relay"), &[("user", "citizen-high")]);
    assert_eq!(answer.status, 200, "IdP refused: {}", answer.body);
    let last = idp.last_request();
    assert_eq!(last["signature_verified_by"], "cryptography+lxml", "{last}");
    assert_eq!(last["force_authn"], true);
    assert_eq!(last["comparison"], "minimum");
    assert_eq!(last["requested_levels"][0], "STORK-QAA-Level-3");
    assert_eq!(last["akdb_version"], "2");
    assert_eq!(last["requested_attributes"][0], BPK2);
    assert_eq!(last["id"], signed.id.as_str());

    let metadata = IdpMetadata::parse(idp.metadata().as_bytes(), None, SystemTime::now()).unwrap();
    let dec: KeyRef = format!("file:{}", sp.encryption_key.display())
        .parse()
        .unwrap();
    let dec = store.resolve_decrypting(&dec).unwrap();
    let expect = Expect {
        sp_entity_id: SP,
        acs_url: ACS,
        idp_entity_id: &metadata.entity_id,
        idp_certs: &metadata.signing_certs,
        request_id: &signed.id,
        now: SystemTime::now(),
        skew: Duration::from_secs(60),
        require_encryption: true,
    };
    let a = response::read(
        &answer.form_field("SAMLResponse").unwrap(),
        &expect,
        Some(dec.as_ref()),
    )
    .unwrap();
    assert_eq!(a.attribute(BPK2), Some("bPK2-ERIKA-7f3a9c21e4b8d05a"));
    assert_eq!(a.attributes.len(), 2, "only what was asked for");
}

#[test]
fn request_tampered_after_signing_is_refused_by_the_idp() {
    let dir = TempDir::new("saml-req");
    let sp = SpKeys::generate(&dir, SP, ACS);
    let idp = SamlIdp::start(&dir, &sp);
    let store = KeyStore::new(KeyStoreConfig::default());
    let signing: KeyRef = format!("file:{}", sp.signing_key.display())
        .parse()
        .unwrap();
    let signing = store.resolve(&signing).unwrap();
    assert_eq!(signing.algorithm(), stadttor_hsm::Algorithm::RsaPssSha256);
    let signed = bundid_request(&idp, false)
        .sign(signing.as_ref(), None, SystemTime::now())
        .unwrap();
    let lowered = signed.xml.replace("STORK-QAA-Level-3", "STORK-QAA-Level-1");
    assert_ne!(lowered, signed.xml);
    let answer = idp.post_sso(&lowered, None, &[]);
    assert_eq!(answer.status, 403, "{}", answer.body);
}
