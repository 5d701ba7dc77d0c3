//! `[identity]` (OIDC providers, sessions, identity assertions) and the
//! per-route `[routes.auth]` table: raw serde shapes and their validation.
//!
//! Validation follows the rest of the configuration: every problem is
//! reported at once as `key: reason`, and the validated types carry parsed
//! URLs, resolved paths and key references only.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use stadttor_hsm::KeyRef;

use super::duration;
use super::stores::{self, StoreTls};
use crate::identity::{AuthMethod, Level};

/// Raw shapes, exactly as in the file.
#[allow(missing_docs)]
pub(super) mod raw {
    use super::*;

    /// `[identity]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Identity {
        pub session_key_file: PathBuf,
        pub store: String,
        pub store_ca_file: Option<PathBuf>,
        #[serde(default = "default_namespace")]
        pub store_namespace: String,
        pub assertion_key: String,
        #[serde(default = "default_assertion_issuer")]
        pub assertion_issuer: String,
        #[serde(default = "default_assertion_lifetime", with = "duration")]
        pub assertion_lifetime: Duration,
        #[serde(default = "default_idle", with = "duration")]
        pub session_idle_timeout: Duration,
        #[serde(default = "default_absolute", with = "duration")]
        pub session_absolute_timeout: Duration,
        #[serde(default = "default_step_up", with = "duration")]
        pub step_up_lifetime: Duration,
        #[serde(default = "default_login_timeout", with = "duration")]
        pub login_timeout: Duration,
        #[serde(default)]
        pub allowed_return_origins: Vec<String>,
        #[serde(default)]
        pub providers: Vec<Provider>,
    }

    /// Which protocol a provider speaks.
    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Protocol {
        /// OpenID Connect (the default).
        #[default]
        Oidc,
        /// SAML 2.0 (`config::saml`).
        Saml,
    }

    /// `[[identity.providers]]`: OpenID Connect keys, then SAML keys
    /// (`protocol = "saml"`); each protocol refuses the other's.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Provider {
        pub name: String,
        pub display_name: String,
        pub display_name_en: Option<String>,
        #[serde(default)]
        pub protocol: Protocol,
        pub issuer: Option<String>,
        pub client_id: Option<String>,
        pub client_secret_file: Option<PathBuf>,
        pub client_key: Option<String>,
        pub redirect_uri: Option<String>,
        pub post_logout_redirect_uri: Option<String>,
        #[serde(default = "default_scopes")]
        pub scopes: Vec<String>,
        #[serde(default)]
        pub id_token_algs: Vec<String>,
        #[serde(default)]
        pub acr: BTreeMap<String, Level>,
        pub ca: Option<PathBuf>,
        #[serde(default)]
        pub allow_http: bool,
        #[serde(default = "default_request_timeout", with = "duration")]
        pub request_timeout: Duration,
        pub profile: Option<String>,
        pub idp_metadata_file: Option<PathBuf>,
        pub idp_metadata_url: Option<String>,
        pub idp_metadata_certificate: Option<PathBuf>,
        #[serde(default = "default_metadata_refresh", with = "duration")]
        pub idp_metadata_refresh: Duration,
        pub entity_id: Option<String>,
        pub acs_url: Option<String>,
        pub signing_key: Option<String>,
        pub signing_certificate: Option<PathBuf>,
        pub decryption_key: Option<String>,
        pub decryption_certificate: Option<PathBuf>,
        #[serde(default)]
        pub attributes: Vec<String>,
        pub subject_attribute: Option<String>,
        #[serde(default)]
        pub authn_methods: Vec<String>,
        pub organization_display_name: Option<String>,
        pub online_service_id: Option<String>,
    }

    /// `[routes.auth]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RouteAuth {
        pub methods: Vec<AuthMethod>,
        #[serde(default)]
        pub providers: Vec<String>,
        pub min_level: Option<Level>,
        #[serde(default)]
        pub api: bool,
        pub bearer_audience: Option<String>,
        #[serde(default)]
        pub claims: BTreeMap<String, String>,
        pub client_cert_level: Option<Level>,
        #[serde(default)]
        pub forward_authorization: bool,
    }

    fn default_namespace() -> String {
        "stadttor".into()
    }
    fn default_assertion_issuer() -> String {
        "stadttor".into()
    }
    fn default_assertion_lifetime() -> Duration {
        Duration::from_secs(60)
    }
    fn default_idle() -> Duration {
        Duration::from_secs(30 * 60)
    }
    fn default_absolute() -> Duration {
        Duration::from_secs(12 * 3600)
    }
    fn default_step_up() -> Duration {
        Duration::from_secs(15 * 60)
    }
    fn default_login_timeout() -> Duration {
        Duration::from_secs(10 * 60)
    }
    fn default_scopes() -> Vec<String> {
        vec!["openid".into()]
    }
    fn default_metadata_refresh() -> Duration {
        Duration::from_secs(3600)
    }
    fn default_request_timeout() -> Duration {
        Duration::from_secs(10)
    }
}

