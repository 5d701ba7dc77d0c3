//! `[signing]` (the municipality's seal key and certificate, TSA, limits)
//! and the per-route `[[routes.sign]]` rules: raw serde shapes and their
//! validation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use stadttor_hsm::KeyRef;

use super::duration;
use super::identity::KeyRefParser;
use super::ByteSize;

/// What a rule does to a matching response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignFormat {
    /// Embedded PAdES signature in the returned PDF.
    Pades,
    /// Detached CMS/CAdES, retrievable at `/.stadttor/signatures/ID.p7s`.
    Cades,
    /// Detached JWS (RFC 7797, `b64:false`) in the `stadttor-jws` header.
    Jws,
    /// HTTP Message Signature (RFC 9421) with Content-Digest (RFC 9530).
    HttpSignature,
}

impl SignFormat {
    /// Name for logs and audit events.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pades => "pades",
            Self::Cades => "cades",
            Self::Jws => "jws",
            Self::HttpSignature => "http-signature",
        }
    }
}

/// Algorithm of delegated RFC 9421 response keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DelegationAlgorithm {
    /// Ed25519 (RFC 9421 `ed25519`): about twice as fast to sign.
    #[default]
    Ed25519,
    /// ECDSA P-256 with SHA-256 (`ecdsa-p256-sha256`).
    EcdsaP256,
}

/// Raw shapes, exactly as in the file.
#[allow(missing_docs)]
pub(super) mod raw {
    use super::*;

    /// `[signing]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Signing {
        pub key: String,
        pub certificate: PathBuf,
        pub tsa_url: Option<String>,
        #[serde(default = "default_max_body")]
        pub max_body: ByteSize,
        pub store_dir: PathBuf,
        #[serde(default = "default_store_max_bytes")]
        pub store_max_bytes: ByteSize,
        #[serde(default = "default_store_max_age", with = "duration")]
        pub store_max_age: Duration,
        #[serde(default = "default_delegation", with = "duration")]
        pub delegation_lifetime: Duration,
        #[serde(default)]
        pub delegation_algorithm: DelegationAlgorithm,
    }

    /// `[[routes.sign]]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SignRule {
        pub content_type: String,
        pub path_prefix: Option<String>,
        pub format: SignFormat,
        #[serde(default)]
        pub timestamp: bool,
    }

    fn default_max_body() -> ByteSize {
        ByteSize(20 * 1024 * 1024)
    }
    fn default_store_max_bytes() -> ByteSize {
        ByteSize(1024 * 1024 * 1024)
    }
    fn default_store_max_age() -> Duration {
        Duration::from_secs(90 * 24 * 3600)
    }
    fn default_delegation() -> Duration {
        Duration::from_secs(3600)
    }
}

/// The validated `[signing]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    /// The seal key.
    pub key: KeyRef,
    /// PEM chain of the seal certificate, leaf first.
    pub certificate: PathBuf,
    /// RFC 3161 TSA for B-T signatures (`http://`).
    pub tsa_url: Option<String>,
    /// Largest response body buffered for signing.
    pub max_body: u64,
    /// Where detached CMS signatures are kept for retrieval.
    pub store_dir: PathBuf,
    /// Most bytes of detached signatures kept; the oldest go first.
    pub store_max_bytes: u64,
    /// How long a detached signature stays retrievable.
    pub store_max_age: Duration,
    /// Lifetime of per-route delegated HTTP signature keys; zero signs
    /// every response with the seal key itself.
    pub delegation_lifetime: Duration,
    /// Algorithm of the delegated keys.
    pub delegation_algorithm: DelegationAlgorithm,
}

/// One signing rule of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRule {
    /// Media type to match (lowercase, without parameters), or `*`.
    pub content_type: String,
    /// Request path prefix to match, if any.
    pub path_prefix: Option<String>,
    /// What to produce.
    pub format: SignFormat,
    /// Add an RFC 3161 timestamp (B-T).
    pub timestamp: bool,
}

