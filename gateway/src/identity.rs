//! Who a request comes from once authentication has verified it: the
//! [`Identity`], how it was established ([`AuthMethod`]) and the eIDAS
//! level of assurance ([`Level`], the one type shared with
//! `stadttor-policies`).
//!
//! Plain data with no dependency on the rest of the gateway, so that
//! `authn` (which builds identities), `policy` (which decides on them) and
//! `audit_event` (which records them) can all use it without importing
//! each other.

use serde::Deserialize;
pub use stadttor_policies::Level;

/// How a route authenticates its clients (`[routes.auth] methods`), and
/// how an [`Identity`] was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A login session (browser, cookie), started at an OIDC provider.
    Session,
    /// An OAuth bearer JWT access token from one of the route's providers.
    Bearer,
    /// The verified TLS client certificate.
    ClientCert,
}

impl AuthMethod {
    /// Short name for headers and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Bearer => "bearer",
            Self::ClientCert => "client_cert",
        }
    }
}

/// A verified identity.
#[derive(Debug, Clone)]
pub struct Identity {
    /// How it was verified.
    pub method: AuthMethod,
    /// Provider name (`client-cert` for certificates).
    pub provider: String,
    /// Issuer.
    pub issuer: String,
    /// Subject.
    pub sub: String,
    /// Level that counts now.
    pub level: Option<Level>,
    /// Time of authentication.
    pub auth_time: u64,
    /// Gateway session id or a hash of the token: the assertion cache key.
    pub cache_key: String,
    /// Claims available for forwarding.
    pub claims: serde_json::Map<String, serde_json::Value>,
}