/// Where sessions' single-use markers and revocations live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStorage {
    /// A directory on this node.
    Dir(PathBuf),
    /// Redis, shared by a cluster.
    Redis {
        /// `redis://` or `rediss://` URL; may hold a password.
        url: String,
        /// TLS (`rediss://`), `None`: plaintext.
        tls: Option<StoreTls>,
    },
    /// PostgreSQL, shared by a cluster.
    Postgres {
        /// Connection string without `sslmode`; may hold a password.
        url: String,
        /// TLS (`sslmode=…`), `None`: plaintext.
        tls: Option<StoreTls>,
    },
}

/// The validated `[identity]` table.
#[derive(Debug, Clone)]
pub struct Identity {
    /// AEAD keys for cookies, one per line; the first encrypts.
    pub session_key_file: PathBuf,
    /// Revocations and single-use markers.
    pub store: SessionStorage,
    /// Redis key prefix (`NS:`) or PostgreSQL schema (`NS_sessions`), so
    /// that several clusters can share one server.
    pub store_namespace: String,
    /// Signs identity assertions to the services.
    pub assertion_key: KeyRef,
    /// `iss` of identity assertions.
    pub assertion_issuer: String,
    /// Lifetime of one identity assertion.
    pub assertion_lifetime: Duration,
    /// A session unused this long ends.
    pub session_idle_timeout: Duration,
    /// A session ends this long after login, whatever happens.
    pub session_absolute_timeout: Duration,
    /// How long a stepped-up level lasts before the session falls back.
    pub step_up_lifetime: Duration,
    /// How long a login may take at the provider.
    pub login_timeout: Duration,
    /// Absolute `return_to` origins allowed besides relative paths.
    pub allowed_return_origins: Vec<String>,
    /// The OpenID Connect providers.
    pub providers: Vec<Provider>,
    /// The SAML identity providers (`protocol = "saml"`).
    pub saml_providers: Vec<super::saml::SamlProvider>,
}

impl Identity {
    /// Whether a provider of either protocol is named `name`.
    pub fn has_provider(&self, name: &str) -> bool {
        self.providers.iter().any(|p| p.name == name)
            || self.saml_providers.iter().any(|p| p.name == name)
    }

    /// The names of all providers, in configuration order per protocol.
    pub fn provider_names(&self) -> Vec<String> {
        self.providers
            .iter()
            .map(|p| p.name.clone())
            .chain(self.saml_providers.iter().map(|p| p.name.clone()))
            .collect()
    }

    /// The display name of provider `name` (English if asked and given).
    pub fn display_name(&self, name: &str, english: bool) -> Option<String> {
        let pick = |de: &String, en: &Option<String>| {
            if english {
                en.clone().unwrap_or_else(|| de.clone())
            } else {
                de.clone()
            }
        };
        self.providers
            .iter()
            .find(|p| p.name == name)
            .map(|p| pick(&p.display_name, &p.display_name_en))
            .or_else(|| {
                self.saml_providers
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| pick(&p.display_name, &p.display_name_en))
            })
    }
}

/// How the gateway authenticates itself at a provider's token endpoint.
#[derive(Debug, Clone)]
pub enum ProviderAuth {
    /// `client_secret_basic`, the secret read from this file at start.
    Secret(PathBuf),
    /// `private_key_jwt` signed with this key.
    PrivateKeyJwt(KeyRef),
}

