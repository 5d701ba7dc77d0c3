//! Reading a SAML Response at the assertion consumer service: verify,
//! decrypt, check, in this order, and read only what a signature covers.
//!
//! 1. Parse strictly (`xmlsec::Doc::parse`: no DTD, entities, comments,
//!    processing instructions; unique IDs). The root is `samlp:Response`.
//! 2. If the Response is signed, libxmlsec1 verifies that signature with
//!    the IdP's metadata certificates; from then on only the bytes its
//!    digest covered are used (re-parsed), so nothing an attacker wrapped
//!    around or beside the signed Response survives (XSW1, XSW2).
//! 3. Response checks: version, `Destination` (the ACS URL), `Issuer`,
//!    `InResponseTo` (the request this login sent; none at all is an
//!    unsolicited response), status, and exactly one assertion (plain or
//!    encrypted) in the whole document, as a child of the Response (XSW3–8).
//! 4. An `EncryptedAssertion`'s content key is unwrapped with the SP's
//!    `hsm` key (RSA-OAEP only, never `rsa-1_5`), libxmlsec1 decrypts the
//!    content in place (AES-GCM or AES-CBC), and the decrypted content is
//!    checked like a parsed document (a comment in a `NameID` is refused).
//! 5. The Assertion's own signature is required and verified the same way;
//!    its covered bytes are the only source of what the login means.
//! 6. Assertion checks: `Issuer`, bearer `SubjectConfirmationData`
//!    (`Recipient`, `InResponseTo`, `NotOnOrAfter`), `Conditions`
//!    (`NotBefore`, `NotOnOrAfter`, every `AudienceRestriction` names this
//!    SP), then subject, authentication context and attributes.
//!
//! Single use of the assertion ID and of the request's `InResponseTo` is
//! the caller's (it has the session store): [`Assertion::id`] and
//! [`Assertion::not_on_or_after`] say what to mark and for how long.

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stadttor_hsm::{DecryptingKey, Oaep};

use crate::text::{children, is, only_child, parse, parse_datetime, text};
use crate::xmlsec::{Doc, XmlError, XmlErrorKind};
use crate::{DSIG_NS, SAMLP_NS, SAML_NS, XENC11_NS, XENC_NS};

/// What the Response must match: the login transaction and this SP.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// This SP's entity ID (the `Audience`).
    pub sp_entity_id: &'a str,
    /// This SP's ACS URL (`Destination`, `Recipient`).
    pub acs_url: &'a str,
    /// The IdP's entity ID (`Issuer`).
    pub idp_entity_id: &'a str,
    /// The IdP's signing certificates (DER), from its metadata only.
    pub idp_certs: &'a [Vec<u8>],
    /// The ID of the AuthnRequest this login sent (`InResponseTo`).
    pub request_id: &'a str,
    /// Now.
    pub now: SystemTime,
    /// Allowed clock skew on `NotBefore`/`NotOnOrAfter`.
    pub skew: Duration,
    /// Refuse assertions that are not encrypted (BundID, MUK).
    pub require_encryption: bool,
}

/// One attribute of the assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// `Name` (for BundID an OID URN such as `urn:oid:2.5.4.42`).
    pub name: String,
    /// Its values, as text.
    pub values: Vec<String>,
    /// BundID/MUK's `akdb:TrustLevel` of this attribute, if given
    /// (UNTERGEORDNET, NORMAL, SUBSTANTIELL, HOCH).
    pub trust_level: Option<String>,
}

/// A verified assertion: what the login means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// The assertion's `ID`: mark it used until `not_on_or_after`.
    pub id: String,
    /// The IdP's entity ID.
    pub issuer: String,
    /// The subject's `NameID`.
    pub name_id: String,
    /// The `NameID`'s `Format`, if given.
    pub name_id_format: Option<String>,
    /// The `NameID`'s `NameQualifier` and `SPNameQualifier`, if given
    /// (Single Logout echoes them).
    pub name_qualifiers: (Option<String>, Option<String>),
    /// `AuthnStatement/@SessionIndex`, for Single Logout.
    pub session_index: Option<String>,
    /// `AuthnContextClassRef` (for BundID `STORK-QAA-Level-1..4`).
    pub authn_context: Option<String>,
    /// `AuthnStatement/@AuthnInstant`.
    pub authn_instant: Option<SystemTime>,
    /// When the assertion stops being usable (earliest of the bearer
    /// confirmation's and the conditions' `NotOnOrAfter`).
    pub not_on_or_after: SystemTime,
    /// The attributes, in document order.
    pub attributes: Vec<Attribute>,
}

