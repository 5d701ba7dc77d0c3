//! SAML metadata: reading the IdP's (entity ID, SSO and SLO endpoints,
//! signing certificates), optionally only if signed by a pinned
//! certificate; and writing this SP's, to upload at onboarding (BundID's
//! self-service portal takes exactly this).

use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::text::{children, esc, is, only_child, parse, parse_datetime, text};
use crate::xmlsec::{Doc, XmlError};
use crate::{BINDING_POST, BINDING_REDIRECT, DSIG_NS, MD_NS};

/// Why IdP metadata was refused.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// Not well-formed, dangerous, or not verified by the pinned certificate.
    #[error("{0}")]
    Xml(#[from] XmlError),
    /// Well-formed but not usable metadata.
    #[error("{0}")]
    Invalid(String),
}

/// What the SP needs from the IdP's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpMetadata {
    /// `entityID`: the `Issuer` of its responses.
    pub entity_id: String,
    /// The HTTP-POST `SingleSignOnService` location.
    pub sso_post: String,
    /// The `SingleLogoutService` as (binding, location), if offered: the
    /// HTTP-POST one if there is one, else the HTTP-Redirect one.
    pub slo: Option<(String, String)>,
    /// Signing certificates (DER): `KeyDescriptor` with `use="signing"` or
    /// without `use`.
    pub signing_certs: Vec<Vec<u8>>,
    /// `validUntil`, if given.
    pub valid_until: Option<SystemTime>,
}

impl IdpMetadata {
    /// Parses `xml` (one `md:EntityDescriptor` with an
    /// `IDPSSODescriptor`). With `pinned` certificates, the descriptor
    /// must carry a signature that verifies with one of them, and only
    /// the signed bytes are read. Metadata past its `validUntil` at `now`
    /// is refused.
    pub fn parse(
        xml: &[u8],
        pinned: Option<&[Vec<u8>]>,
        now: SystemTime,
    ) -> Result<Self, MetadataError> {
        let doc = Doc::parse(xml)?;
        let bytes = match pinned {
            Some(certs) => {
                let certs: Vec<&[u8]> = certs.iter().map(Vec::as_slice).collect();
                doc.verify(MD_NS, "EntityDescriptor", &certs)?
            }
            None => xml.to_vec(),
        };
        let view = parse(&bytes).map_err(MetadataError::Invalid)?;
        let root = view.root_element();
        if !is(root, MD_NS, "EntityDescriptor") {
            return Err(MetadataError::Invalid(format!(
                "root element is {}, not md:EntityDescriptor (an aggregate needs the IdP's own descriptor)",
                root.tag_name().name()
            )));
        }
        let entity_id = root
            .attribute("entityID")
            .filter(|e| !e.is_empty())
            .ok_or_else(|| MetadataError::Invalid("no entityID".into()))?
            .to_owned();
        let valid_until = match root.attribute("validUntil") {
            Some(v) => Some(parse_datetime(v).ok_or_else(|| {
                MetadataError::Invalid(format!("validUntil `{v}` is not a date"))
            })?),
            None => None,
        };
        if valid_until.is_some_and(|v| v <= now) {
            return Err(MetadataError::Invalid(
                "metadata expired (validUntil is past)".into(),
            ));
        }
        let idp = only_child(root, MD_NS, "IDPSSODescriptor").ok_or_else(|| {
            MetadataError::Invalid("no (or more than one) IDPSSODescriptor".into())
        })?;
        let sso_post = children(idp, MD_NS, "SingleSignOnService")
            .find(|s| s.attribute("Binding") == Some(BINDING_POST))
            .and_then(|s| s.attribute("Location"))
            .ok_or_else(|| MetadataError::Invalid("no HTTP-POST SingleSignOnService".into()))?
            .to_owned();
        // HTTP-POST first (what the SP speaks), else HTTP-Redirect.
        let slo_services: Vec<(&str, &str)> = children(idp, MD_NS, "SingleLogoutService")
            .filter_map(|s| Some((s.attribute("Binding")?, s.attribute("Location")?)))
            .collect();
        let slo = [BINDING_POST, BINDING_REDIRECT]
            .iter()
            .find_map(|want| slo_services.iter().find(|(b, _)| b == want))
            .map(|(b, l)| ((*b).to_owned(), (*l).to_owned()));
        let signing_certs = certificates(idp, "signing")?;
        if signing_certs.is_empty() {
            return Err(MetadataError::Invalid(
                "no signing certificate in the IDPSSODescriptor".into(),
            ));
        }
        Ok(Self {
            entity_id,
            sso_post,
            slo,
            signing_certs,
            valid_until,
        })
    }
}

