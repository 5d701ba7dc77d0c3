//! Responses of the real test SAML IdP (tests/saml-idp: pysaml2 and
//! xmlsec1, BundID-like) read by `stadttor_saml::response`: a valid login
//! and the attack corpus, each refused for the reason named after its
//! threat. The AuthnRequests are signed by the harness with the xmlsec1
//! CLI (rsa-sha256), so that these tests depend on nothing but the
//! response side; the decryption key is an `hsm` `file:` key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use stadttor_hsm::{DecryptingKey, KeyRef, KeyStore, KeyStoreConfig};
use stadttor_saml::response::{self, Expect, Refused};
use stadttor_saml::{Assertion, IdpMetadata};
use stadttor_test_harness::TempDir;
use testkit::saml_idp::{
    AuthnRequestSpec, IdpOptions, SamlIdp, SpKeys, AES256_CBC, BPK2, EVIL_BPK2, GIVEN_NAME,
};

const SP: &str = "https://kommune.example/saml/sp";
const ACS: &str = "https://kommune.example/.stadttor/acs/bundid";

struct World {
    _dir: TempDir,
    sp: SpKeys,
    idp: SamlIdp,
    metadata: IdpMetadata,
    key: Arc<dyn DecryptingKey>,
}

fn world_with(options: &IdpOptions) -> World {
    let dir = TempDir::new("saml-resp");
    let sp = SpKeys::generate(&dir, SP, ACS);
    let idp = SamlIdp::start_with(&dir, &sp, options);
    let metadata = IdpMetadata::parse(idp.metadata().as_bytes(), None, SystemTime::now()).unwrap();
    let store = KeyStore::new(KeyStoreConfig::default());
    let key_ref: KeyRef = format!("file:{}", sp.encryption_key.display())
        .parse()
        .unwrap();
    let key = store.resolve_decrypting(&key_ref).unwrap();
    World {
        _dir: dir,
        sp,
        idp,
        metadata,
        key,
    }
}

fn world() -> World {
    world_with(&IdpOptions::default())
}

impl World {
    /// Logs `user` in with `threat`; returns the request ID and the
    /// base64 SAMLResponse.
    fn answer(&self, user: &str, threat: Option<&str>) -> (String, String) {
        let spec = AuthnRequestSpec::bundid("STORK-QAA-Level-3");
        let req = self.sp.signed_authn_request(&self.idp, &spec);
        let mut q = vec![("user", user)];
        if let Some(t) = threat {
            q.push(("threat", t));
        }
        let answer = self.idp.post_sso(&req, Some("relay"), &q);
        assert_eq!(answer.status, 200, "IdP: {}", answer.body);
        (spec.id, answer.form_field("SAMLResponse").unwrap())
    }

    fn read(&self, request_id: &str, b64: &str) -> Result<Assertion, Refused> {
        let expect = Expect {
            sp_entity_id: SP,
            acs_url: ACS,
            idp_entity_id: &self.metadata.entity_id,
            idp_certs: &self.metadata.signing_certs,
            request_id,
            now: SystemTime::now(),
            skew: Duration::from_secs(60),
            require_encryption: true,
        };
        response::read(b64, &expect, Some(self.key.as_ref()))
    }

    fn threat(&self, threat: &str) -> Refused {
        let (id, b64) = self.answer("citizen-high", Some(threat));
        match self.read(&id, &b64) {
            Ok(a) => panic!("threat {threat} accepted: {a:?}"),
            Err(e) => e,
        }
    }
}

#[test]
fn bundid_login_reads_subject_level_and_attributes_with_trust_levels() {
    let w = world();
    let (id, b64) = w.answer("citizen-high", None);
    let a = w.read(&id, &b64).unwrap();
    assert_eq!(a.authn_context.as_deref(), Some("STORK-QAA-Level-4"));
    assert_eq!(a.issuer, w.metadata.entity_id);
    assert!(!a.name_id.is_empty());
    assert_eq!(a.attribute(BPK2), Some("bPK2-ERIKA-7f3a9c21e4b8d05a"));
    assert_eq!(a.attribute(GIVEN_NAME), Some("Erika"));
    let bpk = a.attributes.iter().find(|x| x.name == BPK2).unwrap();
    assert_eq!(bpk.trust_level.as_deref(), Some("HOCH"));
    // Only what was requested (bPK2, given name, surname): data minimisation.
    assert_eq!(a.attributes.len(), 3, "{:?}", a.attributes);
    assert!(a.not_on_or_after > SystemTime::now());
}

