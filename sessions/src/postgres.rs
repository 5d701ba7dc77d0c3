//! PostgreSQL backend (feature `postgres`), shared by several gateways.
//!
//! Tables in the configured schema (created on open if missing, under an
//! advisory lock so two gateways starting together do not collide):
//!
//! * `once_markers(ns, key, expires_at)`, primary key `(ns, key)`. A marker
//!   is taken by `INSERT … ON CONFLICT DO UPDATE … WHERE expires_at <=
//!   now() RETURNING`: a row comes back for a new key or an expired one,
//!   none for a live one. Row locking makes this exclusive under
//!   concurrency. Expiry uses the database clock.
//! * `revocations(id bigserial, until, body, created_at)`. An insert takes
//!   `LOCK TABLE … IN EXCLUSIVE MODE` first, so ids commit in order and an
//!   incremental poll for `id > last` misses nothing; it also calls
//!   `pg_notify('<schema>_revocations', '<id> <json>')` in the same
//!   transaction (delivered on commit).
//!
//! Each store's background task holds its own connection: `LISTEN`, load
//! everything, then apply notifications and poll `id > last` every
//! `poll_interval` (each successful poll confirms the replica fresh). A
//! lost connection ends the session; the task reconnects and reloads.
//! Every `purge_interval` it deletes expired markers and revocations.
//! `once` and `revoke` use one more connection, made on first use and
//! again after an error.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, NoTls};

use rustls::ClientConfig;

use crate::error::chain;
use crate::pg_tls::MakeRustlsConnect;
use crate::replica::{Replica, Wire};
use crate::{from_ms, redact, StoreError, StoreOptions};

/// The PostgreSQL side of a store.
pub(crate) struct PgBackend {
    config: Config,
    /// TLS (`sslmode=require` is set in `config`), or plaintext.
    tls: Option<MakeRustlsConnect>,
    schema: String,
    channel: String,
    opts: StoreOptions,
    /// The request-path connection.
    client: Mutex<Option<Client>>,
}

fn db_err(what: &str) -> impl FnOnce(tokio_postgres::Error) -> StoreError + '_ {
    move |e| StoreError::Unavailable(format!("postgres: {what}: {}", chain(&e)))
}

async fn timed<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| StoreError::Timeout(limit))?
}

/// Checks a schema name, which is quoted into SQL and is part of the
/// notification channel's name (at most 63 bytes in all).
fn check_schema(schema: &str) -> Result<(), StoreError> {
    let ok = !schema.is_empty()
        && schema.len() <= 48
        && schema
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(StoreError::Config(format!(
            "postgres schema {schema:?} must be 1-48 letters, digits or '_', not starting with a digit"
        )))
    }
}

impl PgBackend {
    /// Connects, creates the tables if needed, loads every revocation into
    /// `replica` and starts the background task.
    pub(crate) async fn open(
        url: &str,
        schema: &str,
        tls: Option<&Arc<ClientConfig>>,
        opts: StoreOptions,
        replica: Arc<Replica>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<PgBackend>, JoinHandle<()>), StoreError> {
        check_schema(schema)?;
        let mut config = Config::from_str(url)
            .map_err(|e| StoreError::Config(format!("postgres url {}: {e}", redact(url))))?;
        config.connect_timeout(opts.op_timeout);
        if config.get_application_name().is_none() {
            config.application_name("stadttor-session-store");
        }
        let tls = match tls {
            None => {
                config.ssl_mode(SslMode::Disable);
                None
            }
            Some(cc) => {
                config.ssl_mode(SslMode::Require);
                Some(MakeRustlsConnect::new(Arc::clone(cc)))
            }
        };
        let backend = Arc::new(PgBackend {
            config,
            tls,
            schema: schema.to_owned(),
            channel: format!("{schema}_revocations"),
            opts,
            client: Mutex::new(None),
        });
        {
            let mut guard = backend.client.lock().await;
            let mut client = backend.connect().await?;
            timed(opts.op_timeout, backend.migrate(&mut client)).await?;
            *guard = Some(client);
        }
        let live = backend.connect_and_load(&replica).await?;
        let b = Arc::clone(&backend);
        let task = tokio::spawn(crate::follow_forever(b, live, replica, shutdown));
        Ok((backend, task))
    }

    /// A new connection (TLS or plain, as configured) whose driver runs
    /// in its own task; notifications go to `notes` if given.
    async fn open_conn(
        &self,
        what: &'static str,
        notes: Option<mpsc::UnboundedSender<String>>,
    ) -> Result<(Client, JoinHandle<()>), StoreError> {
        timed(self.opts.op_timeout, async {
            Ok(match &self.tls {
                None => {
                    let (c, conn) = self.config.connect(NoTls).await.map_err(db_err(what))?;
                    (c, tokio::spawn(drive(conn, notes)))
                }
                Some(tls) => {
                    let (c, conn) = self
                        .config
                        .connect(tls.clone())
                        .await
                        .map_err(db_err(what))?;
                    (c, tokio::spawn(drive(conn, notes)))
                }
            })
        })
        .await
    }

