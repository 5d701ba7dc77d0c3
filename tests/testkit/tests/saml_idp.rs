//! Self-test of the BundID-like test SAML IdP (`tests/saml-idp`): a signed
//! AuthnRequest made with `xmlsec1 --sign` is POSTed to it, and the
//! SAMLResponse is checked with the `xmlsec1` CLI as an independent
//! verifier (response signature, decryption with the SP key, assertion
//! signature), then its content: attributes by OID with `akdb:TrustLevel`,
//! `AuthnContextClassRef`, audience, recipient, destination,
//! `InResponseTo`, validity. Each threat knob is checked for what it
//! promises. RSA-PSS requests (BundID's algorithm, signed here with
//! `xmllint --exc-c14n` and `openssl dgst`) must pass the IdP's own
//! verifier (lxml + cryptography) and nothing forged may; SHA-1 is
//! refused. No SP runs here: the test plays the SP by hand.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use testkit::saml_idp::{
    utc_timestamp, xmlsec_verify, AuthnRequestSpec, IdpOptions, RequestSignature, SamlIdp,
    SamlUser, SpKeys, AES256_CBC, AES256_GCM, BPK2, CITIZEN_HIGH, CITIZEN_LOW, CITIZEN_SUBSTANTIAL,
    EVIL_BPK2, EVIL_NAME_ID, GIVEN_NAME, MAIL, OTHER_ACS, RSA_PSS_SHA256, RSA_SHA1, RSA_SHA256,
    SHA1, SURNAME,
};
use testkit::TempDir;

const SP: &str = "https://kommune.example/saml/sp";
const ACS: &str = "https://kommune.example/saml/acs";
/// The Response's own signature (a direct child of the root).
const RESPONSE_SIG: &str = "/*/*[local-name()='Signature']";
/// The signature of the first assertion, wherever it sits.
const ASSERTION_SIG: &str = "(//*[local-name()='Assertion']/*[local-name()='Signature'])[1]";

/// Every value of attribute `name="…"` on elements `tag`, in order.
fn attr_values(xml: &str, tag: &str, name: &str) -> Vec<String> {
    let open = format!("<{tag}");
    let key = format!(" {name}=\"");
    let mut out = Vec::new();
    for (i, _) in xml.match_indices(&open) {
        let rest = &xml[i + open.len()..];
        if !rest.starts_with([' ', '>', '/']) {
            continue;
        }
        let head = &rest[..rest.find('>').unwrap()];
        if let Some(p) = head.find(&key) {
            let v = &head[p + key.len()..];
            out.push(v[..v.find('"').unwrap()].to_owned());
        }
    }
    out
}

/// Text content of every `<tag …>TEXT</tag>` (raw, comments included).
fn texts(xml: &str, tag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let close = format!("</{tag}>");
    for (i, _) in xml.match_indices(&format!("<{tag}")) {
        let rest = &xml[i..];
        let Some(start) = rest.find('>') else {
            continue;
        };
        if rest[..start].ends_with('/') || !rest[tag.len() + 1..].starts_with([' ', '>']) {
            continue;
        }
        if let Some(end) = rest.find(&close) {
            out.push(rest[start + 1..end].to_owned());
        }
    }
    out
}

/// `(value, TrustLevel)` of the attribute with this OID.
fn attribute(xml: &str, oid: &str) -> Option<(String, String)> {
    let start = xml.find(&format!("<saml:Attribute Name=\"{oid}\""))?;
    let el = &xml[start..start + xml[start..].find("</saml:Attribute>")?];
    let trust = attr_values(el, "saml:Attribute", "akdb:TrustLevel").pop()?;
    Some((texts(el, "saml:AttributeValue").pop()?, trust))
}

struct Setup {
    dir: TempDir,
    sp: SpKeys,
    idp: SamlIdp,
}

fn setup() -> Setup {
    let dir = TempDir::new("samlidp");
    let sp = SpKeys::generate(&dir, SP, ACS);
    let idp = SamlIdp::start(&dir, &sp);
    Setup { dir, sp, idp }
}

