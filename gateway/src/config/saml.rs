//! `[[identity.providers]]` with `protocol = "saml"`: a SAML 2.0 IdP
//! (BundID/DeutschlandID, Mein Unternehmenskonto, or a generic one) and
//! this gateway as its service provider. Validation only; the runtime
//! side is `crate::authn::saml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stadttor_hsm::KeyRef;
use stadttor_saml::profile::{self, Profile};

use super::identity::{raw, url_path, KeyRefParser};
use crate::identity::Level;

/// One SAML identity provider and this SP's settings for it.
#[derive(Debug, Clone)]
pub struct SamlProvider {
    /// Short name, used in URLs (`/.stadttor/acs/NAME`) and config.
    pub name: String,
    /// Name shown to citizens (German).
    pub display_name: String,
    /// Name shown in English, if different.
    pub display_name_en: Option<String>,
    /// BundID, MUK or generic.
    pub profile: Profile,
    /// The IdP's metadata (entity ID, SSO endpoint, signing certificates);
    /// with `idp_metadata_url` the last verified copy fetched from there.
    pub idp_metadata_file: Option<PathBuf>,
    /// Where the IdP publishes its metadata; fetched at start and every
    /// `idp_metadata_refresh`, used only if signed by
    /// `idp_metadata_certificate`.
    pub idp_metadata_url: Option<String>,
    /// How often the metadata URL is fetched again.
    pub idp_metadata_refresh: std::time::Duration,
    /// If set, the metadata must be signed by this certificate (PEM);
    /// required with `idp_metadata_url`.
    pub idp_metadata_certificate: Option<PathBuf>,
    /// CA bundle for the metadata URL's TLS; `None`: the system roots.
    pub ca: Option<PathBuf>,
    /// Allow a plain `http://` metadata URL (tests only).
    pub allow_http: bool,
    /// Each metadata fetch.
    pub request_timeout: std::time::Duration,
    /// This SP's entity ID.
    pub entity_id: String,
    /// This SP's ACS URL, path `/.stadttor/acs/NAME`.
    pub acs_url: String,
    /// Signs AuthnRequests (RSA: RSA-PSS SHA-256; P-256/P-384: ECDSA).
    pub signing_key: KeyRef,
    /// The signing key's certificate (PEM), published in the SP metadata.
    pub signing_certificate: PathBuf,
    /// Decrypts assertions (RSA-OAEP key transport): an RSA key.
    pub decryption_key: Option<KeyRef>,
    /// The decryption key's certificate (PEM), published in the metadata.
    pub decryption_certificate: Option<PathBuf>,
    /// Attribute names (URNs) to request; a route sees only what it maps.
    pub attributes: Vec<String>,
    /// The attribute that is the session's subject; `None`: the NameID.
    pub subject_attribute: Option<String>,
    /// BundID/MUK `AuthnMethods` to offer (`eID`, `Elster`, ...).
    pub authn_methods: Vec<String>,
    /// BundID/MUK `DisplayInformation/OrganizationDisplayName`.
    pub organization_display_name: Option<String>,
    /// BundID/MUK `DisplayInformation/OnlineServiceId` (from onboarding).
    pub online_service_id: Option<String>,
    /// `AuthnContextClassRef` → level.
    pub acr: BTreeMap<String, Level>,
}

impl SamlProvider {
    /// The level an `AuthnContextClassRef` stands for.
    pub fn level_of(&self, class_ref: &str) -> Option<Level> {
        self.acr.get(class_ref).copied()
    }

    /// The lowest class reference that reaches `level`.
    pub fn class_ref_for(&self, level: Level) -> Option<&str> {
        self.acr
            .iter()
            .filter(|(_, l)| **l >= level)
            .min_by_key(|(_, l)| **l)
            .map(|(a, _)| a.as_str())
    }

    /// Whether assertions must arrive encrypted.
    pub fn requires_encryption(&self) -> bool {
        self.decryption_key.is_some()
    }
}

/// The STORK-QAA levels BundID and MUK use, mapped to eIDAS levels
/// (`STORK-QAA-Level-1`, user name and password, reaches none).
fn stork_levels() -> BTreeMap<String, Level> {
    profile::STORK_LEVELS
        .iter()
        .filter_map(|(stork, eidas)| {
            let level = match (*eidas)? {
                "low" => Level::Low,
                "substantial" => Level::Substantial,
                _ => Level::High,
            };
            Some(((*stork).to_owned(), level))
        })
        .collect()
}

