//! `stadttor-sessions`: server-side session state, single-use markers and
//! revocations.
//!
//! Sessions themselves are stateless, AEAD-encrypted cookies. This store
//! adds the two things a cookie cannot carry:
//!
//! * **single-use markers** ([`SessionStore::once`]): OIDC `state` values,
//!   authorization codes, back-channel logout token `jti`s. The first use of
//!   a key wins; every later use within its time to live is a replay.
//! * **revocations** ([`SessionStore::revoke`], [`SessionStore::is_revoked`])
//!   that every gateway sharing the backend honours: a logout on one gateway
//!   ends the session on all of them.
//!
//! # Backends ([`StoreConfig`])
//!
//! * `File` (single node, the default): an append-only JSON-lines log in a
//!   directory, fsync'd before `once`/`revoke` return, replayed and
//!   compacted on open. **One process per directory**: several gateway
//!   processes on one node cannot share it; a second opener is refused
//!   ([`StoreError::Locked`]) through a lock file holding the owner's pid.
//!   A lock file left by a process that no longer runs is taken over.
//! * `Redis` (feature `redis`): `SET NX PX` for markers; revocations in two
//!   sorted sets (by sequence number and by expiry), written by one Lua
//!   script that also `PUBLISH`es them.
//! * `Postgres` (feature `postgres`): two tables in a configured schema,
//!   `INSERT … ON CONFLICT` for markers, revocations with a `bigserial` id
//!   and `NOTIFY`.
//!
//! # Replica and freshness
//!
//! Every store keeps all live revocations in memory; [`SessionStore::is_revoked`]
//! only looks there (no I/O, no await). The Redis and PostgreSQL backends
//! keep the replica current from pub/sub (`PUBLISH`/`NOTIFY`) and from an
//! incremental poll every [`StoreOptions::poll_interval`]; each successful
//! poll confirms the replica fresh. If that has not happened within
//! [`StoreOptions::max_staleness`], `is_revoked` answers
//! [`StoreError::Stale`] and the gateway must deny (fail closed). After a
//! lost connection the background task reconnects and reloads everything.
//! The file backend is the only writer of its log and is always fresh.
//!
//! Revocations never get undone; they only expire at their `until` (when
//! the session would have ended anyway) and are then purged, so storage
//! stays bounded. An entry past `until` but not yet purged still counts as
//! revoked. Two subject revocations for one (issuer, subject) merge into
//! the latest `before` and the latest `until`, which can only revoke more.
//!
//! Marker keys are stored as SHA-256 digests (authorization codes and
//! `state` values never reach the backend in clear); namespaces are stored
//! as given and must be 1–64 of `[A-Za-z0-9_.-]`.
//!
//! # TLS
//!
//! The crate makes no TLS policy of its own: the caller hands it the
//! material ([`StoreConfig`]), a rustls [`ClientConfig`] for PostgreSQL
//! (through `pg_tls::MakeRustlsConnect`, feature `postgres`) and
//! the PEM roots for Redis ([`RedisTls`]); the gateway builds both from
//! its configuration (`stadttor_gateway::store_tls`).
//!
//! This crate does not know about cookies, OIDC or HTTP; callers map
//! errors to responses (any `Err` means: deny).

#![forbid(unsafe_code)]

mod error;
mod file;
#[cfg(feature = "postgres")]
pub mod pg_tls;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod replica;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::ClientConfig;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use replica::Replica;

pub use error::StoreError;

