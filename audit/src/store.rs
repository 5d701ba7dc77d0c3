//! The file store: write-ahead log with group commit, tiles, checkpoints,
//! and crash recovery.
//!
//! Files under the log directory:
//!
//! | path | served | written |
//! |---|---|---|
//! | `checkpoint` | yes | temp file, fsync, rename, fsync of the directory |
//! | `checkpoints.jsonl` | yes | one JSON line `{"size":N,"note":"..."}` per published checkpoint, fsynced after `checkpoint` is replaced |
//! | `tile/...` | yes | C2SP tiles (see [`crate::tiles`]), temp file + rename, not fsynced: they are rebuilt from the WAL |
//! | `wal` | no | the durable copy of every entry, in checksummed batch records, fsynced once per batch (group commit) |
//! | `lock` | no | the writer's PID; a second writer is refused |
//!
//! Order of one commit: WAL record + `fdatasync`; tiles; sign; `checkpoint`
//! replaced atomically; history line + `fdatasync`. An entry is acknowledged
//! only after the last step, so every acknowledged entry is in the WAL, and
//! the history is never ahead of `checkpoint`.
//!
//! Recovery on [`Store::open`]: WAL records are read until the first one
//! that is incomplete, fails its checksum or breaks the index sequence; the
//! file is cut there (a torn tail can only hold unacknowledged entries).
//! Every tile is recomputed from the WAL and rewritten if missing or
//! different. The history is read the same way (a torn last line is cut),
//! every historical checkpoint is verified with the log's key and its root
//! compared with the recomputed tree. A `checkpoint` newer than the history
//! (the writer died between the two writes) is verified and added to the
//! history; a missing one is restored from the newest history line. If the WAL holds fewer entries than a signed
//! checkpoint, or a root differs, opening fails: acknowledged data is gone
//! and an operator has to look. What was done is returned as a
//! [`RecoveryReport`].
//!
//! The WAL record format (big-endian): `"STW2"`, first index `u64`, count
//! `u32`, payload length `u32`, payload (`count` times `u16` length +
//! entry, the same bytes as in entry bundles), then the first 16 bytes of
//! SHA-256 over the 20 header bytes followed by the entries' RFC 6962 leaf
//! hashes. The writer computes those hashes for the tree anyway, so the
//! checksum costs one short hash per batch instead of a second pass over
//! every entry; a changed entry changes its leaf hash and so the sum.
//! Records of the first format (`"STW1"`, the sum over header and
//! payload) are still read.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use ring::digest::SHA256;
use serde::{Deserialize, Serialize};

use crate::merkle::{leaf_hash, Frontier, Hash};
use crate::note::{self, Checkpoint, NoteError, VerifierKey};
use crate::tiles::{self, TILE_HEIGHT, TILE_WIDTH};

const WAL_MAGIC: &[u8; 4] = b"STW2";
/// The first WAL format: the checksum covers header and payload.
const WAL_MAGIC_V1: &[u8; 4] = b"STW1";
const WAL_HEADER: usize = 4 + 8 + 4 + 4;
const WAL_SUM: usize = 16;
/// A WAL record buffer larger than this (a burst's batch) is not kept.
const MAX_KEPT_RECORD: usize = 1 << 20;
/// File names inside the log directory.
const WAL: &str = "wal";
const LOCK: &str = "lock";
pub(crate) const CHECKPOINT: &str = "checkpoint";
pub(crate) const HISTORY: &str = "checkpoints.jsonl";

