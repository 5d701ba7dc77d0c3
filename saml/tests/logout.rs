//! Single Logout against the real test SAML IdP (tests/saml-idp: pysaml2,
//! xmlsec1, `slo.py`): the SP's LogoutRequest and LogoutResponse signed
//! RSA-PSS by an `hsm` key and verified independently by the IdP (lxml +
//! cryptography); the IdP's LogoutRequest and LogoutResponse (signed by
//! xmlsec1) read by `stadttor_saml::logout`, and the forged ones refused,
//! each test named after its threat.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use stadttor_hsm::{KeyRef, KeyStore, KeyStoreConfig, SigningKey};
use stadttor_saml::logout::{
    self, ExpectLogout, LogoutRequest, LogoutResponse, NameId, Refused, STATUS_SUCCESS,
};
use stadttor_saml::response::{self, Expect};
use stadttor_saml::{Assertion, IdpMetadata, BINDING_POST};
use stadttor_test_harness::TempDir;
use testkit::saml_idp::{AuthnRequestSpec, IdpOptions, SamlIdp, SpKeys, OTHER_SLO};

const SP: &str = "https://kommune.example/saml/sp";
const ACS: &str = "https://kommune.example/.stadttor/acs/bundid";
const SLO: &str = "https://kommune.example/.stadttor/slo/bundid";

struct World {
    _dir: TempDir,
    idp: SamlIdp,
    metadata: IdpMetadata,
    signing: Arc<dyn SigningKey>,
    /// The login the IdP will log out.
    login: Assertion,
}

fn world() -> World {
    let dir = TempDir::new("saml-slo");
    let sp = SpKeys::generate_with_slo(&dir, SP, ACS, Some(SLO));
    let idp = SamlIdp::start_with(
        &dir,
        &sp,
        &IdpOptions {
            slo: true,
            ..IdpOptions::default()
        },
    );
    let metadata = IdpMetadata::parse(idp.metadata().as_bytes(), None, SystemTime::now()).unwrap();
    let store = KeyStore::new(KeyStoreConfig::default());
    let key = |p: &std::path::Path| -> KeyRef { format!("file:{}", p.display()).parse().unwrap() };
    let signing = store.resolve(&key(&sp.signing_key)).unwrap();
    let dec = store.resolve_decrypting(&key(&sp.encryption_key)).unwrap();
    // A real login, so that the IdP has a session to end.
    let spec = AuthnRequestSpec::bundid("STORK-QAA-Level-3");
    let answer = idp.post_sso(&sp.signed_authn_request(&idp, &spec), None, &[]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let expect = Expect {
        sp_entity_id: SP,
        acs_url: ACS,
        idp_entity_id: &metadata.entity_id,
        idp_certs: &metadata.signing_certs,
        request_id: &spec.id,
        now: SystemTime::now(),
        skew: Duration::from_secs(60),
        require_encryption: true,
    };
    let login = response::read(
        &answer.form_field("SAMLResponse").unwrap(),
        &expect,
        Some(dec.as_ref()),
    )
    .unwrap();
    World {
        _dir: dir,
        idp,
        metadata,
        signing,
        login,
    }
}

impl World {
    fn expect(&self) -> ExpectLogout<'_> {
        ExpectLogout {
            slo_url: SLO,
            idp_entity_id: &self.metadata.entity_id,
            idp_certs: &self.metadata.signing_certs,
            now: SystemTime::now(),
            skew: Duration::from_secs(60),
        }
    }

    /// The IdP-initiated LogoutRequest's form field, for `query`.
    fn idp_request(&self, query: &[(&str, &str)]) -> String {
        let page = self.idp.initiate_logout(query);
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(page.action().as_deref(), Some(SLO));
        page.form_field("SAMLRequest").unwrap()
    }

    fn threat(&self, threat: &str) -> Refused {
        let b64 = self.idp_request(&[("threat", threat)]);
        match logout::read_request(&b64, &self.expect()) {
            Ok(r) => panic!("logout threat {threat} accepted: {r:?}"),
            Err(e) => e,
        }
    }

    fn name_id(&self) -> NameId {
        NameId {
            value: self.login.name_id.clone(),
            format: self.login.name_id_format.clone(),
            name_qualifier: self.login.name_qualifiers.0.clone(),
            sp_name_qualifier: self.login.name_qualifiers.1.clone(),
        }
    }

    /// The SP's signed LogoutRequest, posted to the IdP; returns its ID and
    /// the IdP's answer.
    fn sp_logout(&self) -> (String, testkit::saml_idp::SsoAnswer) {
        let (binding, location) = self.metadata.slo.clone().expect("the IdP offers SLO");
        assert_eq!(binding, BINDING_POST);
        let signed = LogoutRequest {
            destination: location,
            sp_entity_id: SP.into(),
            name_id: self.name_id(),
            session_index: self.login.session_index.clone(),
            lifetime: Duration::from_secs(300),
        }
        .sign(self.signing.as_ref(), None, SystemTime::now())
        .unwrap();
        let answer = self
            .idp
            .post_slo("SAMLRequest", &signed.xml, Some("relay-1"));
        (signed.id, answer)
    }
}