/// One OIDC provider.
#[derive(Debug, Clone)]
pub struct Provider {
    /// Short name, used in URLs and config.
    pub name: String,
    /// Name shown to citizens (German).
    pub display_name: String,
    /// Name shown in English, if different.
    pub display_name_en: Option<String>,
    /// Issuer URL, exactly as the provider's metadata says.
    pub issuer: String,
    /// Our client id there.
    pub client_id: String,
    /// Client authentication.
    pub client_auth: ProviderAuth,
    /// Exact redirect URI, path `/.stadttor/callback/NAME`.
    pub redirect_uri: String,
    /// Where the provider sends the browser after logout.
    pub post_logout_redirect_uri: Option<String>,
    /// Scopes to request (always includes `openid`).
    pub scopes: Vec<String>,
    /// Allowed JWS algorithms for ID, logout and access tokens.
    pub id_token_algs: Vec<String>,
    /// Provider `acr` value → eIDAS level.
    pub acr: BTreeMap<String, Level>,
    /// CA bundle for the provider's TLS (default: the system's roots).
    pub ca: Option<PathBuf>,
    /// Plain `http://` allowed (development and tests only).
    pub allow_http: bool,
    /// Timeout of each request to the provider.
    pub request_timeout: Duration,
}

impl Provider {
    /// The level an `acr` value stands for, if it is mapped.
    pub fn level_of(&self, acr: &str) -> Option<Level> {
        self.acr.get(acr).copied()
    }

    /// The `acr` value to ask for a level: the lowest mapped value at or
    /// above it.
    pub fn acr_for(&self, level: Level) -> Option<&str> {
        self.acr
            .iter()
            .filter(|(_, l)| **l >= level)
            .min_by_key(|(_, l)| **l)
            .map(|(a, _)| a.as_str())
    }
}

/// The validated `[routes.auth]` table.
#[derive(Debug, Clone, Default)]
pub struct RouteAuth {
    /// Accepted methods, tried in this order; empty means anonymous.
    pub methods: Vec<AuthMethod>,
    /// Providers for sessions and bearer tokens (indexes into
    /// [`Identity::providers`]).
    pub providers: Vec<String>,
    /// The least level of assurance.
    pub min_level: Option<Level>,
    /// An API: answer `401` instead of redirecting to a login.
    pub api: bool,
    /// `aud` that bearer tokens must carry.
    pub bearer_audience: Option<String>,
    /// Claims forwarded as headers: claim name → header suffix.
    pub claims: BTreeMap<String, String>,
    /// Level given to a verified client certificate.
    pub client_cert_level: Option<Level>,
    /// Pass the client's `Authorization` header to the service (it is
    /// withheld on session and bearer routes otherwise).
    pub forward_authorization: bool,
}

/// `identity.store` and `identity.store_ca_file`.
fn session_storage(
    raw: &raw::Identity,
    abs: &dyn Fn(&Path) -> PathBuf,
    issue: &mut dyn FnMut(String, String),
) -> SessionStorage {
    let base = abs(Path::new(""));
    let ca = raw.store_ca_file.as_deref();
    let (url_key, ca_key) = ("identity.store", "identity.store_ca_file");
    let s = &raw.store;
    let (storage, feature) = if let Some(dir) = s.strip_prefix("file:") {
        if ca.is_some() {
            issue(ca_key.into(), "applies only to Redis and PostgreSQL".into());
        }
        return SessionStorage::Dir(abs(Path::new(dir)));
    } else if s.starts_with("redis://") || s.starts_with("rediss://") {
        let tls = stores::redis(s, ca, &base);
        let tls = tls.map(|tls| SessionStorage::Redis {
            url: s.clone(),
            tls,
        });
        (tls, cfg!(feature = "redis").then_some(()).ok_or("redis"))
    } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        let tls = stores::postgres(s, ca, &base);
        let tls = tls.map(|(url, tls)| SessionStorage::Postgres { url, tls });
        (
            tls,
            cfg!(feature = "postgres").then_some(()).ok_or("postgres"),
        )
    } else {
        issue(
            url_key.into(),
            "must be `file:DIR` (one gateway), `redis://…`, `rediss://…` or `postgres://…` (a cluster)"
                .into(),
        );
        return SessionStorage::Dir(PathBuf::new());
    };
    match (storage, feature) {
        (Err(p), _) => {
            p.report(url_key, ca_key, issue);
            SessionStorage::Dir(PathBuf::new())
        }
        (Ok(st), Err(f)) => {
            let name = if f == "redis" { "Redis" } else { "PostgreSQL" };
            issue(
                url_key.into(),
                format!("{name} session storage needs the cargo feature `{f}`"),
            );
            st
        }
        (Ok(st), Ok(())) => st,
    }
}