    /// A new request-path connection.
    async fn connect(&self) -> Result<Client, StoreError> {
        Ok(self.open_conn("connecting", None).await?.0)
    }

    async fn migrate(&self, client: &mut Client) -> Result<(), StoreError> {
        let s = &self.schema;
        let tx = client
            .transaction()
            .await
            .map_err(db_err("starting the schema setup"))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('stadttor-session-store:' || $1::text))",
            &[&s],
        )
        .await
        .map_err(db_err("locking the schema setup"))?;
        // The schema name was checked by `check_schema`: quoting it is safe.
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{s}\";
             CREATE TABLE IF NOT EXISTS \"{s}\".once_markers (
                 ns text NOT NULL,
                 key text NOT NULL,
                 expires_at timestamptz NOT NULL,
                 PRIMARY KEY (ns, key));
             CREATE INDEX IF NOT EXISTS once_markers_expires_at
                 ON \"{s}\".once_markers (expires_at);
             CREATE TABLE IF NOT EXISTS \"{s}\".revocations (
                 id bigserial PRIMARY KEY,
                 until timestamptz NOT NULL,
                 body text NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now());
             CREATE INDEX IF NOT EXISTS revocations_until
                 ON \"{s}\".revocations (until);"
        ))
        .await
        .map_err(db_err("creating the tables"))?;
        tx.commit()
            .await
            .map_err(db_err("committing the schema setup"))
    }

    /// Runs `f` on the request-path connection (connecting if needed);
    /// drops the connection after an error or a timeout. If the error came
    /// from a connection that turned out closed (the server restarted, or
    /// the backend was terminated), `f` runs once more on a new one: for a
    /// marker whose first insert committed unseen, that answers `false`
    /// (fail closed); a repeated revocation is harmless.
    async fn with_client<T>(
        &self,
        f: impl for<'c> Fn(
            &'c mut Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'c>,
        >,
    ) -> Result<T, StoreError> {
        let mut guard = self.client.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if guard.as_ref().is_none_or(Client::is_closed) {
                *guard = None;
                *guard = Some(self.connect().await?);
            }
            let Some(client) = guard.as_mut() else {
                return Err(StoreError::Unavailable("postgres: no connection".into()));
            };
            let r = tokio::time::timeout(self.opts.op_timeout, f(client))
                .await
                .map_err(|_| StoreError::Timeout(self.opts.op_timeout))
                .and_then(|r| r);
            match r {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let closed = guard.as_ref().is_none_or(Client::is_closed);
                    *guard = None;
                    if !(closed && attempt == 1 && !matches!(e, StoreError::Timeout(_))) {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Takes a single-use marker.
    pub(crate) async fn once(
        &self,
        ns: &str,
        digest: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO \"{s}\".once_markers AS o (ns, key, expires_at)
             VALUES ($1, $2, now() + make_interval(secs => $3))
             ON CONFLICT (ns, key) DO UPDATE SET expires_at = EXCLUDED.expires_at
                 WHERE o.expires_at <= now()
             RETURNING true",
            s = self.schema
        );
        let secs = ttl.as_secs_f64();
        self.with_client(|c| {
            // The future owns what it uses (it may outlive this call's borrows).
            let (sql, ns, digest) = (sql.clone(), ns.to_owned(), digest.to_owned());
            Box::pin(async move {
                let row = c
                    .query_opt(&sql, &[&ns, &digest, &secs])
                    .await
                    .map_err(db_err("taking a single-use marker"))?;
                Ok(row.is_some())
            })
        })
        .await
    }

    /// Inserts and announces a revocation.
    pub(crate) async fn revoke(&self, w: &Wire) -> Result<(), StoreError> {
        let body = w.to_json();
        let until = from_ms(w.until());
        self.with_client(|c| {
            let (s, channel, body) = (self.schema.clone(), self.channel.clone(), body.clone());
            Box::pin(async move {
                let tx = c
                    .transaction()
                    .await
                    .map_err(db_err("starting a revocation"))?;
                tx.batch_execute(&format!(
                    "LOCK TABLE \"{s}\".revocations IN EXCLUSIVE MODE"
                ))
                .await
                .map_err(db_err("locking the revocations"))?;
                let row = tx
                    .query_one(
                        &format!(
                            "INSERT INTO \"{s}\".revocations (until, body) VALUES ($1, $2) RETURNING id"
                        ),
                        &[&until, &body],
                    )
                    .await
                    .map_err(db_err("inserting a revocation"))?;
                let id: i64 = row.get(0);
                let payload = format!("{id} {body}");
                tx.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
                    .await
                    .map_err(db_err("announcing a revocation"))?;
                tx.commit()
                    .await
                    .map_err(db_err("committing a revocation"))
            })
        })
        .await
    }

    /// Opens the background connection, `LISTEN`s, then loads everything.
    async fn connect_and_load(&self, replica: &Replica) -> Result<Live, StoreError> {
        let (tx, notes) = mpsc::unbounded_channel::<String>();
        let (client, driver) = self.open_conn("connecting for LISTEN", Some(tx)).await?;
        let driver = AbortOnDrop(driver);
        timed(self.opts.op_timeout, async {
            client
                .batch_execute(&format!("LISTEN \"{}\"", self.channel))
                .await
                .map_err(db_err("LISTEN"))
        })
        .await?;
        let mut live = Live {
            client,
            notes,
            _driver: driver,
            last: 0,
        };
        let t0 = Instant::now();
        self.poll(&mut live, replica).await?;
        replica.confirm_fresh(t0);
        Ok(live)
    }

    /// Applies every revocation with `id > live.last`.
    async fn poll(&self, live: &mut Live, replica: &Replica) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT id, body FROM \"{}\".revocations WHERE id > $1 ORDER BY id",
            self.schema
        );
        let last = live.last;
        let rows = timed(self.opts.op_timeout, async {
            live.client
                .query(&sql, &[&last])
                .await
                .map_err(db_err("reading revocations"))
        })
        .await?;
        let mut ws = Vec::with_capacity(rows.len());
        let mut max = last;
        for row in &rows {
            let id: i64 = row.try_get(0).map_err(db_err("reading an id"))?;
            let body: &str = row.try_get(1).map_err(db_err("reading a body"))?;
            ws.push(Wire::from_json(body)?);
            max = max.max(id);
        }
        replica.apply_all(&ws);
        live.last = max;
        Ok(())
    }

    /// Deletes expired markers and revocations.
    async fn purge(&self, live: &Live) -> Result<(), StoreError> {
        let s = &self.schema;
        timed(self.opts.op_timeout, async {
            live.client
                .batch_execute(&format!(
                    "DELETE FROM \"{s}\".once_markers WHERE expires_at <= now();
                     DELETE FROM \"{s}\".revocations WHERE until <= now();"
                ))
                .await
                .map_err(db_err("purging"))
        })
        .await
    }

    async fn follow(
        &self,
        mut live: Live,
        replica: &Replica,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        let mut tick = tokio::time::interval(self.opts.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut last_purge = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                note = live.notes.recv() => {
                    let Some(payload) = note else {
                        return Err(StoreError::Unavailable("postgres: LISTEN connection closed".into()));
                    };
                    match payload.split_once(' ').map(|(_, j)| Wire::from_json(j)) {
                        Some(Ok(w)) => replica.apply(&w),
                        _ => tracing::warn!("session store: unreadable revocation notification"),
                    }
                }
                _ = tick.tick() => {
                    let t0 = Instant::now();
                    self.poll(&mut live, replica).await?;
                    replica.confirm_fresh(t0);
                    if last_purge.elapsed() >= self.opts.purge_interval {
                        last_purge = Instant::now();
                        self.purge(&live).await?;
                        replica.purge(SystemTime::now());
                    }
                }
            }
        }
    }
}

/// Drives one connection until it ends, passing notifications to `notes`
/// (if any; the request-path connection has none).
async fn drive<S, T>(mut conn: Connection<S, T>, notes: Option<mpsc::UnboundedSender<String>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) => {
                if let Some(tx) = &notes {
                    if tx.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "session store: postgres connection ended");
                return;
            }
            None => return,
        }
    }
}

/// A connected session of the background task.
pub(super) struct Live {
    client: Client,
    notes: mpsc::UnboundedReceiver<String>,
    _driver: AbortOnDrop,
    last: i64,
}

/// Stops the connection driver when the session ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl super::Follow for PgBackend {
    type Live = Live;
    const NAME: &'static str = "postgres";

    fn retry_interval(&self) -> Duration {
        self.opts.poll_interval
    }

    fn connect(
        &self,
        replica: &Replica,
    ) -> impl std::future::Future<Output = Result<Live, StoreError>> + Send {
        self.connect_and_load(replica)
    }

    fn follow(
        &self,
        live: Live,
        replica: &Replica,
        shutdown: &mut watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send {
        PgBackend::follow(self, live, replica, shutdown)
    }
}