/// Errors of the file store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The stored log contradicts itself in a way recovery must not paper
    /// over (acknowledged entries missing, a root that does not match).
    #[error("audit log in {dir} is inconsistent: {reason}")]
    Corrupt {
        /// The log directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another live process holds the log.
    #[error("audit log in {dir} is in use by process {pid}")]
    Locked {
        /// The log directory.
        dir: PathBuf,
        /// The other writer's PID.
        pid: u32,
    },
    /// An entry is larger than 65,535 bytes.
    #[error("entry of {0} bytes exceeds the 65535-byte limit")]
    EntryTooLarge(usize),
    /// The store failed earlier and refuses further writes until reopened.
    #[error("audit store failed earlier and must be reopened (recovery runs on open)")]
    Poisoned,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What recovery found and did when the store was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Entries in the WAL after recovery.
    pub entries: u64,
    /// Size of the newest signed checkpoint (0 if none yet).
    pub checkpoint_size: u64,
    /// Checkpoints in the history.
    pub checkpoints: u64,
    /// Durable entries not yet in a signed checkpoint; they were never
    /// acknowledged and are included in the next checkpoint.
    pub unpublished: u64,
    /// Bytes of torn WAL tail removed.
    pub wal_bytes_cut: u64,
    /// Bytes of torn history tail removed.
    pub history_bytes_cut: u64,
    /// Tile files that were missing or wrong and were rewritten.
    pub tiles_rewritten: u64,
    /// Whether the `checkpoint` file had to be restored from the history.
    pub checkpoint_restored: bool,
    /// Whether the newest checkpoint had to be added to the history (the
    /// writer stopped between publishing it and recording it).
    pub history_completed: bool,
}

impl RecoveryReport {
    /// True if recovery had nothing to repair.
    pub fn clean(&self) -> bool {
        self.wal_bytes_cut == 0
            && self.history_bytes_cut == 0
            && self.tiles_rewritten == 0
            && !self.checkpoint_restored
            && !self.history_completed
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} entries, signed checkpoint at {} ({} in history), {} unpublished entries to sign",
            self.entries, self.checkpoint_size, self.checkpoints, self.unpublished
        )?;
        if self.clean() {
            return f.write_str("; clean");
        }
        write!(
            f,
            "; repaired: cut {} bytes of torn WAL tail, cut {} bytes of torn history tail, rewrote {} tiles{}{}",
            self.wal_bytes_cut,
            self.history_bytes_cut,
            self.tiles_rewritten,
            if self.checkpoint_restored {
                ", restored the checkpoint file"
            } else {
                ""
            },
            if self.history_completed {
                ", added the newest checkpoint to the history"
            } else {
                ""
            }
        )
    }
}

/// One line of `checkpoints.jsonl`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryLine {
    pub(crate) size: u64,
    pub(crate) note: String,
}

/// The in-memory state of the tree and of the tiles still being filled.
#[derive(Debug, Default)]
struct TreeState {
    frontier: Frontier,
    /// Per tile level, the hashes of the current incomplete tile.
    tiles: Vec<Vec<Hash>>,
    /// Entries of the current incomplete bundle.
    bundle: Vec<Vec<u8>>,
}

/// Builds the tree from entries in order and writes its tiles under a
/// directory: full tiles as they fill, partial tiles on request. Used by
/// [`Store`] and by exports of other storage backends, so the Merkle and
/// tile logic exists once.
#[derive(Debug)]
pub(crate) struct TileWriter {
    dir: PathBuf,
    tree: TreeState,
    /// Counts tile files rewritten (used during recovery).
    rewritten: u64,
    /// Scratch for [`TileWriter::push_leaf`].
    done: Vec<(u8, u64, Hash)>,
    /// The directory holds only what this writer wrote (set after
    /// recovery): full tiles are written without first reading what is
    /// there, and only partial tiles this writer made are removed. Until
    /// then every write checks the file system.
    trusted: bool,
    /// Full tiles (relative paths) whose partial versions this writer wrote.
    partials: std::collections::HashSet<String>,
    /// The directory the last full tile went to (it exists).
    last_dir: Option<PathBuf>,
}

/// The log's files, owned by one writer.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    origin: String,
    wal: File,
    history: File,
    tiles: TileWriter,
    published: Option<(u64, String)>,
    poisoned: bool,
    /// Scratch for [`Store::append_batch`]: the batch's leaf hashes.
    leaves: Vec<Hash>,
    /// Scratch for [`Store::append_batch`]: the batch's WAL record.
    record: Vec<u8>,
}

impl Store {
    /// Opens (creating if needed) the log in `dir` for `origin`, recovers it,
    /// and checks every stored checkpoint against `key`.
    pub fn open(
        dir: &Path,
        origin: &str,
        key: &VerifierKey,
    ) -> Result<(Self, RecoveryReport), StoreError> {
        fs::create_dir_all(dir.join("tile")).map_err(io_err(dir))?;
        take_lock(dir)?;
        let result = Self::recover(dir, origin, key);
        if result.is_err() {
            let _ = fs::remove_file(dir.join(LOCK));
        }
        result
    }

