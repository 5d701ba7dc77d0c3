//! The offline verifier: needs a log directory (or a copy of the served
//! files) and the log's public verifier key; no key store, no network.
//!
//! [`LogReader::verify`] checks everything:
//! 1. the `checkpoint` signature (a changed size or root, or a checkpoint
//!    signed by another key, fails here);
//! 2. every entry bundle is re-hashed and the tree recomputed from the
//!    entries alone; its root must equal the signed root. If it does not,
//!    every entry is proven against the signed root with the stored hash
//!    tiles, and the first entry that fails is reported;
//! 3. every stored hash tile must equal the recomputed one (a flipped bit in
//!    a tile is caught even when the entries are intact);
//! 4. every superseded partial tile and entry bundle that stays published
//!    (`tile/…/N.p/W` of an older checkpoint) must hold the first `W`
//!    hashes or entries of its verified tile (see `partials`);
//! 5. every checkpoint in `checkpoints.jsonl` must verify with the same key,
//!    grow monotonically, and have the root of the recomputed tree at its
//!    size. That is stronger than checking consistency proofs between them:
//!    all of them are proven to be heads of one append-only tree.
//!
//! [`LogReader::prove`] and [`LogReader::prove_consistency`] produce
//! self-contained JSON proofs that [`check_inclusion`] and
//! [`check_consistency`] verify; [`LogReader::export`] and
//! [`LogReader::search`] read entries of the verified checkpoint.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::merkle::{self, Frontier, Hash, HashSource, ProofError};
use crate::note::{self, Checkpoint, NoteError, VerifierKey};
use crate::store;
use crate::tiles::{self, TileHashes, TILE_HEIGHT, TILE_WIDTH};

mod partials;

