//! RFC 6962 / RFC 9162 Merkle tree hashing and proofs.
//!
//! - leaf hash = SHA-256(0x00 || entry), node hash = SHA-256(0x01 || left || right);
//! - the hash of the empty tree is SHA-256 of the empty string;
//! - [`Frontier`] is the append-only right edge of a tree (one hash per
//!   set bit of the size), enough to compute the root after each append;
//! - proofs are generated from any [`HashSource`] (the hashes of complete,
//!   aligned subtrees; the tile reader in [`crate::tiles`] is one) with the
//!   recursive definitions of RFC 9162 section 2.1.3.1 / 2.1.4.1, and checked
//!   with the iterative algorithms of sections 2.1.3.2 / 2.1.4.2.
//!
//! Proof hashes are ordered bottom-up, exactly as in RFC 9162 and as
//! `golang.org/x/mod/sumdb/tlog` expects them (`RecordProof`, `TreeProof`).

use ring::digest::{Context, SHA256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Why a proof could not be produced or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The index or size lies outside the tree.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// The proof has the wrong number of hashes for its sizes.
    #[error("proof has the wrong length")]
    WrongLength,
    /// The recomputed root differs from the expected root.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
    /// A hash needed for the proof could not be read.
    #[error("hash unavailable: {0}")]
    Unavailable(String),
}

/// SHA-256(0x00 || entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0]);
    c.update(entry);
    to_hash(c)
}

/// SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[1]);
    c.update(left);
    c.update(right);
    to_hash(c)
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    to_hash(Context::new(&SHA256))
}

fn to_hash(c: Context) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(c.finish().as_ref());
    out
}

/// Root of a list of hashes that form a complete subtree (power-of-two
/// length) or any left-aligned range: RFC 6962 MTH over `hashes` as leaves.
#[cfg(test)]
fn root_of(hashes: &[Hash]) -> Hash {
    match hashes.len() {
        0 => empty_root(),
        1 => hashes[0],
        n => {
            let k = largest_pow2_below(n as u64) as usize;
            node_hash(&root_of(&hashes[..k]), &root_of(&hashes[k..]))
        }
    }
}

/// Largest power of two strictly smaller than `n` (`n >= 2`).
fn largest_pow2_below(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Read access to the hashes of complete subtrees.
pub trait HashSource {
    /// The hash of the complete subtree at `level` (0 = leaves) and position
    /// `index`, covering leaves `[index << level, (index + 1) << level)`.
    fn subtree(&self, level: u8, index: u64) -> Result<Hash, ProofError>;
}

/// MTH(D[lo:hi]) for a range that starts at a multiple of a power of two
/// at least as large as the range (true for every range the RFC recursion
/// visits).
fn range_hash<S: HashSource + ?Sized>(src: &S, lo: u64, hi: u64) -> Result<Hash, ProofError> {
    let n = hi - lo;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        return src.subtree(n.trailing_zeros() as u8, lo / n);
    }
    let k = largest_pow2_below(n);
    Ok(node_hash(
        &range_hash(src, lo, lo + k)?,
        &range_hash(src, lo + k, hi)?,
    ))
}

/// The root hash of the tree of the first `size` leaves.
pub fn tree_hash<S: HashSource + ?Sized>(src: &S, size: u64) -> Result<Hash, ProofError> {
    range_hash(src, 0, size)
}

/// The inclusion proof (audit path) for leaf `index` in the tree of `size`.
pub fn inclusion_proof<S: HashSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf {index} in a tree of size {size}"
        )));
    }
    let mut out = Vec::new();
    path(src, index, 0, size, &mut out)?;
    Ok(out)
}

fn path<S: HashSource + ?Sized>(
    src: &S,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = hi - lo;
    if n <= 1 {
        return Ok(());
    }
    let k = largest_pow2_below(n);
    if m < k {
        path(src, m, lo, lo + k, out)?;
        out.push(range_hash(src, lo + k, hi)?);
    } else {
        path(src, m - k, lo + k, hi, out)?;
        out.push(range_hash(src, lo, lo + k)?);
    }
    Ok(())
}

