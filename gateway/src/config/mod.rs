//! The configuration: one TOML file, read once, validated once.
//!
//! The pipeline is `stadttor.toml → raw::File (serde, deny_unknown_fields)
//! → Config (validated, typed, paths resolved)`. Parsing stops at the first
//! syntax or type error (serde cannot go on), and names the file, the key
//! path and the line. Validation then checks every table and reports **every**
//! problem at once, each as `file: key: reason`.
//!
//! Relative paths in the file are resolved against the file's directory, so
//! a config and its certificates can be moved together.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stadttor_hsm::KeyRef;

mod admin;
mod audit;
mod identity;
mod listeners;
mod paths;
mod policies;
mod proxies;
mod routes;
mod saml;
mod server;
mod signing;
mod stores;
mod upstreams;
pub use identity::{url_origin, Identity, Provider, ProviderAuth, RouteAuth, SessionStorage};
pub use paths::PathRules;
pub use policies::{Officers, Policies, PolicyStorage, RouteAuthz, DEFAULT_SCHEMA};
pub use proxies::{ClientAddrPolicy, ForwardedHeader, ProxyProtocol, TrustedProxies};
pub use saml::SamlProvider;
pub use signing::{DelegationAlgorithm, SignFormat, SignRule, Signing};
pub use stores::{plaintext_warnings, Problem, StoreTls};

/// A configuration problem: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The key path, e.g. `routes[2].upstream`.
    pub key: String,
    /// What is wrong and, where possible, how to fix it.
    pub reason: String,
}

/// A configuration that cannot be used, with every problem found.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file the problems are in.
    pub file: PathBuf,
    /// Every problem, in file order.
    pub issues: Vec<Issue>,
}

/// How the reason of an [`Issue`] starts when a state store could not be
/// reached: not a mistake in the file, and possibly gone in a minute.
pub const UNREACHABLE: &str = "cannot reach ";

impl ConfigError {
    /// Whether every problem is an unreachable store (exit 69,
    /// `EX_UNAVAILABLE`, which systemd retries) rather than a mistake in
    /// the configuration (exit 78, `EX_CONFIG`, which it does not).
    pub fn is_unavailable(&self) -> bool {
        !self.issues.is_empty()
            && self
                .issues
                .iter()
                .all(|i| i.reason.starts_with(UNREACHABLE))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(
            f,
            "{}: {n} error{} in configuration",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.issues {
            write!(
                f,
                "\n  {}: key `{}`: {}",
                self.file.display(),
                issue.key,
                issue.reason
            )?;
        }
        Ok(())
    }
}

pub mod raw;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Whether a route's requests must be recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditMode {
    /// Every request is recorded before it is forwarded; if the log cannot
    /// record it, the request is refused with 503 (fail closed). The default
    /// when an `[audit]` table exists.
    #[default]
    Required,
    /// Recorded when possible; a failing log is reported but does not stop
    /// the route.
    BestEffort,
    /// Not recorded. The default without an `[audit]` table.
    Off,
}

/// Where the audit log lives.
#[derive(Clone, PartialEq, Eq)]
pub enum AuditStorage {
    /// A directory: C2SP tiles, checkpoints, WAL (one gateway).
    Dir(PathBuf),
    /// PostgreSQL, shared by several gateways (cargo feature `postgres`).
    Postgres {
        /// Connection string; may hold a password, so never printed.
        url: String,
        /// Schema holding the log's tables.
        schema: String,
        /// TLS to the server (`None`: plaintext).
        tls: Option<StoreTls>,
    },
}

impl fmt::Debug for AuditStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// The audit log settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Audit {
    /// Where the log lives.
    pub storage: AuditStorage,
    /// The log's origin line (its name in checkpoints).
    pub origin: String,
    /// Key that signs checkpoints (Ed25519 file key or ECDSA P-256).
    pub key: KeyRef,
    /// Secret (≥ 32 bytes) for pseudonymising subjects.
    pub pseudonym_key_file: PathBuf,
    /// How often checkpoints are signed.
    pub checkpoint_period: Duration,
    /// Events that may wait for the writer before appends are refused.
    pub queue_capacity: usize,
    /// How often `key.use` events summarise each key's signatures.
    pub key_use_interval: Duration,
}

/// How a certificate's key signs TLS handshakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertMode {
    /// Every full handshake is signed by the configured key (the default).
    #[default]
    Direct,
    /// The configured key is an issuing key (its certificate is a CA with
    /// `pathlen:0`); the gateway serves short-lived in-memory leaf keys it
    /// certifies and rotates, so handshakes do not wait on slow hardware.
    ShortLivedLeaf,
}

/// Whether a client certificate is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMode {
    /// Clients without a certificate are refused during the handshake.
    #[default]
    Required,
    /// A certificate is verified if sent; clients without one are admitted.
    Optional,
}

