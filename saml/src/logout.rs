//! Single Logout (SAML 2.0 core 3.7, HTTP-POST binding both ways).
//!
//! ```text
//! SP-initiated   LogoutRequest::sign ──▶ IdP ──▶ read_response (ours answered)
//! IdP-initiated  read_request ──▶ (the caller ends the sessions) ──▶ LogoutResponse::sign
//! ```
//!
//! The SP's messages are signed like the AuthnRequest
//! ([`crate::request::sign_enveloped`]: enveloped, exclusive C14N, RSA-PSS
//! or ECDSA by an `hsm` key). Messages from the IdP are read like a
//! Response: strict parsing, then the enveloped signature of the one
//! `LogoutRequest`/`LogoutResponse` is **required** and verified by
//! libxmlsec1 with the IdP metadata's certificates only, and only the bytes
//! its digest covered are read. Then `Version`, `Destination` (this SP's
//! SLO URL; required, as the POST binding demands for signed messages),
//! `Issuer` (the IdP), the times, and for a response `InResponseTo` and
//! the status.
//!
//! Single use of a request's `ID` is the caller's (it has the session
//! store): [`IdpLogoutRequest::replay_until`] says how long to remember it;
//! a request older than that is refused here as expired, so a remembered
//! ID never needs to outlive it. An `EncryptedID` is not supported
//! (BundID sends a plain `NameID`) and is refused.

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stadttor_hsm::SigningKey;

use crate::request::{sign_enveloped, RequestError, SignedMessage};
use crate::text::{children, datetime, esc, is, new_id, only_child, parse, parse_datetime, text};
use crate::xmlsec::{Doc, XmlError, XmlErrorKind};
use crate::{DSIG_NS, SAMLP_NS, SAML_NS};

/// Top-level status: the request was carried out.
pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
/// Top-level status: the responder (this SP) could not carry it out.
pub const STATUS_RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
/// Second-level status: not every session could be ended.
pub const STATUS_PARTIAL_LOGOUT: &str = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout";
/// `Reason`: the user asked to log out.
pub const REASON_USER: &str = "urn:oasis:names:tc:SAML:2.0:logout:user";
/// Largest `SAMLRequest`/`SAMLResponse` (base64) of a logout read.
pub const MAX_LOGOUT_B64: usize = 64 * 1024;
/// How old (by `IssueInstant`) a logout message from the IdP may be.
pub const MAX_AGE: Duration = Duration::from_secs(5 * 60);

/// A `saml:NameID` as the assertion carried it: the SP must echo value,
/// format and qualifiers so that the IdP finds its session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameId {
    /// The identifier.
    pub value: String,
    /// `Format`, if given.
    pub format: Option<String>,
    /// `NameQualifier`, if given.
    pub name_qualifier: Option<String>,
    /// `SPNameQualifier`, if given.
    pub sp_name_qualifier: Option<String>,
}

impl NameId {
    fn to_xml(&self) -> String {
        let attr = |name: &str, v: &Option<String>| {
            v.as_deref()
                .map(|v| format!(" {name}=\"{}\"", esc(v)))
                .unwrap_or_default()
        };
        format!(
            "<saml:NameID{}{}{}>{}</saml:NameID>",
            attr("Format", &self.format),
            attr("NameQualifier", &self.name_qualifier),
            attr("SPNameQualifier", &self.sp_name_qualifier),
            esc(&self.value)
        )
    }

    fn read(n: roxmltree::Node<'_, '_>) -> Result<Self, Refused> {
        let value = text(n).trim().to_owned();
        if value.is_empty() {
            return Err(Refused::Missing("NameID value"));
        }
        let attr = |name: &str| n.attribute(name).map(str::to_owned);
        Ok(Self {
            value,
            format: attr("Format"),
            name_qualifier: attr("NameQualifier"),
            sp_name_qualifier: attr("SPNameQualifier"),
        })
    }
}

/// The SP's LogoutRequest (SP-initiated Single Logout).
#[derive(Debug, Clone)]
pub struct LogoutRequest {
    /// The IdP's SLO endpoint (`Destination`).
    pub destination: String,
    /// This SP's entity ID (`Issuer`).
    pub sp_entity_id: String,
    /// The subject as the assertion named it.
    pub name_id: NameId,
    /// The assertion's `SessionIndex`, if it had one.
    pub session_index: Option<String>,
    /// `NotOnOrAfter` is this long after `IssueInstant`.
    pub lifetime: Duration,
}

