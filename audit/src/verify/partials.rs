//! Superseded partial tiles: the `tile/…/N.p/W` files a log published for
//! an older checkpoint and keeps serving next to the current partial tile
//! (the writer removes them only once the tile is full; a client that
//! verified that older checkpoint may still read them).
//!
//! Every such file whose width is below the current width of its tile
//! must hold exactly the first `W` hashes (or entries) of that tile in the
//! verified tree: the nodes it covers are complete subtrees, which an
//! append-only tree never changes. A flipped byte in one of them is
//! reported with the file's path. Files of a width beyond the verified
//! checkpoint (written for a checkpoint that was never published) are not
//! covered by any signature and are left alone.
//!
//! Runs after the current tiles were verified, so it compares against
//! them.

use std::path::Path;

use super::{io_err, VerifyError};
use crate::tiles::{self, TILE_WIDTH};

/// Which tile a partial file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hashes(u8),
    Entries,
}

/// A superseded partial tile file: its tile and width.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Partial {
    kind: Kind,
    index: u64,
    width: u64,
    path: String,
}

/// Checks every superseded partial tile in `dir` against the verified tree
/// of `size` leaves. Returns how many were compared.
pub(super) fn verify(dir: &Path, size: u64) -> Result<u64, VerifyError> {
    let mut found = Vec::new();
    collect(dir, &dir.join("tile"), &mut found)?;
    found.sort_by(|a, b| a.path.cmp(&b.path));
    let mut checked = 0;
    for p in found {
        let level = match p.kind {
            Kind::Hashes(l) => l,
            Kind::Entries => 0,
        };
        let current = tiles::tile_width(level, p.index, size);
        let is_current_partial = current < TILE_WIDTH && p.width == current;
        if p.width == 0 || p.width > current || is_current_partial {
            continue;
        }
        let bad = |reason: &str| VerifyError::BadPartialTile {
            path: p.path.clone(),
            reason: reason.to_owned(),
        };
        let stored = std::fs::read(dir.join(&p.path)).map_err(io_err(&dir.join(&p.path)))?;
        let width = usize::try_from(p.width).map_err(|_| bad("width out of range"))?;
        let expected = match p.kind {
            Kind::Hashes(l) => {
                let tile = tiles::read_hash_tile(dir, l, p.index, size)
                    .map_err(|e| bad(&format!("current tile: {e}")))?;
                tile[..width * 32].to_vec()
            }
            Kind::Entries => {
                let bundle = tiles::read_bundle(dir, p.index, size)
                    .map_err(|e| bad(&format!("current bundle: {e}")))?;
                let (entries, _) = tiles::decode_bundle(&bundle);
                tiles::encode_bundle(entries.into_iter().take(width))
                    .ok_or_else(|| bad("current bundle cannot be re-encoded"))?
            }
        };
        if stored != expected {
            return Err(bad(match p.kind {
                Kind::Hashes(_) => "differs from the first hashes of the verified tile",
                Kind::Entries => "differs from the first entries of the verified bundle",
            }));
        }
        checked += 1;
    }
    Ok(checked)
}

/// Collects every `…/N.p/W` file under `at` (paths relative to `root`).
fn collect(root: &Path, at: &Path, out: &mut Vec<Partial>) -> Result<(), VerifyError> {
    let entries = match std::fs::read_dir(at) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(at)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(at))?;
        let path = entry.path();
        let ty = entry.file_type().map_err(io_err(&path))?;
        if ty.is_dir() {
            collect(root, &path, out)?;
        } else if let Some(p) = path
            .strip_prefix(root)
            .ok()
            .and_then(|r| r.to_str())
            .and_then(parse)
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Parses `tile/L/x001/234.p/W` or `tile/entries/…/N.p/W`.
fn parse(rel: &str) -> Option<Partial> {
    let mut parts: Vec<&str> = rel.split('/').collect();
    let width: u64 = parts.pop()?.parse().ok()?;
    let last = parts.pop()?.strip_suffix(".p")?;
    if parts.first() != Some(&"tile") || parts.len() < 2 {
        return None;
    }
    let kind = match parts[1] {
        "entries" => Kind::Entries,
        l => Kind::Hashes(l.parse().ok()?),
    };
    let mut index = 0u64;
    for g in parts[2..].iter().map(|g| g.strip_prefix('x')) {
        let g = g?;
        index = index.checked_mul(1000)?.checked_add(digits(g)?)?;
    }
    index = index.checked_mul(1000)?.checked_add(digits(last)?)?;
    let partial = Partial {
        kind,
        index,
        width,
        path: rel.to_owned(),
    };
    // Only the canonical spelling counts (what the writer produces).
    let canonical = match kind {
        Kind::Hashes(l) => tiles::tile_path(l, index, width),
        Kind::Entries => tiles::entries_path(index, width),
    };
    (canonical == rel).then_some(partial)
}

fn digits(g: &str) -> Option<u64> {
    (g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()))
        .then(|| g.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_paths_parse_only_in_canonical_form() {
        let p = parse("tile/0/x001/234.p/17").unwrap();
        assert_eq!((p.kind, p.index, p.width), (Kind::Hashes(0), 1234, 17));
        let p = parse("tile/entries/005.p/3").unwrap();
        assert_eq!((p.kind, p.index, p.width), (Kind::Entries, 5, 3));
        assert_eq!(parse("tile/0/005"), None);
        assert_eq!(parse("tile/0/5.p/3"), None);
        assert_eq!(parse("tile/0/005.p/256"), None);
        assert_eq!(parse("tile/0/x000/005.p/3"), None);
    }
}