/// Durations written as `"30s"`, `"5m"`, `"1h 30m"` (humantime), with
/// errors that say what was wrong (`humantime_serde` only says "expected a
/// duration").
mod duration {
    use std::fmt;
    use std::time::Duration;

    use humantime_serde::re::humantime;

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        d.deserialize_str(Visitor)
    }

    struct Visitor;

    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration string with a unit, like \"30s\", \"5m\" or \"1h 30m\"")
        }

        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Duration, E> {
            humantime::parse_duration(s).map_err(|e| {
                E::custom(format!(
                    "invalid duration `{s}`: {e}; write e.g. \"500ms\", \"30s\", \"5m\" or \"1h 30m\""
                ))
            })
        }
    }

    /// The same for optional keys.
    pub(super) mod option {
        use std::time::Duration;

        pub(in super::super) fn deserialize<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

/// A byte count, written as an integer or with a unit (`16KiB`, `10MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ByteSizeVisitor)
    }
}

/// Accepts a non-negative integer or a string with a unit, and names what
/// was wrong otherwise (an untagged enum would only say "did not match").
struct ByteSizeVisitor;

impl serde::de::Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size: an integer of bytes or a string like \"16KiB\" or \"10MiB\"")
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(n))
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ByteSize, E> {
        u64::try_from(n)
            .map(ByteSize)
            .map_err(|_| E::custom(format!("invalid size `{n}`: must not be negative")))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ByteSize, E> {
        parse_size(s).map(ByteSize).ok_or_else(|| {
            E::custom(format!(
                "invalid size `{s}`: use an integer of bytes or a whole number with B, KiB, MiB or GiB, e.g. \"10MiB\""
            ))
        })
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mul = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1024,
        "MiB" | "M" => 1024 * 1024,
        "GiB" | "G" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Process-wide settings.
    pub server: Server,
    /// Key store settings.
    pub keys: stadttor_hsm::KeyStoreConfig,
    /// The admin listener, if any.
    pub admin: Option<SocketAddr>,
    /// Connections the admin listener holds open at once (`admin.max_connections`).
    pub admin_max_connections: usize,
    /// HTTPS on the admin listener (`[admin.tls]`), if configured.
    pub admin_tls: Option<Tls>,
    /// Officers' policy pages and API on the admin listener, if configured.
    pub officers: Option<Officers>,
    /// The policy store, if configured.
    pub policies: Option<Policies>,
    /// The audit log, if configured.
    pub audit: Option<Audit>,
    /// Logins, sessions and identity assertions, if configured.
    pub identity: Option<Identity>,
    /// Document signing, if configured.
    pub signing: Option<Signing>,
    /// Public listeners.
    pub listeners: Vec<Listener>,
    /// Upstream pools.
    pub upstreams: Vec<Upstream>,
    /// Routes in match order.
    pub routes: Vec<Route>,
}

/// Process-wide settings.
#[derive(Debug, Clone)]
pub struct Server {
    /// Connections served at once; more are refused at accept.
    pub max_connections: usize,
    /// Connections per client IP address.
    pub max_connections_per_ip: usize,
    /// Time to complete the TLS handshake, and to read each request head;
    /// it also bounds how long a kept-alive HTTP/1.1 connection may idle.
    pub header_read_timeout: Duration,
    /// Largest request head accepted.
    pub max_header_bytes: usize,
    /// How long SIGTERM waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Client headers starting with this (lowercase) are always removed.
    pub identity_header_prefix: String,
    /// Log format.
    pub log_format: LogFormat,
    /// One log line per request.
    pub access_log: bool,
    /// HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// Pending connections the kernel queues per listening socket
    /// (`listen(2)` backlog; capped by `net.core.somaxconn`).
    pub listen_backlog: u32,
    /// A served certificate that expires within this is a warning
    /// (`config check`, the log at start, reload and daily, `/readyz`).
    pub certificate_expiry_warning: Duration,
}

/// A public TLS listener.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Its name, used by routes and in metrics.
    pub name: String,
    /// The socket address to bind.
    pub listen: SocketAddr,
    /// TLS settings.
    pub tls: Tls,
    /// Load balancers in front: PROXY protocol, trusted proxies and the
    /// header they write the client into.
    pub client_addr: std::sync::Arc<ClientAddrPolicy>,
}

/// TLS settings of a listener.
#[derive(Debug, Clone)]
pub struct Tls {
    /// Certificates; the first without server names is the default.
    pub certificates: Vec<Certificate>,
    /// Client certificate verification.
    pub client_auth: Option<ClientAuth>,
    /// Offer X25519 in addition to the BSI groups P-256 and P-384.
    pub allow_x25519: bool,
    /// Offer hybrid post-quantum key exchange first: SECP256R1MLKEM768,
    /// and X25519MLKEM768 when `allow_x25519` is also set.
    pub post_quantum_key_exchange: bool,
    /// Stateless, rotating session tickets for resumption.
    pub session_tickets: bool,
}