/// Where the store keeps its state.
#[derive(Clone, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// A directory on this node, used by one gateway process.
    File {
        /// The directory (created if missing).
        dir: PathBuf,
    },
    /// A Redis server shared by several gateways (feature `redis`).
    Redis {
        /// `redis://[user:password@]host:port[/db]`.
        url: String,
        /// Prefix of every key and of the pub/sub channel, e.g. `stadttor:sess:`.
        prefix: String,
        /// TLS for a `rediss://` URL (`None`: plaintext `redis://`).
        #[serde(skip)]
        tls: Option<RedisTls>,
    },
    /// A PostgreSQL database shared by several gateways (feature `postgres`).
    Postgres {
        /// A libpq-style connection string or `postgres://` URL.
        url: String,
        /// Schema holding the tables (created if missing): 1–48 of
        /// `[A-Za-z0-9_]`, not starting with a digit.
        schema: String,
        /// TLS (`sslmode=require|verify-ca|verify-full`, taken out of the
        /// URL by the configuration): the client configuration that
        /// verifies the server (roots, name check, cipher suites); `None`:
        /// plaintext. Connections then run with `sslmode=require` (no
        /// fallback to plaintext) and `tls-server-end-point` channel binding.
        #[serde(skip)]
        tls: Option<Arc<ClientConfig>>,
    },
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreConfig::File { dir } => f.debug_struct("File").field("dir", dir).finish(),
            StoreConfig::Redis { url, prefix, tls } => f
                .debug_struct("Redis")
                .field("url", &redact(url))
                .field("prefix", prefix)
                .field("tls", tls)
                .finish(),
            StoreConfig::Postgres { url, schema, tls } => f
                .debug_struct("Postgres")
                .field("url", &redact(url))
                .field("schema", schema)
                .field("tls", &tls.as_ref().map(|_| "rustls"))
                .finish(),
        }
    }
}

/// TLS to Redis (`rediss://`): the `redis` crate builds its own rustls
/// configuration from these roots alone (not the system store) and checks
/// the URL's host name against the server's certificate.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTls {
    /// PEM certificate(s) of the CA(s) the server's chain must lead to
    /// (checked by the caller to hold usable certificates).
    pub root_pem: Vec<u8>,
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field("root_pem", &format_args!("{} bytes", self.root_pem.len()))
            .finish()
    }
}

/// Hides passwords in a connection URL or libpq string (for logs).
fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = &out[scheme_end + 3..];
        let auth_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@') {
            out.replace_range(scheme_end + 3..scheme_end + 3 + at, "***");
        }
    }
    let words: Vec<String> = out
        .split(' ')
        .map(|w| {
            if w.to_ascii_lowercase().starts_with("password=") {
                "password=***".to_owned()
            } else {
                w.to_owned()
            }
        })
        .collect();
    words.join(" ")
}

/// Timing of the replica and of backend operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// `is_revoked` fails with [`StoreError::Stale`] when the replica was
    /// last confirmed fresh longer ago than this. Default 5 s.
    pub max_staleness: Duration,
    /// How often the background task polls the backend (backstop for
    /// pub/sub, and the freshness confirmation). Default 1 s.
    pub poll_interval: Duration,
    /// Limit for one backend operation, including connecting. Default 2 s.
    pub op_timeout: Duration,
    /// How often expired entries are purged (replica and backend). Default 60 s.
    pub purge_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_staleness: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            op_timeout: Duration::from_secs(2),
            purge_interval: Duration::from_secs(60),
        }
    }
}

impl StoreOptions {
    fn check(&self) -> Result<(), StoreError> {
        let zero = Duration::ZERO;
        if self.poll_interval == zero
            || self.op_timeout == zero
            || self.purge_interval == zero
            || self.max_staleness == zero
        {
            return Err(StoreError::Config(
                "session store durations must be greater than zero".into(),
            ));
        }
        if self.poll_interval >= self.max_staleness {
            return Err(StoreError::Config(format!(
                "poll_interval ({:?}) must be shorter than max_staleness ({:?})",
                self.poll_interval, self.max_staleness
            )));
        }
        Ok(())
    }
}