impl Assertion {
    /// The first value of the attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.values.first())
            .map(String::as_str)
    }
}

/// Why a Response was refused. Each names the threat it stops; the text
/// goes to logs and audit events, never to the citizen.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Not base64, not XML, a DTD (XXE, entity expansion), a comment, a
    /// processing instruction, a duplicate ID.
    #[error("malformed or dangerous XML: {0}")]
    Malformed(String),
    /// A signature that does not verify with the metadata's certificates
    /// (forged, tampered, signed by another key).
    #[error("signature refused: {0}")]
    BadSignature(String),
    /// An algorithm outside the allowlist (SHA-1, `rsa-1_5`, ...).
    #[error("algorithm refused: {0}")]
    Algorithm(String),
    /// More than one assertion, an assertion out of place, a signature
    /// over another element: signature wrapping.
    #[error("structure refused (signature wrapping?): {0}")]
    Wrapping(String),
    /// The assertion is not signed (signature stripping).
    #[error("assertion not signed")]
    AssertionNotSigned,
    /// The assertion is not encrypted although the IdP must encrypt.
    #[error("assertion not encrypted")]
    NotEncrypted,
    /// The content does not decrypt with this SP's key.
    #[error("encrypted assertion does not decrypt: {0}")]
    Decrypt(String),
    /// `Destination` is not this ACS URL.
    #[error("Destination `{0}` is not this ACS URL")]
    Destination(String),
    /// `Recipient` is not this ACS URL.
    #[error("Recipient `{0}` is not this ACS URL")]
    Recipient(String),
    /// The `Audience` is not this SP.
    #[error("Audience does not name this SP")]
    Audience,
    /// No `InResponseTo`: an IdP-initiated (unsolicited) response.
    #[error("unsolicited response (no InResponseTo)")]
    Unsolicited,
    /// `InResponseTo` names another request.
    #[error("InResponseTo does not match the request of this login")]
    InResponseTo,
    /// `Issuer` is not the IdP.
    #[error("Issuer `{0}` is not the IdP")]
    Issuer(String),
    /// Outside `NotBefore`/`NotOnOrAfter`.
    #[error("assertion expired or not yet valid")]
    Expired,
    /// The IdP says the login failed (cancelled, denied, level not met).
    #[error("IdP status {code}{}", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        /// The (second-level, if any) status code.
        code: String,
        /// The status message.
        message: Option<String>,
    },
    /// Something the assertion must carry is missing.
    #[error("incomplete: {0}")]
    Missing(&'static str),
    /// The SP has no decryption key, or it failed.
    #[error("SP key: {0}")]
    Key(String),
}

impl Refused {
    /// A short, stable reason for metrics and audit events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::BadSignature(_) => "bad_signature",
            Self::Algorithm(_) => "algorithm",
            Self::Wrapping(_) => "wrapping",
            Self::AssertionNotSigned => "unsigned",
            Self::NotEncrypted => "not_encrypted",
            Self::Decrypt(_) => "decrypt",
            Self::Destination(_) => "destination",
            Self::Recipient(_) => "recipient",
            Self::Audience => "audience",
            Self::Unsolicited => "unsolicited",
            Self::InResponseTo => "in_response_to",
            Self::Issuer(_) => "issuer",
            Self::Expired => "expired",
            Self::Status { .. } => "status",
            Self::Missing(_) => "incomplete",
            Self::Key(_) => "key",
        }
    }

    fn from_xml(e: XmlError, what: &str) -> Self {
        let m = format!("{what}: {}", e.message);
        match e.kind {
            XmlErrorKind::Parse => Self::Malformed(m),
            XmlErrorKind::Algorithm => Self::Algorithm(m),
            XmlErrorKind::Signature => Self::BadSignature(m),
            XmlErrorKind::Structure => Self::Wrapping(m),
            XmlErrorKind::Decrypt => Self::Decrypt(m),
            XmlErrorKind::Internal => Self::Malformed(m),
        }
    }
}

