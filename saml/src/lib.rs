//! SAML 2.0 for a service provider (SP): what stadttor needs to log
//! citizens in through BundID (DeutschlandID), Mein Unternehmenskonto and
//! other SAML identity providers, with its keys in a TPM or HSM.
//!
//! ```text
//! request   build an AuthnRequest, sign it (enveloped XML-DSig, exclusive
//!           C14N by libxml2, the signature by an `hsm` key: RSA-PSS or ECDSA)
//! response  verify and decrypt a Response: libxmlsec1 verifies, the RSA
//!           key transport is unwrapped by an `hsm` DecryptingKey, and only
//!           the bytes a verified digest covers are read (signature wrapping)
//! logout    Single Logout: sign LogoutRequests and LogoutResponses, read
//!           the IdP's (signature required, only the signed bytes read)
//! metadata  read IdP metadata (optionally verified with a pinned
//!           certificate), write the SP's metadata for onboarding
//! profile   BundID/MUK specifics: the akdb request extension, attribute
//!           OIDs, STORK-QAA levels
//! xmlsec    the safe wrapper of the C shim over libxml2 + libxmlsec1
//! ```
//!
//! No HTTP, no async runtime, no cookies: the gateway carries messages in
//! and out and decides what a verified assertion means. XML signatures
//! and decryption are libxmlsec1's (Debian `libxmlsec1-openssl`); this
//! crate adds the SAML rules around them and never canonicalises or
//! verifies a signature itself.

pub mod logout;
pub mod metadata;
pub mod profile;
pub mod request;
pub mod response;
mod text;
pub mod xmlsec;

pub use metadata::{IdpMetadata, MetadataError, SpMetadata};
pub use request::{AuthnRequest, Comparison, RequestError, SignedMessage};
pub use response::{Assertion, Attribute, Expect, Refused};
pub use xmlsec::{XmlError, XmlErrorKind};

/// SAML 2.0 assertion namespace.
pub const SAML_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// SAML 2.0 protocol namespace.
pub const SAMLP_NS: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// SAML 2.0 metadata namespace.
pub const MD_NS: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
/// XML-DSig namespace.
pub const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// XML Encryption namespace.
pub const XENC_NS: &str = "http://www.w3.org/2001/04/xmlenc#";
/// XML Encryption 1.1 namespace.
pub const XENC11_NS: &str = "http://www.w3.org/2009/xmlenc11#";
/// The HTTP-POST binding.
pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
/// The HTTP-Redirect binding.
pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