    /// Recovers the log in `dir`: reads the checkpoint history and file,
    /// replays the WAL into the tiles, cuts torn tails and makes the
    /// checkpoint file and the history agree.
    fn recover(
        dir: &Path,
        origin: &str,
        key: &VerifierKey,
    ) -> Result<(Self, RecoveryReport), StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            dir: dir.to_owned(),
            reason,
        };
        let mut report = RecoveryReport::default();

        // 1. The history of signed checkpoints, and the checkpoint file,
        // which is written first and so may be one checkpoint ahead.
        let hist_path = dir.join(HISTORY);
        let (mut history, hist_good, hist_len) = read_history(&hist_path, origin, key, &corrupt)?;
        report.history_bytes_cut = hist_len - hist_good;
        let (current, append_to_history) =
            read_current_checkpoint(dir, origin, key, &corrupt, &mut history)?;
        report.checkpoints = history.len() as u64;

        // 2. Replay the WAL into the tree, rewriting tiles as needed.
        let wal_path = dir.join(WAL);
        let mut store = Self {
            dir: dir.to_owned(),
            origin: origin.to_owned(),
            wal: open_append(&wal_path)?,
            history: open_append(&hist_path)?,
            tiles: TileWriter::new(dir),
            published: None,
            poisoned: false,
            leaves: Vec::new(),
            record: Vec::new(),
        };
        let (wal_good, wal_len) = store.replay_wal(&wal_path, &history, &corrupt)?;
        if wal_good < wal_len {
            truncate_durable(&wal_path, wal_good)?;
            report.wal_bytes_cut = wal_len - wal_good;
        }
        if hist_good < hist_len {
            truncate_durable(&hist_path, hist_good)?;
        }

        // 3. The checkpoint file and the history must end in the same note.
        if let Some((cp, note)) = history.last() {
            if append_to_history {
                store.append_history(cp.size, note)?;
                report.history_completed = true;
            } else if current.as_deref() != Some(note.as_str()) {
                write_atomic_durable(dir, CHECKPOINT, note.as_bytes())?;
                report.checkpoint_restored = true;
            }
            store.published = Some((cp.size, note.clone()));
        }

        report.entries = store.tiles.size();
        report.checkpoint_size = store.published.as_ref().map_or(0, |p| p.0);
        report.unpublished = report.entries - report.checkpoint_size;
        report.tiles_rewritten = store.tiles.rewritten;
        // Recovery has made every tile right; from here on this writer
        // knows what it wrote.
        store.tiles.trusted = true;
        Ok((store, report))
    }

    /// Replays the WAL at `wal_path` into the tiles, checking each signed
    /// checkpoint in `history` against the tree as its size is reached.
    /// Returns the length of the WAL's good prefix and the file length.
    fn replay_wal(
        &mut self,
        wal_path: &Path,
        history: &History,
        corrupt: &dyn Fn(String) -> StoreError,
    ) -> Result<(u64, u64), StoreError> {
        let last_size = history.last().map(|(cp, _)| cp.size);
        let mut want = history.iter().map(|(cp, _)| (cp.size, cp.root)).peekable();
        let mut check_roots = |store: &mut Self| -> Result<(), StoreError> {
            while let Some((size, root)) = want.peek().copied() {
                if size != store.tiles.size() {
                    break;
                }
                if store.tiles.root() != root {
                    return Err(corrupt(format!(
                        "the signed checkpoint at size {size} does not match the entries in the WAL"
                    )));
                }
                if Some(size) == last_size {
                    // Older checkpoints are served from the full tiles.
                    store.tiles.write_partials()?;
                }
                want.next();
            }
            Ok(())
        };
        check_roots(self)?;
        let (wal_good, wal_len) = {
            let file = File::open(wal_path).map_err(io_err(wal_path))?;
            let wal_len = file.metadata().map_err(io_err(wal_path))?.len();
            let mut r = BufReader::with_capacity(1 << 20, file);
            let mut good = 0u64;
            while let Some((len, entries)) =
                read_wal_record(&mut r, self.tiles.size()).map_err(io_err(wal_path))?
            {
                for (e, leaf) in entries {
                    self.tiles.push_leaf(e, leaf)?;
                    check_roots(self)?;
                }
                good += len;
            }
            (good, wal_len)
        };
        if let Some((size, _)) = want.next() {
            return Err(corrupt(format!(
                "a signed checkpoint covers {size} entries but the WAL holds only {}: acknowledged entries are missing",
                self.tiles.size()
            )));
        }
        Ok((wal_good, wal_len))
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of durable entries.
    pub fn size(&self) -> u64 {
        self.tiles.size()
    }

    /// Size of the newest signed checkpoint, if any.
    pub fn published_size(&self) -> Option<u64> {
        self.published.as_ref().map(|p| p.0)
    }

    /// The newest signed checkpoint note, if any.
    pub fn published_note(&self) -> Option<&str> {
        self.published.as_ref().map(|p| p.1.as_str())
    }

    /// Makes `entries` durable as one WAL record (one `fdatasync`) and adds
    /// them to the tree and the tiles. On error the store is poisoned.
    pub fn append_batch(&mut self, entries: Vec<Vec<u8>>) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        if entries.is_empty() {
            return Ok(());
        }
        if let Some(e) = entries.iter().find(|e| e.len() > tiles::MAX_ENTRY_LEN) {
            return Err(StoreError::EntryTooLarge(e.len()));
        }
        self.poisoned = true;
        // The leaf hashes and the record go into buffers kept from batch
        // to batch: this runs once per group commit.
        let mut leaves = std::mem::take(&mut self.leaves);
        leaves.clear();
        leaves.extend(entries.iter().map(|e| leaf_hash(e)));
        let mut record = std::mem::take(&mut self.record);
        encode_wal_record_into(&mut record, self.size(), &entries, &leaves);
        let written = self
            .wal
            .write_all(&record)
            .and_then(|()| self.wal.sync_data());
        if record.capacity() > MAX_KEPT_RECORD {
            record = Vec::new();
        }
        self.record = record;
        written.map_err(|e| io_err(&self.dir.join(WAL))(e))?;
        for (e, leaf) in entries.into_iter().zip(leaves.iter().copied()) {
            self.tiles.push_leaf(e, leaf)?;
        }
        self.leaves = leaves;
        self.poisoned = false;
        Ok(())
    }

    /// If the tree grew since the last published checkpoint (or none was
    /// published yet), writes the partial tiles for the current size and
    /// returns the checkpoint to sign.
    pub fn checkpoint_to_sign(&mut self) -> Result<Option<Checkpoint>, StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        if self.published_size() == Some(self.size()) {
            return Ok(None);
        }
        self.poisoned = true;
        self.tiles.write_partials()?;
        self.poisoned = false;
        Ok(Some(Checkpoint {
            origin: self.origin.clone(),
            size: self.size(),
            root: self.tiles.root(),
            extensions: Vec::new(),
        }))
    }

    /// Publishes a signed checkpoint: the `checkpoint` file atomically
    /// (temp, fsync, rename, directory fsync), then its history line
    /// (fsynced). `note` must be the signed `cp`.
    pub fn publish(&mut self, cp: &Checkpoint, note: &str) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        self.poisoned = true;
        write_atomic_durable(&self.dir, CHECKPOINT, note.as_bytes())?;
        self.append_history(cp.size, note)?;
        self.published = Some((cp.size, note.to_owned()));
        self.poisoned = false;
        Ok(())
    }

    fn append_history(&mut self, size: u64, note: &str) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(&HistoryLine {
            size,
            note: note.to_owned(),
        })
        .map_err(|e| StoreError::Corrupt {
            dir: self.dir.clone(),
            reason: format!("cannot encode history line: {e}"),
        })?;
        line.push(b'\n');
        let hist_path = self.dir.join(HISTORY);
        self.history.write_all(&line).map_err(io_err(&hist_path))?;
        self.history.sync_data().map_err(io_err(&hist_path))
    }
}