const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const AKDB_REQUEST_NS: &str = "https://www.akdb.de/request/2018/09";
const OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
const OAEP_11: &str = "http://www.w3.org/2009/xmlenc11#rsa-oaep";
const RSA_1_5: &str = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";
const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const MGF1_SHA1: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha1";
const MGF1_SHA256: &str = "http://www.w3.org/2009/xmlenc11#mgf1sha256";
/// Largest `SAMLResponse` (base64) read.
pub const MAX_RESPONSE_B64: usize = 512 * 1024;

/// Reads the form field `SAMLResponse` (base64) that arrived at the ACS:
/// every check of the module documentation, in that order. `key`
/// unwraps encrypted assertions; without it they are refused.
pub fn read(
    saml_response_b64: &str,
    expect: &Expect<'_>,
    key: Option<&dyn DecryptingKey>,
) -> Result<Assertion, Refused> {
    if saml_response_b64.len() > MAX_RESPONSE_B64 {
        return Err(Refused::Malformed("SAMLResponse too large".into()));
    }
    let compact: String = saml_response_b64
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let xml = B64
        .decode(compact.as_bytes())
        .map_err(|_| Refused::Malformed("SAMLResponse is not base64".into()))?;
    read_xml(&xml, expect, key)
}

/// [`read`] on the decoded XML.
pub fn read_xml(
    xml: &[u8],
    expect: &Expect<'_>,
    key: Option<&dyn DecryptingKey>,
) -> Result<Assertion, Refused> {
    let raw = Doc::parse(xml).map_err(|e| Refused::from_xml(e, "Response"))?;
    let certs: Vec<&[u8]> = expect.idp_certs.iter().map(Vec::as_slice).collect();
    let signed = response_is_signed(xml)?;
    let (bytes, mut doc) = if signed {
        let b = raw
            .verify(SAMLP_NS, "Response", &certs)
            .map_err(|e| Refused::from_xml(e, "Response signature"))?;
        let d = Doc::parse(&b).map_err(|e| Refused::from_xml(e, "signed Response"))?;
        (b, d)
    } else {
        (xml.to_vec(), raw)
    };
    let encrypted = {
        let view = parse(&bytes).map_err(Refused::Malformed)?;
        check_response(view.root_element(), expect)?
    };
    if let Some(ek) = encrypted {
        let key = key.ok_or_else(|| Refused::Key("no decryption key configured".into()))?;
        let cek = unwrap_key(&ek, key)?;
        doc.decrypt(&cek)
            .map_err(|e| Refused::from_xml(e, "EncryptedAssertion"))?;
    } else if expect.require_encryption {
        return Err(Refused::NotEncrypted);
    }
    let assertion = doc
        .verify(SAML_NS, "Assertion", &certs)
        .map_err(|e| match e.kind {
            XmlErrorKind::Structure if e.message.contains("is not signed") => {
                Refused::AssertionNotSigned
            }
            _ => Refused::from_xml(e, "Assertion signature"),
        })?;
    let view = parse(&assertion).map_err(Refused::Malformed)?;
    check_assertion(view.root_element(), expect)
}

/// Whether the raw document's root carries a signature as a child
/// (roxmltree, which refuses DTDs, on bytes libxml2 already accepted).
fn response_is_signed(xml: &[u8]) -> Result<bool, Refused> {
    let view = parse(xml).map_err(Refused::Malformed)?;
    let root = view.root_element();
    if !is(root, SAMLP_NS, "Response") {
        return Err(Refused::Malformed(format!(
            "root element is {}, not samlp:Response",
            root.tag_name().name()
        )));
    }
    let signed = children(root, DSIG_NS, "Signature").next().is_some();
    Ok(signed)
}

