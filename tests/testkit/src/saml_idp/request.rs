//! The test SP's AuthnRequest: its XML ([`AuthnRequestSpec`]) and its
//! enveloped signature, made without the IdP's code: `xmlsec1 --sign` for
//! rsa-sha256 (and rsa-sha1, for refusal tests), and for RSA-PSS
//! (`xmldsig-more#sha256-rsa-MGF1`, which Debian 12's xmlsec1 cannot make)
//! `xmllint --exc-c14n` plus `openssl dgst -sigopt rsa_padding_mode:pss
//! -sigopt rsa_pss_saltlen:32` ([`pss_signature`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::{pem_body, utc_timestamp, SamlIdp, SpKeys, AKDB_NS, BPK2, GIVEN_NAME, SURNAME};
use crate::{require_tool, TempDir};

/// XML-DSig `SignatureMethod` and `DigestMethod` URIs of request signatures.
pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32 (RFC 6931), as BundID wants it.
pub const RSA_PSS_SHA256: &str = "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1";
pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
pub const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
const DS_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// What a test AuthnRequest asks for.
#[derive(Clone, Debug)]
pub struct AuthnRequestSpec {
    pub id: String,
    /// `STORK-QAA-Level-N`, `Comparison="minimum"`; `None`: no context.
    pub min_level: Option<String>,
    /// OIDs for `akdb:RequestedAttributes`; empty: no akdb extension.
    pub attributes: Vec<String>,
    pub force_authn: bool,
}

impl AuthnRequestSpec {
    /// A BundID-style request: bPK2, given name and surname, at `level`.
    pub fn bundid(level: &str) -> Self {
        Self {
            id: format!(
                "_req{}",
                crate::oidc::random_token(12).replace(['-', '_'], "x")
            ),
            min_level: Some(level.to_owned()),
            attributes: vec![BPK2.into(), GIVEN_NAME.into(), SURNAME.into()],
            force_authn: false,
        }
    }
}

/// How a test AuthnRequest is signed.
#[derive(Clone, Copy, Debug)]
pub struct RequestSignature<'a> {
    /// `SignatureMethod`: [`RSA_PSS_SHA256`] is made with openssl, any
    /// other with `xmlsec1 --sign`.
    pub method: &'static str,
    /// `DigestMethod`: [`SHA256`] or [`SHA1`].
    pub digest: &'static str,
    /// PEM private key (PKCS#8, RSA).
    pub key: &'a Path,
    /// A certificate for `ds:KeyInfo` (RSA-PSS only); the IdP must ignore
    /// it and take the key from the SP metadata.
    pub key_info_cert: Option<&'a Path>,
}

impl<'a> RequestSignature<'a> {
    /// RSA-PSS with SHA-256 by the SP's signing key, its certificate in KeyInfo.
    pub fn pss(sp: &'a SpKeys) -> Self {
        Self {
            method: RSA_PSS_SHA256,
            digest: SHA256,
            key: &sp.signing_key,
            key_info_cert: Some(&sp.signing_cert),
        }
    }

    /// rsa-sha256 with a SHA-256 digest by `key` (`xmlsec1 --sign`).
    pub fn rsa_sha256(key: &'a Path) -> Self {
        Self {
            method: RSA_SHA256,
            digest: SHA256,
            key,
            key_info_cert: None,
        }
    }
}

/// The AuthnRequest XML for `spec`, `sig` inserted right after `saml:Issuer`.
pub(super) fn authn_request_xml(
    sp: &SpKeys,
    idp: &SamlIdp,
    spec: &AuthnRequestSpec,
    sig: &str,
) -> String {
    let context = spec.min_level.as_ref().map_or(String::new(), |l| {
        format!("<samlp:RequestedAuthnContext Comparison=\"minimum\"><saml:AuthnContextClassRef>{l}</saml:AuthnContextClassRef></samlp:RequestedAuthnContext>")
    });
    let extension = if spec.attributes.is_empty() {
        String::new()
    } else {
        let attrs: String = spec
            .attributes
            .iter()
            .map(|a| format!("<akdb:RequestedAttribute Name=\"{a}\" RequiredAttribute=\"true\"/>"))
            .collect();
        format!(
            "<samlp:Extensions><akdb:AuthenticationRequest xmlns:akdb=\"{AKDB_NS}\" Version=\"2\">\
             <akdb:AuthnMethods><akdb:eID><akdb:Enabled>true</akdb:Enabled></akdb:eID>\
             <akdb:Elster><akdb:Enabled>true</akdb:Enabled></akdb:Elster></akdb:AuthnMethods>\
             <akdb:RequestedAttributes>{attrs}</akdb:RequestedAttributes>\
             <akdb:DisplayInformation><classic-ui:Version xmlns:classic-ui=\"{AKDB_NS}/classic-ui/v1\">\
             <classic-ui:OrganizationDisplayName>Stadt Musterstadt</classic-ui:OrganizationDisplayName>\
             <classic-ui:OnlineServiceId>test-service</classic-ui:OnlineServiceId></classic-ui:Version>\
             </akdb:DisplayInformation></akdb:AuthenticationRequest></samlp:Extensions>"
        )
    };
    format!(
        "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" \
         ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{instant}\" Destination=\"{dest}\" AssertionConsumerServiceURL=\"{acs}\" \
         ProtocolBinding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" ForceAuthn=\"{force}\">\
         <saml:Issuer>{issuer}</saml:Issuer>{sig}{extension}{context}</samlp:AuthnRequest>",
        id = spec.id,
        instant = utc_timestamp(0),
        dest = idp.sso_url(),
        acs = sp.acs_url,
        force = spec.force_authn,
        issuer = sp.entity_id,
    )
}