const ALLOWED_ALGS: [&str; 5] = ["ES256", "ES384", "PS256", "RS256", "EdDSA"];

/// Parses a key reference at a config key, reporting problems to an issue sink.
pub(super) type KeyRefParser<'a> =
    dyn Fn(&str, &mut dyn FnMut(String, String), String) -> KeyRef + 'a;

pub(super) fn validate_identity(
    raw: &raw::Identity,
    abs: &dyn Fn(&Path) -> PathBuf,
    key_ref: &KeyRefParser<'_>,
    issue: &mut dyn FnMut(String, String),
) -> Identity {
    let store = session_storage(raw, abs, issue);
    let ns = &raw.store_namespace;
    if ns.is_empty()
        || ns.len() > 40
        || !ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        issue(
            "identity.store_namespace".into(),
            "must be 1-40 lowercase letters, digits or `_`".into(),
        );
    }
    for (name, d, min) in [
        ("assertion_lifetime", raw.assertion_lifetime, 5),
        ("session_idle_timeout", raw.session_idle_timeout, 60),
        ("session_absolute_timeout", raw.session_absolute_timeout, 60),
        ("step_up_lifetime", raw.step_up_lifetime, 10),
        ("login_timeout", raw.login_timeout, 30),
    ] {
        if d < Duration::from_secs(min) {
            issue(
                format!("identity.{name}"),
                format!("must be at least {min}s"),
            );
        }
    }
    if raw.session_idle_timeout > raw.session_absolute_timeout {
        issue(
            "identity.session_idle_timeout".into(),
            "is longer than session_absolute_timeout; it would never apply".into(),
        );
    }
    for (i, o) in raw.allowed_return_origins.iter().enumerate() {
        let ok = url_origin(o).is_some_and(|x| x == o.trim_end_matches('/'));
        if !ok {
            issue(
                format!("identity.allowed_return_origins[{i}]"),
                format!("`{o}` is not an origin like `https://service.example`"),
            );
        }
    }
    let mut names = HashSet::new();
    let mut providers = Vec::new();
    let mut saml_providers = Vec::new();
    for (i, p) in raw.providers.iter().enumerate() {
        let k = format!("identity.providers[{i}]");
        if p.name.is_empty()
            || !p
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            issue(
                format!("{k}.name"),
                "must be letters, digits, `-` or `_` (it appears in URLs)".into(),
            );
        } else if !names.insert(p.name.clone()) {
            issue(format!("{k}.name"), format!("`{}` is used twice", p.name));
        }
        match p.protocol {
            raw::Protocol::Oidc => providers.push(provider(&k, p, abs, key_ref, issue)),
            raw::Protocol::Saml => {
                saml_providers.push(super::saml::validate(&k, p, abs, key_ref, issue))
            }
        }
    }
    Identity {
        session_key_file: abs(&raw.session_key_file),
        store,
        store_namespace: raw.store_namespace.clone(),
        assertion_key: key_ref(&raw.assertion_key, issue, "identity.assertion_key".into()),
        assertion_issuer: raw.assertion_issuer.clone(),
        assertion_lifetime: raw.assertion_lifetime,
        session_idle_timeout: raw.session_idle_timeout,
        session_absolute_timeout: raw.session_absolute_timeout,
        step_up_lifetime: raw.step_up_lifetime,
        login_timeout: raw.login_timeout,
        allowed_return_origins: raw
            .allowed_return_origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_owned())
            .collect(),
        providers,
        saml_providers,
    }
}

/// The provider's pinned ID token algorithms: at least one, none of them
/// `none` or a shared-secret algorithm.
fn check_algs(k: &str, algs: &[String], issue: &mut dyn FnMut(String, String)) {
    if algs.is_empty() {
        issue(
            format!("{k}.id_token_algs"),
            format!(
                "pin the provider's signing algorithms, e.g. [\"ES256\"]; allowed: {}",
                ALLOWED_ALGS.join(", ")
            ),
        );
    }
    for a in algs {
        if !ALLOWED_ALGS.contains(&a.as_str()) {
            issue(
                format!("{k}.id_token_algs"),
                format!(
                    "`{a}` is not allowed (no `none`, no shared-secret HS*); allowed: {}",
                    ALLOWED_ALGS.join(", ")
                ),
            );
        }
    }
}