/// The key transport of an `EncryptedAssertion`, read from (verified or
/// about-to-be-verified) response bytes.
#[derive(Debug)]
struct EncryptedKey {
    oaep: Oaep,
    cipher: Vec<u8>,
}

/// Step 3; returns the encrypted assertion's key transport, if encrypted.
fn check_response(
    root: roxmltree::Node<'_, '_>,
    expect: &Expect<'_>,
) -> Result<Option<EncryptedKey>, Refused> {
    if root.attribute("Version") != Some("2.0") {
        return Err(Refused::Malformed("Response Version is not 2.0".into()));
    }
    if let Some(d) = root.attribute("Destination") {
        if d != expect.acs_url {
            return Err(Refused::Destination(d.into()));
        }
    }
    if let Some(i) = only_child(root, SAML_NS, "Issuer") {
        let i = text(i);
        if i.trim() != expect.idp_entity_id {
            return Err(Refused::Issuer(i));
        }
    }
    match root.attribute("InResponseTo") {
        None => return Err(Refused::Unsolicited),
        Some(r) if r != expect.request_id => return Err(Refused::InResponseTo),
        Some(_) => {}
    }
    check_status(root)?;
    let plain = root
        .descendants()
        .filter(|n| is(*n, SAML_NS, "Assertion"))
        .count();
    let enc: Vec<_> = root
        .descendants()
        .filter(|n| is(*n, SAML_NS, "EncryptedAssertion"))
        .collect();
    if plain + enc.len() != 1 {
        return Err(Refused::Wrapping(format!(
            "{} assertions in the Response where exactly one is allowed",
            plain + enc.len()
        )));
    }
    match enc.first() {
        Some(e) if e.parent() != Some(root) => Err(Refused::Wrapping(
            "EncryptedAssertion is not a child of the Response".into(),
        )),
        Some(e) => encrypted_key(*e).map(Some),
        None => {
            let a = root.descendants().find(|n| is(*n, SAML_NS, "Assertion"));
            if a.and_then(|a| a.parent()) != Some(root) {
                return Err(Refused::Wrapping(
                    "Assertion is not a child of the Response".into(),
                ));
            }
            Ok(None)
        }
    }
}

fn check_status(root: roxmltree::Node<'_, '_>) -> Result<(), Refused> {
    let status = only_child(root, SAMLP_NS, "Status").ok_or(Refused::Missing("Status"))?;
    let code = only_child(status, SAMLP_NS, "StatusCode").ok_or(Refused::Missing("StatusCode"))?;
    let top = code.attribute("Value").unwrap_or_default();
    if top == STATUS_SUCCESS {
        return Ok(());
    }
    let second = only_child(code, SAMLP_NS, "StatusCode").and_then(|c| c.attribute("Value"));
    let message = only_child(status, SAMLP_NS, "StatusMessage").map(text);
    Err(Refused::Status {
        code: second.unwrap_or(top).to_owned(),
        message: message.map(|m| m.chars().take(200).collect()),
    })
}