/// A revocation to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// One session (logout at this gateway).
    Session {
        /// The session id from the cookie.
        id: String,
        /// When the revocation may be forgotten (the session's expiry).
        until: SystemTime,
    },
    /// Back-channel logout with `sid`: every session of that provider session.
    ProviderSession {
        /// The provider's issuer identifier.
        issuer: String,
        /// The provider's session id (`sid` claim).
        sid: String,
        /// When the revocation may be forgotten.
        until: SystemTime,
    },
    /// Back-channel logout with `sub` only: sessions of this subject issued
    /// before `before`.
    Subject {
        /// The provider's issuer identifier.
        issuer: String,
        /// The subject (`sub` claim).
        sub: String,
        /// Sessions issued strictly before this instant are revoked.
        before: SystemTime,
        /// When the revocation may be forgotten.
        until: SystemTime,
    },
}

/// What `is_revoked` needs to know about a session (borrowed from the cookie).
#[derive(Debug, Clone, Copy)]
pub struct SessionRef<'a> {
    /// The session id.
    pub id: &'a str,
    /// The issuer that authenticated the user.
    pub issuer: &'a str,
    /// The subject at that issuer.
    pub sub: &'a str,
    /// The provider session id, if the provider sent one.
    pub sid: Option<&'a str>,
    /// When the session was issued.
    pub issued_at: SystemTime,
}

/// The session store. Cheap to clone; all clones share one replica and one
/// set of background tasks.
#[derive(Clone)]
pub struct SessionStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStore")
            .field("backend", &self.inner.backend.name())
            .finish_non_exhaustive()
    }
}

struct Inner {
    backend: Backend,
    replica: Arc<Replica>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(PoisonError::into_inner);
        for t in tasks.drain(..) {
            t.abort();
        }
    }
}

enum Backend {
    File(Arc<file::FileBackend>),
    #[cfg(feature = "redis")]
    Redis(Arc<redis::RedisBackend>),
    #[cfg(feature = "postgres")]
    Postgres(Arc<postgres::PgBackend>),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::File(_) => "file",
            #[cfg(feature = "redis")]
            Backend::Redis(_) => "redis",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "postgres",
        }
    }
}

