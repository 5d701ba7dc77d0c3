//! Building and signing the SP's messages: the AuthnRequest (and, with
//! the same signer, any other protocol message), for the HTTP-POST binding.
//!
//! The signature is an enveloped XML-DSig over the message's `ID`,
//! exclusive C14N (libxml2's, through `xmlsec::Doc::c14n`), SHA-256
//! digest, signed by an `hsm` key: RSA keys sign RSA-PSS SHA-256
//! (`xmldsig-more#sha256-rsa-MGF1`, what BundID asks for), P-256/P-384
//! keys ECDSA (`xmldsig-more#ecdsa-sha256/384`, the signature as r‖s).
//!
//! How: the message is written without a signature and canonicalised (the
//! enveloped transform of the signed message yields exactly these bytes,
//! since the signature is inserted as one element after the `Issuer`, with
//! no whitespace around it); `SignedInfo` is written with that digest,
//! canonicalised on its own (exclusive C14N renders only the `ds`
//! namespace it uses, as it does in place) and signed.

use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use stadttor_hsm::{Algorithm, SigningKey};

use crate::text::{datetime, esc, new_id};
use crate::xmlsec::{Doc, XmlError};
use crate::{BINDING_POST, DSIG_NS, SAMLP_NS, SAML_NS};

/// `RequestedAuthnContext/@Comparison`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// At least the named context (BundID).
    Minimum,
    /// Exactly the named contexts.
    Exact,
}

/// What an AuthnRequest asks for.
#[derive(Debug, Clone)]
pub struct AuthnRequest {
    /// The IdP's SSO endpoint (`Destination`).
    pub destination: String,
    /// This SP's entity ID (`Issuer`).
    pub sp_entity_id: String,
    /// This SP's ACS URL (HTTP-POST binding).
    pub acs_url: String,
    /// Ask for a fresh authentication (step-up).
    pub force_authn: bool,
    /// `RequestedAuthnContext`: comparison and class references.
    pub authn_context: Option<(Comparison, Vec<String>)>,
    /// `samlp:Extensions` content (a profile's request extension), as XML
    /// that declares its own namespaces.
    pub extensions: Option<String>,
    /// `NameIDPolicy/@Format`, if any.
    pub name_id_format: Option<String>,
}

/// A signed message, ready for the HTTP-POST binding.
#[derive(Debug, Clone)]
pub struct SignedMessage {
    /// The message's `ID` (keep it: the Response must answer it).
    pub id: String,
    /// The signed XML.
    pub xml: String,
}

impl SignedMessage {
    /// The XML, base64-encoded for the `SAMLRequest` form field.
    pub fn base64(&self) -> String {
        B64.encode(self.xml.as_bytes())
    }
}

