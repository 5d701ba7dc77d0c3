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

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stadttor_hsm::KeyRef;

mod admin;
mod identity;
mod paths;
mod policies;
mod signing;
mod stores;
pub use identity::{
    url_origin, AuthMethod, Identity, Level, Provider, ProviderAuth, RouteAuth, SessionStorage,
};
pub use paths::PathRules;
pub use policies::{Officers, Policies, PolicyStorage, RouteAuthz, DEFAULT_SCHEMA};
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

/// Raw serde structures, exactly as written in the file. Each key is
/// documented for operators in `docs/CONFIGURATION.md`.
#[allow(missing_docs)]
pub mod raw {
    use super::*;
    use serde::Deserialize;

    /// The whole file.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        #[serde(default)]
        pub server: Server,
        #[serde(default)]
        pub keys: Keys,
        pub admin: Option<Admin>,
        pub audit: Option<Audit>,
        pub identity: Option<super::identity::raw::Identity>,
        pub signing: Option<super::signing::raw::Signing>,
        pub policies: Option<super::policies::raw::Policies>,
        #[serde(default)]
        pub listeners: Vec<Listener>,
        #[serde(default)]
        pub upstreams: Vec<Upstream>,
        #[serde(default)]
        pub routes: Vec<Route>,
    }

    /// `[server]`: process-wide limits and behaviour.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Server {
        pub max_connections: usize,
        pub max_connections_per_ip: usize,
        #[serde(with = "duration")]
        pub header_read_timeout: Duration,
        pub max_header_bytes: ByteSize,
        #[serde(with = "duration")]
        pub drain_timeout: Duration,
        pub identity_header_prefix: String,
        pub log_format: LogFormat,
        pub access_log: bool,
        pub h2_max_concurrent_streams: u32,
    }

    impl Default for Server {
        fn default() -> Self {
            Self {
                max_connections: 10_000,
                max_connections_per_ip: 256,
                header_read_timeout: Duration::from_secs(10),
                max_header_bytes: ByteSize(16 * 1024),
                drain_timeout: Duration::from_secs(30),
                identity_header_prefix: "x-stadttor-".into(),
                log_format: LogFormat::Text,
                access_log: true,
                h2_max_concurrent_streams: 128,
            }
        }
    }

    /// `[keys]`: where the key store finds hardware.
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Keys {
        pub tpm_tcti: Option<String>,
        pub pkcs11_module: Option<PathBuf>,
        pub pkcs11_pin_file: Option<PathBuf>,
        pub tpm_queue_capacity: Option<usize>,
        pub pkcs11_sessions: Option<usize>,
        #[serde(default, with = "duration::option")]
        pub request_timeout: Option<Duration>,
    }

    /// `[audit]`: the tamper-evident audit log.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Audit {
        pub dir: Option<PathBuf>,
        pub postgres_url: Option<String>,
        pub postgres_schema: Option<String>,
        pub postgres_ca_file: Option<PathBuf>,
        pub origin: String,
        pub key: String,
        pub pseudonym_key_file: PathBuf,
        #[serde(default = "default_checkpoint_period", with = "duration")]
        pub checkpoint_period: Duration,
        #[serde(default = "default_audit_queue")]
        pub queue_capacity: usize,
        #[serde(default = "default_key_use_interval", with = "duration")]
        pub key_use_interval: Duration,
    }

    fn default_key_use_interval() -> Duration {
        Duration::from_secs(60)
    }

    fn default_checkpoint_period() -> Duration {
        Duration::from_secs(1)
    }
    fn default_audit_queue() -> usize {
        262_144
    }

    /// `[admin]`: metrics and health, never exposed on a public listener.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Admin {
        pub listen: SocketAddr,
        pub tls: Option<Tls>,
        pub officer_provider: Option<String>,
        pub officer_subject_claim: Option<String>,
        pub officer_subject_verified_claim: Option<String>,
        pub officer_redirect_uri: Option<String>,
        #[serde(default = "super::admin::default_max_connections")]
        pub max_connections: usize,
    }

    /// `[[listeners]]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Listener {
        pub name: String,
        pub listen: SocketAddr,
        pub tls: Tls,
    }

    /// `[listeners.tls]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Tls {
        #[serde(default)]
        pub certificates: Vec<Certificate>,
        pub client_auth: Option<ClientAuth>,
        #[serde(default)]
        pub allow_x25519: bool,
        #[serde(default = "default_true")]
        pub session_tickets: bool,
    }

    /// `[[listeners.tls.certificates]]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Certificate {
        pub chain: PathBuf,
        pub key: String,
        #[serde(default)]
        pub server_names: Vec<String>,
        #[serde(default)]
        pub mode: CertMode,
        #[serde(default = "default_leaf_lifetime", with = "duration")]
        pub leaf_lifetime: Duration,
    }

    fn default_leaf_lifetime() -> Duration {
        Duration::from_secs(6 * 3600)
    }

    /// `[listeners.tls.client_auth]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ClientAuth {
        pub ca: PathBuf,
        #[serde(default)]
        pub mode: ClientAuthMode,
    }

    /// `[[upstreams]]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Upstream {
        pub name: String,
        pub addresses: Vec<String>,
        pub tls: Option<UpstreamTls>,
        #[serde(default = "default_eject_after")]
        pub eject_after_failures: u32,
        #[serde(default = "default_eject_for", with = "duration")]
        pub eject_for: Duration,
        #[serde(default = "default_pool_idle", with = "duration")]
        pub pool_idle_timeout: Duration,
    }

    /// `[upstreams.tls]`: speak HTTPS to the upstream.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct UpstreamTls {
        pub ca: PathBuf,
        pub server_name: Option<String>,
        pub client_chain: Option<PathBuf>,
        pub client_key: Option<String>,
    }

    /// `[[routes]]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Route {
        pub name: String,
        pub upstream: String,
        #[serde(default)]
        pub listeners: Vec<String>,
        pub host: Option<String>,
        #[serde(default = "default_prefix")]
        pub path_prefix: String,
        #[serde(default)]
        pub strip_prefix: bool,
        #[serde(default = "default_body")]
        pub max_request_body: ByteSize,
        #[serde(default)]
        pub websocket: bool,
        #[serde(default)]
        pub forward_client_cert: bool,
        #[serde(default)]
        pub timeouts: Timeouts,
        #[serde(default)]
        pub response_headers: BTreeMap<String, String>,
        #[serde(default)]
        pub audit: Option<AuditMode>,
        pub auth: Option<super::identity::raw::RouteAuth>,
        #[serde(default)]
        pub sign: Vec<super::signing::raw::SignRule>,
        pub authz: Option<super::policies::raw::RouteAuthz>,
        pub paths: Option<super::paths::raw::Paths>,
    }

    /// `[routes.timeouts]`.
    #[derive(Debug, Clone, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct Timeouts {
        #[serde(with = "duration")]
        pub connect: Duration,
        #[serde(with = "duration")]
        pub response_header: Duration,
        #[serde(with = "duration")]
        pub idle: Duration,
        #[serde(with = "duration")]
        pub total: Duration,
    }

    impl Default for Timeouts {
        fn default() -> Self {
            Self {
                connect: Duration::from_secs(5),
                response_header: Duration::from_secs(60),
                idle: Duration::from_secs(60),
                total: Duration::from_secs(600),
            }
        }
    }

    fn default_true() -> bool {
        true
    }
    fn default_eject_after() -> u32 {
        3
    }
    fn default_eject_for() -> Duration {
        Duration::from_secs(10)
    }
    fn default_pool_idle() -> Duration {
        Duration::from_secs(60)
    }
    fn default_prefix() -> String {
        "/".into()
    }
    fn default_body() -> ByteSize {
        ByteSize(10 * 1024 * 1024)
    }
}

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
    };

    let s = &raw.server;
    if s.max_connections == 0 {
        issue("server.max_connections".into(), "must be at least 1".into());
    }
    if s.max_connections_per_ip == 0 {
        issue(
            "server.max_connections_per_ip".into(),
            "must be at least 1".into(),
        );
    }
    if s.header_read_timeout.is_zero() {
        issue(
            "server.header_read_timeout".into(),
            "must be positive (it defends against slowloris)".into(),
        );
    }
    if s.max_header_bytes.0 < 8 * 1024 || s.max_header_bytes.0 > 1024 * 1024 {
        issue(
            "server.max_header_bytes".into(),
            "must be between 8KiB and 1MiB (8KiB is the smallest HTTP/1.1 read buffer)".into(),
        );
    }
    if s.h2_max_concurrent_streams == 0 {
        issue(
            "server.h2_max_concurrent_streams".into(),
            "must be at least 1 (0 would refuse every HTTP/2 request)".into(),
        );
    }
    let prefix = s.identity_header_prefix.to_ascii_lowercase();
    if prefix.len() < 3 || http::HeaderName::from_bytes(prefix.as_bytes()).is_err() {
        issue(
            "server.identity_header_prefix".into(),
            "must be a header-name prefix of at least 3 characters, e.g. `x-stadttor-`".into(),
        );
    }

    if raw.listeners.is_empty() {
        issue(
            "listeners".into(),
            "at least one `[[listeners]]` table is needed".into(),
        );
    }
    let mut listener_names = HashSet::new();
    // Every socket bound at start, to find pairs that cannot both be bound.
    let mut sockets: Vec<(String, SocketAddr)> = Vec::new();
    let mut listeners = Vec::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        let k = format!("listeners[{i}]");
        if l.name.is_empty() || !listener_names.insert(l.name.clone()) {
            issue(
                format!("{k}.name"),
                format!("`{}` is empty or used twice", l.name),
            );
        }
        if let Some(problem) = socket_conflict(&sockets, l.listen) {
            issue(format!("{k}.listen"), problem);
        }
        sockets.push((format!("{k} (`{}`)", l.name), l.listen));
        if l.tls.certificates.is_empty() {
            issue(
                format!("{k}.tls.certificates"),
                "at least one certificate is needed".into(),
            );
        }
        let mut certificates = Vec::new();
        // SNI name → the certificate that serves it; the first without names.
        let mut served: BTreeMap<String, usize> = BTreeMap::new();
        let mut default_cert = None;
        for (j, c) in l.tls.certificates.iter().enumerate() {
            let ck = format!("{k}.tls.certificates[{j}]");
            let key = key_ref(&c.key, &mut issue, format!("{ck}.key"));
            if c.server_names.is_empty() {
                match default_cert {
                    None => default_cert = Some(j),
                    Some(first) => issue(
                        format!("{ck}.server_names"),
                        format!(
                            "empty, but {k}.tls.certificates[{first}] is already the default \
                             certificate, so this one would never be served; give it \
                             `server_names` or remove it"
                        ),
                    ),
                }
            }
            let mut names = Vec::new();
            for n in &c.server_names {
                let n = n.to_ascii_lowercase();
                if let Some(problem) = host_problem(&n) {
                    issue(
                        format!("{ck}.server_names"),
                        format!("`{n}` is not a DNS name or `*.` wildcard: {problem}"),
                    );
                } else if let Some(first) = served.get(&n) {
                    issue(
                        format!("{ck}.server_names"),
                        format!(
                            "`{n}` is already served by {k}.tls.certificates[{first}]; \
                             a name may appear once per listener"
                        ),
                    );
                } else {
                    served.insert(n.clone(), j);
                }
                names.push(n);
            }
            if c.mode == CertMode::ShortLivedLeaf {
                if names.is_empty() {
                    issue(
                        format!("{ck}.server_names"),
                        "short-lived-leaf mode needs server_names: they become the names in \
                         each leaf certificate"
                            .into(),
                    );
                }
                if c.leaf_lifetime < Duration::from_secs(600)
                    || c.leaf_lifetime > Duration::from_secs(48 * 3600)
                {
                    issue(
                        format!("{ck}.leaf_lifetime"),
                        "must be between 10m and 48h (leaves are rotated at half their lifetime)"
                            .into(),
                    );
                }
            }
            certificates.push(Certificate {
                chain: abs(&c.chain),
                key,
                server_names: names,
                origin: ck,
                mode: c.mode,
                leaf_lifetime: c.leaf_lifetime,
            });
        }
        listeners.push(Listener {
            name: l.name.clone(),
            listen: l.listen,
            tls: Tls {
                certificates,
                client_auth: l.tls.client_auth.as_ref().map(|c| ClientAuth {
                    ca: abs(&c.ca),
                    mode: c.mode,
                }),
                allow_x25519: l.tls.allow_x25519,
                session_tickets: l.tls.session_tickets,
            },
        });
    }

    if let Some(a) = &raw.admin {
        admin::check(a, &sockets, &mut issue);
    }

    let mut upstream_names = BTreeMap::new();
    let mut upstreams = Vec::new();
    for (i, u) in raw.upstreams.iter().enumerate() {
        let k = format!("upstreams[{i}]");
        if u.name.is_empty() || upstream_names.insert(u.name.clone(), i).is_some() {
            issue(
                format!("{k}.name"),
                format!("`{}` is empty or used twice", u.name),
            );
        }
        if u.addresses.is_empty() {
            issue(
                format!("{k}.addresses"),
                "at least one address is needed".into(),
            );
        }
        for a in &u.addresses {
            let ok = a
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
            if !ok || a.contains('/') {
                issue(
                    format!("{k}.addresses"),
                    format!("`{a}` is not `host:port` (no scheme, no path)"),
                );
            }
        }
        if u.eject_after_failures == 0 {
            issue(
                format!("{k}.eject_after_failures"),
                "must be at least 1".into(),
            );
        }
        let tls = u.tls.as_ref().map(|t| {
            let client_cert = match (&t.client_chain, &t.client_key) {
                (Some(c), Some(kk)) => Some((
                    abs(c),
                    key_ref(kk, &mut issue, format!("{k}.tls.client_key")),
                )),
                (None, None) => None,
                _ => {
                    issue(
                        format!("{k}.tls"),
                        "client_chain and client_key must be given together".into(),
                    );
                    None
                }
            };
            if let Some(n) = &t.server_name {
                if let Err(e) = rustls_pki_types::ServerName::try_from(n.as_str()) {
                    issue(
                        format!("{k}.tls.server_name"),
                        format!("`{n}` is not a DNS name or IP address: {e}"),
                    );
                }
            }
            UpstreamTls {
                ca: abs(&t.ca),
                server_name: t.server_name.clone(),
                client_cert,
            }
        });
        upstreams.push(Upstream {
            name: u.name.clone(),
            addresses: u.addresses.clone(),
            tls,
            eject_after_failures: u.eject_after_failures,
            eject_for: u.eject_for,
            pool_idle_timeout: u.pool_idle_timeout,
        });
    }

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

    let mut route_names = HashSet::new();
    let mut routes = Vec::new();
    if raw.routes.is_empty() {
        issue(
            "routes".into(),
            "at least one `[[routes]]` table is needed".into(),
        );
    }
    for (i, r) in raw.routes.iter().enumerate() {
        let k = format!("routes[{i}]");
        if r.name.is_empty() || !route_names.insert(r.name.clone()) {
            issue(
                format!("{k}.name"),
                format!("`{}` is empty or used twice", r.name),
            );
        }
        let upstream = match upstream_names.get(&r.upstream) {
            Some(i) => *i,
            None => {
                issue(
                    format!("{k}.upstream"),
                    format!(
                        "no upstream named `{}`; defined are: {}",
                        r.upstream,
                        upstream_names
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                0
            }
        };
        for l in &r.listeners {
            if !listener_names.contains(l) {
                issue(
                    format!("{k}.listeners"),
                    format!(
                        "no listener named `{l}`; defined are: {}",
                        raw.listeners
                            .iter()
                            .map(|l| l.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        if let Some(h) = &r.host {
            if let Some(problem) = host_problem(&h.to_ascii_lowercase()) {
                issue(
                    format!("{k}.host"),
                    format!("`{h}` is not a host name or `*.` wildcard: {problem}"),
                );
            }
        }
        if !r.path_prefix.starts_with('/') {
            issue(
                format!("{k}.path_prefix"),
                format!("`{}` must start with `/`", r.path_prefix),
            );
        } else if r
            .path_prefix
            .contains(|c: char| c == '?' || c == '#' || c.is_whitespace() || c.is_control())
        {
            issue(
                format!("{k}.path_prefix"),
                format!(
                    "`{}` would never match: a path prefix has no query, fragment or whitespace",
                    r.path_prefix
                ),
            );
        }
        if r.forward_client_cert
            && !raw.listeners.iter().any(|l| {
                l.tls.client_auth.is_some()
                    && (r.listeners.is_empty() || r.listeners.contains(&l.name))
            })
        {
            issue(
                format!("{k}.forward_client_cert"),
                "no listener of this route verifies client certificates, so there is nothing \
                 to forward; add `[listeners.tls.client_auth]` to its listener or remove \
                 `forward_client_cert`"
                    .into(),
            );
        }
        let t = &r.timeouts;
        for (name, d) in [
            ("connect", t.connect),
            ("response_header", t.response_header),
            ("idle", t.idle),
            ("total", t.total),
        ] {
            if d.is_zero() {
                issue(format!("{k}.timeouts.{name}"), "must be positive".into());
            }
        }
        let mut response_headers = BTreeMap::new();
        for (name, value) in &r.response_headers {
            let lname = name.to_ascii_lowercase();
            let hk = format!("{k}.response_headers.{name}");
            if http::HeaderName::from_bytes(lname.as_bytes()).is_err()
                || http::HeaderValue::from_str(value).is_err()
            {
                issue(
                    hk,
                    "not a valid header name or value (CR, LF and NUL are refused, CWE-113)".into(),
                );
            } else if let Some(why) = reserved_response_header(&lname) {
                issue(
                    hk,
                    format!("`{lname}` cannot be overridden: {why}; remove it"),
                );
            } else if response_headers.contains_key(&lname) {
                issue(
                    hk,
                    "given twice (header names are case-insensitive); keep one".into(),
                );
            }
            response_headers.insert(lname, value.clone());
        }
        let auth = r
            .auth
            .as_ref()
            .map(|a| {
                identity::validate_route_auth(
                    &format!("{k}.auth"),
                    a,
                    identity.as_ref(),
                    &mut issue,
                )
            })
            .unwrap_or_default();
        routes.push(Route {
            name: r.name.clone(),
            upstream,
            listeners: r.listeners.clone(),
            host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
            paths: paths::validate(&k, &r.path_prefix, r.paths.as_ref(), &mut issue),
            path_prefix: r.path_prefix.clone(),
            strip_prefix: r.strip_prefix,
            max_request_body: r.max_request_body.0,
            websocket: r.websocket,
            forward_client_cert: r.forward_client_cert,
            // With an audit log, routes are audited (fail closed) unless they
            // say otherwise; without one there is nothing to record to.
            audit: r.audit.unwrap_or(if raw.audit.is_some() {
                AuditMode::Required
            } else {
                AuditMode::Off
            }),
            timeouts: raw::Timeouts {
                connect: t.connect,
                response_header: t.response_header,
                idle: t.idle,
                total: t.total,
            },
            response_headers,
            authz: policies::validate_route_authz(
                &k,
                r.authz.as_ref(),
                &auth.methods,
                policies.is_some(),
                &mut issue,
            ),
            auth,
            sign: signing::validate_rules(
                &format!("{k}.sign"),
                &r.sign,
                signing_cfg.as_ref(),
                &mut issue,
            ),
        });
    }

    // A route is dead if an earlier one has the same host and prefix and
    // applies to at least the same listeners: ties keep file order.
    for (j, b) in routes.iter().enumerate() {
        let shadow = routes[..j].iter().position(|a| {
            a.host == b.host
                && a.path_prefix == b.path_prefix
                && (a.listeners.is_empty()
                    || (!b.listeners.is_empty()
                        && b.listeners.iter().all(|l| a.listeners.contains(l))))
        });
        if let Some(i) = shadow {
            issue(
                format!("routes[{j}]"),
                format!(
                    "route `{}` can never match: routes[{i}] (`{}`) has the same host and \
                     path_prefix on the same listeners and comes first; change its host, \
                     path_prefix or listeners, or remove one of them",
                    b.name, routes[i].name
                ),
            );
        }
    }

    let audit = raw.audit.as_ref().map(|a| {
        if a.origin.is_empty() || a.origin.contains(char::is_whitespace) {
            issue(
                "audit.origin".into(),
                "must be a non-empty name without spaces, e.g. `stadttor.example.de/audit`".into(),
            );
        }
        if a.checkpoint_period < Duration::from_millis(100)
            || a.checkpoint_period > Duration::from_secs(60)
        {
            issue(
                "audit.checkpoint_period".into(),
                "must be between 100ms and 60s".into(),
            );
        }
        if a.queue_capacity == 0 {
            issue("audit.queue_capacity".into(), "must be at least 1".into());
        }
        if a.key_use_interval < Duration::from_secs(1)
            || a.key_use_interval > Duration::from_secs(86_400)
        {
            issue(
                "audit.key_use_interval".into(),
                "must be between 1s and 24h".into(),
            );
        }
        let storage = stores::audit_storage(a, &base, &mut issue);
        Audit {
            storage,
            origin: a.origin.clone(),
            key: key_ref(&a.key, &mut issue, "audit.key".into()),
            pseudonym_key_file: abs(&a.pseudonym_key_file),
            checkpoint_period: a.checkpoint_period,
            queue_capacity: a.queue_capacity,
            key_use_interval: a.key_use_interval,
        }
    });
    if raw.audit.is_none() {
        // Without a log, `audit = "required"` (the default) cannot be met;
        // only routes that say otherwise explicitly are fine.
        for (i, r) in raw.routes.iter().enumerate() {
            if matches!(r.audit, Some(AuditMode::Required | AuditMode::BestEffort)) {
                issue(
                    format!("routes[{i}].audit"),
                    "asks for auditing, but there is no `[audit]` table; configure the audit \
                     log or set `audit = \"off\"`"
                        .into(),
                );
            }
        }
    }

    if !issues.is_empty() {
        return Err(ConfigError {
            file: path.to_owned(),
            issues,
        });
    }
    Ok(Config {
        path: path.to_owned(),
        server: Server {
            max_connections: s.max_connections,
            max_connections_per_ip: s.max_connections_per_ip,
            header_read_timeout: s.header_read_timeout,
            max_header_bytes: s.max_header_bytes.0 as usize,
            drain_timeout: s.drain_timeout,
            identity_header_prefix: prefix,
            log_format: s.log_format,
            access_log: s.access_log,
            h2_max_concurrent_streams: s.h2_max_concurrent_streams,
        },
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

/// Why `name` (lowercase) can never equal a request's host or SNI name.
fn host_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return match inner.parse::<std::net::Ipv6Addr>() {
            Ok(_) => None,
            Err(_) => Some("not an IPv6 address in brackets"),
        };
    }
    if name.contains("://") || name.contains('/') {
        return Some("write the bare host name, without scheme or path");
    }
    if name.contains(':') {
        return Some("write the host name without a port (hosts match on any port)");
    }
    if name.ends_with('.') {
        return Some("drop the trailing dot (names are compared without it)");
    }
    let bare = name.strip_prefix("*.").unwrap_or(name);
    if bare.contains('*') {
        return Some("`*` is only allowed as the whole first label, as in `*.example.org`");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !bare.split('.').all(label_ok) {
        return Some("only letters, digits, `-` and `_` in dot-separated, non-empty labels");
    }
    None
}

/// Whether `addr` cannot be bound next to the sockets already listed, and
/// why. Port 0 never conflicts. A wildcard address takes the port on every
/// address of its family; `[::]` also takes IPv4 (Linux dual-stack default).
fn socket_conflict(sockets: &[(String, SocketAddr)], addr: SocketAddr) -> Option<String> {
    let covers =
        |w: &SocketAddr, o: &SocketAddr| w.ip().is_unspecified() && (w.is_ipv6() || o.is_ipv4());
    sockets.iter().find_map(|(name, other)| {
        let clash = addr.port() != 0
            && addr.port() == other.port()
            && (addr.ip() == other.ip() || covers(&addr, other) || covers(other, &addr));
        clash.then(|| {
            format!(
                "{addr} overlaps {other} of {name}; both cannot be bound. Give each its own \
                 address or port"
            )
        })
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

/// Why a route may not override response header `name`, if it may not.
fn reserved_response_header(name: &str) -> Option<&'static str> {
    match name {
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "te"
        | "trailer" | "upgrade" | "content-length" => {
            Some("it belongs to the HTTP framing, which the gateway manages")
        }
        "x-request-id" => Some("the gateway sets it on every response"),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
