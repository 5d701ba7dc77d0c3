//! C2SP `tlog-tiles` layout: paths, entry bundles, and a tile reader.
//!
//! Tiles are 256 hashes wide (height 8). The hash tile at level `L`, index
//! `N` holds the hashes of the complete subtrees of `256^L` leaves numbered
//! `N*256 ..`; the entry bundle `N` holds entries `N*256 ..`, each with a
//! big-endian `u16` length prefix (so entries are at most 65,535 bytes).
//!
//! ```text
//! checkpoint                      latest signed checkpoint
//! tile/<L>/<N>[.p/<W>]            hash tiles (W = width of a partial tile)
//! tile/entries/<N>[.p/<W>]        entry bundles
//! ```
//!
//! `<N>` is written in 3-digit groups, all but the last prefixed with `x`
//! (`1234067` → `x001/x234/067`). For a tree of size `s`, every tile is
//! full except the last one of each level, which is partial with width
//! `(s >> 8L) % 256` (and absent when that is 0). Once a full tile exists
//! its partial versions are deleted; readers fall back to the full tile
//! and truncate it, as C2SP allows.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::merkle::{self, Hash, HashSource, ProofError};

/// Hashes or entries per full tile.
pub const TILE_WIDTH: u64 = 256;
/// log2 of [`TILE_WIDTH`].
pub const TILE_HEIGHT: u8 = 8;
/// Largest entry a bundle can hold.
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;

fn index_path(mut n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        groups.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

fn with_width(base: String, width: u64) -> String {
    if width == 0 || width >= TILE_WIDTH {
        base
    } else {
        format!("{base}.p/{width}")
    }
}

/// Relative path of hash tile (`level`, `index`); `width` < 256 names a
/// partial tile, 0 or 256 the full one.
pub fn tile_path(level: u8, index: u64, width: u64) -> String {
    with_width(format!("tile/{level}/{}", index_path(index)), width)
}

/// Relative path of entry bundle `index`, full or partial as for
/// [`tile_path`].
pub fn entries_path(index: u64, width: u64) -> String {
    with_width(format!("tile/entries/{}", index_path(index)), width)
}

/// Width of tile `index` at `level` in a tree of `size` leaves (0 if the
/// tile does not exist). Level 0 also gives the entry bundle widths.
pub fn tile_width(level: u8, index: u64, size: u64) -> u64 {
    let count = size >> (u32::from(level) * u32::from(TILE_HEIGHT));
    count
        .saturating_sub(index.saturating_mul(TILE_WIDTH))
        .min(TILE_WIDTH)
}

/// Number of tiles (full and partial) at `level` for a tree of `size`.
pub fn tile_count(level: u8, size: u64) -> u64 {
    let count = size >> (u32::from(level) * u32::from(TILE_HEIGHT));
    count.div_ceil(TILE_WIDTH)
}

/// Encodes an entry bundle. Entries longer than [`MAX_ENTRY_LEN`] are a
/// caller bug and are rejected.
pub fn encode_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for e in entries {
        let len = u16::try_from(e.len()).ok()?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Some(out)
}

/// Decodes an entry bundle. Returns the entries that decode and whether
/// the bundle ended cleanly (no truncated trailing entry).
pub fn decode_bundle(bytes: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            return (out, false);
        };
        let len = usize::from(u16::from_be_bytes(*len));
        if tail.len() < len {
            return (out, false);
        }
        out.push(&tail[..len]);
        rest = &tail[len..];
    }
    (out, true)
}