/// Why a message could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The key's algorithm has no XML-DSig identifier here (Ed25519).
    #[error("key algorithm {0} cannot sign SAML messages (use an RSA or ECDSA P-256/P-384 key)")]
    Algorithm(Algorithm),
    /// The key failed.
    #[error("signing key: {0}")]
    Key(#[from] stadttor_hsm::Error),
    /// Canonicalisation failed.
    #[error("canonicalisation: {0}")]
    Xml(#[from] XmlError),
    /// An ECDSA signature that is not DER.
    #[error("malformed ECDSA signature from the key")]
    EcdsaDer,
}

/// The XML-DSig SignatureMethod of `alg`, and the ECDSA scalar size.
pub fn signature_method(alg: Algorithm) -> Result<(&'static str, Option<usize>), RequestError> {
    match alg {
        Algorithm::RsaPssSha256 => Ok((
            "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1",
            None,
        )),
        Algorithm::EcdsaP256Sha256 => Ok((
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
            Some(32),
        )),
        Algorithm::EcdsaP384Sha384 => Ok((
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
            Some(48),
        )),
        other => Err(RequestError::Algorithm(other)),
    }
}

impl AuthnRequest {
    /// The unsigned request with `id` at `now`; `{SIG}` marks where the
    /// signature goes (after the Issuer).
    fn unsigned(&self, id: &str, now: SystemTime) -> String {
        let force = if self.force_authn {
            " ForceAuthn=\"true\""
        } else {
            ""
        };
        let mut x = format!(
            "<samlp:AuthnRequest xmlns:samlp=\"{SAMLP_NS}\" xmlns:saml=\"{SAML_NS}\" \
             AssertionConsumerServiceURL=\"{}\" Destination=\"{}\"{force} ID=\"{id}\" \
             IssueInstant=\"{}\" ProtocolBinding=\"{BINDING_POST}\" Version=\"2.0\">\
             <saml:Issuer>{}</saml:Issuer>{{SIG}}",
            esc(&self.acs_url),
            esc(&self.destination),
            datetime(now),
            esc(&self.sp_entity_id),
        );
        if let Some(ext) = &self.extensions {
            x.push_str("<samlp:Extensions>");
            x.push_str(ext);
            x.push_str("</samlp:Extensions>");
        }
        if let Some(f) = &self.name_id_format {
            x.push_str(&format!(
                "<samlp:NameIDPolicy AllowCreate=\"true\" Format=\"{}\"/>",
                esc(f)
            ));
        }
        if let Some((cmp, refs)) = &self.authn_context {
            let cmp = match cmp {
                Comparison::Minimum => "minimum",
                Comparison::Exact => "exact",
            };
            x.push_str(&format!(
                "<samlp:RequestedAuthnContext Comparison=\"{cmp}\">"
            ));
            for r in refs {
                x.push_str(&format!(
                    "<saml:AuthnContextClassRef>{}</saml:AuthnContextClassRef>",
                    esc(r)
                ));
            }
            x.push_str("</samlp:RequestedAuthnContext>");
        }
        x.push_str("</samlp:AuthnRequest>");
        x
    }

    /// The request, signed by `key`, with the signing certificate (DER)
    /// in `KeyInfo` when given.
    pub fn sign(
        &self,
        key: &dyn SigningKey,
        cert: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<SignedMessage, RequestError> {
        let id = new_id();
        let template = self.unsigned(&id, now);
        let xml = sign_enveloped(&template, &id, key, cert)?;
        Ok(SignedMessage { id, xml })
    }
}

/// Signs `template` (a message whose root has `ID="id"` and a `{SIG}`
/// marker right after its Issuer) with `key`.
pub fn sign_enveloped(
    template: &str,
    id: &str,
    key: &dyn SigningKey,
    cert: Option<&[u8]>,
) -> Result<String, RequestError> {
    let (method, ec_size) = signature_method(key.algorithm())?;
    let unsigned = template.replacen("{SIG}", "", 1);
    let c14n = Doc::parse(unsigned.as_bytes())?.c14n()?;
    let digest = B64.encode(ring::digest::digest(&ring::digest::SHA256, &c14n));
    let signed_info = format!(
        "<ds:SignedInfo xmlns:ds=\"{DSIG_NS}\">\
         <ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>\
         <ds:SignatureMethod Algorithm=\"{method}\"/>\
         <ds:Reference URI=\"#{id}\"><ds:Transforms>\
         <ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
         <ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>\
         </ds:Transforms>\
         <ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>\
         <ds:DigestValue>{digest}</ds:DigestValue></ds:Reference></ds:SignedInfo>"
    );
    let si_c14n = Doc::parse(signed_info.as_bytes())?.c14n()?;
    let raw = key.sign(&si_c14n)?;
    let value = match ec_size {
        Some(n) => ecdsa_der_to_raw(&raw, n).ok_or(RequestError::EcdsaDer)?,
        None => raw,
    };
    // In place the SignedInfo inherits `ds` from Signature; its own
    // declaration is then redundant and exclusive C14N renders it the same.
    let signed_info_inner = signed_info.replacen(&format!(" xmlns:ds=\"{DSIG_NS}\""), "", 1);
    let key_info = cert
        .map(|c| format!("<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>", B64.encode(c)))
        .unwrap_or_default();
    let signature = format!(
        "<ds:Signature xmlns:ds=\"{DSIG_NS}\">{signed_info_inner}<ds:SignatureValue>{}</ds:SignatureValue>{key_info}</ds:Signature>",
        B64.encode(value)
    );
    Ok(template.replacen("{SIG}", &signature, 1))
}

/// DER `ECDSA-Sig-Value` to XML-DSig's fixed-size r‖s.
fn ecdsa_der_to_raw(der: &[u8], n: usize) -> Option<Vec<u8>> {
    fn int(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let (&tag, rest) = b.split_first()?;
        let (&len, rest) = rest.split_first()?;
        if tag != 0x02 || len & 0x80 != 0 || rest.len() < len as usize {
            return None;
        }
        Some(rest.split_at(len as usize))
    }
    let (&tag, rest) = der.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (len, body) = match rest.split_first()? {
        (&l, b) if l & 0x80 == 0 => (l as usize, b),
        (&0x81, b) => (*b.first()? as usize, b.get(1..)?),
        _ => return None,
    };
    if body.len() != len {
        return None;
    }
    let (r, rest) = int(body)?;
    let (s, rest) = int(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let mut out = vec![0u8; 2 * n];
    for (i, v) in [r, s].into_iter().enumerate() {
        let v = match v.iter().position(|&x| x != 0) {
            Some(p) => &v[p..],
            None => &[][..],
        };
        if v.len() > n {
            return None;
        }
        out[i * n + n - v.len()..(i + 1) * n].copy_from_slice(v);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_der_converts_with_and_without_leading_zeros() {
        // r = 0x00ff (positive, DER needs the zero), s = 0x01
        let der = [0x30, 0x07, 0x02, 0x02, 0x00, 0xff, 0x02, 0x01, 0x01];
        let raw = ecdsa_der_to_raw(&der, 4).unwrap();
        assert_eq!(raw, vec![0, 0, 0, 0xff, 0, 0, 0, 1]);
        assert!(ecdsa_der_to_raw(&der[..8], 4).is_none());
    }
}
