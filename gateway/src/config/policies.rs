//! `[policies]` (the policy store), the per-route `[routes.authz]` table
//! and the officers' settings of `[admin]`: raw serde shapes and their
//! validation.
//!
//! Default deny shapes the rules: with a `[policies]` table every
//! authenticated route must name its policy domain or opt out explicitly
//! (`off = true`); a route that asks for a policy decision must
//! authenticate, because the subject is only ever taken from the verified
//! identity.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::duration;
use super::stores::{Problem, StoreTls};

/// Raw shapes, exactly as in the file.
#[allow(missing_docs)]
pub(super) mod raw {
    use super::*;

    /// `[policies]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Policies {
        pub store: String,
        pub schema: Option<String>,
        pub store_ca_file: Option<PathBuf>,
        #[serde(default = "default_poll", with = "duration")]
        pub poll_interval: Duration,
    }

    /// `[routes.authz]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RouteAuthz {
        pub domain: Option<String>,
        pub subject_claim: Option<String>,
        pub subject_verified_claim: Option<String>,
        #[serde(default)]
        pub off: bool,
    }

    fn default_poll() -> Duration {
        Duration::from_secs(5)
    }
}

/// Where versioned policies live.
#[derive(Clone, PartialEq, Eq)]
pub enum PolicyStorage {
    /// A directory (one gateway, or several on a shared file system).
    Dir(PathBuf),
    /// PostgreSQL, shared by a cluster (cargo feature `postgres`).
    Postgres {
        /// Connection string; may hold a password, so never printed.
        url: String,
        /// Schema holding the store's tables.
        schema: String,
        /// TLS to the server (`None`: plaintext).
        tls: Option<StoreTls>,
    },
}

impl std::fmt::Debug for PolicyStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(d) => f.debug_tuple("Dir").field(d).finish(),
            Self::Postgres { schema, tls, .. } => f
                .debug_struct("Postgres")
                .field("url", &"<redacted>")
                .field("schema", schema)
                .field("tls", tls)
                .finish(),
        }
    }
}

/// Default schema of the PostgreSQL policy store.
pub const DEFAULT_SCHEMA: &str = "stadttor_policies";

impl PolicyStorage {
    /// Parses `file:DIR` or `postgres://…` with its CA file for TLS
    /// (relative paths against `base`). `Err` says what is wrong, in the
    /// store or in the CA file.
    pub fn parse(
        spec: &str,
        schema: Option<&str>,
        ca_file: Option<&Path>,
        base: &Path,
    ) -> Result<Self, Problem> {
        if let Some(dir) = spec.strip_prefix("file:") {
            if dir.is_empty() {
                return Err(Problem::Url(
                    "`file:` needs a directory, e.g. `file:/var/lib/stadttor/policies`".into(),
                ));
            }
            if schema.is_some() {
                return Err(Problem::Url(
                    "`schema` only applies to a PostgreSQL store".into(),
                ));
            }
            if ca_file.is_some() {
                return Err(Problem::CaFile("applies only to a PostgreSQL store".into()));
            }
            let p = Path::new(dir);
            return Ok(Self::Dir(if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }));
        }
        if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            let schema = schema.unwrap_or(DEFAULT_SCHEMA);
            if !schema_ok(schema) {
                return Err(Problem::Url(format!(
                    "schema `{schema}`: must be lowercase letters, digits and `_`, starting with a letter, at most 40"
                )));
            }
            let (url, tls) = super::stores::postgres(spec, ca_file, base)?;
            if !cfg!(feature = "postgres") {
                return Err(Problem::Url("a PostgreSQL policy store needs the cargo feature `postgres`, which this stadttor was built without".into()));
            }
            return Ok(Self::Postgres {
                url,
                schema: schema.to_owned(),
                tls,
            });
        }
        Err(Problem::Url(
            "must be `file:DIR` (one gateway) or `postgres://…` (a cluster)".into(),
        ))
    }
}

