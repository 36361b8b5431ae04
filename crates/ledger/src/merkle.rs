//! The RFC 9162 Merkle tree (section 2.1): SHA-256 with `0x00` before leaves and `0x01` before
//! interior nodes, audit paths (inclusion proofs) and consistency proofs, made and checked.
//!
//! [`Tree`] keeps the hash of every complete subtree (about two hashes per leaf), so the root of
//! any prefix, and any proof, costs O(log n) lookups and hashes. The verifiers follow the
//! algorithms of RFC 9162 2.1.3.2 and 2.1.4.2, with two rules that the published vectors of
//! transparency-dev/merkle also enforce: every hash is exactly 32 bytes, and a consistency proof
//! from an empty tree is refused.

use confide_crypto::digest::Sha256;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The index, sizes or proof length cannot belong to a valid proof.
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// The proof leads to another root.
    #[error("the proof leads to a different root")]
    RootMismatch,
}

/// `SHA-256(0x00 ‖ data)`: the hash of a leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    if data.len() < 1024 {
        let mut buf = [0u8; 1025];
        buf[1..=data.len()].copy_from_slice(data);
        return confide_crypto::digest::sha256(&buf[..=data.len()]);
    }
    let mut h = Sha256::new();
    h.update(&[0x00]);
    h.update(data);
    h.finish()
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // One contiguous input hashes faster than three updates.
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    confide_crypto::digest::sha256(&buf)
}

/// The hash of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::new().finish()
}

/// The largest power of two strictly less than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// An append-only Merkle tree over leaf hashes.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// `levels[h][i]`: the hash of the complete subtree of leaves `[i·2^h, (i+1)·2^h)`.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every leaf from `size` on (and every node built on them).
    pub fn truncate(&mut self, size: u64) {
        for (height, level) in self.levels.iter_mut().enumerate() {
            level.truncate(usize::try_from(size >> height).unwrap_or(usize::MAX));
        }
        while self.levels.last().is_some_and(Vec::is_empty) {
            self.levels.pop();
        }
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut height = 0;
        loop {
            if self.levels.len() == height {
                self.levels.push(Vec::new());
            }
            let level = &mut self.levels[height];
            level.push(hash);
            if level.len() % 2 == 1 {
                return;
            }
            hash = node_hash(&level[level.len() - 2], &level[level.len() - 1]);
            height += 1;
        }
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels
            .first()?
            .get(usize::try_from(index).ok()?)
            .copied()
    }

    /// The root of the whole tree.
    pub fn root(&self) -> Hash {
        self.root_at(self.len()).unwrap_or_else(empty_root)
    }

    /// The root of the first `size` leaves, if the tree has that many.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        match size {
            0 => Some(empty_root()),
            s if s <= self.len() => Some(self.subtree(0, s)),
            _ => None,
        }
    }

    /// MTH of leaves `[start, end)`, where the recursion of RFC 9162 only ever asks for ranges
    /// that start on a multiple of a power of two at least as large as the range.
    fn subtree(&self, start: u64, end: u64) -> Hash {
        let len = end - start;
        if len.is_power_of_two() {
            let height = len.trailing_zeros() as usize;
            return self.levels[height][(start >> height) as usize];
        }
        let k = split(len);
        node_hash(
            &self.subtree(start, start + k),
            &self.subtree(start + k, end),
        )
    }

    /// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 9162 2.1.3.1).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        if index >= size || size > self.len() {
            return None;
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof);
        Some(proof)
    }

    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, start + k, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.path(m - k, start + k, end, out);
            out.push(self.subtree(start, start + k));
        }
    }

    /// The consistency proof between the trees of the first `old` and `new` leaves
    /// (RFC 9162 2.1.4.1).
    pub fn consistency_proof(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        if old == 0 || old > new || new > self.len() {
            return None;
        }
        let mut proof = Vec::new();
        self.subproof(old, 0, new, true, &mut proof);
        Some(proof)
    }

    fn subproof(&self, m: u64, start: u64, end: u64, whole: bool, out: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !whole {
                out.push(self.subtree(start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, whole, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, out);
            out.push(self.subtree(start, start + k));
        }
    }
}

fn as_hash(bytes: &[u8]) -> Result<Hash, ProofError> {
    bytes
        .try_into()
        .map_err(|_| ProofError::Malformed("a hash is not 32 bytes"))
}

