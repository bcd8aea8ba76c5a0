//! The Merkle tree over a commit advance's entries.
//!
//! **Leaves.** One leaf per log entry of the statement's range
//! `first_index..=last_index`, in index order, so an entry's position is
//! `index - first_index` and needs no field in the token. A leaf is
//! `H::leaf(index ‖ term ‖ id ‖ ts ‖ H::payload(payload))`, the four numbers
//! as little-endian u64s ([`leaf_fields`]). Internal entries (no-op,
//! configuration; id 0) are leaves like any other: the statement then covers
//! a contiguous range with no holes.
//!
//! **Shape.** Level by level: nodes are paired left to right
//! (`H::node(left, right)`); when a level has an odd count its last node is
//! carried up to the next level unchanged (it is never paired with itself,
//! which would let two different leaf lists share a root, CVE-2012-2459). A
//! single leaf is its own root. The shape depends only on the leaf count, so
//! given `(position, count)` both sides know, level by level, whether a node
//! has a sibling and on which side ([`path_len`], [`root_from_path`]).
//!
//! **Domain separation.** Leaves and inner nodes hash in different domains
//! ([`TreeHash`]), so an inner node can never be passed off as a leaf.

use std::marker::PhantomData;

use ordo_storage::{EntryView, Index, MessageId, Term, TimestampUs};

use super::hash::{Digest, LEAF_FIELDS_LEN, TreeHash};

/// The fixed little-endian layout a leaf hashes.
pub fn leaf_fields(
    index: Index,
    term: Term,
    id: MessageId,
    ts: TimestampUs,
    payload_hash: &Digest,
) -> [u8; LEAF_FIELDS_LEN] {
    let mut fields = [0u8; LEAF_FIELDS_LEN];
    fields[0..8].copy_from_slice(&index.to_le_bytes());
    fields[8..16].copy_from_slice(&term.to_le_bytes());
    fields[16..24].copy_from_slice(&id.to_le_bytes());
    fields[24..32].copy_from_slice(&ts.to_le_bytes());
    fields[32..64].copy_from_slice(payload_hash);
    fields
}

/// The leaf of one entry: hashes its payload, then its fields.
pub fn leaf<H: TreeHash>(
    index: Index,
    term: Term,
    id: MessageId,
    ts: TimestampUs,
    payload: &[u8],
) -> Digest {
    H::leaf(&leaf_fields(index, term, id, ts, &H::payload(payload)))
}

/// The leaf of a log entry.
pub fn entry_leaf<H: TreeHash>(entry: &EntryView<'_>) -> Digest {
    leaf::<H>(entry.index, entry.term, entry.id, entry.ts, entry.payload)
}