impl Setup {
    /// Logs `user` in with a BundID request at `level`; returns the raw
    /// Response XML (assertion still encrypted) and the request ID.
    fn login(&self, user: &SamlUser, level: &str, threat: Option<&str>) -> (String, String) {
        let spec = AuthnRequestSpec::bundid(level);
        let req = self.sp.signed_authn_request(&self.idp, &spec);
        let mut q = vec![("user", user.name)];
        if let Some(t) = threat {
            q.push(("threat", t));
        }
        let answer = self.idp.post_sso(&req, Some("relay-1"), &q);
        assert_eq!(answer.status, 200, "{}\n{}", answer.body, self.idp.logs());
        assert_eq!(answer.action().as_deref(), Some(ACS));
        assert_eq!(answer.form_field("RelayState").as_deref(), Some("relay-1"));
        (answer.saml_response(), spec.id)
    }
}

#[test]
fn bundid_like_login_is_signed_encrypted_and_verifiable_by_xmlsec1() {
    let s = setup();
    let metadata = s.idp.metadata();
    assert!(metadata.contains(&format!("entityID=\"{}\"", s.idp.entity_id())));
    assert!(metadata.contains(&testkit::saml_idp::pem_body(&s.idp.signing_cert)));
    assert!(metadata.contains(&format!("Location=\"{}\"", s.idp.sso_url())));

    for user in [CITIZEN_HIGH, CITIZEN_SUBSTANTIAL, CITIZEN_LOW] {
        let (raw, req_id) = s.login(&user, "STORK-QAA-Level-1", None);
        // The assertion travels encrypted: RSA-OAEP key transport, AES-256-GCM.
        assert!(!raw.contains("<saml:Assertion"), "assertion in clear text");
        assert!(raw.contains("http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"));
        assert!(raw.contains("http://www.w3.org/2009/xmlenc11#aes256-gcm"));
        xmlsec_verify(&raw, &s.idp.signing_cert, RESPONSE_SIG).expect("response signature");
        // A key that is not the IdP's does not verify it: xmlsec1 really checks.
        assert!(xmlsec_verify(&raw, &s.idp.foreign_cert, RESPONSE_SIG).is_err());
        let plain = s.sp.decrypt(&raw);
        xmlsec_verify(&plain, &s.idp.signing_cert, ASSERTION_SIG).expect("assertion signature");

        assert_eq!(attr_values(&raw, "samlp:Response", "Destination"), [ACS]);
        assert_eq!(
            attr_values(&raw, "samlp:Response", "InResponseTo"),
            [req_id.as_str()]
        );
        assert_eq!(texts(&plain, "saml:Audience"), [SP]);
        assert_eq!(
            attr_values(&plain, "saml:SubjectConfirmationData", "Recipient"),
            [ACS]
        );
        assert_eq!(
            attr_values(&plain, "saml:SubjectConfirmationData", "InResponseTo"),
            [req_id.as_str()]
        );
        let not_after = attr_values(&plain, "saml:Conditions", "NotOnOrAfter")
            .pop()
            .unwrap();
        assert!(
            not_after > utc_timestamp(60) && not_after < utc_timestamp(600),
            "{not_after}"
        );
        assert_eq!(
            attr_values(&plain, "saml:NameID", "Format"),
            ["urn:oasis:names:tc:SAML:2.0:nameid-format:transient"]
        );
        assert_eq!(texts(&plain, "saml:AuthnContextClassRef"), [user.level]);
        assert_eq!(
            attribute(&plain, BPK2),
            Some((user.bpk2.into(), user.trust.into()))
        );
        assert_eq!(attribute(&plain, GIVEN_NAME).unwrap().1, user.trust);
        assert!(attribute(&plain, SURNAME).is_some());
        // Data minimisation: e-mail was not requested, so it is not released.
        assert_eq!(attribute(&plain, MAIL), None, "{plain}");
    }

    // What the IdP read from the last request (its akdb extension etc.).
    let last = s.idp.last_request();
    assert_eq!(last["comparison"], "minimum");
    assert_eq!(last["requested_levels"][0], "STORK-QAA-Level-1");
    assert_eq!(last["akdb_version"], "2");
    assert_eq!(last["requested_attributes"][0], BPK2);
    assert_eq!(last["force_authn"], false);
    assert_eq!(last["sp"], SP);
    let mut spec = AuthnRequestSpec::bundid("STORK-QAA-Level-4");
    spec.force_authn = true;
    let req = s.sp.signed_authn_request(&s.idp, &spec);
    assert_eq!(s.idp.post_sso(&req, None, &[]).status, 200);
    assert_eq!(s.idp.last_request()["force_authn"], true);
    drop(s.dir);
}