impl SignRule {
    /// Whether the rule applies to a response of `media_type` (lowercase,
    /// no parameters) for a request to `path`.
    pub fn matches(&self, media_type: &str, path: &str) -> bool {
        (self.content_type == "*" || self.content_type == media_type)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
    }
}

pub(super) fn validate_signing(
    raw: &raw::Signing,
    abs: &dyn Fn(&Path) -> PathBuf,
    key_ref: &KeyRefParser<'_>,
    issue: &mut dyn FnMut(String, String),
) -> Signing {
    if let Some(u) = &raw.tsa_url {
        if !u.starts_with("http://") || super::url_origin(u).is_none() {
            issue(
                "signing.tsa_url".into(),
                format!("`{u}` must be an http:// URL (RFC 3161 over HTTP; the token is signed)"),
            );
        }
    }
    if raw.max_body.0 == 0 {
        issue("signing.max_body".into(), "must be positive".into());
    }
    if raw.store_max_bytes.0 < 64 * 1024 {
        issue(
            "signing.store_max_bytes".into(),
            "must be at least 64KiB (a signature with its chain takes a few KiB)".into(),
        );
    }
    if raw.store_max_age < Duration::from_secs(60) {
        issue(
            "signing.store_max_age".into(),
            "must be at least 60s (clients fetch the signature after the document)".into(),
        );
    }
    if !raw.delegation_lifetime.is_zero() && raw.delegation_lifetime < Duration::from_secs(60) {
        issue(
            "signing.delegation_lifetime".into(),
            "must be 0s (no delegation) or at least 60s".into(),
        );
    }
    Signing {
        key: key_ref(&raw.key, issue, "signing.key".into()),
        certificate: abs(&raw.certificate),
        tsa_url: raw.tsa_url.clone(),
        max_body: raw.max_body.0,
        store_dir: abs(&raw.store_dir),
        store_max_bytes: raw.store_max_bytes.0,
        store_max_age: raw.store_max_age,
        delegation_lifetime: raw.delegation_lifetime,
        delegation_algorithm: raw.delegation_algorithm,
    }
}

pub(super) fn validate_rules(
    k: &str,
    rules: &[raw::SignRule],
    signing: Option<&Signing>,
    issue: &mut dyn FnMut(String, String),
) -> Vec<SignRule> {
    if !rules.is_empty() && signing.is_none() {
        issue(
            k.to_owned(),
            "signing rules need the `[signing]` table (seal key and certificate)".into(),
        );
    }
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let rk = format!("{k}[{i}]");
            let ct = r.content_type.trim().to_ascii_lowercase();
            if ct != "*" && (ct.contains(';') || !ct.contains('/')) {
                issue(
                    format!("{rk}.content_type"),
                    format!(
                        "`{}` must be a media type like `application/pdf` (no parameters) or `*`",
                        r.content_type
                    ),
                );
            }
            if r.format == SignFormat::Pades && ct != "application/pdf" {
                issue(
                    format!("{rk}.format"),
                    "pades signs PDFs only: set content_type = \"application/pdf\"".into(),
                );
            }
            if r.timestamp {
                if !matches!(r.format, SignFormat::Pades | SignFormat::Cades) {
                    issue(
                        format!("{rk}.timestamp"),
                        "timestamps (B-T) exist for pades and cades only".into(),
                    );
                }
                if signing.is_some_and(|s| s.tsa_url.is_none()) {
                    issue(format!("{rk}.timestamp"), "needs `signing.tsa_url`".into());
                }
            }
            if let Some(p) = &r.path_prefix {
                if !p.starts_with('/') {
                    issue(format!("{rk}.path_prefix"), "must start with `/`".into());
                }
            }
            SignRule {
                content_type: ct,
                path_prefix: r.path_prefix.clone(),
                format: r.format,
                timestamp: r.timestamp,
            }
        })
        .collect()
}