impl LogoutRequest {
    fn unsigned(&self, id: &str, now: SystemTime) -> String {
        let index = self
            .session_index
            .as_deref()
            .map(|i| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", esc(i)))
            .unwrap_or_default();
        format!(
            "<samlp:LogoutRequest xmlns:samlp=\"{SAMLP_NS}\" xmlns:saml=\"{SAML_NS}\" \
             Destination=\"{}\" ID=\"{id}\" IssueInstant=\"{}\" NotOnOrAfter=\"{}\" \
             Reason=\"{REASON_USER}\" Version=\"2.0\">\
             <saml:Issuer>{}</saml:Issuer>{{SIG}}{}{index}</samlp:LogoutRequest>",
            esc(&self.destination),
            datetime(now),
            datetime(now + self.lifetime),
            esc(&self.sp_entity_id),
            self.name_id.to_xml(),
        )
    }

    /// The request, signed by `key` (certificate in `KeyInfo` when given).
    pub fn sign(
        &self,
        key: &dyn SigningKey,
        cert: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<SignedMessage, RequestError> {
        let id = new_id();
        let xml = sign_enveloped(&self.unsigned(&id, now), &id, key, cert)?;
        Ok(SignedMessage { id, xml })
    }
}

/// The SP's LogoutResponse to an IdP-initiated LogoutRequest.
#[derive(Debug, Clone)]
pub struct LogoutResponse {
    /// The IdP's SLO endpoint (`Destination`).
    pub destination: String,
    /// This SP's entity ID (`Issuer`).
    pub sp_entity_id: String,
    /// The `ID` of the request answered.
    pub in_response_to: String,
    /// The top-level status ([`STATUS_SUCCESS`], [`STATUS_RESPONDER`]).
    pub status: &'static str,
}

impl LogoutResponse {
    fn unsigned(&self, id: &str, now: SystemTime) -> String {
        format!(
            "<samlp:LogoutResponse xmlns:samlp=\"{SAMLP_NS}\" xmlns:saml=\"{SAML_NS}\" \
             Destination=\"{}\" ID=\"{id}\" InResponseTo=\"{}\" IssueInstant=\"{}\" Version=\"2.0\">\
             <saml:Issuer>{}</saml:Issuer>{{SIG}}\
             <samlp:Status><samlp:StatusCode Value=\"{}\"/></samlp:Status></samlp:LogoutResponse>",
            esc(&self.destination),
            esc(&self.in_response_to),
            datetime(now),
            esc(&self.sp_entity_id),
            esc(self.status),
        )
    }

    /// The response, signed by `key` (certificate in `KeyInfo` when given).
    pub fn sign(
        &self,
        key: &dyn SigningKey,
        cert: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<SignedMessage, RequestError> {
        let id = new_id();
        let xml = sign_enveloped(&self.unsigned(&id, now), &id, key, cert)?;
        Ok(SignedMessage { id, xml })
    }
}

/// What a logout message from the IdP must match.
#[derive(Debug, Clone, Copy)]
pub struct ExpectLogout<'a> {
    /// This SP's SLO URL (`Destination`).
    pub slo_url: &'a str,
    /// The IdP's entity ID (`Issuer`).
    pub idp_entity_id: &'a str,
    /// The IdP's signing certificates (DER), from its metadata only.
    pub idp_certs: &'a [Vec<u8>],
    /// Now.
    pub now: SystemTime,
    /// Allowed clock skew.
    pub skew: Duration,
}

/// A verified LogoutRequest from the IdP: what to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpLogoutRequest {
    /// The request's `ID`: the LogoutResponse's `InResponseTo`, and to be
    /// marked used until [`IdpLogoutRequest::replay_until`].
    pub id: String,
    /// The subject.
    pub name_id: NameId,
    /// The IdP sessions to end; empty: every session of the subject.
    pub session_indexes: Vec<String>,
    /// After this the request is refused as expired anyway.
    pub replay_until: SystemTime,
}

/// Why a logout message was refused. Each names the threat it stops; the
/// text goes to logs and audit events, never to the citizen.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// Not base64, not XML, a DTD, a comment, a processing instruction, a
    /// duplicate ID, another root element.
    #[error("malformed or dangerous XML: {0}")]
    Malformed(String),
    /// No signature (an unsigned logout would let anyone end sessions).
    #[error("logout message not signed")]
    Unsigned,
    /// A signature that does not verify with the metadata's certificates.
    #[error("signature refused: {0}")]
    BadSignature(String),
    /// An algorithm outside the allowlist (SHA-1, ...).
    #[error("algorithm refused: {0}")]
    Algorithm(String),
    /// A signature over another element, several messages: wrapping.
    #[error("structure refused (signature wrapping?): {0}")]
    Wrapping(String),
    /// `Destination` is not this SP's SLO URL (a message for another SP).
    #[error("Destination `{0}` is not this SLO URL")]
    Destination(String),
    /// `Issuer` is not the IdP.
    #[error("Issuer `{0}` is not the IdP")]
    Issuer(String),
    /// Past `NotOnOrAfter`, older than [`MAX_AGE`], or issued in the future.
    #[error("logout message expired or not yet valid")]
    Expired,
    /// `InResponseTo` is not the request this SP sent.
    #[error("InResponseTo does not name this SP's LogoutRequest")]
    InResponseTo,
    /// The IdP says the logout failed.
    #[error("IdP status {code}{}", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        /// The (second-level, if any) status code.
        code: String,
        /// The status message.
        message: Option<String>,
    },
    /// Something the message must carry is missing (or is an `EncryptedID`).
    #[error("incomplete: {0}")]
    Missing(&'static str),
    /// The SP cannot check the message: no verified IdP metadata yet.
    #[error("cannot verify: {0}")]
    Unverifiable(String),
}