#[test]
fn aes_cbc_content_encryption_when_configured() {
    let dir = TempDir::new("samlidp-cbc");
    let sp = SpKeys::generate(&dir, SP, ACS);
    let options = IdpOptions {
        data_encryption: AES256_CBC,
        ..IdpOptions::default()
    };
    let idp = SamlIdp::start_with(&dir, &sp, &options);
    let s = Setup { dir, sp, idp };
    let (raw, _) = s.login(&CITIZEN_SUBSTANTIAL, "STORK-QAA-Level-3", None);
    assert!(raw.contains(AES256_CBC) && !raw.contains(AES256_GCM));
    let plain = s.sp.decrypt(&raw);
    xmlsec_verify(&plain, &s.idp.signing_cert, ASSERTION_SIG).unwrap();
    assert_eq!(
        texts(&plain, "saml:AuthnContextClassRef"),
        ["STORK-QAA-Level-3"]
    );
}

#[test]
fn authn_requests_unsigned_tampered_or_signed_by_another_key_are_refused() {
    let s = setup();
    let spec = AuthnRequestSpec::bundid("STORK-QAA-Level-3");
    let good = s.sp.signed_authn_request(&s.idp, &spec);
    assert_eq!(s.idp.post_sso(&good, None, &[]).status, 200);
    let last = s.idp.last_request();
    assert_eq!(last["signature_algorithm"], RSA_SHA256);
    assert_eq!(last["signature_verified_by"], "xmlsec1");

    let other =
        s.sp.authn_request_signed_by(&s.idp, &spec, &s.idp.foreign_key);
    let answer = s.idp.post_sso(&other, None, &[]);
    assert_eq!(answer.status, 403, "{}", answer.body);

    let tampered = good.replace("STORK-QAA-Level-3", "STORK-QAA-Level-1");
    let answer = s.idp.post_sso(&tampered, None, &[]);
    assert_eq!(answer.status, 403, "{}", answer.body);

    let start = good.find("<ds:Signature").unwrap();
    let end = good.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let unsigned = format!("{}{}", &good[..start], &good[end..]);
    let answer = s.idp.post_sso(&unsigned, None, &[]);
    assert_eq!(answer.status, 403, "{}", answer.body);
}

/// POSTs `xml` and expects 403 with `reason` in the answer.
fn assert_refused(s: &Setup, xml: &str, reason: &str) {
    let answer = s.idp.post_sso(xml, None, &[]);
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer.body.contains(reason),
        "{reason:?} is not the reason: {}",
        answer.body
    );
}