fn schema_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The validated `[policies]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies {
    /// The store.
    pub storage: PolicyStorage,
    /// Backstop poll of the store (changes are also signalled: PostgreSQL
    /// `NOTIFY`, a 100 ms file poll).
    pub poll_interval: Duration,
}

/// The validated `[routes.authz]` table of a route that is enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAuthz {
    /// The policy domain (municipality, tenant) of the route.
    pub domain: String,
    /// Which claim of the verified identity is the policy subject (`sub`
    /// by default; a client certificate's subject is its `sub`).
    pub subject_claim: String,
    /// The claim that must be `true` before the subject claim counts, if
    /// configured (default: `email_verified` for `email`, see
    /// [`crate::policy::verification_claim`]).
    pub subject_verified_claim: Option<String>,
}

/// Officers' access to the policy pages and API on the admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Officers {
    /// The `[[identity.providers]]` officers log in with.
    pub provider: String,
    /// Claim of the officer's identity that names them in the policy.
    pub subject_claim: String,
    /// The claim that must be `true` before the subject claim counts, if
    /// configured (default: `email_verified` for `email`).
    pub subject_verified_claim: Option<String>,
    /// Redirect URI of the admin listener, registered at the provider.
    pub redirect_uri: String,
}

/// Whether `s` can be a policy domain or claim name: no separators casbin
/// or the CSV would split on, no spaces.
fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@'))
}

pub(super) fn validate_policies(
    raw: &raw::Policies,
    base: &Path,
    issue: &mut dyn FnMut(String, String),
) -> Policies {
    let storage = match PolicyStorage::parse(
        &raw.store,
        raw.schema.as_deref(),
        raw.store_ca_file.as_deref(),
        base,
    ) {
        Ok(s) => s,
        Err(p) => {
            p.report("policies.store", "policies.store_ca_file", issue);
            PolicyStorage::Dir(PathBuf::new())
        }
    };
    if raw.poll_interval < Duration::from_millis(100)
        || raw.poll_interval > Duration::from_secs(600)
    {
        issue(
            "policies.poll_interval".into(),
            "must be between 100ms and 10m".into(),
        );
    }
    Policies {
        storage,
        poll_interval: raw.poll_interval,
    }
}

/// Validates one route's `[routes.authz]` (or its absence). `methods` are
/// the route's authentication methods (empty: anonymous).
pub(super) fn validate_route_authz(
    k: &str,
    raw: Option<&raw::RouteAuthz>,
    methods: &[crate::identity::AuthMethod],
    policies: bool,
    issue: &mut dyn FnMut(String, String),
) -> Option<RouteAuthz> {
    let key = format!("{k}.authz");
    let Some(raw) = raw else {
        if policies && !methods.is_empty() {
            issue(
                key,
                "missing: with a [policies] table every authenticated route needs \
                 `[routes.authz]` with its policy `domain`, or `off = true` to leave it \
                 unenforced explicitly"
                    .into(),
            );
        }
        return None;
    };
    if raw.off {
        if raw.domain.is_some()
            || raw.subject_claim.is_some()
            || raw.subject_verified_claim.is_some()
        {
            issue(
                key,
                "`off = true` leaves the route unenforced; remove `domain`, `subject_claim` and \
                 `subject_verified_claim`, or remove `off`"
                    .into(),
            );
        }
        return None;
    }
    let Some(domain) = &raw.domain else {
        issue(
            format!("{key}.domain"),
            "missing: name the route's policy domain, e.g. `domain = \"musterstadt\"` (or \
             write `off = true` to leave the route unenforced)"
                .into(),
        );
        return None;
    };
    if !name_ok(domain) {
        issue(
            format!("{key}.domain"),
            format!("`{domain}` must be letters, digits, `_ - . : @`, at most 128"),
        );
    } else if domain == stadttor_policies::ADMIN_DOMAIN {
        issue(
            format!("{key}.domain"),
            format!(
                "`{domain}` is reserved for the officers' roles; give the route its own domain"
            ),
        );
    }
    let subject_claim = raw.subject_claim.clone().unwrap_or_else(|| "sub".into());
    if !name_ok(&subject_claim) {
        issue(
            format!("{key}.subject_claim"),
            format!("`{subject_claim}` is not a claim name"),
        );
    }
    if methods.is_empty() {
        issue(
            key.clone(),
            "needs `[routes.auth]`: the policy decides on the verified identity, and an \
             anonymous route has none"
                .into(),
        );
    } else if subject_claim != "sub" && methods == [crate::identity::AuthMethod::ClientCert] {
        issue(
            format!("{key}.subject_claim"),
            "a client certificate has no claims; its subject is `sub`".into(),
        );
    }
    if !policies {
        issue(
            key.clone(),
            "needs the `[policies]` table (the policy store the decisions come from)".into(),
        );
    }
    let subject_verified_claim = verified_claim_key(
        &format!("{key}.subject_verified_claim"),
        raw.subject_verified_claim.as_deref(),
        &subject_claim,
        issue,
    );
    Some(RouteAuthz {
        domain: domain.clone(),
        subject_claim,
        subject_verified_claim,
    })
}