/// One certificate chain and its key.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// PEM chain, leaf first.
    pub chain: PathBuf,
    /// The key reference.
    pub key: KeyRef,
    /// SNI names (lowercase; `*.` wildcards allowed). Empty: default.
    pub server_names: Vec<String>,
    /// Key path in the file, for messages (`listeners[0].tls.certificates[1]`).
    pub origin: String,
    /// Direct signing or short-lived leaves.
    pub mode: CertMode,
    /// Lifetime of each short-lived leaf.
    pub leaf_lifetime: Duration,
}

/// Client certificate verification.
#[derive(Debug, Clone)]
pub struct ClientAuth {
    /// PEM bundle of accepted CAs.
    pub ca: PathBuf,
    /// Required or optional.
    pub mode: ClientAuthMode,
}

/// An upstream pool.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Its name.
    pub name: String,
    /// `host:port` addresses, round-robin.
    pub addresses: Vec<String>,
    /// HTTPS to the upstream.
    pub tls: Option<UpstreamTls>,
    /// Consecutive failures before an address is ejected.
    pub eject_after_failures: u32,
    /// How long an ejected address rests.
    pub eject_for: Duration,
    /// How long idle pooled connections are kept.
    pub pool_idle_timeout: Duration,
}

/// HTTPS settings towards an upstream.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// CA bundle that verifies the upstream.
    pub ca: PathBuf,
    /// Name to verify (default: the address host).
    pub server_name: Option<String>,
    /// Client certificate for mTLS to the upstream.
    pub client_cert: Option<(PathBuf, KeyRef)>,
}

/// A route: which requests go to which upstream, and how.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its name, used in logs and metrics.
    pub name: String,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    /// Listener names it applies to (empty: all).
    pub listeners: Vec<String>,
    /// Host to match (lowercase; `*.` wildcard), or any.
    pub host: Option<String>,
    /// Path prefix to match.
    pub path_prefix: String,
    /// Remove the prefix before forwarding.
    pub strip_prefix: bool,
    /// Largest request body.
    pub max_request_body: u64,
    /// Allow WebSocket upgrades.
    pub websocket: bool,
    /// Forward the verified client certificate subject as an identity header.
    pub forward_client_cert: bool,
    /// Timeouts.
    pub timeouts: raw::Timeouts,
    /// Response header overrides (lowercase names; empty value removes).
    pub response_headers: BTreeMap<String, String>,
    /// Audit requirement.
    pub audit: AuditMode,
    /// Authentication (empty `methods`: anonymous).
    pub auth: RouteAuth,
    /// Response signing rules, first match wins.
    pub sign: Vec<SignRule>,
    /// Policy enforcement, `None` when the route is not enforced.
    pub authz: Option<RouteAuthz>,
    /// What the route does with non-canonical paths.
    pub paths: PathRules,
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let fail = |key: &str, reason: String| ConfigError {
        file: path.to_owned(),
        issues: vec![Issue {
            key: key.to_owned(),
            reason,
        }],
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail("(file)", format!("cannot read the file: {e}")))?;
    parse(path, &text)
}

/// Parses and validates configuration text; `path` names it in errors and
/// anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let de = toml::Deserializer::new(text);
    let raw: raw::File = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        // toml's messages may span lines; keep one issue on one line.
        let mut reason = inner
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        if let Some(span) = inner.span() {
            let line = text[..span.start.min(text.len())].lines().count().max(1);
            reason = format!("{reason} (line {line})");
        }
        ConfigError {
            file: path.to_owned(),
            issues: vec![Issue {
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                reason,
            }],
        }
    })?;
    validate(path, raw)
}

/// Parses the key reference `s` at config key `key`: file paths (and a
/// TPM reference's `pem=`) resolved against the config directory, backend
/// settings it needs checked against `[keys]`.
fn resolve_key(
    s: &str,
    keys: &raw::Keys,
    abs: &dyn Fn(&Path) -> PathBuf,
    issue: &mut dyn FnMut(String, String),
    key: String,
) -> KeyRef {
    match s.parse::<KeyRef>() {
        Ok(KeyRef::File(p)) => KeyRef::File(abs(&p)),
        Ok(KeyRef::Tpm(spec)) if spec.contains("pem=") => {
            // `pem=PATH` is resolved against the config directory too.
            let spec = spec
                .split(';')
                .map(|part| match part.strip_prefix("pem=") {
                    Some(p) => format!("pem={}", abs(Path::new(p)).display()),
                    None => part.to_owned(),
                })
                .collect::<Vec<_>>()
                .join(";");
            KeyRef::Tpm(spec)
        }
        Ok(k) => {
            for missing in missing_key_settings(&k, keys) {
                issue(
                    key.clone(),
                    format!("`{k}` needs `keys.{missing}`; set it in the `[keys]` table"),
                );
            }
            k
        }
        Err(e) => {
            issue(key, e.to_string());
            KeyRef::File(PathBuf::new())
        }
    }
}