impl SessionStore {
    /// Opens the store: for Redis and PostgreSQL connects, creates what is
    /// missing, loads every live revocation and starts the background task;
    /// for a directory takes the lock, replays and compacts the log. Fails
    /// if the backend cannot be reached now.
    pub async fn open(cfg: &StoreConfig, opts: StoreOptions) -> Result<Self, StoreError> {
        opts.check()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let (backend, replica) = match cfg {
            StoreConfig::File { dir } => {
                let replica = Arc::new(Replica::new(opts.max_staleness, true));
                let dir = dir.clone();
                let r = Arc::clone(&replica);
                let fb = tokio::task::spawn_blocking(move || file::FileBackend::open(&dir, r))
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("opening task failed: {e}")))??;
                let fb = Arc::new(fb);
                tasks.push(tokio::spawn(file::housekeeping(
                    Arc::clone(&fb),
                    opts.purge_interval,
                    shutdown_rx,
                )));
                (Backend::File(fb), replica)
            }
            #[cfg(feature = "redis")]
            StoreConfig::Redis { url, prefix, tls } => {
                let replica = Arc::new(Replica::new(opts.max_staleness, false));
                let (rb, task) = redis::RedisBackend::open(
                    url,
                    prefix,
                    tls.as_ref(),
                    opts,
                    Arc::clone(&replica),
                    shutdown_rx,
                )
                .await?;
                tasks.push(task);
                (Backend::Redis(rb), replica)
            }
            #[cfg(not(feature = "redis"))]
            StoreConfig::Redis { .. } => return Err(StoreError::Unsupported("redis")),
            #[cfg(feature = "postgres")]
            StoreConfig::Postgres { url, schema, tls } => {
                let replica = Arc::new(Replica::new(opts.max_staleness, false));
                let (pb, task) = postgres::PgBackend::open(
                    url,
                    schema,
                    tls.as_ref(),
                    opts,
                    Arc::clone(&replica),
                    shutdown_rx,
                )
                .await?;
                tasks.push(task);
                (Backend::Postgres(pb), replica)
            }
            #[cfg(not(feature = "postgres"))]
            StoreConfig::Postgres { .. } => return Err(StoreError::Unsupported("postgres")),
        };
        Ok(SessionStore {
            inner: Arc::new(Inner {
                backend,
                replica,
                shutdown,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    /// Marks `key` in `namespace` as used until now + `ttl`.
    ///
    /// `Ok(true)`: first use. `Ok(false)`: already used and not yet expired
    /// (a replay). `Err`: the store could not decide; callers fail closed.
    pub async fn once(
        &self,
        namespace: &str,
        key: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        check_namespace(namespace)?;
        if key.is_empty() {
            return Err(StoreError::InvalidArgument("empty single-use key".into()));
        }
        if ttl < Duration::from_millis(1) || ttl > MAX_TTL {
            return Err(StoreError::InvalidArgument(format!(
                "single-use ttl {ttl:?} must be between 1 ms and {MAX_TTL:?}"
            )));
        }
        let digest = key_digest(key);
        match &self.inner.backend {
            Backend::File(f) => {
                let f = Arc::clone(f);
                let ns = namespace.to_owned();
                tokio::task::spawn_blocking(move || f.once(&ns, &digest, ttl))
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("file task failed: {e}")))?
            }
            #[cfg(feature = "redis")]
            Backend::Redis(r) => r.once(namespace, &digest, ttl).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.once(namespace, &digest, ttl).await,
        }
    }

    /// Records a revocation durably and publishes it to every store on the
    /// same backend. When this returns `Ok`, this store's own replica
    /// already has it; the others get it within about `poll_interval`
    /// (usually at once, through pub/sub).
    pub async fn revoke(&self, r: Revocation) -> Result<(), StoreError> {
        let wire = replica::Wire::from_revocation(&r)?;
        match &self.inner.backend {
            Backend::File(f) => {
                let f = Arc::clone(f);
                let w = wire.clone();
                tokio::task::spawn_blocking(move || f.revoke(&w))
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("file task failed: {e}")))??;
            }
            #[cfg(feature = "redis")]
            Backend::Redis(b) => b.revoke(&wire).await?,
            #[cfg(feature = "postgres")]
            Backend::Postgres(b) => b.revoke(&wire).await?,
        }
        self.inner.replica.apply(&wire);
        Ok(())
    }

    /// Is this session revoked? Looks only in the local replica: no I/O.
    ///
    /// `Ok(true)`: revoked. `Err(StoreError::Stale{..})`: the replica was not
    /// confirmed fresh within `max_staleness`; the caller must deny.
    pub fn is_revoked(&self, s: &SessionRef<'_>) -> Result<bool, StoreError> {
        self.inner.replica.is_revoked(s)
    }

    /// For `/readyz`: `Ok` while the replica is fresh.
    pub fn health(&self) -> Result<(), String> {
        self.inner
            .replica
            .check_fresh()
            .map_err(|e| match self.inner.replica.last_error() {
                Some(last) => format!("{e} (last backend error: {last})"),
                None => e.to_string(),
            })
    }

    /// Number of revocations in the local replica (for metrics).
    pub fn replica_len(&self) -> usize {
        self.inner.replica.len()
    }

    /// Stops the background tasks (for every clone of this store). The
    /// replica then goes stale; the file backend releases its lock once the
    /// last clone is dropped.
    pub async fn close(self) {
        let _ = self.inner.shutdown.send(true);
        let tasks: Vec<JoinHandle<()>> = {
            let mut t = self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            t.drain(..).collect()
        };
        for t in tasks {
            let _ = t.await;
        }
        self.inner.replica.stop();
    }
}

/// Longest accepted time to live of a single-use marker.
const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Checks a marker namespace: 1–64 of `[A-Za-z0-9_.-]`.
fn check_namespace(ns: &str) -> Result<(), StoreError> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidArgument(format!(
            "namespace {ns:?} must be 1-64 letters, digits, '_', '.' or '-'"
        )))
    }
}

