//! [`PgStore`]: one writer's connection to a log in PostgreSQL, with the
//! sequencing, integration and compare-and-swap steps described in
//! [`crate::pg`], and [`export`] to a C2SP tile directory.

use std::fmt;
use std::path::Path;

use postgres::{Client, IsolationLevel};

use super::{check_schema, pg_err, PgConfig, PgError};
pub use crate::appender::Publish;
use crate::merkle::{leaf_hash, Frontier, Hash};
use crate::note::{self, Checkpoint, VerifierKey};
use crate::store::{self as file_store, TileWriter};
use crate::tiles::MAX_ENTRY_LEN;

/// Entries read per query when catching up or exporting.
const PAGE: i64 = 8192;

/// The newest checkpoint this writer has read and verified.
#[derive(Debug, Clone)]
struct Latest {
    size: u64,
    root: Hash,
}

/// What [`PgStore::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgOpenReport {
    /// Entries sequenced in the log (by all writers).
    pub entries: u64,
    /// Size of the newest signed checkpoint (0 if none yet).
    pub checkpoint_size: u64,
    /// Checkpoints in the history, all verified against the entries.
    pub checkpoints: u64,
    /// Entries not yet covered by a signed checkpoint.
    pub unpublished: u64,
}

impl fmt::Display for PgOpenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} entries, signed checkpoint at {} ({} in history, all heads of the recomputed tree), {} entries not yet signed",
            self.entries, self.checkpoint_size, self.checkpoints, self.unpublished
        )
    }
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportReport {
    /// Size of the exported (newest) checkpoint.
    pub checkpoint_size: u64,
    /// Entries written into entry bundles.
    pub entries: u64,
    /// Checkpoints written to `checkpoints.jsonl`.
    pub checkpoints: u64,
}

/// One writer's connection to a log stored in PostgreSQL. Several
/// `PgStore`s (in one or many processes) may write the same log.
pub struct PgStore {
    client: Client,
    schema: String,
    origin: String,
    key: VerifierKey,
    /// The tree at the size of the newest verified checkpoint.
    base: Frontier,
    /// Leaf hashes of the entries after `base`, in order.
    ahead: Vec<Hash>,
    latest: Option<Latest>,
    /// The swap the last `prepare` set up: expected old checkpoint and the
    /// candidate.
    prepared: Option<(Option<Latest>, Checkpoint)>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .field("origin", &self.origin)
            .field("known", &self.known())
            .field("checkpoint", &self.latest.as_ref().map(|l| l.size))
            .finish_non_exhaustive()
    }
}

fn to_u64(v: i64, what: &str, schema: &str) -> Result<u64, PgError> {
    u64::try_from(v).map_err(|_| PgError::Corrupt {
        schema: schema.to_owned(),
        reason: format!("{what} is negative ({v})"),
    })
}

fn to_i64(v: u64) -> Result<i64, PgError> {
    i64::try_from(v).map_err(|_| PgError::Config(format!("size {v} exceeds PostgreSQL bigint")))
}

fn to_hash(v: &[u8], what: &str, schema: &str) -> Result<Hash, PgError> {
    Hash::try_from(v).map_err(|_| PgError::Corrupt {
        schema: schema.to_owned(),
        reason: format!("{what} is not a 32-byte hash"),
    })
}

/// Connects with the settings of `cfg` and selects the log's schema.
fn connect(cfg: &PgConfig) -> Result<Client, PgError> {
    check_schema(&cfg.schema)?;
    let mut pc: postgres::Config = cfg
        .url
        .parse()
        .map_err(|e| PgError::Config(format!("cannot parse the connection string: {e}")))?;
    if pc.get_connect_timeout().is_none() {
        pc.connect_timeout(cfg.connect_timeout);
    }
    if pc.get_application_name().is_none() {
        pc.application_name(&format!("stadttor-audit {}", cfg.schema));
    }
    (cfg.connector)(&pc).map_err(pg_err("connecting"))
}

/// The recovery mismatch a concurrent publish can cause.
const RACING_PUBLISH: &str = "is not the newest history row";