/// OpenID Connect keys in a SAML provider are refused, not ignored.
fn refuse_oidc_keys(k: &str, p: &raw::Provider, issue: &mut dyn FnMut(String, String)) {
    for (key, set) in [
        ("issuer", p.issuer.is_some()),
        ("client_id", p.client_id.is_some()),
        ("client_secret_file", p.client_secret_file.is_some()),
        ("client_key", p.client_key.is_some()),
        ("redirect_uri", p.redirect_uri.is_some()),
        (
            "post_logout_redirect_uri",
            p.post_logout_redirect_uri.is_some(),
        ),
        ("id_token_algs", !p.id_token_algs.is_empty()),
    ] {
        if set {
            issue(
                format!("{k}.{key}"),
                "is an OpenID Connect setting; a `protocol = \"saml\"` provider does not take it"
                    .into(),
            );
        }
    }
}

/// `profile`, `"generic"` when absent.
fn profile(k: &str, p: &raw::Provider, issue: &mut dyn FnMut(String, String)) -> Profile {
    match p.profile.as_deref().unwrap_or("generic") {
        "bundid" => Profile::BundId,
        "muk" => Profile::Muk,
        "generic" => Profile::Generic,
        other => {
            issue(
                format!("{k}.profile"),
                format!("`{other}` is not a profile; use \"bundid\", \"muk\" or \"generic\""),
            );
            Profile::Generic
        }
    }
}

/// The metadata file (or cache) and the checks of `idp_metadata_url`.
fn metadata_source(
    k: &str,
    p: &raw::Provider,
    abs: &dyn Fn(&Path) -> PathBuf,
    issue: &mut dyn FnMut(String, String),
) -> Option<PathBuf> {
    let metadata = p.idp_metadata_file.as_deref().map(abs);
    match (&metadata, &p.idp_metadata_url) {
        (None, None) => issue(
            format!("{k}.idp_metadata_file"),
            "give the IdP's SAML metadata: `idp_metadata_file`, or `idp_metadata_url` with \
             `idp_metadata_certificate`"
                .into(),
        ),
        (_, Some(url)) => {
            let scheme_ok =
                url.starts_with("https://") || (p.allow_http && url.starts_with("http://"));
            if !scheme_ok || super::identity::url_origin(url).is_none() {
                issue(
                    format!("{k}.idp_metadata_url"),
                    format!(
                        "`{url}` is not an https URL (plain http only with `allow_http = true`)"
                    ),
                );
            }
            if p.idp_metadata_certificate.is_none() {
                issue(
                    format!("{k}.idp_metadata_certificate"),
                    "is required with `idp_metadata_url`: metadata fetched over the network is used \
                     only if signed by this certificate"
                        .into(),
                );
            }
            if p.idp_metadata_refresh < std::time::Duration::from_secs(60) {
                issue(
                    format!("{k}.idp_metadata_refresh"),
                    "must be at least 60s".into(),
                );
            }
        }
        _ => {}
    }
    metadata
}

/// The ACS URL must be this gateway's endpoint for provider `name`.
fn check_acs_url(k: &str, name: &str, acs_url: &str, issue: &mut dyn FnMut(String, String)) {
    let expected = format!("/.stadttor/acs/{name}");
    if !acs_url.is_empty()
        && (!acs_url.starts_with("https://") || url_path(acs_url) != Some(expected.as_str()))
    {
        issue(
            format!("{k}.acs_url"),
            format!(
                "must be an https URL of this gateway with the path `{expected}`, \
                 registered exactly so in the SP metadata"
            ),
        );
    }
}

/// The decryption key and certificate: together or not at all, and
/// required for BundID and MUK.
fn decryption(
    k: &str,
    p: &raw::Provider,
    profile: Profile,
    abs: &dyn Fn(&Path) -> PathBuf,
    key_ref: &KeyRefParser<'_>,
    issue: &mut dyn FnMut(String, String),
) -> (Option<KeyRef>, Option<PathBuf>) {
    let decryption_key = p
        .decryption_key
        .as_deref()
        .map(|d| key_ref(d, issue, format!("{k}.decryption_key")));
    let decryption_certificate = p.decryption_certificate.as_deref().map(abs);
    if decryption_key.is_some() != decryption_certificate.is_some() {
        issue(
            format!("{k}.decryption_certificate"),
            "give `decryption_key` and `decryption_certificate` together".into(),
        );
    }
    if matches!(profile, Profile::BundId | Profile::Muk) && decryption_key.is_none() {
        issue(
            format!("{k}.decryption_key"),
            "BundID and MUK encrypt every assertion: give an RSA key (`stadttor keys generate \
             --algorithm rsa3072`) and its certificate"
                .into(),
        );
    }
    (decryption_key, decryption_certificate)
}