#[test]
fn aes256_cbc_content_encryption_is_read_too() {
    let w = world_with(&IdpOptions {
        data_encryption: AES256_CBC,
        ..IdpOptions::default()
    });
    let (id, b64) = w.answer("citizen-substantial", None);
    let a = w.read(&id, &b64).unwrap();
    assert_eq!(a.authn_context.as_deref(), Some("STORK-QAA-Level-3"));
}

#[test]
fn response_for_another_request_is_refused() {
    let w = world();
    let (_, b64) = w.answer("citizen-high", None);
    assert!(matches!(
        w.read("_another", &b64),
        Err(Refused::InResponseTo)
    ));
}

#[test]
fn threat_expired_assertion() {
    assert!(matches!(world().threat("expired"), Refused::Expired));
}

#[test]
fn threat_wrong_audience() {
    assert!(matches!(
        world().threat("wrong-audience"),
        Refused::Audience
    ));
}

#[test]
fn threat_wrong_destination() {
    assert!(matches!(
        world().threat("wrong-destination"),
        Refused::Destination(_)
    ));
}

#[test]
fn threat_wrong_recipient() {
    assert!(matches!(
        world().threat("wrong-recipient"),
        Refused::Recipient(_)
    ));
}

#[test]
fn threat_wrong_in_response_to() {
    assert!(matches!(
        world().threat("wrong-in-response-to"),
        Refused::InResponseTo
    ));
}

#[test]
fn threat_unsolicited_response() {
    assert!(matches!(
        world().threat("unsolicited"),
        Refused::Unsolicited
    ));
}

#[test]
fn threat_signature_stripped_from_assertion() {
    assert!(matches!(
        world().threat("unsigned-assertion"),
        Refused::AssertionNotSigned
    ));
}

#[test]
fn threat_nothing_signed() {
    assert!(matches!(
        world().threat("unsigned"),
        Refused::AssertionNotSigned
    ));
}

#[test]
fn threat_signed_by_key_not_in_metadata() {
    let e = world().threat("foreign-key");
    assert!(matches!(e, Refused::BadSignature(_)), "{e}");
}

#[test]
fn threat_response_tampered_after_signing() {
    let e = world().threat("response-tampered");
    assert!(matches!(e, Refused::BadSignature(_)), "{e}");
}

#[test]
fn threat_assertion_tampered_before_encryption() {
    let e = world().threat("assertion-tampered");
    assert!(matches!(e, Refused::BadSignature(_)), "{e}");
}

#[test]
fn threat_comment_injection_in_name_id() {
    let e = world().threat("comment-nameid");
    assert!(
        matches!(e, Refused::Malformed(ref m) if m.contains("comment")),
        "{e}"
    );
}

#[test]
fn threat_sha1_signatures() {
    let e = world().threat("sha1");
    assert!(
        matches!(e, Refused::Algorithm(ref m) if m.contains("SHA-1")),
        "{e}"
    );
}

#[test]
fn threat_rsa_1_5_key_transport() {
    let e = world().threat("rsa-1_5");
    assert!(
        matches!(e, Refused::Algorithm(ref m) if m.contains("rsa-1_5")),
        "{e}"
    );
}

#[test]
fn threat_xxe_external_entity() {
    let e = world().threat("xxe");
    assert!(
        matches!(e, Refused::Malformed(ref m) if m.contains("DOCTYPE")),
        "{e}"
    );
}

#[test]
fn threat_entity_expansion_billion_laughs() {
    let e = world().threat("entity-expansion");
    assert!(
        matches!(e, Refused::Malformed(ref m) if m.contains("DOCTYPE")),
        "{e}"
    );
}

#[test]
fn threat_xml_signature_wrapping_xsw1_to_xsw8() {
    let w = world();
    for n in 1..=8 {
        let threat = format!("xsw{n}");
        let (id, b64) = w.answer("citizen-high", Some(&threat));
        match w.read(&id, &b64) {
            Ok(a) => panic!("{threat} accepted: {a:?}"),
            Err(e) => {
                assert!(
                    matches!(e, Refused::Wrapping(_) | Refused::BadSignature(_)),
                    "{threat}: {e}"
                );
                // Whatever the reason: never the attacker's identity.
                assert!(!e.to_string().contains(EVIL_BPK2));
            }
        }
    }
}