impl TileWriter {
    /// A writer for an empty tree whose tiles go under `dir`.
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            tree: TreeState::default(),
            rewritten: 0,
            done: Vec::new(),
            trusted: false,
            partials: std::collections::HashSet::new(),
            last_dir: None,
        }
    }

    /// Number of entries pushed.
    pub(crate) fn size(&self) -> u64 {
        self.tree.frontier.size()
    }

    /// The root of the tree of the entries pushed.
    pub(crate) fn root(&self) -> Hash {
        self.tree.frontier.root()
    }

    /// Adds one entry to the tree, writing full tiles as they fill.
    #[cfg(feature = "postgres")]
    pub(crate) fn push(&mut self, entry: Vec<u8>) -> Result<(), StoreError> {
        let leaf = leaf_hash(&entry);
        self.push_leaf(entry, leaf)
    }

    /// [`TileWriter::push`] with the entry's leaf hash already computed.
    pub(crate) fn push_leaf(&mut self, entry: Vec<u8>, leaf: Hash) -> Result<(), StoreError> {
        let index = self.size();
        self.tree.bundle.push(entry);
        if self.tree.bundle.len() as u64 == TILE_WIDTH {
            let bytes = tiles::encode_bundle(self.tree.bundle.iter().map(Vec::as_slice))
                .ok_or(StoreError::EntryTooLarge(tiles::MAX_ENTRY_LEN + 1))?;
            let n = index / TILE_WIDTH;
            self.write_full(&tiles::entries_path(n, 0), &bytes)?;
            self.tree.bundle.clear();
        }
        // Completed subtrees at tile boundaries: at most one per tile
        // level; a reused buffer, as this runs once per entry.
        let mut done = std::mem::take(&mut self.done);
        done.clear();
        self.tree.frontier.push_with(leaf, |level, idx, h| {
            if level % TILE_HEIGHT == 0 {
                done.push((level / TILE_HEIGHT, idx, *h));
            }
        });
        for &(tl, idx, h) in &done {
            let tl_us = usize::from(tl);
            if self.tree.tiles.len() <= tl_us {
                self.tree.tiles.resize_with(tl_us + 1, Vec::new);
            }
            self.tree.tiles[tl_us].push(h);
            if self.tree.tiles[tl_us].len() as u64 == TILE_WIDTH {
                let bytes: Vec<u8> = self.tree.tiles[tl_us].concat();
                self.write_full(&tiles::tile_path(tl, idx / TILE_WIDTH, 0), &bytes)?;
                self.tree.tiles[tl_us].clear();
            }
        }
        self.done = done;
        Ok(())
    }

    /// Writes a full tile and removes its partial versions.
    fn write_full(&mut self, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
        if self.trusted {
            // The hot path: about one bundle per 256 entries. A full tile
            // is new (only recovery can meet an existing one), its
            // directory usually made already, its partials known.
            let path = self.dir.join(rel);
            if let Some(parent) = path.parent() {
                if self.last_dir.as_deref() != Some(parent) {
                    fs::create_dir_all(parent).map_err(io_err(parent))?;
                    self.last_dir = Some(parent.to_owned());
                }
            }
            replace_file(&path, bytes)?;
            if !self.partials.remove(rel) {
                return Ok(());
            }
        } else {
            self.ensure(rel, bytes)?;
        }
        let partial_dir = self.dir.join(format!("{rel}.p"));
        match fs::remove_dir_all(&partial_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&partial_dir)(e)),
        }
    }

    /// Writes the partial tiles and bundle for the current size.
    pub(crate) fn write_partials(&mut self) -> Result<(), StoreError> {
        let size = self.size();
        if !self.tree.bundle.is_empty() {
            let w = self.tree.bundle.len() as u64;
            let bytes = tiles::encode_bundle(self.tree.bundle.iter().map(Vec::as_slice))
                .ok_or(StoreError::EntryTooLarge(tiles::MAX_ENTRY_LEN + 1))?;
            self.ensure(&tiles::entries_path(size / TILE_WIDTH, w), &bytes)?;
            self.partials
                .insert(tiles::entries_path(size / TILE_WIDTH, 0));
        }
        for tl in 0..self.tree.tiles.len() {
            let hashes = &self.tree.tiles[tl];
            if hashes.is_empty() {
                continue;
            }
            let level = tl as u8;
            let n = (size >> (u32::from(level) * u32::from(TILE_HEIGHT))) / TILE_WIDTH;
            let bytes: Vec<u8> = hashes.concat();
            let w = hashes.len() as u64;
            self.ensure(&tiles::tile_path(level, n, w), &bytes)?;
            self.partials.insert(tiles::tile_path(level, n, 0));
        }
        Ok(())
    }

    /// Makes `rel` hold `bytes`, rewriting it (temp + rename) if it is
    /// missing or different.
    fn ensure(&mut self, rel: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.dir.join(rel);
        match fs::read(&path) {
            Ok(existing) if existing == bytes => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        replace_file(&path, bytes)?;
        self.rewritten += 1;
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.dir.join(LOCK));
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn open_append(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

/// Replaces `path` with `bytes` via a temp file and a rename (readers see
/// the old or the new file, never a partial one; not fsynced: tiles are
/// rebuilt from the WAL on recovery).
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = tmp_path(path);
    fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Writes `dir/name` via a temp file, fsyncs it, renames it into place and
/// fsyncs the directory.
fn write_atomic_durable(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let path = dir.join(name);
    let tmp = tmp_path(&path);
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn take_lock(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(LOCK);
    if let Ok(text) = fs::read_to_string(&path) {
        if let Ok(pid) = text.trim().parse::<u32>() {
            let alive = Path::new(&format!("/proc/{pid}")).exists();
            if alive && pid != std::process::id() {
                return Err(StoreError::Locked {
                    dir: dir.to_owned(),
                    pid,
                });
            }
        }
    }
    fs::write(&path, format!("{}\n", std::process::id())).map_err(io_err(&path))
}

#[cfg(test)]
fn encode_wal_record(first: u64, entries: &[Vec<u8>], leaves: &[Hash]) -> Vec<u8> {
    let mut rec = Vec::new();
    encode_wal_record_into(&mut rec, first, entries, leaves);
    rec
}

/// Writes the WAL record of `entries` (with their `leaves`) into `rec`,
/// replacing what it held.
fn encode_wal_record_into(rec: &mut Vec<u8>, first: u64, entries: &[Vec<u8>], leaves: &[Hash]) {
    let payload_len: usize = entries.iter().map(|e| 2 + e.len()).sum();
    rec.clear();
    rec.reserve(WAL_HEADER + payload_len + WAL_SUM);
    rec.extend_from_slice(WAL_MAGIC);
    rec.extend_from_slice(&first.to_be_bytes());
    rec.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    rec.extend_from_slice(&(payload_len as u32).to_be_bytes());
    for e in entries {
        // Lengths were checked by the caller.
        rec.extend_from_slice(&(e.len() as u16).to_be_bytes());
        rec.extend_from_slice(e);
    }
    let sum = wal_sum(&rec[..WAL_HEADER], leaves);
    rec.extend_from_slice(&sum[..WAL_SUM]);
}

/// The record checksum of the current format: SHA-256 over the header and
/// the entries' leaf hashes.
fn wal_sum(header: &[u8], leaves: &[Hash]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&SHA256);
    ctx.update(header);
    for l in leaves {
        ctx.update(l);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Reads one WAL record that must start at entry `expect_first`. Returns
/// `None` at the end or at the first record that is torn or invalid.
type WalRecord = (u64, Vec<(Vec<u8>, Hash)>);

/// Reads one WAL record that must start at entry `expect_first`: its
/// length in bytes and the entries with their leaf hashes. Returns `None`
/// at the end or at the first record that is torn or invalid.
fn read_wal_record(r: &mut impl Read, expect_first: u64) -> io::Result<Option<WalRecord>> {
    let mut header = [0u8; WAL_HEADER];
    if !read_full(r, &mut header)? {
        return Ok(None);
    }
    let v1 = &header[..4] == WAL_MAGIC_V1;
    if !v1 && &header[..4] != WAL_MAGIC {
        return Ok(None);
    }
    let first = u64::from_be_bytes(header[4..12].try_into().unwrap_or_default());
    let count = u32::from_be_bytes(header[12..16].try_into().unwrap_or_default());
    let len = u32::from_be_bytes(header[16..20].try_into().unwrap_or_default()) as usize;
    if first != expect_first || len > (count as usize) * (2 + tiles::MAX_ENTRY_LEN) {
        return Ok(None);
    }
    let mut body = vec![0u8; len + WAL_SUM];
    if !read_full(r, &mut body)? {
        return Ok(None);
    }
    if v1 {
        let mut ctx = ring::digest::Context::new(&SHA256);
        ctx.update(&header);
        ctx.update(&body[..len]);
        if ctx.finish().as_ref()[..WAL_SUM] != body[len..] {
            return Ok(None);
        }
    }
    let (entries, clean) = tiles::decode_bundle(&body[..len]);
    if !clean || entries.len() != count as usize {
        return Ok(None);
    }
    let entries: Vec<(Vec<u8>, Hash)> = entries
        .into_iter()
        .map(|e| (e.to_vec(), leaf_hash(e)))
        .collect();
    if !v1 {
        let leaves: Vec<Hash> = entries.iter().map(|(_, h)| *h).collect();
        if wal_sum(&header, &leaves)[..WAL_SUM] != body[len..] {
            return Ok(None);
        }
    }
    Ok(Some(((WAL_HEADER + len + WAL_SUM) as u64, entries)))
}

/// Fills `buf`; false if the input ended first (a torn record).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads and verifies the checkpoint file in `dir`, if there is one. A
/// checkpoint newer than the newest in `history` is pushed onto it. Returns
/// the file's note and whether the history must be completed with it.
fn read_current_checkpoint(
    dir: &Path,
    origin: &str,
    key: &VerifierKey,
    corrupt: &dyn Fn(String) -> StoreError,
    history: &mut History,
) -> Result<(Option<String>, bool), StoreError> {
    let cp_path = dir.join(CHECKPOINT);
    let current = match fs::read_to_string(&cp_path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&cp_path)(e)),
    };
    let mut append_to_history = false;
    if let Some(note) = &current {
        let cp = note::verify_checkpoint(note, key).map_err(|e| {
            corrupt(format!(
                "{CHECKPOINT} does not verify with the log key: {e}"
            ))
        })?;
        if cp.origin != origin {
            return Err(corrupt(format!(
                "{CHECKPOINT} is for origin {:?}, expected {origin:?}",
                cp.origin
            )));
        }
        let newest = history.last().map(|(c, _)| c.size);
        if newest.is_none_or(|n| cp.size > n) {
            history.push((cp, note.clone()));
            append_to_history = true;
        }
    }
    Ok((current, append_to_history))
}

/// Cuts the file at `path` to `len` bytes and syncs it.
fn truncate_durable(path: &Path, len: u64) -> Result<(), StoreError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    f.set_len(len).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))?;
    Ok(())
}