/// The one `xenc:EncryptedKey` of an `EncryptedAssertion` (inside the
/// EncryptedData's KeyInfo or beside it), with its OAEP parameters.
fn encrypted_key(ea: roxmltree::Node<'_, '_>) -> Result<EncryptedKey, Refused> {
    let keys: Vec<_> = ea
        .descendants()
        .filter(|n| is(*n, XENC_NS, "EncryptedKey"))
        .collect();
    let [ek] = keys.as_slice() else {
        return Err(Refused::Decrypt(format!(
            "{} EncryptedKey elements where exactly one is allowed",
            keys.len()
        )));
    };
    let method =
        only_child(*ek, XENC_NS, "EncryptionMethod").ok_or(Refused::Missing("EncryptionMethod"))?;
    let alg = method.attribute("Algorithm").unwrap_or_default();
    let digest = only_child(method, DSIG_NS, "DigestMethod").and_then(|d| d.attribute("Algorithm"));
    let mgf = only_child(method, XENC11_NS, "MGF").and_then(|d| d.attribute("Algorithm"));
    let oaep = match (alg, digest, mgf) {
        (RSA_1_5, _, _) => return Err(Refused::Algorithm(
            "key transport rsa-1_5 (PKCS#1 v1.5, Bleichenbacher's attack) refused; RSA-OAEP only"
                .into(),
        )),
        (OAEP_MGF1P, None | Some(SHA1), None) => Oaep::Sha1,
        (OAEP_MGF1P, Some(SHA256), None) => Oaep::Sha256Mgf1Sha1,
        (OAEP_11, None | Some(SHA1), None | Some(MGF1_SHA1)) => Oaep::Sha1,
        (OAEP_11, Some(SHA256), None | Some(MGF1_SHA1)) => Oaep::Sha256Mgf1Sha1,
        (OAEP_11, Some(SHA256), Some(MGF1_SHA256)) => Oaep::Sha256,
        _ => {
            return Err(Refused::Algorithm(format!(
                "key transport {alg} (digest {}, MGF {}) is not supported",
                digest.unwrap_or("default"),
                mgf.unwrap_or("default")
            )))
        }
    };
    let cv = only_child(*ek, XENC_NS, "CipherData")
        .and_then(|c| only_child(c, XENC_NS, "CipherValue"))
        .ok_or(Refused::Missing("EncryptedKey CipherValue"))?;
    let b64: String = text(cv)
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let cipher = B64
        .decode(b64.as_bytes())
        .map_err(|_| Refused::Malformed("EncryptedKey CipherValue is not base64".into()))?;
    Ok(EncryptedKey { oaep, cipher })
}

fn unwrap_key(
    ek: &EncryptedKey,
    key: &dyn DecryptingKey,
) -> Result<zeroize::Zeroizing<Vec<u8>>, Refused> {
    key.decrypt_oaep(ek.oaep, &ek.cipher).map_err(|e| match e {
        stadttor_hsm::Error::Decryption { .. } => {
            Refused::Decrypt("the content key does not decrypt with this SP's key".into())
        }
        other => Refused::Key(other.to_string()),
    })
}

/// Step 6, on the bytes the assertion's signature covers.
fn check_assertion(a: roxmltree::Node<'_, '_>, expect: &Expect<'_>) -> Result<Assertion, Refused> {
    if !is(a, SAML_NS, "Assertion") || a.attribute("Version") != Some("2.0") {
        return Err(Refused::Malformed("not a SAML 2.0 Assertion".into()));
    }
    let id = a
        .attribute("ID")
        .ok_or(Refused::Missing("Assertion ID"))?
        .to_owned();
    let issuer = only_child(a, SAML_NS, "Issuer")
        .map(text)
        .ok_or(Refused::Missing("Issuer"))?;
    if issuer.trim() != expect.idp_entity_id {
        return Err(Refused::Issuer(issuer));
    }
    let subject = only_child(a, SAML_NS, "Subject").ok_or(Refused::Missing("Subject"))?;
    let name_id = only_child(subject, SAML_NS, "NameID").ok_or(Refused::Missing("NameID"))?;
    let confirmed_until = bearer_confirmation(subject, expect)?;
    let conditions_until = conditions(a, expect)?;
    let not_on_or_after = match conditions_until {
        Some(c) => c.min(confirmed_until),
        None => confirmed_until,
    };
    let authn = only_child(a, SAML_NS, "AuthnStatement");
    let authn_context = authn
        .and_then(|s| only_child(s, SAML_NS, "AuthnContext"))
        .and_then(|c| only_child(c, SAML_NS, "AuthnContextClassRef"))
        .map(|c| text(c).trim().to_owned());
    let value = text(name_id);
    if value.trim().is_empty() {
        return Err(Refused::Missing("NameID value"));
    }
    Ok(Assertion {
        id,
        issuer: issuer.trim().to_owned(),
        name_id: value.trim().to_owned(),
        name_id_format: name_id.attribute("Format").map(str::to_owned),
        name_qualifiers: (
            name_id.attribute("NameQualifier").map(str::to_owned),
            name_id.attribute("SPNameQualifier").map(str::to_owned),
        ),
        session_index: authn
            .and_then(|s| s.attribute("SessionIndex"))
            .map(str::to_owned),
        authn_context,
        authn_instant: authn
            .and_then(|s| s.attribute("AuthnInstant"))
            .and_then(parse_datetime),
        not_on_or_after,
        attributes: attributes(a),
    })
}