/// BundID's request signature, RSA-PSS SHA-256, which Debian 12's xmlsec1
/// cannot check: the IdP's own verifier must accept it, and rsa-sha256
/// must still go to xmlsec1.
#[test]
fn pss_signed_authn_request_is_accepted_by_the_lxml_cryptography_verifier() {
    let s = setup();
    let spec = AuthnRequestSpec::bundid("STORK-QAA-Level-3");
    let req = s.sp.pss_signed_authn_request(&s.idp, &spec);
    assert!(req.contains(RSA_PSS_SHA256) && req.contains("<ds:KeyInfo>"));
    let user = CITIZEN_SUBSTANTIAL;
    let answer = s
        .idp
        .post_sso(&req, Some("relay-pss"), &[("user", user.name)]);
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, s.idp.logs());
    assert_eq!(
        answer.form_field("RelayState").as_deref(),
        Some("relay-pss")
    );
    let raw = answer.saml_response();
    xmlsec_verify(&raw, &s.idp.signing_cert, RESPONSE_SIG).expect("response signature");
    assert_eq!(
        attr_values(&raw, "samlp:Response", "InResponseTo"),
        [spec.id.as_str()]
    );
    let plain = s.sp.decrypt(&raw);
    assert_eq!(attribute(&plain, BPK2).unwrap().0, user.bpk2);

    let last = s.idp.last_request();
    assert_eq!(last["signature_algorithm"], RSA_PSS_SHA256);
    assert_eq!(last["signature_verified_by"], "cryptography+lxml");
    // What pysaml2 read from the signed bytes.
    assert_eq!(last["id"], spec.id.as_str());
    assert_eq!(last["sp"], SP);
    assert_eq!(last["requested_levels"][0], "STORK-QAA-Level-3");
    assert_eq!(last["requested_attributes"][2], SURNAME);

    let req = s.sp.signed_authn_request(&s.idp, &spec);
    assert_eq!(s.idp.post_sso(&req, None, &[]).status, 200);
    assert_eq!(s.idp.last_request()["signature_verified_by"], "xmlsec1");
}

#[test]
fn pss_authn_request_tampered_after_signing_or_unsigned_is_refused() {
    let s = setup();
    let good =
        s.sp.pss_signed_authn_request(&s.idp, &AuthnRequestSpec::bundid("STORK-QAA-Level-3"));
    assert_eq!(s.idp.post_sso(&good, None, &[]).status, 200);

    let lowered = good.replace("STORK-QAA-Level-3", "STORK-QAA-Level-1");
    assert_refused(&s, &lowered, "DigestValue does not match");
    // The text after the signature is signed too.
    let reformatted = good.replacen("</ds:Signature>\n", "</ds:Signature>", 1);
    assert_refused(&s, &reformatted, "DigestValue does not match");
    // SignedInfo changed where the profile does not look (a line break):
    // its canonical form is what is signed.
    let spaced = good.replacen("<ds:SignedInfo>", "<ds:SignedInfo>\n", 1);
    assert_refused(&s, &spaced, "does not verify");
    // The signature value changed: SignedInfo and body intact.
    let start = good.find("<ds:SignatureValue>").unwrap() + "<ds:SignatureValue>".len();
    let mut forged = good.clone();
    let flipped = if &good[start..start + 1] == "A" {
        "B"
    } else {
        "A"
    };
    forged.replace_range(start..start + 1, flipped);
    assert_refused(&s, &forged, "does not verify");

    let start = good.find("\n<ds:Signature").unwrap();
    let end = good.find("</ds:Signature>\n").unwrap() + "</ds:Signature>\n".len();
    let unsigned = format!("{}{}", &good[..start], &good[end..]);
    assert_refused(&s, &unsigned, "not signed correctly");
}

/// An attacker signs with its own key and puts its certificate into
/// KeyInfo: the key must come from the SP metadata only.
#[test]
fn pss_authn_request_signed_by_a_key_not_in_the_sp_metadata_is_refused() {
    let s = setup();
    let foreign = RequestSignature {
        key: &s.idp.foreign_key,
        key_info_cert: Some(&s.idp.foreign_cert),
        ..RequestSignature::pss(&s.sp)
    };
    let spec = AuthnRequestSpec::bundid("STORK-QAA-Level-3");
    let req = s.sp.authn_request_signed_with(&s.idp, &spec, &foreign);
    assert!(req.contains(&testkit::saml_idp::pem_body(&s.idp.foreign_cert)));
    assert_refused(
        &s,
        &req,
        "does not verify with the 1 signing key(s) of the SP metadata",
    );
}