impl Refused {
    /// A short, stable reason for metrics and audit events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Unsigned => "unsigned",
            Self::BadSignature(_) => "bad_signature",
            Self::Algorithm(_) => "algorithm",
            Self::Wrapping(_) => "wrapping",
            Self::Destination(_) => "destination",
            Self::Issuer(_) => "issuer",
            Self::Expired => "expired",
            Self::InResponseTo => "in_response_to",
            Self::Status { .. } => "status",
            Self::Missing(_) => "incomplete",
            Self::Unverifiable(_) => "no_metadata",
        }
    }

    fn from_xml(e: XmlError, what: &str) -> Self {
        if e.kind == XmlErrorKind::Structure && e.message.contains("is not signed") {
            return Self::Unsigned;
        }
        let m = format!("{what}: {}", e.message);
        match e.kind {
            XmlErrorKind::Parse | XmlErrorKind::Internal | XmlErrorKind::Decrypt => {
                Self::Malformed(m)
            }
            XmlErrorKind::Algorithm => Self::Algorithm(m),
            XmlErrorKind::Signature => Self::BadSignature(m),
            XmlErrorKind::Structure => Self::Wrapping(m),
        }
    }
}

/// Reads the `SAMLRequest` form field (base64) that arrived at the SLO
/// endpoint: an IdP-initiated LogoutRequest, every check of the module
/// documentation.
pub fn read_request(b64: &str, expect: &ExpectLogout<'_>) -> Result<IdpLogoutRequest, Refused> {
    let bytes = verified(b64, "LogoutRequest", expect)?;
    let view = parse(&bytes).map_err(Refused::Malformed)?;
    let root = view.root_element();
    let (issued, until) = common(root, expect)?;
    if let Some(t) = until {
        if expect.now >= t + expect.skew {
            return Err(Refused::Expired);
        }
    }
    if children(root, SAML_NS, "EncryptedID").next().is_some() {
        return Err(Refused::Missing("NameID (EncryptedID is not supported)"));
    }
    let name_id = only_child(root, SAML_NS, "NameID").ok_or(Refused::Missing("NameID"))?;
    let session_indexes = children(root, SAMLP_NS, "SessionIndex")
        .map(|s| text(s).trim().to_owned())
        .collect::<Vec<_>>();
    if session_indexes.iter().any(String::is_empty) {
        return Err(Refused::Missing("SessionIndex value"));
    }
    let oldest = issued + MAX_AGE;
    let replay_until = until.map_or(oldest, |t| t.min(oldest)) + expect.skew;
    Ok(IdpLogoutRequest {
        id: root
            .attribute("ID")
            .ok_or(Refused::Missing("ID"))?
            .to_owned(),
        name_id: NameId::read(name_id)?,
        session_indexes,
        replay_until,
    })
}