type History = Vec<(Checkpoint, String)>;

/// Reads and verifies the checkpoint history. Returns the checkpoints, the
/// length of the good prefix and the file length. A torn last line is
/// tolerated (cut by the caller); anything else wrong is corruption.
fn read_history(
    path: &Path,
    origin: &str,
    key: &VerifierKey,
    corrupt: &dyn Fn(String) -> StoreError,
) -> Result<(History, u64, u64), StoreError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0, 0)),
        Err(e) => return Err(io_err(path)(e)),
    };
    let total = file.metadata().map_err(io_err(path))?.len();
    let mut r = BufReader::new(file);
    let mut out: History = Vec::new();
    let mut good = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        let complete = line.last() == Some(&b'\n');
        let parsed = serde_json::from_slice::<HistoryLine>(&line);
        let Ok(h) = parsed
            .map_err(|e| e.to_string())
            .and_then(|h| complete.then_some(h).ok_or_else(|| "no newline".to_owned()))
        else {
            // Only the last line may be torn.
            if good + n as u64 == total {
                break;
            }
            return Err(corrupt(format!(
                "{HISTORY}: line {} is malformed",
                out.len() + 1
            )));
        };
        let cp = note::verify_checkpoint(&h.note, key).map_err(|e: NoteError| {
            corrupt(format!(
                "{HISTORY}: checkpoint {} does not verify with the log key: {e}",
                out.len() + 1
            ))
        })?;
        if cp.origin != origin || cp.size != h.size {
            return Err(corrupt(format!(
                "{HISTORY}: checkpoint {} is for origin {:?} size {}, expected origin {origin:?} size {}",
                out.len() + 1,
                cp.origin,
                cp.size,
                h.size
            )));
        }
        if let Some((prev, _)) = out.last() {
            if cp.size < prev.size {
                return Err(corrupt(format!(
                    "{HISTORY}: checkpoint sizes go backwards ({} after {})",
                    cp.size, prev.size
                )));
            }
        }
        out.push((cp, h.note));
        good += n as u64;
    }
    Ok((out, good, total))
}