/// Signature wrapping: the SP's valid PSS signature moved into the
/// attacker's request (another ID, level 1), the signed original hidden in
/// `samlp:Extensions`, so that the Reference still names a signed element.
#[test]
fn pss_signature_wrapping_reference_to_another_element_is_refused() {
    let s = setup();
    let signed =
        s.sp.pss_signed_authn_request(&s.idp, &AuthnRequestSpec::bundid("STORK-QAA-Level-4"));
    assert_eq!(s.idp.post_sso(&signed, None, &[]).status, 200);
    let start = signed.find("\n<ds:Signature").unwrap();
    let end = signed.find("</ds:Signature>\n").unwrap() + "</ds:Signature>\n".len();
    let signature = &signed[start..end];
    let original = signed.replace(signature, "\n\n");
    let evil_spec = AuthnRequestSpec::bundid("STORK-QAA-Level-1");
    let evil =
        s.sp.unsigned_authn_request(&s.idp, &evil_spec)
            .replacen("</saml:Issuer>", &format!("</saml:Issuer>{signature}"), 1)
            .replacen(
                "<samlp:Extensions>",
                &format!("<samlp:Extensions>{original}"),
                1,
            );
    assert!(evil.contains(&format!("ID=\"{}\"", evil_spec.id)));
    assert_refused(&s, &evil, "Reference URI");
}

#[test]
fn sha1_request_signatures_are_refused() {
    let s = setup();
    let spec = AuthnRequestSpec::bundid("STORK-QAA-Level-3");
    let rsa_sha1 = RequestSignature {
        method: RSA_SHA1,
        digest: SHA1,
        ..RequestSignature::rsa_sha256(&s.sp.signing_key)
    };
    let req = s.sp.authn_request_signed_with(&s.idp, &spec, &rsa_sha1);
    assert!(req.contains(RSA_SHA1) && req.contains(SHA1));
    assert_refused(
        &s,
        &req,
        &format!("SignatureMethod {RSA_SHA1} is not accepted"),
    );

    let rsa_sha256_digest_sha1 = RequestSignature {
        digest: SHA1,
        ..RequestSignature::rsa_sha256(&s.sp.signing_key)
    };
    let req =
        s.sp.authn_request_signed_with(&s.idp, &spec, &rsa_sha256_digest_sha1);
    assert_refused(&s, &req, &format!("DigestMethod {SHA1} is not accepted"));

    let pss_digest_sha1 = RequestSignature {
        digest: SHA1,
        ..RequestSignature::pss(&s.sp)
    };
    let req =
        s.sp.authn_request_signed_with(&s.idp, &spec, &pss_digest_sha1);
    assert!(req.contains(RSA_PSS_SHA256));
    assert_refused(&s, &req, &format!("DigestMethod {SHA1} is not accepted"));
}