impl PgStore {
    /// Connects, creates the schema if needed, and verifies the stored log
    /// against `key`: every historical checkpoint's signature, and its root
    /// against the tree recomputed from the entries. Fails with
    /// [`PgError::Unavailable`] if the server cannot be reached, and with
    /// [`PgError::Corrupt`] if anything does not match.
    pub fn open(cfg: &PgConfig, key: &VerifierKey) -> Result<(Self, PgOpenReport), PgError> {
        let mut client = connect(cfg)?;
        let schema = cfg.schema.clone();
        migrate(&mut client, &schema, &cfg.origin)?;
        // Recovery reads the history and then the checkpoint row; another
        // writer may publish in between. That shows as a checkpoint newer
        // than the history just read: read again, a few times, before
        // calling the log corrupt.
        let mut attempt = 0;
        loop {
            let mut store = Self {
                client,
                schema: schema.clone(),
                origin: cfg.origin.clone(),
                key: key.clone(),
                base: Frontier::new(),
                ahead: Vec::new(),
                latest: None,
                prepared: None,
            };
            match store.recover() {
                Ok(report) => return Ok((store, report)),
                Err(PgError::Corrupt { reason, .. })
                    if attempt < 5 && reason.contains(RACING_PUBLISH) =>
                {
                    attempt += 1;
                    client = store.client;
                    std::thread::sleep(std::time::Duration::from_millis(20 * attempt));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn corrupt(&self, reason: String) -> PgError {
        PgError::Corrupt {
            schema: self.schema.clone(),
            reason,
        }
    }

    /// Entries whose leaf hashes this writer knows.
    fn known(&self) -> u64 {
        self.base.size() + self.ahead.len() as u64
    }

    /// Checks the whole history against the recomputed tree.
    fn recover(&mut self) -> Result<PgOpenReport, PgError> {
        let rows = self
            .client
            .query(
                "SELECT size, root, note FROM checkpoints ORDER BY size",
                &[],
            )
            .map_err(pg_err("reading the checkpoint history"))?;
        let mut history = Vec::with_capacity(rows.len());
        for row in &rows {
            let size = to_u64(row.get(0), "history size", &self.schema)?;
            let root = to_hash(row.get(1), "history root", &self.schema)?;
            let note: String = row.get(2);
            history.push(self.verify_note(&note, size, root)?);
        }
        for cp in &history {
            self.catch_up(cp.size)?;
            self.advance_base(cp.size, &cp.root)?;
        }
        let current = self.read_checkpoint()?;
        match (&current, history.last()) {
            (None, None) => {}
            (Some(c), Some(h)) if c.size == h.size && c.root == h.root => {}
            (c, h) => {
                return Err(self.corrupt(format!(
                    "the checkpoint row (size {:?}) {RACING_PUBLISH} (size {:?})",
                    c.as_ref().map(|c| c.size),
                    h.map(|h| h.size)
                )))
            }
        }
        self.latest = current;
        let head = self.head()?;
        let checkpoint_size = self.latest.as_ref().map_or(0, |l| l.size);
        Ok(PgOpenReport {
            entries: head,
            checkpoint_size,
            checkpoints: history.len() as u64,
            unpublished: head.saturating_sub(checkpoint_size),
        })
    }

    /// Verifies a stored note and that it matches its row's size and root.
    fn verify_note(&self, note: &str, size: u64, root: Hash) -> Result<Checkpoint, PgError> {
        let cp = note::verify_checkpoint(note, &self.key).map_err(|e| {
            self.corrupt(format!(
                "checkpoint {size} does not verify with this writer's key \
                 (all writers of one log must share one key): {e}"
            ))
        })?;
        if cp.origin != self.origin || cp.size != size || cp.root != root {
            return Err(self.corrupt(format!(
                "checkpoint row {size} holds a note for origin {:?} size {}",
                cp.origin, cp.size
            )));
        }
        Ok(cp)
    }

    /// Reads and verifies the `checkpoint` row.
    fn read_checkpoint(&mut self) -> Result<Option<Latest>, PgError> {
        let row = self
            .client
            .query_opt("SELECT size, root, note FROM checkpoint", &[])
            .map_err(pg_err("reading the checkpoint"))?;
        let Some(row) = row else { return Ok(None) };
        let size = to_u64(row.get(0), "checkpoint size", &self.schema)?;
        let root = to_hash(row.get(1), "checkpoint root", &self.schema)?;
        let note: String = row.get(2);
        if let Some(l) = &self.latest {
            if l.size == size && l.root == root {
                return Ok(Some(l.clone()));
            }
        }
        self.verify_note(&note, size, root)?;
        Ok(Some(Latest { size, root }))
    }

    /// Number of entries sequenced by all writers.
    pub fn head(&mut self) -> Result<u64, PgError> {
        let row = self
            .client
            .query_one("SELECT size FROM log_head", &[])
            .map_err(pg_err("reading the log head"))?;
        to_u64(row.get(0), "log size", &self.schema)
    }

    /// Size of the newest checkpoint this writer has verified.
    pub fn checkpoint_size(&self) -> Option<u64> {
        self.latest.as_ref().map(|l| l.size)
    }

    /// Reads the leaf hashes of entries `known() .. target`.
    fn catch_up(&mut self, target: u64) -> Result<(), PgError> {
        while self.known() < target {
            let from = to_i64(self.known())?;
            let to = to_i64(target)?.min(from + PAGE);
            let rows = self
                .client
                .query(
                    "SELECT idx, data FROM entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                    &[&from, &to],
                )
                .map_err(pg_err("reading entries"))?;
            for row in &rows {
                let idx: i64 = row.get(0);
                if idx != to_i64(self.known())? {
                    return Err(self.corrupt(format!("entry {} is missing", self.known())));
                }
                let data: &[u8] = row.get(1);
                self.ahead.push(leaf_hash(data));
            }
            if (rows.len() as i64) < to - from {
                return Err(self.corrupt(format!(
                    "entry {} is missing (the head says {target} entries)",
                    self.known()
                )));
            }
        }
        Ok(())
    }

    /// Moves `base` to `size` (whose leaves must be known) and checks its
    /// root: this is where a fork or a changed entry is caught.
    fn advance_base(&mut self, size: u64, root: &Hash) -> Result<(), PgError> {
        if size < self.base.size() {
            return Err(self.corrupt(format!(
                "checkpoint went back from size {} to {size}",
                self.base.size()
            )));
        }
        let n = (size - self.base.size()) as usize;
        if n > self.ahead.len() {
            return Err(self.corrupt(format!("checkpoint {size} is beyond the entries")));
        }
        let mut next = self.base.clone();
        for h in &self.ahead[..n] {
            next.push(*h);
        }
        if &next.root() != root {
            return Err(self.corrupt(format!(
                "the checkpoint at size {size} does not match the tree recomputed from the \
                 entries: the log was forked or an entry was changed"
            )));
        }
        self.base = next;
        self.ahead.drain(..n);
        Ok(())
    }

    /// Sequences `entries` as one batch (one transaction, the `log_head`
    /// row locked) and returns the index of the first.
    pub fn append_batch(&mut self, entries: &[Vec<u8>]) -> Result<u64, PgError> {
        if let Some(e) = entries.iter().find(|e| e.len() > MAX_ENTRY_LEN) {
            return Err(PgError::Config(format!(
                "entry of {} bytes exceeds the {MAX_ENTRY_LEN}-byte limit",
                e.len()
            )));
        }
        let mut tx = self
            .client
            .transaction()
            .map_err(pg_err("starting a batch"))?;
        let row = tx
            .query_one("SELECT size FROM log_head FOR UPDATE", &[])
            .map_err(pg_err("locking the log head"))?;
        let first: i64 = row.get(0);
        if entries.is_empty() {
            return to_u64(first, "log size", &self.schema);
        }
        let data: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let n = tx
            .execute(
                "INSERT INTO entries (idx, data) \
                 SELECT $1::bigint + ord - 1, d FROM unnest($2::bytea[]) WITH ORDINALITY AS t(d, ord)",
                &[&first, &data],
            )
            .map_err(pg_err("inserting entries"))?;
        let end = first + n as i64;
        tx.execute("UPDATE log_head SET size = $1", &[&end])
            .map_err(pg_err("raising the log head"))?;
        tx.commit().map_err(pg_err("committing a batch"))?;
        let first = to_u64(first, "log size", &self.schema)?;
        if first == self.known() {
            // Our own batch follows what we know: no need to read it back.
            self.ahead.extend(entries.iter().map(|e| leaf_hash(e)));
        }
        Ok(first)
    }

    /// Reads the newest checkpoint, checks that it extends this writer's
    /// tree (see the module documentation), and returns the checkpoint of
    /// the current head to sign, unless the newest checkpoint already
    /// covers the first `need` entries or everything (`None`). Publish the
    /// signed checkpoint with [`PgStore::publish`].
    pub fn prepare(&mut self, need: u64) -> Result<Option<Checkpoint>, PgError> {
        self.prepared = None;
        let latest = self.read_checkpoint()?;
        if let Some(l) = &latest {
            self.catch_up(l.size)?;
            self.advance_base(l.size, &l.root)?;
        }
        self.latest = latest.clone();
        let head = self.head()?;
        if let Some(l) = &latest {
            if l.size >= need || l.size >= head {
                return Ok(None);
            }
        }
        self.catch_up(head)?;
        let mut tree = self.base.clone();
        let n = (head - self.base.size()) as usize;
        for h in &self.ahead[..n] {
            tree.push(*h);
        }
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size: head,
            root: tree.root(),
            extensions: Vec::new(),
        };
        self.prepared = Some((latest, cp.clone()));
        Ok(Some(cp))
    }

    /// Swaps in `note`, the signed `cp` from the last [`PgStore::prepare`],
    /// if the newest checkpoint is still the one `prepare` read, and adds it
    /// to the history, in one transaction.
    pub fn publish(&mut self, cp: &Checkpoint, note: &str) -> Result<Publish, PgError> {
        let Some((old, want)) = self.prepared.take() else {
            return Err(PgError::NotPrepared);
        };
        if &want != cp {
            return Err(PgError::NotPrepared);
        }
        self.verify_note(note, cp.size, cp.root)?;
        let size = to_i64(cp.size)?;
        let root = cp.root.as_slice();
        let mut tx = self
            .client
            .transaction()
            .map_err(pg_err("starting a checkpoint swap"))?;
        let swapped = match &old {
            Some(o) => tx
                .execute(
                    "UPDATE checkpoint SET size = $1, root = $2, note = $3 \
                     WHERE size = $4 AND root = $5",
                    &[&size, &root, &note, &to_i64(o.size)?, &o.root.as_slice()],
                )
                .map_err(pg_err("swapping the checkpoint"))?,
            None => tx
                .execute(
                    "INSERT INTO checkpoint (size, root, note) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                    &[&size, &root, &note],
                )
                .map_err(pg_err("inserting the first checkpoint"))?,
        };
        if swapped != 1 {
            tx.rollback()
                .map_err(pg_err("rolling back a lost checkpoint swap"))?;
            return Ok(Publish::Conflict);
        }
        tx.execute(
            "INSERT INTO checkpoints (size, root, note) VALUES ($1, $2, $3)",
            &[&size, &root, &note],
        )
        .map_err(pg_err("recording the checkpoint history"))?;
        tx.commit()
            .map_err(pg_err("committing a checkpoint swap"))?;
        self.advance_base(cp.size, &cp.root)?;
        self.latest = Some(Latest {
            size: cp.size,
            root: cp.root,
        });
        Ok(Publish::Published)
    }

    /// Exports the log into `dir` (see [`export`]) over this connection.
    pub fn export(&mut self, dir: &Path) -> Result<ExportReport, PgError> {
        export_with(&mut self.client, &self.schema, dir)
    }
}

/// Creates the schema and tables if needed, and checks the origin.
fn migrate(client: &mut Client, schema: &str, origin: &str) -> Result<(), PgError> {
    let mut tx = client
        .transaction()
        .map_err(pg_err("starting the schema setup"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('stadttor-audit:' || $1::text))",
        &[&schema],
    )
    .map_err(pg_err("locking the schema setup"))?;
    // The schema name was checked by `check_schema`, so quoting it is safe.
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         SET LOCAL search_path TO \"{schema}\";
         CREATE TABLE IF NOT EXISTS log_head (
             one boolean PRIMARY KEY DEFAULT true CHECK (one),
             origin text NOT NULL,
             size bigint NOT NULL CHECK (size >= 0));
         CREATE TABLE IF NOT EXISTS entries (
             idx bigint PRIMARY KEY CHECK (idx >= 0),
             data bytea NOT NULL CHECK (octet_length(data) <= {MAX_ENTRY_LEN}));
         CREATE TABLE IF NOT EXISTS checkpoint (
             one boolean PRIMARY KEY DEFAULT true CHECK (one),
             size bigint NOT NULL,
             root bytea NOT NULL,
             note text NOT NULL);
         CREATE TABLE IF NOT EXISTS checkpoints (
             size bigint PRIMARY KEY,
             root bytea NOT NULL,
             note text NOT NULL,
             published timestamptz NOT NULL DEFAULT now());"
    ))
    .map_err(pg_err("creating the tables"))?;
    tx.execute(
        "INSERT INTO log_head (origin, size) VALUES ($1, 0) ON CONFLICT DO NOTHING",
        &[&origin],
    )
    .map_err(pg_err("creating the log head"))?;
    let stored: String = tx
        .query_one("SELECT origin FROM log_head", &[])
        .map_err(pg_err("reading the log head"))?
        .get(0);
    tx.commit().map_err(pg_err("committing the schema setup"))?;
    if stored != origin {
        return Err(PgError::Config(format!(
            "schema {schema} holds the log {stored:?}, not {origin:?}"
        )));
    }
    client
        .batch_execute(&format!("SET search_path TO \"{schema}\""))
        .map_err(pg_err("selecting the schema"))
}

/// Exports the log in `cfg.schema` into `dir` as a C2SP tile directory
/// (`checkpoint`, `checkpoints.jsonl`, `tile/...`), which
/// [`crate::verify::verify_dir`] checks like a file log. Needs no key: the
/// export copies what is stored, and verification judges it. Reads one
/// consistent snapshot; tiles already in `dir` are rewritten if different.
pub fn export(cfg: &PgConfig, dir: &Path) -> Result<ExportReport, PgError> {
    let mut client = connect(cfg)?;
    client
        .batch_execute(&format!("SET search_path TO \"{}\"", cfg.schema))
        .map_err(pg_err("selecting the schema"))?;
    export_with(&mut client, &cfg.schema, dir)
}

fn export_with(client: &mut Client, schema: &str, dir: &Path) -> Result<ExportReport, PgError> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg_err("starting the export"))?;
    let latest = tx
        .query_opt("SELECT size, note FROM checkpoint", &[])
        .map_err(pg_err("reading the checkpoint"))?
        .ok_or_else(|| PgError::NoCheckpoint(schema.to_owned()))?;
    let size = to_u64(latest.get(0), "checkpoint size", schema)?;
    let note: String = latest.get(1);
    let mut history = Vec::new();
    for row in tx
        .query("SELECT size, note FROM checkpoints ORDER BY size", &[])
        .map_err(pg_err("reading the checkpoint history"))?
    {
        history.push((to_u64(row.get(0), "history size", schema)?, row.get(1)));
    }

    std::fs::create_dir_all(dir.join("tile")).map_err(|source| crate::store::StoreError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut tiles = TileWriter::new(dir);
    let end = to_i64(size)?;
    let mut from = 0i64;
    while from < end {
        let to = end.min(from + PAGE);
        let rows = tx
            .query(
                "SELECT data FROM entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                &[&from, &to],
            )
            .map_err(pg_err("reading entries"))?;
        // Rows are exported as stored, in index order: a missing row shifts
        // the ones after it, and the verifier names the first bad index.
        for row in &rows {
            let data: Vec<u8> = row.get(0);
            tiles.push(data)?;
        }
        from = to;
    }
    tiles.write_partials()?;
    tx.commit().map_err(pg_err("ending the export"))?;
    file_store::write_checkpoints(dir, &history, &note)?;
    Ok(ExportReport {
        checkpoint_size: size,
        entries: tiles.size(),
        checkpoints: history.len() as u64,
    })
}