#[test]
fn sp_logout_request_is_verified_by_the_idp_and_its_signed_response_read() {
    let w = world();
    let (id, answer) = w.sp_logout();
    assert_eq!(answer.status, 200, "IdP refused: {}", answer.body);
    let last = w.idp.last_logout();
    assert_eq!(last["signature_verified_by"], "cryptography+lxml", "{last}");
    assert_eq!(last["id"], id.as_str());
    assert_eq!(last["issuer"], SP);
    assert_eq!(last["name_id"], w.login.name_id.as_str());
    assert_eq!(
        last["name_id_format"],
        "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
    );
    assert_eq!(last["sp_name_qualifier"], SP);
    assert_eq!(last["matches_last_login"], true, "{last}");
    assert!(last["not_on_or_after"].as_str().unwrap() > last["issue_instant"].as_str().unwrap());
    assert_eq!(answer.action().as_deref(), Some(SLO));
    assert_eq!(answer.form_field("RelayState").as_deref(), Some("relay-1"));
    let b64 = answer.form_field("SAMLResponse").unwrap();
    logout::read_response(&b64, &w.expect(), &id).unwrap();
}

#[test]
fn threat_logout_response_answering_another_request() {
    let w = world();
    let (_, answer) = w.sp_logout();
    let b64 = answer.form_field("SAMLResponse").unwrap();
    let e = logout::read_response(&b64, &w.expect(), "_another-request").unwrap_err();
    assert!(matches!(e, Refused::InResponseTo), "{e}");
}

#[test]
fn threat_sp_logout_request_tampered_after_signing_is_refused_by_the_idp() {
    let w = world();
    let (binding, location) = w.metadata.slo.clone().unwrap();
    assert_eq!(binding, BINDING_POST);
    let signed = LogoutRequest {
        destination: location,
        sp_entity_id: SP.into(),
        name_id: w.name_id(),
        session_index: w.login.session_index.clone(),
        lifetime: Duration::from_secs(300),
    }
    .sign(w.signing.as_ref(), None, SystemTime::now())
    .unwrap();
    let other = signed
        .xml
        .replace(w.login.name_id.as_str(), "_someone-else");
    let answer = w.idp.post_slo("SAMLRequest", &other, None);
    assert_eq!(answer.status, 403, "{}", answer.body);
}

#[test]
fn idp_logout_request_is_verified_and_names_the_login() {
    let w = world();
    let r = logout::read_request(&w.idp_request(&[]), &w.expect()).unwrap();
    assert_eq!(r.name_id, w.name_id());
    assert_eq!(
        r.session_indexes,
        vec![w.login.session_index.clone().unwrap()]
    );
    assert!(r.replay_until > SystemTime::now());
    assert!(r.replay_until <= SystemTime::now() + logout::MAX_AGE + Duration::from_secs(60));
    // Without SessionIndex: every session of the subject.
    let r = logout::read_request(&w.idp_request(&[("by", "name-id")]), &w.expect()).unwrap();
    assert!(r.session_indexes.is_empty());
    assert_eq!(r.name_id.value, w.login.name_id);

    // The SP's signed answer, checked by the IdP.
    let (binding, location) = w.metadata.slo.clone().unwrap();
    assert_eq!(binding, BINDING_POST);
    let signed = LogoutResponse {
        destination: location,
        sp_entity_id: SP.into(),
        in_response_to: r.id.clone(),
        status: STATUS_SUCCESS,
    }
    .sign(w.signing.as_ref(), None, SystemTime::now())
    .unwrap();
    let answer = w.idp.post_slo("SAMLResponse", &signed.xml, None);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let last = w.idp.last_logout_response();
    assert_eq!(last["answers_last_request"], true, "{last}");
    assert_eq!(last["status"], STATUS_SUCCESS);
    assert_eq!(last["signature_verified_by"], "cryptography+lxml");
}

#[test]
fn threat_unsigned_idp_logout_request() {
    let w = world();
    assert!(matches!(w.threat("unsigned"), Refused::Unsigned));
}

#[test]
fn threat_idp_logout_request_signed_by_a_key_not_in_metadata() {
    let w = world();
    let e = w.threat("foreign-key");
    assert!(matches!(e, Refused::BadSignature(_)), "{e}");
}

#[test]
fn threat_idp_logout_request_for_another_sp() {
    let w = world();
    match w.threat("wrong-destination") {
        Refused::Destination(d) => assert_eq!(d, OTHER_SLO),
        e => panic!("{e}"),
    }
}

#[test]
fn threat_expired_idp_logout_request() {
    let w = world();
    assert!(matches!(w.threat("expired"), Refused::Expired));
}

#[test]
fn threat_idp_logout_request_tampered_after_signing() {
    let w = world();
    let b64 = w.idp_request(&[]);
    let xml = String::from_utf8(base64_decode(&b64)).unwrap();
    let index = w.login.session_index.clone().unwrap();
    let tampered = xml.replace(&index, "_another-citizens-session");
    assert_ne!(tampered, xml);
    let e = logout::read_request(&base64_encode(&tampered), &w.expect()).unwrap_err();
    assert!(matches!(e, Refused::BadSignature(_)), "{e}");
}

#[test]
fn threat_idp_logout_request_wrapped_in_another_element() {
    // The signed request moved inside an unsigned one that names another
    // session: the shim finds two LogoutRequests and refuses.
    let w = world();
    let xml = String::from_utf8(base64_decode(&w.idp_request(&[]))).unwrap();
    let index = w.login.session_index.clone().unwrap();
    let start = xml.find("<saml:Issuer>").unwrap();
    let evil = format!(
        "{}<samlp:Extensions>{xml}</samlp:Extensions>{}",
        &xml[..start],
        &xml[start..].replace(&index, "_evil")
    );
    let evil = evil.replacen("ID=\"_", "ID=\"_x", 1);
    let e = logout::read_request(&base64_encode(&evil), &w.expect()).unwrap_err();
    assert!(matches!(e, Refused::Wrapping(_)), "{e}");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