/// A bearer `SubjectConfirmation` whose data names this ACS, this
/// request and a future `NotOnOrAfter`; returns that time.
fn bearer_confirmation(
    subject: roxmltree::Node<'_, '_>,
    expect: &Expect<'_>,
) -> Result<SystemTime, Refused> {
    let bearer = children(subject, SAML_NS, "SubjectConfirmation")
        .find(|c| c.attribute("Method") == Some(BEARER))
        .ok_or(Refused::Missing("bearer SubjectConfirmation"))?;
    let data = only_child(bearer, SAML_NS, "SubjectConfirmationData")
        .ok_or(Refused::Missing("SubjectConfirmationData"))?;
    match data.attribute("Recipient") {
        Some(r) if r == expect.acs_url => {}
        Some(r) => return Err(Refused::Recipient(r.into())),
        None => return Err(Refused::Missing("Recipient")),
    }
    match data.attribute("InResponseTo") {
        None => return Err(Refused::Unsolicited),
        Some(r) if r != expect.request_id => return Err(Refused::InResponseTo),
        Some(_) => {}
    }
    if data.attribute("NotBefore").is_some() {
        return Err(Refused::Malformed(
            "bearer SubjectConfirmationData with NotBefore".into(),
        ));
    }
    let until = data
        .attribute("NotOnOrAfter")
        .and_then(parse_datetime)
        .ok_or(Refused::Missing("SubjectConfirmationData NotOnOrAfter"))?;
    if expect.now >= until + expect.skew {
        return Err(Refused::Expired);
    }
    Ok(until)
}

/// `Conditions`: times and audience; returns its `NotOnOrAfter`.
fn conditions(
    a: roxmltree::Node<'_, '_>,
    expect: &Expect<'_>,
) -> Result<Option<SystemTime>, Refused> {
    let c = only_child(a, SAML_NS, "Conditions").ok_or(Refused::Missing("Conditions"))?;
    if let Some(nb) = c.attribute("NotBefore") {
        let nb = parse_datetime(nb).ok_or(Refused::Malformed("NotBefore".into()))?;
        if expect.now + expect.skew < nb {
            return Err(Refused::Expired);
        }
    }
    let until = match c.attribute("NotOnOrAfter") {
        Some(t) => {
            let t = parse_datetime(t).ok_or(Refused::Malformed("NotOnOrAfter".into()))?;
            if expect.now >= t + expect.skew {
                return Err(Refused::Expired);
            }
            Some(t)
        }
        None => None,
    };
    let restrictions: Vec<_> = children(c, SAML_NS, "AudienceRestriction").collect();
    if restrictions.is_empty() {
        return Err(Refused::Audience);
    }
    for r in restrictions {
        if !children(r, SAML_NS, "Audience").any(|x| text(x).trim() == expect.sp_entity_id) {
            return Err(Refused::Audience);
        }
    }
    Ok(until)
}

fn attributes(a: roxmltree::Node<'_, '_>) -> Vec<Attribute> {
    children(a, SAML_NS, "AttributeStatement")
        .flat_map(|s| children(s, SAML_NS, "Attribute"))
        .filter_map(|attr| {
            let name = attr.attribute("Name")?.to_owned();
            let values = children(attr, SAML_NS, "AttributeValue")
                .map(text)
                .collect();
            let trust_level = attr
                .attribute((AKDB_REQUEST_NS, "TrustLevel"))
                .or_else(|| {
                    attr.attributes()
                        .find(|x| x.name() == "TrustLevel")
                        .map(|x| x.value())
                })
                .map(str::to_owned);
            Some(Attribute {
                name,
                values,
                trust_level,
            })
        })
        .collect()
}
