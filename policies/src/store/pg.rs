//! [`PgStore`]: the policy store in PostgreSQL, for clusters of gateways.
//!
//! Tables in a configurable schema (created if missing; creation is
//! serialised with an advisory lock, so concurrent gateways starting at once
//! do not trip over each other):
//!
//! * `policy_versions`: immutable (a trigger refuses UPDATE and DELETE);
//! * `policy_proposals`: id, status (compared on update) and the proposal;
//! * `policy_active`: one row, the active version.
//!
//! Every write runs in a transaction holding the schema's advisory lock;
//! activation compares the active version with the expected one before it
//! moves the pointer and sends `NOTIFY stadttor_policy_<schema>` (delivered
//! on commit). [`PgStore::subscribe`](PolicyStore::subscribe) opens its own
//! connection that `LISTEN`s; the watcher also polls as a backstop.
//!
//! Uses the blocking `postgres` client (it runs a small runtime of its own):
//! call it from threads that may block, not from inside an async task.
//!
//! How a connection is opened (plain, or TLS as the gateway configures it)
//! is the caller's [`PgConnector`]: this crate knows nothing of TLS.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

use super::{ChangeWaiter, PolicyStore, Proposal, ProposalStatus, StoredVersion, VersionMeta};
use crate::error::StoreError;
use crate::set::PolicySet;

/// Opens one connection with the given settings. [`PgStore::connect`]
/// uses [`plain_connector`]; the gateway passes one that speaks TLS
/// (`stadttor_gateway::store_tls::sync_connector`).
pub type PgConnector =
    Arc<dyn Fn(&postgres::Config) -> Result<Client, postgres::Error> + Send + Sync>;

/// Connects without TLS (a local socket, loopback, or the connection
/// string's own `sslmode`, which `postgres` can only satisfy in plain).
pub fn plain_connector() -> PgConnector {
    Arc::new(|c: &postgres::Config| c.connect(NoTls))
}

/// A policy store in a PostgreSQL schema.
pub struct PgStore {
    config: postgres::Config,
    connector: PgConnector,
    schema: String,
    client: Mutex<Client>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .finish()
    }
}

/// The error with its sources: `postgres::Error` says only "error
/// performing TLS handshake" or "db error"; the reason is in the source.
fn pg(e: postgres::Error) -> StoreError {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(&e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    StoreError::Postgres(s)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative version {v}")))
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::NoSuchVersion(v))
}

impl PgStore {
    /// Connects (`conninfo` as for `postgres::Client::connect`, e.g.
    /// `host=127.0.0.1 user=postgres dbname=stadttor`) and creates the
    /// schema and tables if missing. `schema`: lower-case letters, digits
    /// and `_`, at most 40 characters, not starting with a digit.
    pub fn connect(conninfo: &str, schema: &str) -> Result<Self, StoreError> {
        Self::connect_with(conninfo, schema, plain_connector())
    }

