//! PostgreSQL storage (cargo feature `postgres`): one log shared by several
//! gateway processes, which can never fork it.
//!
//! Tables, in one schema per log (created on first open, under an advisory
//! lock so that writers starting together do not race):
//!
//! | table | rows | written |
//! |---|---|---|
//! | `log_head` | one: `origin`, `size` (entries sequenced) | locked `FOR UPDATE` by every batch insert |
//! | `entries` | `idx` (primary key, gap-free from 0), `data` | one transaction per batch (group commit) |
//! | `checkpoint` | one: the newest signed checkpoint (`size`, `root`, `note`) | compare-and-swap only |
//! | `checkpoints` | every checkpoint ever published (primary key `size`) | in the same transaction as the swap |
//!
//! Writing:
//!
//! 1. **Sequencing** ([`PgStore::append_batch`]): in one transaction, lock
//!    the `log_head` row, insert the batch at `idx = size ..`, raise `size`,
//!    commit. Indexes are unique (primary key) and gap-free (a failed
//!    transaction raises nothing).
//! 2. **Integrating** ([`PgStore::prepare`]): read the newest checkpoint,
//!    verify its signature with this writer's key, read the entries this
//!    writer has not seen yet, and check that the checkpoint's root is the
//!    root of its own recomputed tree at that size. A mismatch is a fork or
//!    a tampered row and stops the writer ([`PgError::Corrupt`]).
//! 3. **Compare-and-swap** ([`PgStore::publish`]): sign the tree at the
//!    current head outside any transaction, then
//!    `UPDATE checkpoint SET size=$new, root=$root, note=$note WHERE size=$old AND root=$old_root`
//!    and insert the history row, in one transaction. If another writer
//!    swapped first, zero rows match, the transaction is rolled back, and
//!    the writer re-reads and re-integrates ([`Publish::Conflict`]).
//!
//! So the `checkpoint` row only ever moves forward along one tree: each
//! swap names the exact checkpoint it extends, and the writer checked that
//! its new tree extends that one. An event counts as recorded once a signed
//! checkpoint covers it; [`PgLog::wait`] returns `Ok` only then.
//!
//! All writers of one log must sign with the same key (a network HSM or a
//! shared PKCS#11 token): a writer whose key does not verify the stored
//! checkpoints is refused on open. [`export`] writes the log as C2SP tiles
//! into a directory, where [`crate::verify::verify_dir`] checks it like a
//! file log.

mod log;
mod store;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use log::{PgLog, PgTicket};
pub use store::{export, ExportReport, PgOpenReport, PgStore, Publish};

/// Settings of a log stored in PostgreSQL.
#[derive(Clone)]
#[non_exhaustive]
pub struct PgConfig {
    /// libpq-style connection string (`host=... user=... dbname=...`) or
    /// `postgresql://` URL. May hold a password, so it is redacted in
    /// `Debug`. TLS is the [`connector`](Self::connector)'s business.
    pub url: String,
    /// The schema holding this log's tables (letters, digits, `_`; at most
    /// 63 bytes; not starting with a digit).
    pub schema: String,
    /// The checkpoint origin and key name, shared by all writers of the log.
    pub origin: String,
    /// How often a checkpoint is signed while this writer has events that
    /// are not covered yet.
    pub period: Duration,
    /// Events that may wait for the writer before `append` refuses more.
    pub queue_capacity: usize,
    /// Timeout for establishing the connection.
    pub connect_timeout: Duration,
    /// Opens a connection with the parsed settings. [`plain_connector`] by
    /// default; the gateway passes one that speaks TLS
    /// (`stadttor_gateway::store_tls::sync_connector`): this crate knows
    /// nothing of TLS.
    pub connector: PgConnector,
}

/// Opens one connection with the given settings.
pub type PgConnector =
    Arc<dyn Fn(&postgres::Config) -> Result<postgres::Client, postgres::Error> + Send + Sync>;

/// Connects without TLS.
pub fn plain_connector() -> PgConnector {
    Arc::new(|c: &postgres::Config| c.connect(postgres::NoTls))
}

impl PgConfig {
    /// Defaults: period 1 s, queue of 262,144 events, connect timeout 5 s.
    pub fn new(
        url: impl Into<String>,
        schema: impl Into<String>,
        origin: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            schema: schema.into(),
            origin: origin.into(),
            period: Duration::from_secs(1),
            queue_capacity: 1 << 18,
            connect_timeout: Duration::from_secs(5),
            connector: plain_connector(),
        }
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &"<redacted>")
            .field("schema", &self.schema)
            .field("origin", &self.origin)
            .field("period", &self.period)
            .field("queue_capacity", &self.queue_capacity)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

/// Errors of the PostgreSQL storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The configuration is invalid.
    #[error("invalid PostgreSQL audit configuration: {0}")]
    Config(String),
    /// The server cannot be reached or went away (connection refused,
    /// timeout, connection lost, server shutting down). Audited actions
    /// must not proceed.
    #[error("PostgreSQL unavailable while {context}: {source}")]
    Unavailable {
        /// What the writer was doing.
        context: &'static str,
        /// The client error.
        #[source]
        source: postgres::Error,
    },
    /// The server rejected a statement (permissions, constraint, schema).
    #[error("PostgreSQL refused {context}: {source}")]
    Database {
        /// What the writer was doing.
        context: &'static str,
        /// The client error.
        #[source]
        source: postgres::Error,
    },
    /// The stored log contradicts itself or this writer's key: a
    /// checkpoint that does not verify, a root that differs from the tree
    /// recomputed from the entries (a fork or a changed row), a missing
    /// entry. The writer stops; an operator has to look.
    #[error("audit log in PostgreSQL schema {schema} is inconsistent: {reason}")]
    Corrupt {
        /// The schema.
        schema: String,
        /// What is wrong.
        reason: String,
    },
    /// No checkpoint has been published yet (nothing to export).
    #[error("no signed checkpoint in PostgreSQL schema {0} yet")]
    NoCheckpoint(String),
    /// Writing the exported directory failed.
    #[error("exporting the log: {0}")]
    Export(#[from] crate::store::StoreError),
    /// [`PgStore::publish`] was called with a checkpoint that the last
    /// [`PgStore::prepare`] did not return.
    #[error("publish called with a checkpoint that was not prepared")]
    NotPrepared,
}

impl PgError {
    /// True if the server could not be reached (as opposed to data or
    /// configuration problems).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Classifies a client error: no server answer, a connection exception
/// (SQLSTATE class 08), operator intervention (57, e.g. shutdown) or
/// insufficient resources (53) is unavailability; anything else the
/// server said is a refusal.
fn pg_err(context: &'static str) -> impl FnOnce(postgres::Error) -> PgError {
    move |source| {
        let unavailable = match source.as_db_error() {
            None => true,
            Some(db) => {
                let code = db.code().code();
                code.starts_with("08") || code.starts_with("57") || code.starts_with("53")
            }
        };
        if unavailable || source.is_closed() {
            PgError::Unavailable { context, source }
        } else {
            PgError::Database { context, source }
        }
    }
}

/// Checks a schema name, which is quoted into SQL.
fn check_schema(schema: &str) -> Result<(), PgError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(PgError::Config(format!(
            "schema {schema:?} must be 1-63 letters, digits or '_', not starting with a digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for ok in ["audit", "a_1", "_x", "Audit2026"] {
            assert!(check_schema(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a\"b", "a;drop", &"x".repeat(64)] {
            assert!(check_schema(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_redacts_url() {
        let c = PgConfig::new("postgresql://u:secret@h/db", "s", "o");
        assert!(!format!("{c:?}").contains("secret"));
    }
}