/// Validates a `protocol = "saml"` provider at `k`.
pub(super) fn validate(
    k: &str,
    p: &raw::Provider,
    abs: &dyn Fn(&Path) -> PathBuf,
    key_ref: &KeyRefParser<'_>,
    issue: &mut dyn FnMut(String, String),
) -> SamlProvider {
    refuse_oidc_keys(k, p, issue);
    let profile = profile(k, p, issue);
    let mut required = |key: &str, v: Option<&String>| -> String {
        match v.filter(|s| !s.is_empty()) {
            Some(s) => s.clone(),
            None => {
                issue(
                    format!("{k}.{key}"),
                    "is required for a SAML provider".into(),
                );
                String::new()
            }
        }
    };
    let entity_id = required("entity_id", p.entity_id.as_ref());
    let acs_url = required("acs_url", p.acs_url.as_ref());
    let signing_key = required("signing_key", p.signing_key.as_ref());
    check_acs_url(k, &p.name, &acs_url, issue);
    let metadata = metadata_source(k, p, abs, issue);
    let signing_certificate = p
        .signing_certificate
        .as_deref()
        .map(abs)
        .unwrap_or_else(|| {
            issue(
                format!("{k}.signing_certificate"),
                "is required: the certificate of `signing_key`, published in the SP metadata"
                    .into(),
            );
            PathBuf::new()
        });
    let (decryption_key, decryption_certificate) = decryption(k, p, profile, abs, key_ref, issue);
    let attributes = attribute_names(k, profile, &p.attributes, issue);
    let subject_attribute = match (&p.subject_attribute, profile) {
        (Some(s), _) => attribute_names(k, profile, std::slice::from_ref(s), issue).pop(),
        (None, Profile::BundId) => profile::bundid_attribute("bpk2").map(str::to_owned),
        (None, _) => None,
    };
    if let Some(s) = &subject_attribute {
        if !attributes.contains(s) {
            issue(
                format!("{k}.attributes"),
                format!("must include the subject attribute `{s}` (`subject_attribute`)"),
            );
        }
    }
    let acr = if p.acr.is_empty() {
        match profile {
            Profile::BundId | Profile::Muk => stork_levels(),
            Profile::Generic => Level::ALL
                .iter()
                .map(|l| (l.uri().to_owned(), *l))
                .collect(),
        }
    } else {
        p.acr.clone()
    };
    SamlProvider {
        name: p.name.clone(),
        display_name: p.display_name.clone(),
        display_name_en: p.display_name_en.clone(),
        profile,
        idp_metadata_file: metadata,
        idp_metadata_url: p.idp_metadata_url.clone(),
        idp_metadata_refresh: p.idp_metadata_refresh,
        idp_metadata_certificate: p.idp_metadata_certificate.as_deref().map(abs),
        ca: p.ca.as_deref().map(abs),
        allow_http: p.allow_http,
        request_timeout: p.request_timeout,
        entity_id,
        acs_url,
        signing_key: key_ref(&signing_key, issue, format!("{k}.signing_key")),
        signing_certificate,
        decryption_key,
        decryption_certificate,
        attributes,
        subject_attribute,
        authn_methods: p.authn_methods.clone(),
        organization_display_name: p.organization_display_name.clone(),
        online_service_id: p.online_service_id.clone(),
        acr,
    }
}

/// Attribute names as URNs: BundID/MUK short names (`bpk2`,
/// `given_name`, ...) resolved to their OIDs; other names must be URIs.
fn attribute_names(
    k: &str,
    profile: Profile,
    names: &[String],
    issue: &mut dyn FnMut(String, String),
) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| {
            if n.contains(':') {
                return Some(n.clone());
            }
            let oid = matches!(profile, Profile::BundId | Profile::Muk)
                .then(|| profile::bundid_attribute(n))
                .flatten();
            if oid.is_none() {
                issue(
                    format!("{k}.attributes"),
                    format!(
                        "`{n}` is neither a URI (`urn:oid:…`) nor a known BundID attribute ({})",
                        profile::BUNDID_ATTRIBUTES.map(|(s, _)| s).join(", ")
                    ),
                );
            }
            oid.map(str::to_owned)
        })
        .collect()
}