/// Reads the `SAMLResponse` form field (base64) that answers this SP's
/// LogoutRequest `request_id`: `Ok` if the IdP ended its session.
pub fn read_response(
    b64: &str,
    expect: &ExpectLogout<'_>,
    request_id: &str,
) -> Result<(), Refused> {
    let bytes = verified(b64, "LogoutResponse", expect)?;
    let view = parse(&bytes).map_err(Refused::Malformed)?;
    let root = view.root_element();
    common(root, expect)?;
    match root.attribute("InResponseTo") {
        Some(r) if r == request_id => {}
        _ => return Err(Refused::InResponseTo),
    }
    check_status(root)
}

/// Decodes, parses strictly, checks the root is `samlp:{local}`, verifies
/// its required signature; returns the signed bytes, the only ones read.
fn verified(b64: &str, local: &str, expect: &ExpectLogout<'_>) -> Result<Vec<u8>, Refused> {
    if b64.len() > MAX_LOGOUT_B64 {
        return Err(Refused::Malformed(format!("{local} too large")));
    }
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let xml = B64
        .decode(compact.as_bytes())
        .map_err(|_| Refused::Malformed(format!("{local} is not base64")))?;
    let doc = Doc::parse(&xml).map_err(|e| Refused::from_xml(e, local))?;
    {
        let view = parse(&xml).map_err(Refused::Malformed)?;
        let root = view.root_element();
        if !is(root, SAMLP_NS, local) {
            return Err(Refused::Malformed(format!(
                "root element is {}, not samlp:{local}",
                root.tag_name().name()
            )));
        }
        if children(root, DSIG_NS, "Signature").next().is_none() {
            return Err(Refused::Unsigned);
        }
    }
    let certs: Vec<&[u8]> = expect.idp_certs.iter().map(Vec::as_slice).collect();
    let bytes = doc
        .verify(SAMLP_NS, local, &certs)
        .map_err(|e| Refused::from_xml(e, local))?;
    // The signed element is the root: what the digest covers is all of it.
    let view = parse(&bytes).map_err(Refused::Malformed)?;
    if !is(view.root_element(), SAMLP_NS, local) {
        return Err(Refused::Wrapping(format!(
            "the signed element is not samlp:{local}"
        )));
    }
    Ok(bytes)
}

/// `Version`, `Destination`, `Issuer`, `IssueInstant` (within [`MAX_AGE`]
/// and not in the future) of a verified message; returns the issue
/// instant and the `NotOnOrAfter`, if given.
fn common(
    root: roxmltree::Node<'_, '_>,
    expect: &ExpectLogout<'_>,
) -> Result<(SystemTime, Option<SystemTime>), Refused> {
    if root.attribute("Version") != Some("2.0") {
        return Err(Refused::Malformed("Version is not 2.0".into()));
    }
    match root.attribute("Destination") {
        Some(d) if d == expect.slo_url => {}
        Some(d) => return Err(Refused::Destination(d.into())),
        None => return Err(Refused::Missing("Destination")),
    }
    let issuer = only_child(root, SAML_NS, "Issuer")
        .map(text)
        .ok_or(Refused::Missing("Issuer"))?;
    if issuer.trim() != expect.idp_entity_id {
        return Err(Refused::Issuer(issuer));
    }
    let issued = root
        .attribute("IssueInstant")
        .and_then(parse_datetime)
        .ok_or(Refused::Missing("IssueInstant"))?;
    if issued > expect.now + expect.skew || expect.now >= issued + MAX_AGE + expect.skew {
        return Err(Refused::Expired);
    }
    let until = match root.attribute("NotOnOrAfter") {
        Some(t) => Some(parse_datetime(t).ok_or(Refused::Malformed("NotOnOrAfter".into()))?),
        None => None,
    };
    Ok((issued, until))
}