#[test]
fn threat_knobs_produce_what_they_say() {
    let s = setup();
    let user = CITIZEN_HIGH;
    let level = "STORK-QAA-Level-3";
    let cert = &s.idp.signing_cert;

    let (raw, _) = s.login(&user, level, Some("expired"));
    let plain = s.sp.decrypt(&raw);
    xmlsec_verify(&plain, cert, ASSERTION_SIG).expect("expired but validly signed");
    let now = utc_timestamp(0);
    for t in attr_values(&plain, "saml:Conditions", "NotOnOrAfter")
        .into_iter()
        .chain(attr_values(
            &plain,
            "saml:SubjectConfirmationData",
            "NotOnOrAfter",
        ))
    {
        assert!(t < now, "NotOnOrAfter {t} is not in the past ({now})");
    }

    let (raw, _) = s.login(&user, level, Some("wrong-audience"));
    let plain = s.sp.decrypt(&raw);
    xmlsec_verify(&plain, cert, ASSERTION_SIG).unwrap();
    assert_eq!(
        texts(&plain, "saml:Audience"),
        ["https://other-sp.example/saml"]
    );

    let (first, _) = s.login(&user, level, None);
    let (again, _) = s.login(&user, level, Some("replay"));
    assert_eq!(
        first, again,
        "replay must repeat the response byte for byte"
    );

    let (raw, _) = s.login(&user, level, Some("unsigned-assertion"));
    xmlsec_verify(&raw, cert, RESPONSE_SIG).expect("response still signed");
    let plain = s.sp.decrypt(&raw);
    let start = plain.find("<saml:Assertion").unwrap();
    let end = plain.find("</saml:Assertion>").unwrap();
    assert!(!plain[start..end].contains("Signature"), "assertion signed");

    let (raw, _) = s.login(&user, level, Some("foreign-key"));
    assert!(xmlsec_verify(&raw, cert, RESPONSE_SIG).is_err());
    xmlsec_verify(&raw, &s.idp.foreign_cert, RESPONSE_SIG).expect("signed by the foreign key");
    let plain = s.sp.decrypt(&raw);
    assert!(xmlsec_verify(&plain, cert, ASSERTION_SIG).is_err());
    xmlsec_verify(&plain, &s.idp.foreign_cert, ASSERTION_SIG).unwrap();

    // Comment injection: exclusive C14N drops comments, so the signature
    // still holds while a naive text reader sees only "user@evil.example".
    let (raw, _) = s.login(&user, level, Some("comment-nameid"));
    let plain = s.sp.decrypt(&raw);
    xmlsec_verify(&plain, cert, ASSERTION_SIG).expect("comment does not break the signature");
    assert_eq!(
        texts(&plain, "saml:NameID"),
        ["user@evil.example<!---->.kommune.example"]
    );

    protocol_knobs(&s);
    xsw_variants(&s);
}

/// Destination, recipient, InResponseTo, missing or broken signatures,
/// weak algorithms, DTDs.
fn protocol_knobs(s: &Setup) {
    let (user, level, cert) = (&CITIZEN_HIGH, "STORK-QAA-Level-3", &s.idp.signing_cert);
    let (raw, _) = s.login(user, level, Some("wrong-destination"));
    xmlsec_verify(&raw, cert, RESPONSE_SIG).unwrap();
    assert_eq!(
        attr_values(&raw, "samlp:Response", "Destination"),
        [OTHER_ACS]
    );

    let (raw, _) = s.login(user, level, Some("wrong-recipient"));
    let plain = s.sp.decrypt(&raw);
    xmlsec_verify(&plain, cert, ASSERTION_SIG).unwrap();
    assert_eq!(
        attr_values(&plain, "saml:SubjectConfirmationData", "Recipient"),
        [OTHER_ACS]
    );

    let (raw, req_id) = s.login(user, level, Some("wrong-in-response-to"));
    let plain = s.sp.decrypt(&raw);
    xmlsec_verify(&plain, cert, ASSERTION_SIG).unwrap();
    let irt = attr_values(&plain, "samlp:Response", "InResponseTo");
    let irt2 = attr_values(&plain, "saml:SubjectConfirmationData", "InResponseTo");
    assert!(
        irt.len() == 1 && irt == irt2 && irt[0] != req_id,
        "{irt:?} {irt2:?}"
    );

    let (raw, _) = s.login(user, level, Some("unsolicited"));
    let plain = s.sp.decrypt(&raw);
    xmlsec_verify(&plain, cert, ASSERTION_SIG).unwrap();
    assert!(!plain.contains("InResponseTo"));

    let (raw, _) = s.login(user, level, Some("unsigned"));
    let plain = s.sp.decrypt(&raw);
    assert!(plain.contains("<saml:Assertion") && !plain.contains("Signature"));

    let (raw, _) = s.login(user, level, Some("response-tampered"));
    assert!(xmlsec_verify(&raw, cert, RESPONSE_SIG).is_err());
    xmlsec_verify(&s.sp.decrypt(&raw), cert, ASSERTION_SIG).expect("assertion untouched");

    let (raw, _) = s.login(user, level, Some("assertion-tampered"));
    xmlsec_verify(&raw, cert, RESPONSE_SIG).expect("response signs the ciphertext only");
    let plain = s.sp.decrypt(&raw);
    assert!(xmlsec_verify(&plain, cert, ASSERTION_SIG).is_err());
    assert_eq!(attribute(&plain, BPK2).unwrap().0, EVIL_BPK2);

    let (raw, _) = s.login(user, level, Some("sha1"));
    assert!(raw.contains("xmldsig#rsa-sha1") && raw.contains("xmldsig#sha1"));
    xmlsec_verify(&raw, cert, RESPONSE_SIG).expect("a valid, if weak, signature");
    let plain = s.sp.decrypt(&raw);
    xmlsec_verify(&plain, cert, ASSERTION_SIG).unwrap();
    assert_eq!(plain.matches("xmldsig#rsa-sha1").count(), 2);

    let (raw, _) = s.login(user, level, Some("rsa-1_5"));
    assert!(raw.contains("xmlenc#rsa-1_5") && !raw.contains("rsa-oaep"));
    xmlsec_verify(&s.sp.decrypt(&raw), cert, ASSERTION_SIG).unwrap();

    let (raw, _) = s.login(user, level, Some("xxe"));
    assert!(
        raw.starts_with("<!DOCTYPE samlp:Response [<!ENTITY t SYSTEM \"file:///etc/hostname\">]>")
    );
    assert!(raw.contains("<samlp:StatusMessage>&t;</samlp:StatusMessage>"));
    let (raw, _) = s.login(user, level, Some("entity-expansion"));
    assert!(raw.starts_with("<!DOCTYPE samlp:Response [<!ENTITY l0 \"ha\">"));
    assert!(
        raw.contains("<!ENTITY l9 \"&l8;&l8;&l8;") && raw.contains(">&l9;</samlp:StatusMessage>")
    );
}