/// Checks `identity.providers[i]` (key `k`) apart from its name.
/// SAML keys in an OpenID Connect provider are refused, not ignored.
fn refuse_saml_keys(k: &str, p: &raw::Provider, issue: &mut dyn FnMut(String, String)) {
    for (key, set) in [
        ("profile", p.profile.is_some()),
        ("idp_metadata_file", p.idp_metadata_file.is_some()),
        ("idp_metadata_url", p.idp_metadata_url.is_some()),
        (
            "idp_metadata_certificate",
            p.idp_metadata_certificate.is_some(),
        ),
        ("entity_id", p.entity_id.is_some()),
        ("acs_url", p.acs_url.is_some()),
        ("signing_key", p.signing_key.is_some()),
        ("signing_certificate", p.signing_certificate.is_some()),
        ("decryption_key", p.decryption_key.is_some()),
        ("decryption_certificate", p.decryption_certificate.is_some()),
        ("attributes", !p.attributes.is_empty()),
        ("subject_attribute", p.subject_attribute.is_some()),
        ("authn_methods", !p.authn_methods.is_empty()),
        (
            "organization_display_name",
            p.organization_display_name.is_some(),
        ),
        ("online_service_id", p.online_service_id.is_some()),
    ] {
        if set {
            issue(
                format!("{k}.{key}"),
                "is a SAML setting; add `protocol = \"saml\"` or remove it".into(),
            );
        }
    }
}

fn provider(
    k: &str,
    p: &raw::Provider,
    abs: &dyn Fn(&Path) -> PathBuf,
    key_ref: &KeyRefParser<'_>,
    issue: &mut dyn FnMut(String, String),
) -> Provider {
    refuse_saml_keys(k, p, issue);
    let mut required = |key: &str, v: &Option<String>| -> String {
        v.clone().unwrap_or_else(|| {
            issue(
                format!("{k}.{key}"),
                "is required for an OpenID Connect provider".into(),
            );
            String::new()
        })
    };
    let issuer = required("issuer", &p.issuer);
    let client_id = required("client_id", &p.client_id);
    let redirect_uri = required("redirect_uri", &p.redirect_uri);
    let scheme_ok =
        |u: &str| u.starts_with("https://") || (p.allow_http && u.starts_with("http://"));
    if p.issuer.is_some() && (!scheme_ok(&issuer) || url_origin(&issuer).is_none()) {
        issue(
            format!("{k}.issuer"),
            format!(
                "`{issuer}` is not an https URL (plain http only with `allow_http = true`, for tests)"
            ),
        );
    }
    if p.client_id.is_some() && client_id.is_empty() {
        issue(format!("{k}.client_id"), "must not be empty".into());
    }
    let client_auth = match (&p.client_secret_file, &p.client_key) {
        (Some(f), None) => ProviderAuth::Secret(abs(f)),
        (None, Some(key)) => {
            ProviderAuth::PrivateKeyJwt(key_ref(key, issue, format!("{k}.client_key")))
        }
        _ => {
            issue(
                k.to_owned(),
                "give exactly one of `client_secret_file` or `client_key` (private_key_jwt)".into(),
            );
            ProviderAuth::Secret(PathBuf::new())
        }
    };
    let expected_path = format!("/.stadttor/callback/{}", p.name);
    match url_path(&redirect_uri) {
        Some(path) if path == expected_path && redirect_uri.starts_with("https://") => {}
        _ if p.redirect_uri.is_none() => {}
        _ => issue(
            format!("{k}.redirect_uri"),
            format!(
                "must be an https URL of this gateway with the path `{expected_path}`, \
                 registered exactly so at the provider"
            ),
        ),
    }
    if let Some(u) = &p.post_logout_redirect_uri {
        if url_origin(u).is_none() {
            issue(
                format!("{k}.post_logout_redirect_uri"),
                format!("`{u}` is not an absolute URL"),
            );
        }
    }
    check_algs(k, &p.id_token_algs, issue);
    let mut scopes = p.scopes.clone();
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    let acr = if p.acr.is_empty() {
        Level::ALL
            .iter()
            .map(|l| (l.uri().to_owned(), *l))
            .collect()
    } else {
        p.acr.clone()
    };
    if p.request_timeout.is_zero() {
        issue(format!("{k}.request_timeout"), "must be positive".into());
    }
    Provider {
        name: p.name.clone(),
        display_name: p.display_name.clone(),
        display_name_en: p.display_name_en.clone(),
        issuer,
        client_id,
        client_auth,
        redirect_uri,
        post_logout_redirect_uri: p.post_logout_redirect_uri.clone(),
        scopes,
        id_token_algs: p.id_token_algs.clone(),
        acr,
        ca: p.ca.as_deref().map(abs),
        allow_http: p.allow_http,
        request_timeout: p.request_timeout,
    }
}