/// SHA-256 of a marker key, base64url without padding (43 characters).
fn key_digest(key: &str) -> String {
    use base64::Engine as _;
    let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// Milliseconds since the Unix epoch, rounded up (so `before` and `until`
/// never move earlier, which could un-revoke a session).
fn ceil_ms(t: SystemTime) -> Result<u64, StoreError> {
    let d = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| StoreError::InvalidArgument("time before 1970".into()))?;
    let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
    u64::try_from(ms).map_err(|_| StoreError::InvalidArgument("time too far in the future".into()))
}

/// The instant `ms` milliseconds after the Unix epoch.
fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Now, in milliseconds since the Unix epoch (0 if the clock is before 1970).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A shared backend's connection life, driven by [`follow_forever`]: open a
/// connection (subscribe, load everything into the replica), then follow
/// it (apply messages, poll) until it fails or the store shuts down.
#[cfg(any(feature = "postgres", feature = "redis"))]
trait Follow: Send + Sync + 'static {
    /// What one connected session holds.
    type Live: Send;
    /// For log lines.
    const NAME: &'static str;
    /// The retry interval after repeated failures.
    fn retry_interval(&self) -> Duration;
    /// Connects, subscribes and loads the replica.
    fn connect(
        &self,
        replica: &Replica,
    ) -> impl std::future::Future<Output = Result<Self::Live, StoreError>> + Send;
    /// Follows one session; `Ok` only on shutdown.
    fn follow(
        &self,
        live: Self::Live,
        replica: &Replica,
        shutdown: &mut watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;
}

/// The background task of a shared backend: sessions of (connect, load,
/// follow) until shutdown, reconnecting after errors (quickly at first,
/// then at the retry interval); every failure marks the replica stale.
#[cfg(any(feature = "postgres", feature = "redis"))]
async fn follow_forever<B: Follow>(
    backend: Arc<B>,
    first: B::Live,
    replica: Arc<Replica>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut live = Some(first);
    let mut failures: u32 = 0;
    loop {
        let session = match live.take() {
            Some(l) => Ok(l),
            None => backend.connect(&replica).await,
        };
        let result = match session {
            Ok(l) => {
                failures = 0;
                backend.follow(l, &replica, &mut shutdown).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, backend = B::NAME, "session store: session ended, reconnecting");
                replica.set_error(e.to_string());
            }
        }
        let wait = if failures <= 1 {
            Duration::from_millis(50)
        } else {
            backend.retry_interval()
        };
        if sleep_or_shutdown(wait, &mut shutdown).await {
            return;
        }
    }
}

/// Waits for `d` or until shutdown is signalled; true if shutting down.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords() {
        assert_eq!(
            redact("redis://:secret@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("postgres://u:p@h/db?x=1"), "postgres://***@h/db?x=1");
        assert_eq!(
            redact("host=h user=u password=geheim dbname=d"),
            "host=h user=u password=*** dbname=d"
        );
        assert_eq!(redact("redis://host/0"), "redis://host/0");
    }

    #[test]
    fn ceil_ms_rounds_up() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_500_000);
        assert_eq!(ceil_ms(t).ok(), Some(2));
        assert_eq!(ceil_ms(UNIX_EPOCH + Duration::from_millis(7)).ok(), Some(7));
    }

    #[test]
    fn namespace_rules() {
        assert!(check_namespace("oidc.state").is_ok());
        assert!(check_namespace("").is_err());
        assert!(check_namespace("a:b").is_err());
        assert!(check_namespace(&"x".repeat(65)).is_err());
    }

    #[test]
    fn options_are_checked() {
        assert!(StoreOptions::default().check().is_ok());
        let o = StoreOptions {
            poll_interval: Duration::from_secs(5),
            ..StoreOptions::default()
        };
        assert!(o.check().is_err());
    }
}