/// DER certificates of the `KeyDescriptor`s for `usage` (or without `use`).
fn certificates(role: roxmltree::Node<'_, '_>, usage: &str) -> Result<Vec<Vec<u8>>, MetadataError> {
    let mut out = Vec::new();
    for kd in children(role, MD_NS, "KeyDescriptor") {
        if kd.attribute("use").is_some_and(|u| u != usage) {
            continue;
        }
        for c in kd
            .descendants()
            .filter(|n| is(*n, DSIG_NS, "X509Certificate"))
        {
            let b64: String = text(c)
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            let der = B64
                .decode(b64.as_bytes())
                .map_err(|_| MetadataError::Invalid("X509Certificate is not base64".into()))?;
            out.push(der);
        }
    }
    Ok(out)
}

/// This SP's metadata.
#[derive(Debug, Clone)]
pub struct SpMetadata<'a> {
    /// `entityID`.
    pub entity_id: &'a str,
    /// The ACS URL (HTTP-POST).
    pub acs_url: &'a str,
    /// The SLO URL (HTTP-POST), if the SP offers Single Logout.
    pub slo_url: Option<&'a str>,
    /// The certificate of the AuthnRequest signing key (DER).
    pub signing_cert: &'a [u8],
    /// The certificate of the assertion decryption key (DER), if assertions
    /// are encrypted to this SP.
    pub encryption_cert: Option<&'a [u8]>,
    /// Organization name and URL, if given.
    pub organization: Option<(&'a str, &'a str)>,
    /// A technical contact e-mail, if given.
    pub contact: Option<&'a str>,
}

impl SpMetadata<'_> {
    /// The `md:EntityDescriptor` XML.
    pub fn to_xml(&self) -> String {
        let cert = |c: &[u8]| {
            format!(
                "<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>",
                B64.encode(c)
            )
        };
        let mut x = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <md:EntityDescriptor xmlns:md=\"{MD_NS}\" xmlns:ds=\"{DSIG_NS}\" entityID=\"{}\">\n\
             <md:SPSSODescriptor AuthnRequestsSigned=\"true\" WantAssertionsSigned=\"true\" \
             protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\n\
             <md:KeyDescriptor use=\"signing\">{}</md:KeyDescriptor>\n",
            esc(self.entity_id),
            cert(self.signing_cert)
        );
        if let Some(enc) = self.encryption_cert {
            x.push_str(&format!(
                "<md:KeyDescriptor use=\"encryption\">{}",
                cert(enc)
            ));
            for alg in [
                "http://www.w3.org/2009/xmlenc11#aes256-gcm",
                "http://www.w3.org/2009/xmlenc11#aes128-gcm",
                "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
                "http://www.w3.org/2009/xmlenc11#rsa-oaep",
                "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
            ] {
                x.push_str(&format!("<md:EncryptionMethod Algorithm=\"{alg}\"/>"));
            }
            x.push_str("</md:KeyDescriptor>\n");
        }
        if let Some(slo) = self.slo_url {
            x.push_str(&format!(
                "<md:SingleLogoutService Binding=\"{BINDING_POST}\" Location=\"{}\"/>\n",
                esc(slo)
            ));
        }
        x.push_str(&format!(
            "<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:transient</md:NameIDFormat>\n\
             <md:AssertionConsumerService Binding=\"{BINDING_POST}\" Location=\"{}\" index=\"0\" isDefault=\"true\"/>\n\
             </md:SPSSODescriptor>\n",
            esc(self.acs_url)
        ));
        if let Some((name, url)) = self.organization {
            x.push_str(&format!(
                "<md:Organization><md:OrganizationName xml:lang=\"de\">{n}</md:OrganizationName>\
                 <md:OrganizationDisplayName xml:lang=\"de\">{n}</md:OrganizationDisplayName>\
                 <md:OrganizationURL xml:lang=\"de\">{u}</md:OrganizationURL></md:Organization>\n",
                n = esc(name),
                u = esc(url)
            ));
        }
        if let Some(mail) = self.contact {
            x.push_str(&format!(
                "<md:ContactPerson contactType=\"technical\"><md:EmailAddress>mailto:{}</md:EmailAddress></md:ContactPerson>\n",
                esc(mail)
            ));
        }
        x.push_str("</md:EntityDescriptor>\n");
        x
    }
}