/// The leaves of many log entries, `entry_leaf` of each, hashed in batches
/// ([`TreeHash::payloads`], [`TreeHash::leaves`]).
pub fn entry_leaves<H: TreeHash>(entries: &[EntryView<'_>]) -> Vec<Digest> {
    if let [entry] = entries {
        // A batch of one costs its vectors and gains no lanes (C = 1).
        return vec![entry_leaf::<H>(entry)];
    }
    let payloads: Vec<&[u8]> = entries.iter().map(|entry| entry.payload).collect();
    let mut payload_hashes = vec![[0u8; 32]; entries.len()];
    H::payloads(&payloads, &mut payload_hashes);
    let fields: Vec<[u8; LEAF_FIELDS_LEN]> = entries
        .iter()
        .zip(&payload_hashes)
        .map(|(entry, payload_hash)| {
            leaf_fields(entry.index, entry.term, entry.id, entry.ts, payload_hash)
        })
        .collect();
    let mut leaves = payload_hashes;
    H::leaves(&fields, &mut leaves);
    leaves
}

/// A whole tree, kept so that each leaf's path is a few copies.
///
/// Costs `2 × count` digests (64 bytes per leaf) of memory.
#[derive(Clone, Debug)]
pub struct MerkleTree<H> {
    /// Every level, leaves first, concatenated; the last level is the root.
    nodes: Vec<Digest>,
    /// Where each level starts in `nodes`.
    // Invariant: level_starts[0] == 0, strictly increasing, and level `l`
    // holds `level_width(count, l)` nodes.
    level_starts: Vec<usize>,
    /// Number of leaves; at least 1.
    leaf_count: usize,
    hash: PhantomData<H>,
}

impl<H: TreeHash> MerkleTree<H> {
    /// Builds the tree over `leaves`; `None` if there are none.
    pub fn from_leaves(leaves: Vec<Digest>) -> Option<Self> {
        let leaf_count = leaves.len();
        if leaf_count == 0 {
            return None;
        }
        let mut level_starts = vec![0];
        let (mut start, mut width) = (0, leaf_count);
        while width > 1 {
            start += width;
            width = width.div_ceil(2);
            level_starts.push(start);
        }
        let mut nodes = leaves;
        nodes.resize(start + 1, [0; 32]);
        // Each level's pairs hash in one batch (SIMD lanes for BLAKE3).
        for level in level_starts.windows(2) {
            let (start, next) = (level[0], level[1]);
            let width = next - start;
            let (below, above) = nodes.split_at_mut(next);
            let pairs = width / 2;
            H::nodes(&below[start..start + 2 * pairs], &mut above[..pairs]);
            if width % 2 == 1 {
                // The odd node out is carried up unchanged.
                above[pairs] = below[next - 1];
            }
        }
        Some(Self {
            nodes,
            level_starts,
            leaf_count,
            hash: PhantomData,
        })
    }

    /// The root.
    pub fn root(&self) -> Digest {
        // The last level holds exactly one node.
        self.nodes[self.nodes.len() - 1]
    }

    /// Number of leaves.
    pub fn leaf_count(&self) -> usize {
        self.leaf_count
    }

    /// The siblings from the leaf at `position` up to the root, bottom
    /// first, skipping levels where the node is carried up alone; `None` if
    /// `position` is not a leaf.
    pub fn path(&self, position: usize) -> Option<Vec<Digest>> {
        let mut path = Vec::with_capacity(self.level_starts.len());
        self.for_each_sibling(position, |sibling| path.push(*sibling))?;
        Some(path)
    }

    /// Calls `f` on each digest of [`MerkleTree::path`], in order, without
    /// collecting them; `None` if `position` is not a leaf.
    pub fn for_each_sibling(&self, position: usize, mut f: impl FnMut(&Digest)) -> Option<()> {
        if position >= self.leaf_count {
            return None;
        }
        let (mut position, mut width) = (position, self.leaf_count);
        for &start in &self.level_starts[..self.level_starts.len() - 1] {
            let sibling = position ^ 1;
            if sibling < width {
                f(&self.nodes[start + sibling]);
            }
            position /= 2;
            width = width.div_ceil(2);
        }
        Some(())
    }
}

/// Length of the path of the leaf at `position` in a tree of `count`
/// leaves; `None` if `position >= count`.
pub fn path_len(position: u64, count: u64) -> Option<usize> {
    if position >= count {
        return None;
    }
    let (mut position, mut width, mut len) = (position, count, 0);
    while width > 1 {
        if position ^ 1 < width {
            len += 1;
        }
        position /= 2;
        width = width.div_ceil(2);
    }
    Some(len)
}

/// Folds `path` onto `leaf` at `position` of a `count`-leaf tree and returns
/// the root it implies; `None` if `position >= count` or the path does not
/// have exactly [`path_len`] digests.
pub fn root_from_path<H: TreeHash>(
    leaf: Digest,
    position: u64,
    count: u64,
    path: &[Digest],
) -> Option<Digest> {
    if path_len(position, count)? != path.len() {
        return None;
    }
    let mut siblings = path.iter();
    let (mut node, mut position, mut width) = (leaf, position, count);
    while width > 1 {
        if position ^ 1 < width {
            // path_len above guarantees one sibling per such level.
            let sibling = siblings.next()?;
            node = if position & 1 == 0 {
                H::node(&node, sibling)
            } else {
                H::node(sibling, &node)
            };
        }
        position /= 2;
        width = width.div_ceil(2);
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::hash::{Blake3Tree, Sha256Tree};

    fn leaves<H: TreeHash>(count: usize) -> Vec<Digest> {
        (0..count as u64)
            .map(|i| leaf::<H>(i + 1, 1, i + 1, 1000 + i, &i.to_le_bytes()))
            .collect()
    }

    fn every_path_folds_to_the_root<H: TreeHash>() {
        for count in 1..=70usize {
            let tree = MerkleTree::<H>::from_leaves(leaves::<H>(count)).unwrap();
            for position in 0..count {
                let path = tree.path(position).unwrap();
                assert_eq!(path_len(position as u64, count as u64), Some(path.len()));
                let root = root_from_path::<H>(
                    leaves::<H>(count)[position],
                    position as u64,
                    count as u64,
                    &path,
                );
                assert_eq!(root, Some(tree.root()), "count {count} position {position}");
            }
            assert!(tree.path(count).is_none());
        }
    }

    #[test]
    fn every_path_folds_to_the_root_sha256() {
        every_path_folds_to_the_root::<Sha256Tree>();
    }

    #[test]
    fn every_path_folds_to_the_root_blake3() {
        every_path_folds_to_the_root::<Blake3Tree>();
    }

    #[test]
    fn odd_levels_carry_their_last_node_up() {
        type H = Sha256Tree;
        let l = leaves::<H>(3);
        let tree = MerkleTree::<H>::from_leaves(l.clone()).unwrap();
        assert_eq!(tree.root(), H::node(&H::node(&l[0], &l[1]), &l[2]));
        assert_eq!(tree.path(2).unwrap(), vec![H::node(&l[0], &l[1])]);
        let single = MerkleTree::<H>::from_leaves(vec![l[0]]).unwrap();
        assert_eq!(single.root(), l[0]);
        assert_eq!(single.path(0).unwrap(), Vec::<Digest>::new());
    }

    #[test]
    fn wrong_path_lengths_and_positions_give_no_root() {
        type H = Sha256Tree;
        let l = leaves::<H>(5);
        let tree = MerkleTree::<H>::from_leaves(l.clone()).unwrap();
        let mut path = tree.path(1).unwrap();
        assert_eq!(root_from_path::<H>(l[1], 5, 5, &path), None);
        path.push([0; 32]);
        assert_eq!(root_from_path::<H>(l[1], 1, 5, &path), None);
        assert_eq!(
            root_from_path::<H>(l[1], 1, 5, &path[..path.len() - 2]),
            None
        );
        assert_eq!(path_len(0, u64::MAX), Some(64));
        assert_eq!(path_len(u64::MAX - 1, u64::MAX), Some(63));
        assert!(MerkleTree::<H>::from_leaves(Vec::new()).is_none());
    }
}
