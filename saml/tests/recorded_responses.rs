//! The responses recorded from the test SAML IdP in `saml/benches/data/`
//! (by `examples/record_saml_data.rs`; the benchmark reads them) stay
//! readable offline at their recorded time, and are refused outside it,
//! for another request, or with a key that is not the SP's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support {
    pub(crate) mod recorded;
}

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stadttor_hsm::DecryptingKey;
use stadttor_saml::profile::bundid_attribute;
use stadttor_saml::response::{self, Expect, Refused};
use stadttor_saml::{Assertion, IdpMetadata};
use support::recorded::{data, decrypting_key as key, recorded, Recorded};

const SP: &str = "https://kommune.example/saml/sp";
const ACS: &str = "https://kommune.example/.stadttor/acs/bundid";

fn read(
    r: &Recorded,
    request_id: &str,
    now: SystemTime,
    key: &dyn DecryptingKey,
) -> Result<Assertion, Refused> {
    let xml = std::fs::read(data().join("idp-metadata.xml")).unwrap();
    let idp = IdpMetadata::parse(&xml, None, r.now).unwrap();
    let expect = Expect {
        sp_entity_id: SP,
        acs_url: ACS,
        idp_entity_id: &idp.entity_id,
        idp_certs: &idp.signing_certs,
        request_id,
        now,
        skew: Duration::from_secs(60),
        require_encryption: true,
    };
    response::read(&r.b64, &expect, Some(key))
}

#[test]
fn recorded_bundid_responses_read_offline_at_their_recorded_time() {
    let key = key("sp-encryption.key");
    let all = recorded();
    assert_eq!(all.len(), 4, "responses.tsv");
    let bpk2 = bundid_attribute("bpk2").unwrap();
    for r in &all {
        let a = read(r, &r.request_id, r.now, key.as_ref())
            .unwrap_or_else(|e| panic!("{}: {e}", r.name));
        let want_level = match r.name.as_str() {
            "citizen-substantial" => "STORK-QAA-Level-3",
            "citizen-low" => "STORK-QAA-Level-1",
            _ => "STORK-QAA-Level-4",
        };
        assert_eq!(a.authn_context.as_deref(), Some(want_level), "{}", r.name);
        assert!(
            a.attribute(bpk2).is_some_and(|v| v.starts_with("bPK2-")),
            "{}: {:?}",
            r.name,
            a.attributes
        );
        assert!(a.not_on_or_after > r.now, "{}", r.name);
    }
    let all_attributes = all
        .iter()
        .find(|r| r.name == "citizen-high-all-attributes")
        .unwrap();
    let a = read(
        all_attributes,
        &all_attributes.request_id,
        all_attributes.now,
        key.as_ref(),
    )
    .unwrap();
    assert_eq!(a.attributes.len(), 9, "{:?}", a.attributes);
}

#[test]
fn threat_replay_of_a_recorded_response_after_its_window() {
    let key = key("sp-encryption.key");
    let r = &recorded()[0];
    let later = r.now + Duration::from_secs(3600);
    assert!(matches!(
        read(r, &r.request_id, later, key.as_ref()),
        Err(Refused::Expired)
    ));
}

#[test]
fn threat_recorded_response_presented_for_another_login() {
    let key = key("sp-encryption.key");
    let r = &recorded()[0];
    assert!(matches!(
        read(r, "_another-login", r.now, key.as_ref()),
        Err(Refused::InResponseTo)
    ));
}

#[test]
fn threat_assertion_encrypted_to_another_key_does_not_decrypt() {
    // The SP's signing key is an RSA key too, but not the one the IdP
    // encrypted to.
    let wrong = key("sp-signing.key");
    let r = &recorded()[0];
    let e = read(r, &r.request_id, r.now, wrong.as_ref()).unwrap_err();
    assert!(matches!(e, Refused::Decrypt(_)), "{e}");
}

#[test]
fn threat_signature_method_swapped_to_rsa_pss_does_not_verify() {
    // The recorded Response's SignatureMethod turned into RSA-PSS (an
    // algorithm-confusion attempt): PSS is verified (natively on
    // libxmlsec1 1.3, by the shim's transform on 1.2), and an rsa-sha256
    // value is no PSS signature.
    let key = key("sp-encryption.key");
    let r = &recorded()[0];
    let xml = String::from_utf8(B64.decode(r.b64.trim()).unwrap()).unwrap();
    let pss = xml.replacen(
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1",
        1,
    );
    assert_ne!(pss, xml);
    let r = Recorded {
        b64: B64.encode(pss),
        ..recorded().remove(0)
    };
    let e = read(&r, &r.request_id, r.now, key.as_ref()).unwrap_err();
    assert!(matches!(e, Refused::BadSignature(_)), "{e}");
}