/// XSW1–8: an evil assertion (NameID [`EVIL_NAME_ID`], bPK2 [`EVIL_BPK2`])
/// beside or around the IdP-signed original, whose signature xmlsec1 still
/// verifies where the XML-DSig enveloped transform lets it.
fn xsw_variants(s: &Setup) {
    let cert = &s.idp.signing_cert;
    for n in 1..=8 {
        let threat = format!("xsw{n}");
        let (raw, _) = s.login(&CITIZEN_HIGH, "STORK-QAA-Level-3", Some(&threat));
        let plain = s.sp.decrypt(&raw);
        let names = texts(&plain, "saml:NameID");
        assert!(
            names.iter().any(|n| n == EVIL_NAME_ID),
            "{threat}: {names:?}"
        );
        assert!(
            names.iter().any(|n| n.starts_with('_')),
            "{threat}: no original: {names:?}"
        );
        assert!(plain.contains(EVIL_BPK2), "{threat}: no evil bPK2");
        // Only the IdP's original signatures, moved or not: the response's
        // and the assertion's (XSW1/2), the assertion's (XSW3-8).
        let sigs = plain.matches("<ds:SignatureValue>").count();
        assert_eq!(sigs, if n <= 2 { 2 } else { 1 }, "{threat}");
        // Which signature xmlsec1 can still verify: the one over the
        // original, unless the copy sits inside that ds:Signature (XSW1/6/8:
        // the enveloped-signature transform then removes it from the digest).
        let verified = if n <= 2 {
            // The moved response signature, over the encrypted original.
            xmlsec_verify(&raw, cert, RESPONSE_SIG)
        } else {
            xmlsec_verify(&plain, cert, "(//*[local-name()='Signature'])[1]")
        };
        match n {
            1 | 6 | 8 => assert!(verified.is_err(), "{threat}: verified"),
            _ => verified.unwrap_or_else(|e| panic!("{threat}: {e}")),
        }
        // No valid response signature: the attacker cannot sign.
        if n > 2 {
            assert!(xmlsec_verify(&raw, cert, RESPONSE_SIG).is_err(), "{threat}");
        }
    }
}