pub(super) fn validate_route_auth(
    k: &str,
    raw: &raw::RouteAuth,
    identity: Option<&Identity>,
    issue: &mut dyn FnMut(String, String),
) -> RouteAuth {
    let needs_provider = raw
        .methods
        .iter()
        .any(|m| matches!(m, AuthMethod::Session | AuthMethod::Bearer));
    if raw.methods.is_empty() {
        issue(
            format!("{k}.methods"),
            "list at least one of \"session\", \"bearer\", \"client_cert\"; leave out \
             [routes.auth] for an anonymous route"
                .into(),
        );
    }
    match identity {
        None => issue(
            k.to_owned(),
            "authentication needs the `[identity]` table (assertion key, sessions, providers)"
                .into(),
        ),
        Some(id) => {
            for p in &raw.providers {
                if !id.has_provider(p) {
                    issue(
                        format!("{k}.providers"),
                        format!("no provider named `{p}` in [[identity.providers]]"),
                    );
                }
            }
        }
    }
    if needs_provider && raw.providers.is_empty() {
        issue(
            format!("{k}.providers"),
            "sessions and bearer tokens need at least one provider".into(),
        );
    }
    if raw.methods.contains(&AuthMethod::Bearer) && raw.bearer_audience.is_none() {
        issue(
            format!("{k}.bearer_audience"),
            "bearer tokens need the audience they must be issued for".into(),
        );
    }
    if raw.methods.contains(&AuthMethod::Session) && raw.api {
        issue(
            format!("{k}.api"),
            "an API route cannot use browser sessions; use \"bearer\" or \"client_cert\"".into(),
        );
    }
    if raw.forward_authorization && !needs_provider {
        issue(
            format!("{k}.forward_authorization"),
            "only routes with \"session\" or \"bearer\" withhold `Authorization`; this route \
             forwards it anyway, so remove the key"
                .into(),
        );
    }
    let mut claims = BTreeMap::new();
    for (claim, header) in &raw.claims {
        let ok = !header.is_empty()
            && header
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            issue(
                format!("{k}.claims.{claim}"),
                format!("header suffix `{header}` must be lowercase letters, digits and `-`"),
            );
        }
        if ["sub", "provider", "level", "assertion", "auth-method"].contains(&header.as_str()) {
            issue(
                format!("{k}.claims.{claim}"),
                format!("header suffix `{header}` is reserved for the gateway's own headers"),
            );
        }
        claims.insert(claim.clone(), header.clone());
    }
    RouteAuth {
        methods: raw.methods.clone(),
        providers: raw.providers.clone(),
        min_level: raw.min_level,
        api: raw.api,
        bearer_audience: raw.bearer_audience.clone(),
        claims,
        client_cert_level: raw.client_cert_level,
        forward_authorization: raw.forward_authorization,
    }
}

/// `scheme://host[:port]` of an absolute http(s) URL, if it is one.
pub fn url_origin(u: &str) -> Option<String> {
    let (scheme, rest) = u.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    http::uri::Authority::try_from(authority).ok()?;
    Some(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

pub(super) fn url_path(u: &str) -> Option<&str> {
    let (_, rest) = u.split_once("://")?;
    let i = rest.find('/')?;
    let path = &rest[i..];
    Some(path.split(['?', '#']).next().unwrap_or(path))
}