/// Checks every table (each in its own module) and reports every problem.
fn validate(path: &Path, raw: raw::File) -> Result<Config, ConfigError> {
    let base = path.parent().unwrap_or(Path::new(".")).to_owned();
    let abs = |p: &Path| -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            base.join(p)
        }
    };
    let mut issues = Vec::new();
    let mut issue = |key: String, reason: String| issues.push(Issue { key, reason });
    let keys = &raw.keys;
    let key_ref = |s: &str, issue: &mut dyn FnMut(String, String), key: String| -> KeyRef {
        resolve_key(s, keys, &abs, issue, key)
    };

    let server = server::validate(&raw.server, &mut issue);
    let listeners::Listeners {
        listeners,
        sockets,
        names: listener_names,
    } = listeners::validate(&raw.listeners, &abs, &key_ref, &mut issue);
    if let Some(a) = &raw.admin {
        admin::check(a, &sockets, &mut issue);
    }
    let (upstreams, upstream_names) =
        upstreams::validate(&raw.upstreams, &abs, &key_ref, &mut issue);

    let identity = raw
        .identity
        .as_ref()
        .map(|id| identity::validate_identity(id, &abs, &key_ref, &mut issue));
    let signing_cfg = raw
        .signing
        .as_ref()
        .map(|s| signing::validate_signing(s, &abs, &key_ref, &mut issue));

    let policies = raw
        .policies
        .as_ref()
        .map(|p| policies::validate_policies(p, &base, &mut issue));
    let mut admin_tls = None;
    let mut officers = None;
    if let Some(a) = &raw.admin {
        if let Some(t) = &a.tls {
            admin_tls = Some(admin::tls_config(t, &abs, &key_ref, &mut issue));
        }
        officers =
            policies::validate_officers(a, policies.is_some(), identity.as_ref(), &mut issue);
    }

    let routes = routes::validate(
        &raw,
        &routes::Context {
            listener_names: &listener_names,
            upstream_names: &upstream_names,
            identity: identity.as_ref(),
            policies: policies.is_some(),
            signing: signing_cfg.as_ref(),
        },
        &mut issue,
    );
    let audit = audit::validate(&raw, &base, &abs, &key_ref, &mut issue);

    if !issues.is_empty() {
        return Err(ConfigError {
            file: path.to_owned(),
            issues,
        });
    }
    Ok(Config {
        path: path.to_owned(),
        server,
        keys: key_store_config(&raw.keys, &base),
        admin: raw.admin.as_ref().map(|a| a.listen),
        admin_max_connections: admin::max_connections(raw.admin.as_ref()),
        admin_tls,
        officers,
        policies,
        audit,
        identity,
        signing: signing_cfg,
        listeners,
        upstreams,
        routes,
    })
}

/// The `[keys]` settings a hardware key reference needs but lacks.
/// The key store settings of a `[keys]` table; relative paths are resolved
/// against `base`, the config file's directory.
pub fn key_store_config(keys: &raw::Keys, base: &Path) -> stadttor_hsm::KeyStoreConfig {
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_owned()
        } else {
            base.join(p)
        }
    };
    let mut k = stadttor_hsm::KeyStoreConfig::default();
    k.tpm_tcti = keys.tpm_tcti.clone();
    k.pkcs11_module = keys.pkcs11_module.as_deref().map(abs);
    k.pkcs11_pin_file = keys.pkcs11_pin_file.as_deref().map(abs);
    if let Some(n) = keys.tpm_queue_capacity {
        k.tpm_queue_capacity = n;
    }
    if let Some(n) = keys.pkcs11_sessions {
        k.pkcs11_sessions = n;
    }
    if let Some(d) = keys.request_timeout {
        k.request_timeout = d;
    }
    k
}

fn missing_key_settings(key: &KeyRef, keys: &raw::Keys) -> Vec<&'static str> {
    let needed: &[(&'static str, bool)] = match key {
        KeyRef::Tpm(_) => &[("tpm_tcti", keys.tpm_tcti.is_some())],
        KeyRef::Pkcs11(_) => &[
            ("pkcs11_module", keys.pkcs11_module.is_some()),
            ("pkcs11_pin_file", keys.pkcs11_pin_file.is_some()),
        ],
        _ => &[],
    };
    needed
        .iter()
        .filter(|(_, set)| !set)
        .map(|(name, _)| *name)
        .collect()
}

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;