/// The consistency proof from the tree of `old` leaves to the tree of `new`.
pub fn consistency_proof<S: HashSource + ?Sized>(
    src: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, ProofError> {
    if old > new {
        return Err(ProofError::OutOfRange(format!(
            "old size {old} exceeds new size {new}"
        )));
    }
    let mut out = Vec::new();
    if old == 0 || old == new {
        return Ok(out);
    }
    subproof(src, old, 0, new, true, &mut out)?;
    Ok(out)
}

fn subproof<S: HashSource + ?Sized>(
    src: &S,
    m: u64,
    lo: u64,
    hi: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), ProofError> {
    let n = hi - lo;
    if m == n {
        if !complete {
            out.push(range_hash(src, lo, hi)?);
        }
        return Ok(());
    }
    let k = largest_pow2_below(n);
    if m <= k {
        subproof(src, m, lo, lo + k, complete, out)?;
        out.push(range_hash(src, lo + k, hi)?);
    } else {
        subproof(src, m - k, lo + k, hi, false, out)?;
        out.push(range_hash(src, lo, lo + k)?);
    }
    Ok(())
}

/// Checks an inclusion proof (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange(format!(
            "leaf {index} in a tree of size {size}"
        )));
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks a consistency proof (RFC 9162 section 2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OutOfRange(format!(
            "old size {old_size} exceeds new size {new_size}"
        )));
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old_size == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != old_root || &sr != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The right edge of an append-only tree: the roots of its complete
/// subtrees, largest first (one per set bit of the size).
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash and calls `completed(level, index, hash)` for
    /// every complete subtree this append finishes, starting with the leaf
    /// itself at level 0.
    pub fn push_with(&mut self, leaf: Hash, mut completed: impl FnMut(u8, u64, &Hash)) {
        let mut h = leaf;
        let mut level = 0u8;
        let mut s = self.size;
        completed(0, s, &h);
        while s & 1 == 1 {
            let Some(left) = self.nodes.pop() else {
                break; // unreachable: one node per set bit
            };
            h = node_hash(&left, &h);
            level += 1;
            s >>= 1;
            completed(level, s, &h);
        }
        self.nodes.push(h);
        self.size += 1;
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.push_with(leaf, |_, _, _| {});
    }

    /// The root hash of the tree so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every complete subtree hash of a small in-memory tree.
    struct Mem(Vec<Vec<Hash>>);

    impl Mem {
        fn new(n: u64) -> Self {
            let mut levels = vec![Vec::new()];
            let mut f = Frontier::new();
            for i in 0..n {
                f.push_with(leaf_hash(&i.to_be_bytes()), |l, idx, h| {
                    if levels.len() <= l as usize {
                        levels.push(Vec::new());
                    }
                    assert_eq!(levels[l as usize].len() as u64, idx);
                    levels[l as usize].push(*h);
                });
            }
            Mem(levels)
        }
    }

    impl HashSource for Mem {
        fn subtree(&self, level: u8, index: u64) -> Result<Hash, ProofError> {
            self.0
                .get(level as usize)
                .and_then(|l| l.get(index as usize))
                .copied()
                .ok_or_else(|| ProofError::Unavailable(format!("{level}/{index}")))
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn frontier_root_matches_recursive_definition() {
        let mut f = Frontier::new();
        for n in 1..=300u64 {
            f.push(leaf_hash(&(n - 1).to_be_bytes()));
            assert_eq!(f.root(), root_of(&leaves(n)), "size {n}");
        }
    }

    #[test]
    fn inclusion_and_consistency_round_trip() {
        let mem = Mem::new(70);
        for size in 1..=70u64 {
            let root = tree_hash(&mem, size).unwrap();
            assert_eq!(root, root_of(&leaves(size)));
            for i in 0..size {
                let p = inclusion_proof(&mem, i, size).unwrap();
                verify_inclusion(&leaf_hash(&i.to_be_bytes()), i, size, &p, &root).unwrap();
                // Wrong index or wrong leaf must fail.
                let wrong = leaf_hash(b"x");
                assert!(verify_inclusion(&wrong, i, size, &p, &root).is_err());
            }
            for old in 0..=size {
                let p = consistency_proof(&mem, old, size).unwrap();
                let old_root = tree_hash(&mem, old).unwrap();
                verify_consistency(old, size, &old_root, &root, &p).unwrap();
                if old > 0 && old < size {
                    let bad = leaf_hash(b"bad");
                    assert!(verify_consistency(old, size, &bad, &root, &p).is_err());
                }
            }
        }
    }
}