/// Why verification failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A checkpoint is malformed or its signature does not verify.
    #[error("{what}: {source}")]
    Checkpoint {
        /// Which checkpoint.
        what: String,
        /// What is wrong with it.
        #[source]
        source: NoteError,
    },
    /// The first entry that is not part of the signed tree.
    #[error("entry {index}: {reason}")]
    BadEntry {
        /// Its index.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// A hash tile differs from the tree recomputed from the entries.
    #[error("{path}: hash tile differs from the tree recomputed from the entries")]
    BadTile {
        /// Relative path of the tile.
        path: String,
    },
    /// A superseded partial tile (still published for an older checkpoint)
    /// differs from the verified tree.
    #[error("{path}: superseded partial tile {reason}")]
    BadPartialTile {
        /// Relative path of the partial tile or entry bundle.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A historical checkpoint is not a head of the verified tree.
    #[error("checkpoint history line {line}: {reason}")]
    History {
        /// 1-based line number in `checkpoints.jsonl`.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A proof does not verify.
    #[error("proof: {0}")]
    Proof(#[from] ProofError),
    /// A proof file is malformed.
    #[error("malformed proof: {0}")]
    MalformedProof(String),
    /// The requested index or size is outside the checkpoint.
    #[error("{0}")]
    OutOfRange(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VerifyError + '_ {
    move |source| VerifyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The result of a successful [`LogReader::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// The verified checkpoint.
    pub checkpoint: Checkpoint,
    /// Entries re-hashed.
    pub entries: u64,
    /// Hash tiles compared.
    pub tiles: u64,
    /// Superseded partial tiles and entry bundles compared.
    pub partial_tiles: u64,
    /// Historical checkpoints verified.
    pub history: u64,
    /// Entries that are in the tree but do not parse as a known event
    /// schema (index and reason); the tree itself is intact.
    pub unreadable: Vec<(u64, String)>,
}

impl VerifyReport {
    /// `N (and M superseded partial tiles)`, for summaries.
    pub fn tiles_compared(&self) -> String {
        format!(
            "{} (and {} superseded partial tiles)",
            self.tiles, self.partial_tiles
        )
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OK: {} size {} root {}: {} entries re-hashed, {} hash tiles match, {} superseded partial tiles match, {} historical checkpoints are heads of this tree",
            self.checkpoint.origin,
            self.checkpoint.size,
            B64.encode(self.checkpoint.root),
            self.entries,
            self.tiles,
            self.partial_tiles,
            self.history
        )?;
        if !self.unreadable.is_empty() {
            write!(
                f,
                "; {} entries do not parse as events (first: {} {})",
                self.unreadable.len(),
                self.unreadable[0].0,
                self.unreadable[0].1
            )?;
        }
        Ok(())
    }
}

/// A log directory opened against a trusted key; everything it returns
/// belongs to the verified checkpoint.
#[derive(Debug)]
pub struct LogReader {
    dir: PathBuf,
    key: VerifierKey,
    note: String,
    checkpoint: Checkpoint,
    hashes: TileHashes,
}

impl LogReader {
    /// Reads `dir/checkpoint` and verifies its signature with `key`.
    pub fn open(dir: &Path, key: &VerifierKey) -> Result<Self, VerifyError> {
        let path = dir.join(store::CHECKPOINT_FILE);
        let note = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let checkpoint =
            note::verify_checkpoint(&note, key).map_err(|source| VerifyError::Checkpoint {
                what: path.display().to_string(),
                source,
            })?;
        Ok(Self {
            dir: dir.to_owned(),
            key: key.clone(),
            hashes: TileHashes::new(dir, checkpoint.size),
            note,
            checkpoint,
        })
    }

    /// The verified checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The signed checkpoint note.
    pub fn note(&self) -> &str {
        &self.note
    }

    /// Calls `f(index, entry)` for every entry of the checkpoint, in order,
    /// until it returns `false`. Entries are read, not authenticated: use
    /// [`LogReader::verify`] or [`LogReader::prove`] for that.
    pub fn for_each_entry(&self, mut f: impl FnMut(u64, &[u8]) -> bool) -> Result<(), VerifyError> {
        let size = self.checkpoint.size;
        for n in 0..tiles::tile_count(0, size) {
            let bytes = self.bundle(n)?;
            let width = tiles::tile_width(0, n, size) as usize;
            let (entries, clean) = tiles::decode_bundle(&bytes);
            let found = entries.len();
            for (i, e) in entries.into_iter().take(width).enumerate() {
                if !f(n * TILE_WIDTH + i as u64, e) {
                    return Ok(());
                }
            }
            if found < width || (!clean && found <= width) {
                return Err(VerifyError::BadEntry {
                    index: n * TILE_WIDTH + found.min(width) as u64,
                    reason: format!(
                        "{}: bundle holds {found} entries{}, expected {width}",
                        tiles::entries_path(n, width as u64),
                        if clean { "" } else { " and trailing garbage" }
                    ),
                });
            }
        }
        Ok(())
    }

    fn bundle(&self, n: u64) -> Result<Vec<u8>, VerifyError> {
        tiles::read_bundle(&self.dir, n, self.checkpoint.size).map_err(|e| match e {
            tiles::TileError::Io { path, source } => VerifyError::Io {
                path: self.dir.join(path),
                source,
            },
            other => VerifyError::BadEntry {
                index: n * TILE_WIDTH,
                reason: other.to_string(),
            },
        })
    }

    /// Reads entry `index`.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, VerifyError> {
        if index >= self.checkpoint.size {
            return Err(VerifyError::OutOfRange(format!(
                "entry {index} is not in the checkpoint of size {}",
                self.checkpoint.size
            )));
        }
        let n = index / TILE_WIDTH;
        let bytes = self.bundle(n)?;
        let (entries, _) = tiles::decode_bundle(&bytes);
        entries
            .get((index % TILE_WIDTH) as usize)
            .map(|e| e.to_vec())
            .ok_or_else(|| VerifyError::BadEntry {
                index,
                reason: "missing from its bundle".into(),
            })
    }

    /// Verifies the whole directory (see the module documentation).
    pub fn verify(&self) -> Result<VerifyReport, VerifyError> {
        let size = self.checkpoint.size;
        let mut frontier = Frontier::new();
        // Recomputed hashes of the tile being filled, per tile level.
        let mut building: Vec<Vec<Hash>> = Vec::new();
        let mut finished: Vec<(u8, u64, Vec<Hash>)> = Vec::new();
        let mut unreadable = Vec::new();
        let mut structure: Option<VerifyError> = None;
        let read = self.for_each_entry(|index, entry| {
            if let Err(e) = Event::from_entry(entry) {
                unreadable.push((index, e.to_string()));
            }
            frontier.push_with(merkle::leaf_hash(entry), |level, idx, h| {
                if level % TILE_HEIGHT != 0 {
                    return;
                }
                let tl = usize::from(level / TILE_HEIGHT);
                if building.len() <= tl {
                    building.resize_with(tl + 1, Vec::new);
                }
                building[tl].push(*h);
                if building[tl].len() as u64 == TILE_WIDTH {
                    finished.push((
                        tl as u8,
                        idx / TILE_WIDTH,
                        std::mem::take(&mut building[tl]),
                    ));
                }
            });
            true
        });
        if let Err(e) = read {
            match e {
                VerifyError::BadEntry { .. } => structure = Some(e),
                other => return Err(other),
            }
        }
        if structure.is_some() || frontier.root() != self.checkpoint.root {
            return Err(self.locate_bad_entry().unwrap_or_else(|| {
                structure.unwrap_or(VerifyError::BadEntry {
                    index: size,
                    reason: "the entries do not hash to the signed root".into(),
                })
            }));
        }

        // The entries are authentic; now every stored hash tile must match.
        let mut tiles_checked = 0u64;
        for (tl, n, hashes) in finished
            .iter()
            .map(|(a, b, c)| (*a, *b, c.as_slice()))
            .chain(
                building
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| !h.is_empty())
                    .map(|(tl, h)| {
                        let level = tl as u8;
                        let count = size >> (u32::from(level) * u32::from(TILE_HEIGHT));
                        (level, count / TILE_WIDTH, h.as_slice())
                    }),
            )
        {
            let stored = tiles::read_hash_tile(&self.dir, tl, n, size).map_err(|e| {
                VerifyError::BadTile {
                    path: format!("{e}"),
                }
            })?;
            if stored != hashes.concat() {
                return Err(VerifyError::BadTile {
                    path: tiles::tile_path(tl, n, tiles::tile_width(tl, n, size)),
                });
            }
            tiles_checked += 1;
        }

        let partial_tiles = partials::verify(&self.dir, size)?;
        let history = self.verify_history()?;
        Ok(VerifyReport {
            checkpoint: self.checkpoint.clone(),
            entries: frontier.size(),
            tiles: tiles_checked,
            partial_tiles,
            history,
            unreadable,
        })
    }

    /// Finds the first entry that is not part of the signed tree.
    ///
    /// The stored hash tiles are authenticated top-down from the signed
    /// root; the walk descends into the leftmost subtree whose hash,
    /// recomputed from the entries, differs from the authenticated one. If
    /// the tiles themselves stop matching the tree on the way down (a forger
    /// rewrote entries and tiles together), the first entry of that subtree
    /// is reported with the range that was changed.
    fn locate_bad_entry(&self) -> Option<VerifyError> {
        let size = self.checkpoint.size;
        let mut leaves = Vec::new();
        let _ = self.for_each_entry(|_, entry| {
            leaves.push(merkle::leaf_hash(entry));
            true
        });
        let recomputed = |level: u8, idx: u64| -> Option<Hash> {
            let lo = usize::try_from(idx << level).ok()?;
            let hi = usize::try_from((idx + 1) << level).ok()?;
            leaves.get(lo..hi).map(subtree_root)
        };
        let stored = |level: u8, idx: u64| self.hashes.subtree(level, idx).ok();
        let bad = |index: u64, reason: String| Some(VerifyError::BadEntry { index, reason });

        // The complete subtrees of the tree, largest first.
        let mut frontier = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                frontier.push((level, start >> level));
                start += 1u64 << level;
            }
        }
        let stored_top: Option<Vec<Hash>> = frontier.iter().map(|&(l, i)| stored(l, i)).collect();
        let authentic = stored_top.as_ref().is_some_and(|hs| {
            let mut it = hs.iter().rev();
            it.next().is_some_and(|last| {
                it.fold(*last, |acc, left| merkle::node_hash(left, &acc)) == self.checkpoint.root
            })
        });
        for (k, &(level, idx)) in frontier.iter().enumerate() {
            let auth = stored_top.as_ref().and_then(|hs| hs.get(k)).copied();
            if auth.is_some() && recomputed(level, idx) == auth {
                continue;
            }
            let (Some(mut auth), true) = (auth, authentic) else {
                return bad(
                    idx << level,
                    format!(
                        "entries from {} on: the entries and the hash tiles both disagree with the signed root",
                        idx << level
                    ),
                );
            };
            let (mut level, mut idx) = (level, idx);
            while level > 0 {
                let (l, r) = (stored(level - 1, 2 * idx), stored(level - 1, 2 * idx + 1));
                let (Some(l), Some(r)) = (l, r) else { break };
                if merkle::node_hash(&l, &r) != auth {
                    let (lo, hi) = (idx << level, ((idx + 1) << level) - 1);
                    return bad(
                        lo,
                        format!(
                            "entries {lo}..={hi} were changed together with their hash tiles \
                             (the tiles no longer match the signed tree above level {level})"
                        ),
                    );
                }
                level -= 1;
                if recomputed(level, 2 * idx) != Some(l) {
                    (idx, auth) = (2 * idx, l);
                } else {
                    (idx, auth) = (2 * idx + 1, r);
                }
            }
            let reason = if idx as usize >= leaves.len() {
                "missing: the entry bundles hold fewer entries than the checkpoint"
            } else {
                "the entry was changed: its hash differs from the signed tree"
            };
            return bad(idx << level, reason.into());
        }
        None
    }

    /// Verifies `checkpoints.jsonl` against the tree (call after the tiles
    /// have been verified). Returns the number of checkpoints checked.
    fn verify_history(&self) -> Result<u64, VerifyError> {
        let lines = store::read_history_notes(&self.dir).map_err(io_err(&self.dir))?;
        let mut prev = 0u64;
        for (i, h) in lines.iter().enumerate() {
            let line = i + 1;
            let cp =
                note::verify_checkpoint(&h.note, &self.key).map_err(|e| VerifyError::History {
                    line,
                    reason: e.to_string(),
                })?;
            let bad = |reason: String| VerifyError::History { line, reason };
            if cp.origin != self.checkpoint.origin {
                return Err(bad(format!("origin {:?} differs", cp.origin)));
            }
            if cp.size != h.size || cp.size < prev || cp.size > self.checkpoint.size {
                return Err(bad(format!(
                    "size {} out of order (previous {prev}, current {})",
                    cp.size, self.checkpoint.size
                )));
            }
            let root = merkle::tree_hash(&self.hashes, cp.size).map_err(|e| bad(e.to_string()))?;
            if root != cp.root {
                return Err(bad(format!(
                    "root at size {} differs from the verified tree: the log was forked or rewritten",
                    cp.size
                )));
            }
            prev = cp.size;
        }
        Ok(lines.len() as u64)
    }

    /// An inclusion proof for entry `index` in the current checkpoint,
    /// checked before it is returned.
    pub fn prove(&self, index: u64) -> Result<InclusionProof, VerifyError> {
        let entry = self.entry(index)?;
        let size = self.checkpoint.size;
        let proof = merkle::inclusion_proof(&self.hashes, index, size)?;
        let leaf = merkle::leaf_hash(&entry);
        merkle::verify_inclusion(&leaf, index, size, &proof, &self.checkpoint.root)?;
        Ok(InclusionProof {
            checkpoint: self.note.clone(),
            index,
            entry: String::from_utf8_lossy(&entry).into_owned(),
            leaf_hash: B64.encode(leaf),
            hashes: proof.iter().map(|h| B64.encode(h)).collect(),
        })
    }

    /// A consistency proof from the historical checkpoint of size
    /// `old_size` to the current one, checked before it is returned.
    pub fn prove_consistency(&self, old_size: u64) -> Result<ConsistencyProof, VerifyError> {
        let old = store::read_history_notes(&self.dir)
            .map_err(io_err(&self.dir))?
            .into_iter()
            .rev()
            .find(|h| h.size == old_size)
            .ok_or_else(|| {
                VerifyError::OutOfRange(format!("no checkpoint of size {old_size} in the history"))
            })?;
        let old_cp = note::verify_checkpoint(&old.note, &self.key).map_err(|source| {
            VerifyError::Checkpoint {
                what: format!("historical checkpoint {old_size}"),
                source,
            }
        })?;
        let new = &self.checkpoint;
        let proof = merkle::consistency_proof(&self.hashes, old_size, new.size)?;
        merkle::verify_consistency(old_size, new.size, &old_cp.root, &new.root, &proof)?;
        Ok(ConsistencyProof {
            old_checkpoint: old.note,
            new_checkpoint: self.note.clone(),
            hashes: proof.iter().map(|h| B64.encode(h)).collect(),
        })
    }

    /// Writes every entry as one JSON line
    /// `{"index":N,"leaf_hash":"base64","event":{...}}`. Returns the count.
    pub fn export(&self, out: &mut dyn Write) -> Result<u64, VerifyError> {
        let mut count = 0;
        let mut err = None;
        self.for_each_entry(|index, entry| {
            let line = export_line(index, entry);
            if let Err(e) = out.write_all(line.as_bytes()) {
                err = Some(e);
                return false;
            }
            count += 1;
            true
        })?;
        if let Some(e) = err {
            return Err(io_err(Path::new("<export output>"))(e));
        }
        Ok(count)
    }

    /// Returns the events (with their index) that match `query`.
    pub fn search(&self, query: &Query) -> Result<Vec<(u64, Event)>, VerifyError> {
        let mut out = Vec::new();
        self.for_each_entry(|index, entry| {
            if let Ok(ev) = Event::from_entry(entry) {
                if query.matches(&ev) {
                    out.push((index, ev));
                }
            }
            out.len() < query.limit.unwrap_or(usize::MAX)
        })?;
        Ok(out)
    }
}

/// RFC 6962 root of a power-of-two run of leaf hashes.
fn subtree_root(leaves: &[Hash]) -> Hash {
    let mut level: Vec<Hash> = leaves.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| {
                if p.len() == 2 {
                    merkle::node_hash(&p[0], &p[1])
                } else {
                    p[0]
                }
            })
            .collect();
    }
    level.first().copied().unwrap_or_else(merkle::empty_root)
}

fn export_line(index: u64, entry: &[u8]) -> String {
    let event: serde_json::Value = serde_json::from_slice(entry)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(entry).into()));
    let v = serde_json::json!({
        "index": index,
        "leaf_hash": B64.encode(merkle::leaf_hash(entry)),
        "event": event,
    });
    format!("{v}\n")
}

/// Verifies a log directory completely against `key`.
pub fn verify_dir(dir: &Path, key: &VerifierKey) -> Result<VerifyReport, VerifyError> {
    LogReader::open(dir, key)?.verify()
}

/// A filter for [`LogReader::search`]; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Query {
    /// Exact event kind, or a prefix ending in `.` (`authn.`).
    pub kind: Option<String>,
    /// Exact pseudonym (compute it with the pseudonymisation key).
    pub subject: Option<String>,
    /// Exact tenant.
    pub tenant: Option<String>,
    /// Exact target.
    pub target: Option<String>,
    /// Events at or after this RFC 3339 UTC time (prefixes work: `2026-11`).
    pub since: Option<String>,
    /// Events before this RFC 3339 UTC time.
    pub until: Option<String>,
    /// Stop after this many matches.
    pub limit: Option<usize>,
}

impl Query {
    /// Matches everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `ev` matches.
    pub fn matches(&self, ev: &Event) -> bool {
        let kind_ok = self
            .kind
            .as_deref()
            .is_none_or(|k| ev.kind == k || (k.ends_with('.') && ev.kind.starts_with(k)));
        kind_ok
            && self
                .subject
                .as_deref()
                .is_none_or(|s| ev.subject.as_ref().is_some_and(|p| p.as_str() == s))
            && self
                .tenant
                .as_deref()
                .is_none_or(|t| ev.tenant.as_deref() == Some(t))
            && self
                .target
                .as_deref()
                .is_none_or(|t| ev.target.as_deref() == Some(t))
            && self.since.as_deref().is_none_or(|s| ev.time.as_str() >= s)
            && self.until.as_deref().is_none_or(|u| ev.time.as_str() < u)
    }
}

/// A self-contained inclusion proof (JSON), as `prove N` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The signed checkpoint note the proof leads to.
    pub checkpoint: String,
    /// The entry's index.
    pub index: u64,
    /// The entry itself (JSON text).
    pub entry: String,
    /// Base64 leaf hash of the entry.
    pub leaf_hash: String,
    /// Base64 proof hashes, bottom-up (RFC 9162).
    pub hashes: Vec<String>,
}

/// A self-contained consistency proof (JSON) between two checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The older signed checkpoint.
    pub old_checkpoint: String,
    /// The newer signed checkpoint.
    pub new_checkpoint: String,
    /// Base64 proof hashes (RFC 9162).
    pub hashes: Vec<String>,
}

fn decode_hashes(v: &[String]) -> Result<Vec<Hash>, VerifyError> {
    v.iter()
        .map(|s| {
            B64.decode(s)
                .ok()
                .and_then(|b| Hash::try_from(b.as_slice()).ok())
                .ok_or_else(|| VerifyError::MalformedProof(format!("bad hash {s:?}")))
        })
        .collect()
}

/// Checks an inclusion proof against `key`: the checkpoint signature, the
/// entry's hash and the path. Returns the checkpoint.
pub fn check_inclusion(p: &InclusionProof, key: &VerifierKey) -> Result<Checkpoint, VerifyError> {
    let cp =
        note::verify_checkpoint(&p.checkpoint, key).map_err(|source| VerifyError::Checkpoint {
            what: "proof checkpoint".into(),
            source,
        })?;
    let leaf = merkle::leaf_hash(p.entry.as_bytes());
    if B64.encode(leaf) != p.leaf_hash {
        return Err(VerifyError::MalformedProof(
            "leaf_hash is not the hash of entry".into(),
        ));
    }
    let hashes = decode_hashes(&p.hashes)?;
    merkle::verify_inclusion(&leaf, p.index, cp.size, &hashes, &cp.root)?;
    Ok(cp)
}

/// Checks a consistency proof against `key`. Returns (old, new).
pub fn check_consistency(
    p: &ConsistencyProof,
    key: &VerifierKey,
) -> Result<(Checkpoint, Checkpoint), VerifyError> {
    let open = |n: &str, what: &str| {
        note::verify_checkpoint(n, key).map_err(|source| VerifyError::Checkpoint {
            what: what.into(),
            source,
        })
    };
    let old = open(&p.old_checkpoint, "old checkpoint")?;
    let new = open(&p.new_checkpoint, "new checkpoint")?;
    if old.origin != new.origin {
        return Err(VerifyError::MalformedProof(
            "checkpoints are from different logs".into(),
        ));
    }
    let hashes = decode_hashes(&p.hashes)?;
    merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &hashes)?;
    Ok((old, new))
}