    /// Like [`PgStore::connect`], opening every connection (this one and
    /// those of [`PolicyStore::subscribe`]) with `connector`.
    pub fn connect_with(
        conninfo: &str,
        schema: &str,
        connector: PgConnector,
    ) -> Result<Self, StoreError> {
        let ok = !schema.is_empty()
            && schema.len() <= 40
            && schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !schema.as_bytes()[0].is_ascii_digit();
        if !ok {
            return Err(StoreError::Config(format!(
                "schema name {schema:?}: use lower-case letters, digits and _ (at most 40, not starting with a digit)"
            )));
        }
        let config: postgres::Config = conninfo
            .parse()
            .map_err(|e| StoreError::Config(format!("connection string: {e}")))?;
        let mut client = connector(&config).map_err(pg)?;
        let s = schema;
        let mut tx = client.transaction().map_err(pg)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('stadttor-policies-ddl'))",
            &[],
        )
        .map_err(pg)?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE IF NOT EXISTS {s}.policy_versions (
                 version BIGINT PRIMARY KEY,
                 model TEXT NOT NULL,
                 policy TEXT NOT NULL,
                 tests TEXT NOT NULL,
                 meta TEXT NOT NULL,
                 created_at TIMESTAMPTZ NOT NULL DEFAULT now());
             CREATE TABLE IF NOT EXISTS {s}.policy_proposals (
                 id TEXT PRIMARY KEY,
                 status TEXT NOT NULL,
                 created BIGINT NOT NULL,
                 body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS {s}.policy_active (
                 singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
                 version BIGINT NOT NULL REFERENCES {s}.policy_versions(version));
             CREATE OR REPLACE FUNCTION {s}.policy_versions_immutable() RETURNS trigger
                 LANGUAGE plpgsql AS $$ BEGIN
                 RAISE EXCEPTION 'policy versions are immutable'; END $$;
             DROP TRIGGER IF EXISTS policy_versions_immutable ON {s}.policy_versions;
             CREATE TRIGGER policy_versions_immutable BEFORE UPDATE OR DELETE
                 ON {s}.policy_versions FOR EACH ROW
                 EXECUTE FUNCTION {s}.policy_versions_immutable();"
        ))
        .map_err(pg)?;
        tx.commit().map_err(pg)?;
        Ok(Self {
            config,
            connector,
            schema: schema.to_string(),
            client: Mutex::new(client),
        })
    }

    /// The schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Drops the schema with everything in it (tests, decommissioning).
    pub fn drop_schema(&self) -> Result<(), StoreError> {
        self.conn()?
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .map_err(pg)
    }

    fn channel(&self) -> String {
        format!("stadttor_policy_{}", self.schema)
    }

    fn conn(&self) -> Result<MutexGuard<'_, Client>, StoreError> {
        self.client
            .lock()
            .map_err(|_| StoreError::Postgres("connection mutex poisoned".into()))
    }

    fn lock_sql(&self) -> String {
        format!(
            "SELECT pg_advisory_xact_lock(hashtext('stadttor-policies:{}'))",
            self.schema
        )
    }
}

fn status_json(s: &ProposalStatus) -> Result<String, StoreError> {
    to_json(s)
}