/// The request for `spec` signed as `sig` says.
pub(super) fn sign_authn_request(
    sp: &SpKeys,
    idp: &SamlIdp,
    spec: &AuthnRequestSpec,
    sig: &RequestSignature,
) -> String {
    if sig.method == RSA_PSS_SHA256 {
        // Line breaks around the signature: the enveloped-signature
        // transform must keep the text that follows it (both stay signed).
        let unsigned = authn_request_xml(sp, idp, spec, "\n\n");
        let signature = pss_signature(&unsigned, &spec.id, sig);
        return unsigned.replacen(
            "</saml:Issuer>\n\n",
            &format!("</saml:Issuer>\n{signature}\n"),
            1,
        );
    }
    let template = format!(
        "<ds:Signature xmlns:ds=\"{DS_NS}\">{}<ds:SignatureValue/></ds:Signature>",
        signed_info(sig.method, &spec.id, sig.digest, "")
    );
    let xml = authn_request_xml(sp, idp, spec, &template);
    let dir = TempDir::new("authnreq");
    let input = dir.write("req.xml", &xml);
    let out = run(Command::new(require_tool("xmlsec1", "xmlsec1"))
        .args(["--sign", "--privkey-pem"])
        .arg(sig.key)
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:protocol:AuthnRequest",
        ])
        .arg(&input));
    String::from_utf8(out).unwrap()
}

/// `ds:SignedInfo` (prefix `ds`, namespace declared by the caller):
/// exc-c14n, `method`, one Reference to `#ref_id` with the enveloped and
/// exc-c14n transforms, `digest` and `digest_value` (empty for xmlsec1).
fn signed_info(method: &str, ref_id: &str, digest: &str, digest_value: &str) -> String {
    format!(
        "<ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"/>\
         <ds:SignatureMethod Algorithm=\"{method}\"/>\
         <ds:Reference URI=\"#{ref_id}\"><ds:Transforms>\
         <ds:Transform Algorithm=\"{ENVELOPED}\"/><ds:Transform Algorithm=\"{EXC_C14N}\"/></ds:Transforms>\
         <ds:DigestMethod Algorithm=\"{digest}\"/><ds:DigestValue>{digest_value}</ds:DigestValue></ds:Reference>\
         </ds:SignedInfo>"
    )
}

/// A `ds:Signature` (RSA-PSS SHA-256, salt 32) by `sig.key` whose Reference
/// names `#ref_id`. `referenced_xml` is that element on its own, as the
/// enveloped-signature transform leaves it (without this signature), and
/// declaring every namespace it uses: its exclusive C14N is then the same
/// alone as in the document. The digest is over `xmllint --exc-c14n` of it;
/// the SignedInfo is canonicalised the same way (alone, `xmlns:ds` on it,
/// as exclusive C14N renders it in place) and signed by `openssl dgst`.
pub fn pss_signature(referenced_xml: &str, ref_id: &str, sig: &RequestSignature) -> String {
    let dir = TempDir::new("psssig");
    let digest_alg = match sig.digest {
        SHA256 => "-sha256",
        SHA1 => "-sha1",
        other => panic!("no openssl digest for DigestMethod {other}"),
    };
    let openssl = require_tool("openssl", "openssl");
    let referenced = exc_c14n(&dir, "referenced", referenced_xml);
    let digest = run(Command::new(&openssl)
        .args(["dgst", digest_alg, "-binary"])
        .arg(&referenced));
    let signed_info = signed_info(sig.method, ref_id, sig.digest, &B64.encode(digest));
    let alone = signed_info.replacen(
        "<ds:SignedInfo>",
        &format!("<ds:SignedInfo xmlns:ds=\"{DS_NS}\">"),
        1,
    );
    let signed_info_c14n = exc_c14n(&dir, "signedinfo", &alone);
    let value = run(Command::new(&openssl)
        .args(["dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss"])
        .args(["-sigopt", "rsa_pss_saltlen:32", "-sign"])
        .arg(sig.key)
        .arg(&signed_info_c14n));
    let key_info = sig.key_info_cert.map_or(String::new(), |cert| {
        format!(
            "<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>",
            pem_body(cert)
        )
    });
    format!(
        "<ds:Signature xmlns:ds=\"{DS_NS}\">{signed_info}<ds:SignatureValue>{}</ds:SignatureValue>{key_info}</ds:Signature>",
        B64.encode(value)
    )
}

/// `xmllint --exc-c14n` of `xml`, written to `DIR/NAME.c14n`.
fn exc_c14n(dir: &TempDir, name: &str, xml: &str) -> PathBuf {
    let input = dir.write(&format!("{name}.xml"), xml);
    let out = run(Command::new(require_tool("xmllint", "libxml2-utils"))
        .arg("--exc-c14n")
        .arg(&input));
    let path = dir.path().join(format!("{name}.c14n"));
    std::fs::write(&path, out).unwrap();
    path
}

/// Runs `cmd`; its stdout, or a panic with its stderr.
fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
