//! Profiles: what BundID (DeutschlandID), Mein Unternehmenskonto (MUK)
//! and generic SAML IdPs expect in a request and send in a response.
//!
//! BundID and MUK (sources in docs/IDENTITY.md): the request carries
//! `<akdb:AuthenticationRequest Version="2">` (namespace
//! `https://www.akdb.de/request/2018/09`) in `samlp:Extensions`, with the
//! attributes wanted by OID, the allowed authentication methods and the
//! display information assigned at onboarding; the level is asked as
//! `RequestedAuthnContext Comparison="minimum"` with `STORK-QAA-Level-n`.
//! Levels: STORK-QAA-Level-1 (user name and password) is below eIDAS low,
//! Level-2 is not used, Level-3 (ELSTER certificate) is substantial,
//! Level-4 (eID card, eAT, EU eID) is high.

use crate::text::esc;

/// The akdb request namespace.
pub const AKDB_NS: &str = "https://www.akdb.de/request/2018/09";
/// The namespace of `DisplayInformation`'s children.
pub const AKDB_CLASSIC_UI_NS: &str = "https://www.akdb.de/request/2018/09/classic-ui/v1";

/// Which IdP family a provider talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// BundID / DeutschlandID (citizens).
    BundId,
    /// Mein Unternehmenskonto (companies, through ELSTER).
    Muk,
    /// Any other SAML 2.0 IdP (Land accounts, ADFS, Keycloak, ...).
    Generic,
}

/// BundID/MUK levels, lowest first, and the eIDAS level each reaches
/// (`None`: below low).
pub const STORK_LEVELS: [(&str, Option<&str>); 4] = [
    ("STORK-QAA-Level-1", None),
    ("STORK-QAA-Level-2", Some("low")),
    ("STORK-QAA-Level-3", Some("substantial")),
    ("STORK-QAA-Level-4", Some("high")),
];

/// Well-known BundID attribute OIDs and the short names the gateway uses.
pub const BUNDID_ATTRIBUTES: [(&str, &str); 13] = [
    ("bpk2", "urn:oid:1.3.6.1.4.1.25484.494450.3"),
    ("given_name", "urn:oid:2.5.4.42"),
    ("family_name", "urn:oid:2.5.4.4"),
    ("email", "urn:oid:0.9.2342.19200300.100.1.3"),
    ("birthdate", "urn:oid:1.2.40.0.10.2.1.1.55"),
    ("place_of_birth", "urn:oid:1.3.6.1.5.5.7.9.2"),
    ("birth_name", "urn:oid:1.2.40.0.10.2.1.1.225566"),
    ("street_address", "urn:oid:2.5.4.16"),
    ("postal_code", "urn:oid:2.5.4.17"),
    ("locality", "urn:oid:2.5.4.7"),
    ("country", "urn:oid:1.2.40.0.10.2.1.1.225599"),
    ("title", "urn:oid:0.9.2342.19200300.100.1.40"),
    ("level", "urn:oid:1.2.40.0.10.2.1.1.261.94"),
];

/// The OID URN of a BundID short attribute name (or the name itself if
/// it already is a URN).
pub fn bundid_attribute(short: &str) -> Option<&'static str> {
    BUNDID_ATTRIBUTES
        .iter()
        .find(|(s, _)| *s == short)
        .map(|(_, oid)| *oid)
}

/// The short name of a BundID attribute OID URN.
pub fn bundid_short_name(oid: &str) -> Option<&'static str> {
    BUNDID_ATTRIBUTES
        .iter()
        .find(|(_, o)| *o == oid)
        .map(|(s, _)| *s)
}

/// The contents of BundID/MUK's request extension.
#[derive(Debug, Clone, Default)]
pub struct AkdbRequest<'a> {
    /// Attribute OID URNs wanted; each marked required.
    pub attributes: &'a [String],
    /// Allowed methods (`eID`, `Elster`, `eIDAS`, `Benutzername`, ...);
    /// empty: the IdP's default.
    pub methods: &'a [String],
    /// `OrganizationDisplayName` shown at the IdP.
    pub organization_display_name: Option<&'a str>,
    /// The `OnlineServiceId` assigned at onboarding.
    pub online_service_id: Option<&'a str>,
}

impl AkdbRequest<'_> {
    /// `<akdb:AuthenticationRequest Version="2">…`, declaring its namespaces.
    pub fn to_xml(&self) -> String {
        let mut x = format!("<akdb:AuthenticationRequest xmlns:akdb=\"{AKDB_NS}\" Version=\"2\">");
        if !self.methods.is_empty() {
            x.push_str("<akdb:AuthnMethods>");
            for m in self.methods {
                x.push_str(&format!(
                    "<akdb:{m}><akdb:Enabled>true</akdb:Enabled></akdb:{m}>",
                    m = esc(m)
                ));
            }
            x.push_str("</akdb:AuthnMethods>");
        }
        if !self.attributes.is_empty() {
            x.push_str("<akdb:RequestedAttributes>");
            for a in self.attributes {
                x.push_str(&format!(
                    "<akdb:RequestedAttribute Name=\"{}\" RequiredAttribute=\"true\"/>",
                    esc(a)
                ));
            }
            x.push_str("</akdb:RequestedAttributes>");
        }
        if self.organization_display_name.is_some() || self.online_service_id.is_some() {
            x.push_str(&format!(
                "<akdb:DisplayInformation><classic-ui:Version xmlns:classic-ui=\"{AKDB_CLASSIC_UI_NS}\">"
            ));
            if let Some(n) = self.organization_display_name {
                x.push_str(&format!(
                    "<classic-ui:OrganizationDisplayName>{}</classic-ui:OrganizationDisplayName>",
                    esc(n)
                ));
            }
            if let Some(id) = self.online_service_id {
                x.push_str(&format!(
                    "<classic-ui:OnlineServiceId>{}</classic-ui:OnlineServiceId>",
                    esc(id)
                ));
            }
            x.push_str("</classic-ui:Version></akdb:DisplayInformation>");
        }
        x.push_str("</akdb:AuthenticationRequest>");
        x
    }
}