/// Validates a `…subject_verified_claim` key: a claim name, and only with
/// a subject claim other than `sub` (the provider's own identifier needs
/// no verification).
fn verified_claim_key(
    key: &str,
    value: Option<&str>,
    subject_claim: &str,
    issue: &mut dyn FnMut(String, String),
) -> Option<String> {
    let v = value?;
    if !name_ok(v) {
        issue(key.to_owned(), format!("`{v}` is not a claim name"));
    } else if subject_claim == "sub" {
        issue(
            key.to_owned(),
            "only applies with a subject claim other than `sub`".into(),
        );
    }
    Some(v.to_owned())
}

/// Validates the officers' keys of `[admin]`.
pub(super) fn validate_officers(
    admin: &super::raw::Admin,
    policies: bool,
    identity: Option<&super::Identity>,
    issue: &mut dyn FnMut(String, String),
) -> Option<Officers> {
    let subject_claim = admin.officer_subject_claim.as_deref();
    let redirect_uri = admin.officer_redirect_uri.as_deref();
    let has_tls = admin.tls.is_some();
    let Some(provider) = admin.officer_provider.as_deref() else {
        for (name, v) in [
            ("officer_subject_claim", subject_claim),
            (
                "officer_subject_verified_claim",
                admin.officer_subject_verified_claim.as_deref(),
            ),
            ("officer_redirect_uri", redirect_uri),
        ] {
            if v.is_some() {
                issue(
                    format!("admin.{name}"),
                    "only applies with `officer_provider`".into(),
                );
            }
        }
        return None;
    };
    if !policies {
        issue(
            "admin.officer_provider".into(),
            "officers manage the policy store: this needs the `[policies]` table".into(),
        );
    }
    if !has_tls {
        issue(
            "admin.officer_provider".into(),
            "officer logins need HTTPS on the admin listener: add `[admin.tls]` with a \
             certificate"
                .into(),
        );
    }
    match identity {
        None => issue(
            "admin.officer_provider".into(),
            "needs the `[identity]` table with this provider".into(),
        ),
        Some(id) if !id.providers.iter().any(|p| p.name == provider) => issue(
            "admin.officer_provider".into(),
            format!("no provider named `{provider}` in [[identity.providers]]"),
        ),
        Some(_) => {}
    }
    let subject_claim = subject_claim.unwrap_or("sub").to_owned();
    if !name_ok(&subject_claim) {
        issue(
            "admin.officer_subject_claim".into(),
            format!("`{subject_claim}` is not a claim name"),
        );
    }
    let expected = format!("/.stadttor/callback/{provider}");
    let redirect_uri = redirect_uri.unwrap_or("").to_owned();
    let path_ok = redirect_uri
        .strip_prefix("https://")
        .and_then(|r| r.find('/').map(|i| &r[i..]))
        .is_some_and(|p| p == expected);
    if !path_ok {
        issue(
            "admin.officer_redirect_uri".into(),
            format!(
                "must be the https URL of the admin listener with the path `{expected}`, \
                 registered exactly so at the provider"
            ),
        );
    }
    let subject_verified_claim = verified_claim_key(
        "admin.officer_subject_verified_claim",
        admin.officer_subject_verified_claim.as_deref(),
        &subject_claim,
        issue,
    );
    Some(Officers {
        provider: provider.to_owned(),
        subject_claim,
        subject_verified_claim,
        redirect_uri,
    })
}
