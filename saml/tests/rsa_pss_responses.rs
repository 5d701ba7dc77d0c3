//! BundID and MUK sign with RSA-PSS (`xmldsig-more#sha256-rsa-MGF1`).
//! Debian 12's libxmlsec1 1.2.37 has no such signature method, so the
//! shim registers one for verification (OpenSSL's EVP with PSS padding,
//! inside xmlsec's own signature processing). These assertions are signed
//! independently of this crate: exclusive C14N by `xmllint`, the PSS
//! signature by `openssl dgst` (testkit's `pss_signature`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use stadttor_saml::response::{read_xml, Expect, Refused};
use stadttor_test_harness::TempDir;
use testkit::saml_idp::{pss_signature, rsa_cert, RequestSignature, RSA_PSS_SHA256, SHA256};

const SP: &str = "https://kommune.example/saml/sp";
const ACS: &str = "https://kommune.example/.stadttor/acs/bundid";
const IDP: &str = "https://idp.example/saml";
const REQ: &str = "_req0123456789";

fn ts(offset: i64) -> String {
    testkit::saml_idp::utc_timestamp(offset)
}

fn assertion(id: &str, bpk2: &str) -> String {
    format!(
        r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:akdb="https://www.akdb.de/request/2018/09" ID="{id}" IssueInstant="{now}" Version="2.0"><saml:Issuer>{IDP}</saml:Issuer><saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:transient">t-1</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData InResponseTo="{REQ}" NotOnOrAfter="{later}" Recipient="{ACS}"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{before}" NotOnOrAfter="{later}"><saml:AudienceRestriction><saml:Audience>{SP}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant="{now}"><saml:AuthnContext><saml:AuthnContextClassRef>STORK-QAA-Level-4</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement><saml:AttributeStatement><saml:Attribute Name="urn:oid:1.3.6.1.4.1.25484.494450.3" akdb:TrustLevel="HOCH"><saml:AttributeValue>{bpk2}</saml:AttributeValue></saml:Attribute></saml:AttributeStatement></saml:Assertion>"#,
        now = ts(0),
        before = ts(-30),
        later = ts(300),
    )
}

/// A Response (unsigned) with the assertion signed with RSA-PSS by `key`.
fn response(key: &std::path::Path, tamper: bool) -> String {
    let aid = "_a0123456789abcdef";
    let plain = assertion(aid, "bPK2-PSS-1");
    let sig = pss_signature(
        &plain,
        aid,
        &RequestSignature {
            method: RSA_PSS_SHA256,
            digest: SHA256,
            key,
            key_info_cert: None,
        },
    );
    let mut signed = plain.replacen("</saml:Issuer>", &format!("</saml:Issuer>{sig}"), 1);
    if tamper {
        signed = signed.replace("bPK2-PSS-1", "bPK2-PSS-2");
    }
    format!(
        r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_r1" InResponseTo="{REQ}" Destination="{ACS}" IssueInstant="{}" Version="2.0"><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>{signed}</samlp:Response>"#,
        ts(0)
    )
}

fn der(cert: &std::path::Path) -> Vec<u8> {
    let body = testkit::saml_idp::pem_body(cert);
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn read(xml: &str, cert: &[u8]) -> Result<stadttor_saml::Assertion, Refused> {
    let certs = vec![cert.to_vec()];
    let expect = Expect {
        sp_entity_id: SP,
        acs_url: ACS,
        idp_entity_id: IDP,
        idp_certs: &certs,
        request_id: REQ,
        now: SystemTime::now(),
        skew: Duration::from_secs(60),
        require_encryption: false,
    };
    read_xml(xml.as_bytes(), &expect, None)
}

#[test]
fn rsa_pss_signed_assertion_from_an_independent_signer_verifies() {
    let dir = TempDir::new("pss-resp");
    let (cert, key) = rsa_cert(&dir, "idp");
    let a = read(&response(&key, false), &der(&cert)).unwrap();
    assert_eq!(
        a.attribute("urn:oid:1.3.6.1.4.1.25484.494450.3"),
        Some("bPK2-PSS-1")
    );
    assert_eq!(a.authn_context.as_deref(), Some("STORK-QAA-Level-4"));
}

#[test]
fn threat_rsa_pss_assertion_tampered_after_signing() {
    let dir = TempDir::new("pss-resp");
    let (cert, key) = rsa_cert(&dir, "idp");
    let e = read(&response(&key, true), &der(&cert)).unwrap_err();
    assert!(matches!(e, Refused::BadSignature(_)), "{e}");
}

#[test]
fn threat_rsa_pss_assertion_signed_by_a_key_not_in_metadata() {
    let dir = TempDir::new("pss-resp");
    let (cert, _) = rsa_cert(&dir, "idp");
    let (_, foreign) = rsa_cert(&dir, "foreign");
    let e = read(&response(&foreign, false), &der(&cert)).unwrap_err();
    assert!(matches!(e, Refused::BadSignature(_)), "{e}");
}