impl PolicyStore for PgStore {
    fn active_version(&self) -> Result<Option<u64>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                &format!("SELECT version FROM {}.policy_active", self.schema),
                &[],
            )
            .map_err(pg)?;
        row.map(|r| to_u64(r.get(0))).transpose()
    }

    fn load(&self, version: u64) -> Result<StoredVersion, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                &format!(
                    "SELECT model, policy, tests, meta FROM {}.policy_versions WHERE version = $1",
                    self.schema
                ),
                &[&to_i64(version)?],
            )
            .map_err(pg)?
            .ok_or(StoreError::NoSuchVersion(version))?;
        Ok(StoredVersion {
            set: PolicySet {
                model: row.get(0),
                policy: row.get(1),
                tests: row.get(2),
            },
            meta: from_json(row.get(3), "version meta")?,
        })
    }

    fn versions(&self) -> Result<Vec<VersionMeta>, StoreError> {
        self.conn()?
            .query(
                &format!(
                    "SELECT meta FROM {}.policy_versions ORDER BY version",
                    self.schema
                ),
                &[],
            )
            .map_err(pg)?
            .iter()
            .map(|r| from_json(r.get(0), "version meta"))
            .collect()
    }

    fn proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        self.conn()?
            .query(
                &format!(
                    "SELECT body FROM {}.policy_proposals ORDER BY created, id",
                    self.schema
                ),
                &[],
            )
            .map_err(pg)?
            .iter()
            .map(|r| from_json(r.get(0), "proposal"))
            .collect()
    }

    fn proposal(&self, id: &str) -> Result<Proposal, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                &format!(
                    "SELECT body FROM {}.policy_proposals WHERE id = $1",
                    self.schema
                ),
                &[&id],
            )
            .map_err(pg)?
            .ok_or_else(|| StoreError::NoSuchProposal(id.to_string()))?;
        from_json(row.get(0), "proposal")
    }

    fn insert_proposal(&self, p: &Proposal) -> Result<(), StoreError> {
        let n = self
            .conn()?
            .execute(
                &format!(
                    "INSERT INTO {}.policy_proposals (id, status, created, body) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id) DO NOTHING",
                    self.schema
                ),
                &[&p.id, &status_json(&p.status)?, &i64::try_from(p.created_unix_ms).unwrap_or(i64::MAX), &to_json(p)?],
            )
            .map_err(pg)?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::ProposalConflict(p.id.clone()))
        }
    }

    fn update_proposal(&self, p: &Proposal, expected: &ProposalStatus) -> Result<(), StoreError> {
        let n = self
            .conn()?
            .execute(
                &format!(
                    "UPDATE {}.policy_proposals SET status = $2, body = $3 WHERE id = $1 AND status = $4",
                    self.schema
                ),
                &[&p.id, &status_json(&p.status)?, &to_json(p)?, &status_json(expected)?],
            )
            .map_err(pg)?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::ProposalConflict(p.id.clone()))
        }
    }

    fn activate(
        &self,
        expected_active: Option<u64>,
        set: &PolicySet,
        mut meta: VersionMeta,
        proposal: Option<&Proposal>,
    ) -> Result<u64, StoreError> {
        let s = &self.schema;
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(pg)?;
        tx.execute(&self.lock_sql(), &[]).map_err(pg)?;
        let actual = tx
            .query_opt(&format!("SELECT version FROM {s}.policy_active"), &[])
            .map_err(pg)?
            .map(|r| to_u64(r.get(0)))
            .transpose()?;
        if actual != expected_active {
            return Err(StoreError::Conflict {
                expected: expected_active,
                actual,
            });
        }
        if let Some(p) = proposal {
            let st: Option<String> = tx
                .query_opt(
                    &format!("SELECT status FROM {s}.policy_proposals WHERE id = $1"),
                    &[&p.id],
                )
                .map_err(pg)?
                .map(|r| r.get(0));
            if st != Some(status_json(&ProposalStatus::Pending)?) {
                return Err(StoreError::ProposalConflict(p.id.clone()));
            }
        }
        let last: i64 = tx
            .query_one(
                &format!("SELECT COALESCE(MAX(version), 0) FROM {s}.policy_versions"),
                &[],
            )
            .map_err(pg)?
            .get(0);
        let version = to_u64(last)? + 1;
        meta.version = version;
        meta.parent = expected_active;
        let v = to_i64(version)?;
        tx.execute(
            &format!("INSERT INTO {s}.policy_versions (version, model, policy, tests, meta) VALUES ($1, $2, $3, $4, $5)"),
            &[&v, &set.model, &set.policy, &set.tests, &to_json(&meta)?],
        )
        .map_err(pg)?;
        if let Some(p) = proposal {
            let mut p = p.clone();
            p.status = ProposalStatus::Activated { version };
            tx.execute(
                &format!("UPDATE {s}.policy_proposals SET status = $2, body = $3 WHERE id = $1"),
                &[&p.id, &status_json(&p.status)?, &to_json(&p)?],
            )
            .map_err(pg)?;
        }
        tx.execute(
            &format!(
                "INSERT INTO {s}.policy_active (singleton, version) VALUES (TRUE, $1)
                 ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version"
            ),
            &[&v],
        )
        .map_err(pg)?;
        tx.execute(
            "SELECT pg_notify($1, $2)",
            &[&self.channel(), &version.to_string()],
        )
        .map_err(pg)?;
        tx.commit().map_err(pg)?;
        Ok(version)
    }

    fn subscribe(&self) -> Result<Box<dyn ChangeWaiter>, StoreError> {
        let mut client = (self.connector)(&self.config).map_err(pg)?;
        client
            .batch_execute(&format!("LISTEN \"{}\"", self.channel()))
            .map_err(pg)?;
        Ok(Box::new(PgListener { client }))
    }
}

/// A connection that `LISTEN`s for activations.
struct PgListener {
    client: Client,
}

impl ChangeWaiter for PgListener {
    fn wait(&mut self, timeout: Duration) -> Result<bool, StoreError> {
        let mut n = self.client.notifications();
        let got = n.timeout_iter(timeout).next().map_err(pg)?.is_some();
        // Drain whatever else arrived; one sync covers them all.
        let mut rest = n.iter();
        while rest.next().map_err(pg)?.is_some() {}
        Ok(got)
    }
}