/// Reads the `partial` path of a tile, falling back to its `full` path
/// (the caller truncates to the width it needs).
pub(crate) fn read_tile_file(dir: &Path, full: &str, partial: &str) -> io::Result<Vec<u8>> {
    if partial != full {
        match std::fs::read(dir.join(partial)) {
            Ok(b) => return Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    std::fs::read(dir.join(full))
}

/// Reads the hash tile (`level`, `index`) of a tree of `size`: exactly
/// `width * 32` bytes, or an error.
pub fn read_hash_tile(dir: &Path, level: u8, index: u64, size: u64) -> Result<Vec<u8>, TileError> {
    let width = tile_width(level, index, size);
    if width == 0 {
        return Err(TileError::Missing(tile_path(level, index, 0)));
    }
    let full = tile_path(level, index, 0);
    let partial = tile_path(level, index, width);
    let mut bytes = read_tile_file(dir, &full, &partial).map_err(|e| TileError::Io {
        path: partial.clone(),
        source: e,
    })?;
    let want = (width * 32) as usize;
    if bytes.len() < want || (bytes.len() != want && bytes.len() != TILE_WIDTH as usize * 32) {
        return Err(TileError::Length {
            path: partial,
            len: bytes.len(),
            want,
        });
    }
    bytes.truncate(want);
    Ok(bytes)
}

/// Reads entry bundle `index` of a tree of `size` and returns its raw bytes
/// (possibly a longer full bundle; decode and take the first `width`).
pub fn read_bundle(dir: &Path, index: u64, size: u64) -> Result<Vec<u8>, TileError> {
    let width = tile_width(0, index, size);
    if width == 0 {
        return Err(TileError::Missing(entries_path(index, 0)));
    }
    let full = entries_path(index, 0);
    let partial = entries_path(index, width);
    read_tile_file(dir, &full, &partial).map_err(|e| TileError::Io {
        path: partial,
        source: e,
    })
}

/// Errors reading tiles.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TileError {
    /// The tile does not exist for this tree size.
    #[error("{0}: no such tile for this tree size")]
    Missing(String),
    /// The tile could not be read.
    #[error("{path}: {source}")]
    Io {
        /// Relative path of the tile.
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The tile has the wrong length.
    #[error("{path}: {len} bytes, expected {want}")]
    Length {
        /// Relative path of the tile.
        path: String,
        /// Actual length.
        len: usize,
        /// Expected length.
        want: usize,
    },
}

/// All levels of one hash tile: `levels[r]` holds the hashes of subtrees of
/// `2^r` tile hashes.
type Expanded = Rc<Vec<Vec<Hash>>>;

/// A [`HashSource`] over the hash tiles of a directory, for a fixed tree
/// size. Reads are cached; the tiles are **not** authenticated by reading
/// them, so check anything derived from them against a signed root.
#[derive(Debug)]
pub struct TileHashes {
    dir: PathBuf,
    size: u64,
    cache: RefCell<HashMap<(u8, u64), Expanded>>,
}

impl TileHashes {
    /// A reader for the tree of `size` leaves stored under `dir`.
    pub fn new(dir: &Path, size: u64) -> Self {
        Self {
            dir: dir.to_owned(),
            size,
            cache: RefCell::new(HashMap::new()),
        }
    }

    fn expanded(&self, level: u8, index: u64) -> Result<Expanded, ProofError> {
        if let Some(e) = self.cache.borrow().get(&(level, index)) {
            return Ok(e.clone());
        }
        let bytes = read_hash_tile(&self.dir, level, index, self.size)
            .map_err(|e| ProofError::Unavailable(e.to_string()))?;
        let mut levels: Vec<Vec<Hash>> = vec![bytes
            .chunks_exact(32)
            .filter_map(|c| Hash::try_from(c).ok())
            .collect()];
        for _ in 1..TILE_HEIGHT {
            let Some(prev) = levels.last() else { break };
            let next: Vec<Hash> = prev
                .chunks_exact(2)
                .map(|p| merkle::node_hash(&p[0], &p[1]))
                .collect();
            levels.push(next);
        }
        let e = Rc::new(levels);
        self.cache.borrow_mut().insert((level, index), e.clone());
        Ok(e)
    }
}

impl HashSource for TileHashes {
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
        let tile_level = level / TILE_HEIGHT;
        let r = level % TILE_HEIGHT;
        let first = index << r; // index of the first tile-level hash covered
        let tile = first / TILE_WIDTH;
        let e = self.expanded(tile_level, tile)?;
        let local = ((first % TILE_WIDTH) >> r) as usize;
        e.get(usize::from(r))
            .and_then(|l| l.get(local))
            .copied()
            .ok_or_else(|| {
                ProofError::Unavailable(format!(
                    "subtree {level}/{index} is not complete in a tree of size {}",
                    self.size
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_c2sp() {
        assert_eq!(tile_path(0, 0, 0), "tile/0/000");
        assert_eq!(tile_path(1, 1234067, 0), "tile/1/x001/x234/067");
        assert_eq!(tile_path(0, 5, 17), "tile/0/005.p/17");
        assert_eq!(entries_path(1000, 256), "tile/entries/x001/000");
        assert_eq!(entries_path(3, 1), "tile/entries/003.p/1");
    }

    #[test]
    fn widths() {
        assert_eq!(tile_width(0, 0, 70_000), 256);
        assert_eq!(tile_width(0, 273, 70_000), 70_000 - 273 * 256);
        assert_eq!(tile_width(0, 274, 70_000), 0);
        assert_eq!(tile_width(1, 1, 70_000), 273 - 256);
        assert_eq!(tile_width(2, 0, 70_000), 1);
        assert_eq!(tile_count(0, 512), 2);
        assert_eq!(tile_count(1, 512), 1);
        assert_eq!(tile_count(2, 512), 0);
    }

    #[test]
    fn bundle_round_trip() {
        let b = encode_bundle([&b"a"[..], b"", b"xyz"]).unwrap();
        let (e, clean) = decode_bundle(&b);
        assert!(clean);
        assert_eq!(e, vec![&b"a"[..], b"", b"xyz"]);
        let (e, clean) = decode_bundle(&b[..b.len() - 1]);
        assert!(!clean);
        assert_eq!(e.len(), 2);
    }
}
