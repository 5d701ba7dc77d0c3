//! Raw serde structures, exactly as written in the file
//! (`deny_unknown_fields` everywhere). Each key is documented for operators
//! in `docs/CONFIGURATION.md`; validation turns them into the typed
//! [`super::Config`].
#![allow(missing_docs)]

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
    pub listen_backlog: u32,
    #[serde(with = "duration")]
    pub certificate_expiry_warning: Duration,
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
            listen_backlog: 4096,
            certificate_expiry_warning: Duration::from_secs(30 * 24 * 3600),
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
    #[serde(default)]
    pub proxy_protocol: super::ProxyProtocol,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    pub forwarded_header: Option<super::ForwardedHeader>,
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
    #[serde(default)]
    pub post_quantum_key_exchange: bool,
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