/// Reads the checkpoint history of a log directory without a key store, for
/// the verifier: `(size, note)` pairs, torn last line ignored.
pub(crate) fn read_history_notes(dir: &Path) -> io::Result<Vec<HistoryLine>> {
    let bytes = match fs::read(dir.join(HISTORY)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        if line.last() != Some(&b'\n') {
            break;
        }
        let h: HistoryLine = serde_json::from_slice(line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        out.push(h);
    }
    Ok(out)
}

/// Name of the file holding the latest checkpoint.
pub(crate) const CHECKPOINT_FILE: &str = CHECKPOINT;

/// Writes the served checkpoint files of a log directory from another
/// storage backend: `checkpoints.jsonl` with `history` (`(size, note)`, in
/// order) and `checkpoint` with `latest`, each replaced atomically.
#[cfg(feature = "postgres")]
pub(crate) fn write_checkpoints(
    dir: &Path,
    history: &[(u64, String)],
    latest: &str,
) -> Result<(), StoreError> {
    let mut lines = Vec::new();
    for (size, note) in history {
        let line = serde_json::to_vec(&HistoryLine {
            size: *size,
            note: note.clone(),
        })
        .map_err(|e| StoreError::Corrupt {
            dir: dir.to_owned(),
            reason: format!("cannot encode history line: {e}"),
        })?;
        lines.extend_from_slice(&line);
        lines.push(b'\n');
    }
    write_atomic_durable(dir, HISTORY, &lines)?;
    write_atomic_durable(dir, CHECKPOINT, latest.as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entries() -> Vec<Vec<u8>> {
        vec![b"one".to_vec(), b"two entries".to_vec(), Vec::new()]
    }

    #[test]
    fn wal_record_round_trip_and_every_flipped_bit_is_caught() {
        let e = entries();
        let leaves: Vec<Hash> = e.iter().map(|x| leaf_hash(x)).collect();
        let rec = encode_wal_record(7, &e, &leaves);
        let (len, got) = read_wal_record(&mut &rec[..], 7).unwrap().unwrap();
        assert_eq!(len, rec.len() as u64);
        assert_eq!(got.iter().map(|(x, _)| x.clone()).collect::<Vec<_>>(), e);
        assert_eq!(got.iter().map(|(_, h)| *h).collect::<Vec<_>>(), leaves);
        assert!(
            read_wal_record(&mut &rec[..], 8).unwrap().is_none(),
            "wrong first index"
        );
        for bit in 0..rec.len() * 8 {
            let mut bad = rec.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                read_wal_record(&mut &bad[..], 7).unwrap().is_none(),
                "flipped bit {bit} not caught"
            );
        }
    }

    #[test]
    fn first_format_records_are_still_read() {
        let e = entries();
        let mut rec = Vec::new();
        rec.extend_from_slice(WAL_MAGIC_V1);
        rec.extend_from_slice(&3u64.to_be_bytes());
        rec.extend_from_slice(&(e.len() as u32).to_be_bytes());
        let payload: usize = e.iter().map(|x| 2 + x.len()).sum();
        rec.extend_from_slice(&(payload as u32).to_be_bytes());
        for x in &e {
            rec.extend_from_slice(&(x.len() as u16).to_be_bytes());
            rec.extend_from_slice(x);
        }
        let sum = ring::digest::digest(&SHA256, &rec);
        rec.extend_from_slice(&sum.as_ref()[..WAL_SUM]);
        let (_, got) = read_wal_record(&mut &rec[..], 3).unwrap().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].1, leaf_hash(b"two entries"));
        let last = rec.len() - 1;
        rec[last] ^= 1;
        assert!(read_wal_record(&mut &rec[..], 3).unwrap().is_none());
    }
}