fn check_status(root: roxmltree::Node<'_, '_>) -> Result<(), Refused> {
    let status = only_child(root, SAMLP_NS, "Status").ok_or(Refused::Missing("Status"))?;
    let code = only_child(status, SAMLP_NS, "StatusCode").ok_or(Refused::Missing("StatusCode"))?;
    let top = code.attribute("Value").unwrap_or_default();
    let second = only_child(code, SAMLP_NS, "StatusCode").and_then(|c| c.attribute("Value"));
    if top == STATUS_SUCCESS && second.is_none() {
        return Ok(());
    }
    let message = only_child(status, SAMLP_NS, "StatusMessage").map(text);
    Err(Refused::Status {
        code: second.unwrap_or(top).to_owned(),
        message: message.map(|m| m.chars().take(200).collect()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> LogoutRequest {
        LogoutRequest {
            destination: "https://idp.example/slo?a=1&b=2".into(),
            sp_entity_id: "https://sp.example/saml".into(),
            name_id: NameId {
                value: "_abc<&>".into(),
                format: Some("urn:oasis:names:tc:SAML:2.0:nameid-format:transient".into()),
                name_qualifier: Some("https://idp.example".into()),
                sp_name_qualifier: None,
            },
            session_index: Some("_s1".into()),
            lifetime: Duration::from_secs(300),
        }
    }

    #[test]
    fn logout_request_template_escapes_and_orders_per_schema() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let x = request().unsigned("_id1", now);
        // Well-formed (strict parser), with the signature marker after the Issuer.
        Doc::parse(x.replacen("{SIG}", "", 1).as_bytes()).unwrap();
        let issuer = x.find("</saml:Issuer>{SIG}<saml:NameID").unwrap();
        let index = x
            .find("<samlp:SessionIndex>_s1</samlp:SessionIndex>")
            .unwrap();
        assert!(issuer < index);
        assert!(x.contains("Destination=\"https://idp.example/slo?a=1&amp;b=2\""));
        assert!(x.contains(">_abc&lt;&amp;&gt;</saml:NameID>"));
        assert!(x.contains("NameQualifier=\"https://idp.example\""));
        assert!(!x.contains("SPNameQualifier"));
        assert!(x.contains("IssueInstant=\"2027-01-15T08:00:00Z\""));
        assert!(x.contains("NotOnOrAfter=\"2027-01-15T08:05:00Z\""));
    }

    #[test]
    fn logout_request_without_session_index_names_only_the_subject() {
        let mut r = request();
        r.session_index = None;
        let x = r.unsigned("_id2", SystemTime::now());
        assert!(!x.contains("SessionIndex"));
    }

    #[test]
    fn threat_unsigned_logout_request_is_refused_before_anything_is_read() {
        let xml = format!(
            "<samlp:LogoutRequest xmlns:samlp=\"{SAMLP_NS}\" xmlns:saml=\"{SAML_NS}\" ID=\"_x\" \
             Version=\"2.0\" IssueInstant=\"{}\" Destination=\"https://sp/slo\">\
             <saml:Issuer>https://idp</saml:Issuer><saml:NameID>evil</saml:NameID></samlp:LogoutRequest>",
            datetime(SystemTime::now())
        );
        let expect = ExpectLogout {
            slo_url: "https://sp/slo",
            idp_entity_id: "https://idp",
            idp_certs: &[],
            now: SystemTime::now(),
            skew: Duration::from_secs(60),
        };
        let e = read_request(&B64.encode(xml), &expect).unwrap_err();
        assert!(matches!(e, Refused::Unsigned), "{e}");
    }

    #[test]
    fn threat_logout_message_with_a_doctype_is_refused() {
        let xml = "<!DOCTYPE x [<!ENTITY e \"x\">]><samlp:LogoutResponse xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"/>";
        let expect = ExpectLogout {
            slo_url: "https://sp/slo",
            idp_entity_id: "https://idp",
            idp_certs: &[],
            now: SystemTime::now(),
            skew: Duration::from_secs(60),
        };
        let e = read_response(&B64.encode(xml), &expect, "_r").unwrap_err();
        assert_eq!(e.reason(), "malformed", "{e}");
    }
}
