//! TEMPORARY in-memory stand-in for the session store (replaced by the
//! real file/Redis/PostgreSQL store). Same API.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Store configuration.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// A directory.
    File {
        /// The directory.
        dir: PathBuf,
    },
    /// Redis.
    Redis {
        /// URL.
        url: String,
        /// Key prefix.
        prefix: String,
    },
    /// PostgreSQL.
    Postgres {
        /// URL.
        url: String,
        /// Schema.
        schema: String,
    },
}

/// Options.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Max staleness.
    pub max_staleness: Duration,
    /// Poll interval.
    pub poll_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_staleness: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Stale.
    #[error("session store stale")]
    Stale,
}

/// A revocation.
#[derive(Debug, Clone)]
pub enum Revocation {
    /// One session.
    Session {
        /// Id.
        id: String,
        /// Until.
        until: SystemTime,
    },
    /// Provider session.
    ProviderSession {
        /// Issuer.
        issuer: String,
        /// Sid.
        sid: String,
        /// Until.
        until: SystemTime,
    },
    /// Subject.
    Subject {
        /// Issuer.
        issuer: String,
        /// Sub.
        sub: String,
        /// Before.
        before: SystemTime,
        /// Until.
        until: SystemTime,
    },
}

/// Session reference.
#[derive(Debug)]
pub struct SessionRef<'a> {
    /// Id.
    pub id: &'a str,
    /// Issuer.
    pub issuer: &'a str,
    /// Sub.
    pub sub: &'a str,
    /// Sid.
    pub sid: Option<&'a str>,
    /// Issued at.
    pub issued_at: SystemTime,
}

#[derive(Debug, Default)]
struct Inner {
    once: HashMap<String, SystemTime>,
    revs: Vec<Revocation>,
}

/// The store.
#[derive(Debug, Clone, Default)]
pub struct SessionStore {
    inner: Arc<Mutex<Inner>>,
}

impl SessionStore {
    /// Opens.
    pub async fn open(_cfg: &StoreConfig, _opts: StoreOptions) -> Result<Self, StoreError> {
        Ok(Self::default())
    }
    /// Once.
    pub async fn once(&self, ns: &str, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut g = self.inner.lock().map_err(|_| StoreError::Stale)?;
        let k = format!("{ns}/{key}");
        let now = SystemTime::now();
        if g.once.get(&k).is_some_and(|t| *t > now) {
            return Ok(false);
        }
        g.once.insert(k, now + ttl);
        Ok(true)
    }
    /// Revoke.
    pub async fn revoke(&self, r: Revocation) -> Result<(), StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Stale)?
            .revs
            .push(r);
        Ok(())
    }
    /// Is revoked.
    pub fn is_revoked(&self, s: &SessionRef<'_>) -> Result<bool, StoreError> {
        let g = self.inner.lock().map_err(|_| StoreError::Stale)?;
        Ok(g.revs.iter().any(|r| match r {
            Revocation::Session { id, .. } => id == s.id,
            Revocation::ProviderSession { issuer, sid, .. } => {
                issuer == s.issuer && Some(sid.as_str()) == s.sid
            }
            Revocation::Subject {
                issuer,
                sub,
                before,
                ..
            } => issuer == s.issuer && sub == s.sub && s.issued_at < *before,
        }))
    }
    /// Health.
    pub fn health(&self) -> Result<(), String> {
        Ok(())
    }
}