/// Checks that `leaf` is at `index` in the tree of `size` leaves whose root is `root`
/// (RFC 9162 2.1.3.2).
pub fn verify_inclusion<P: AsRef<[u8]>>(
    leaf: &[u8],
    index: u64,
    size: u64,
    proof: &[P],
    root: &[u8],
) -> Result<(), ProofError> {
    let root = as_hash(root)?;
    if root_from_inclusion(leaf, index, size, proof)? == root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// The root that the audit path `proof` of `leaf` at `index` leads to in a tree of `size`
/// leaves, if the proof has the right shape (RFC 9162 2.1.3.2, without the final comparison).
pub fn root_from_inclusion<P: AsRef<[u8]>>(
    leaf: &[u8],
    index: u64,
    size: u64,
    proof: &[P],
) -> Result<Hash, ProofError> {
    let leaf = as_hash(leaf)?;
    if index >= size {
        return Err(ProofError::Malformed("leaf index beyond the tree"));
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf;
    for p in proof {
        let p = as_hash(p.as_ref())?;
        if s == 0 {
            return Err(ProofError::Malformed("proof longer than the path"));
        }
        if f & 1 == 1 || f == s {
            r = node_hash(&p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, &p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::Malformed("proof shorter than the path"));
    }
    Ok(r)
}

/// Checks that the tree of `size1` leaves with root `root1` is a prefix of the tree of `size2`
/// leaves with root `root2` (RFC 9162 2.1.4.2).
pub fn verify_consistency<P: AsRef<[u8]>>(
    size1: u64,
    size2: u64,
    root1: &[u8],
    root2: &[u8],
    proof: &[P],
) -> Result<(), ProofError> {
    if size1 == 0 {
        return Err(ProofError::Malformed("consistency from an empty tree"));
    }
    if size1 > size2 {
        return Err(ProofError::Malformed("the old tree is larger than the new"));
    }
    if size1 == size2 {
        // The same tree: nothing to prove but that the roots are equal (whatever their form,
        // as the reference implementation decides).
        if !proof.is_empty() {
            return Err(ProofError::Malformed(
                "a proof between equal sizes must be empty",
            ));
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let (root1, root2) = (as_hash(root1)?, as_hash(root2)?);
    let proof: Vec<Hash> = proof
        .iter()
        .map(|p| as_hash(p.as_ref()))
        .collect::<Result<_, _>>()?;
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(root1);
    }
    path.extend_from_slice(&proof);
    let (first, rest) = path
        .split_first()
        .ok_or(ProofError::Malformed("empty consistency proof"))?;
    let (mut f, mut s) = (size1 - 1, size2 - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s == 0 {
            return Err(ProofError::Malformed("proof longer than the path"));
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::Malformed("proof shorter than the path"));
    }
    if fr == root1 && sr == root2 {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(n: u64) -> Tree {
        let mut t = Tree::new();
        for i in 0..n {
            t.push(leaf_hash(&i.to_le_bytes()));
        }
        t
    }

    /// MTH by the definition of RFC 9162 2.1.1, for comparison.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn roots_match_the_definition() {
        let t = tree(70);
        let leaves: Vec<Hash> = (0..70).map(|i| t.leaf(i).unwrap()).collect();
        for size in 0..=70u64 {
            assert_eq!(
                t.root_at(size).unwrap(),
                reference_root(&leaves[..size as usize])
            );
        }
        assert_eq!(t.root_at(71), None);
    }

    #[test]
    fn truncating_gives_the_smaller_tree() {
        let mut t = tree(37);
        t.truncate(21);
        let fresh = tree(21);
        assert_eq!(t.len(), 21);
        assert_eq!(t.root(), fresh.root());
        t.push(leaf_hash(&21u64.to_le_bytes()));
        assert_eq!(t.root(), tree(22).root());
        t.truncate(0);
        assert!(t.is_empty());
        assert_eq!(t.root(), empty_root());
    }

    #[test]
    fn every_proof_made_verifies_and_a_wrong_one_does_not() {
        let t = tree(37);
        for size in 1..=37 {
            let root = t.root_at(size).unwrap();
            for index in 0..size {
                let proof = t.inclusion_proof(index, size).unwrap();
                let leaf = t.leaf(index).unwrap();
                verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
                if size > 1 {
                    let other = (index + 1) % size;
                    assert!(verify_inclusion(&leaf, other, size, &proof, &root).is_err());
                }
            }
            for old in 1..=size {
                let proof = t.consistency_proof(old, size).unwrap();
                let old_root = t.root_at(old).unwrap();
                verify_consistency(old, size, &old_root, &root, &proof).unwrap();
                if old < size {
                    assert!(verify_consistency(old, size, &root, &root, &proof).is_err());
                }
            }
        }
    }
}
