//! The leader's side: one signature per commit advance.
//!
//! The runtime calls [`Signer::sign_entries`] with every entry of a commit
//! advance (the leader's `Command::Apply`, `ApplyBatch::entries()`), then
//! takes each user entry's token from the returned [`CommitProof`]. The
//! cost per advance is one ed25519 signature plus hashing (two hashes per
//! entry, one per inner node); a token is then a few digest copies.
//!
//! Any node holding the same committed entries can rebuild the proof from
//! the leader's [`SignedStatement`] alone ([`CommitProof::rebuild`]), so the
//! leader need only ship the ~150-byte signed statement per advance to the
//! node that received a message, not a token per message.

use ordo_storage::{EntryView, Index, NodeId, Term};

use super::encoding::Token;
use super::hash::{Digest, TokenHash};
use super::keys::{ClusterId, NodeKey, PublicKey};
use super::merkle::{MerkleTree, entry_leaves};
use super::nonce::NoncePool;
use super::statement::{SignedStatement, Statement};

/// Most entries one statement covers; a larger advance is signed in parts.
/// Bounds the signer's memory (64 bytes an entry: 64 MiB here).
pub const STATEMENT_ENTRIES_MAX: usize = 1 << 20;

/// Why a commit proof could not be made (signed or rebuilt). Each is a
/// caller bug, a bound, or entries that differ from the signed ones.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Nothing to sign.
    #[error("no entries to sign")]
    Empty,
    /// The entries skip or repeat an index.
    #[error("entries are not contiguous: expected index {expected}, found {found}")]
    NotContiguous {
        /// The index that should have come next.
        expected: Index,
        /// The index that came.
        found: Index,
    },
    /// An entry from a later term than the signing leader's.
    #[error("entry {index} has term {entry_term}, after the signing term {term}")]
    TermAfterStatement {
        /// The entry.
        index: Index,
        /// Its term.
        entry_term: Term,
        /// The signing leader's term.
        term: Term,
    },
    /// More entries than [`STATEMENT_ENTRIES_MAX`].
    #[error("more than {STATEMENT_ENTRIES_MAX} entries in one statement; sign them in parts")]
    TooManyEntries,
    /// Term 0, node id 0, or first index 0.
    #[error("cannot sign as node {leader_id} in term {term} from index {first_index}")]
    Malformed {
        /// The signing term.
        term: Term,
        /// The signer's node id.
        leader_id: NodeId,
        /// The first index.
        first_index: Index,
    },
    /// The entries run past the largest index.
    #[error("entries run past the largest log index")]
    IndexOverflow,
    /// Rebuilding: the entries span other indexes than the statement.
    #[error(
        "the entries span {first_index}..={last_index}, the statement {statement_first_index}..={statement_last_index}"
    )]
    RangeMismatch {
        /// First entry given.
        first_index: Index,
        /// Last entry given.
        last_index: Index,
        /// The statement's first index.
        statement_first_index: Index,
        /// The statement's last index.
        statement_last_index: Index,
    },
    /// Rebuilding: the entries do not hash to the statement's root (they
    /// are not the entries that were signed).
    #[error("the entries do not hash to the statement's Merkle root")]
    RootMismatch,
}

/// A voter's signing identity. Lives on the shard that runs its Raft group;
/// only the leader uses it.
#[derive(Clone, Debug)]
pub struct Signer {
    cluster_id: ClusterId,
    node_id: NodeId,
    key: NodeKey,
    /// Nonces prepared off the signing thread ([`NoncePool`]); without
    /// it, RFC 8032 deterministic signing.
    nonces: Option<std::sync::Arc<NoncePool>>,
}

impl Signer {
    /// Signs as `node_id` of `cluster_id` with `key`.
    pub fn new(cluster_id: ClusterId, node_id: NodeId, key: NodeKey) -> Self {
        Self {
            cluster_id,
            node_id,
            key,
            nonces: None,
        }
    }

    /// Prepares signing nonces on a background thread named
    /// `thread_name` ([`NoncePool`]): a commit advance then costs one
    /// SHA-512 and a scalar multiply-add instead of a full signature
    /// (~20 µs on the reference machine). The signatures verify the same.
    pub fn with_nonce_pool(mut self, thread_name: String) -> std::io::Result<Self> {
        let pool = NoncePool::start(self.key.clone(), thread_name)?;
        self.nonces = Some(std::sync::Arc::new(pool));
        Ok(self)
    }

    /// The nonce pool, if signing uses one.
    pub fn nonce_pool(&self) -> Option<&NoncePool> {
        self.nonces.as_deref()
    }

    /// The public key verifiers must list for this node.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// Signs the commit advance made of `entries` — every entry of the
    /// advance, internal ones included, in index order — as the leader of
    /// `term`.
    pub fn sign_entries<'a, I>(&self, term: Term, entries: I) -> Result<CommitProof, ProofError>
    where
        I: IntoIterator<Item = EntryView<'a>>,
    {
        let (first_index, leaves) = leaves_of(term, entries)?;
        self.sign_leaves(term, first_index, leaves)
    }

    /// Signs precomputed leaves ([`super::entry_leaf`]) of the entries
    /// `first_index..` as the leader of `term`; lets the runtime hash
    /// payloads on another shard before the entries commit.
    pub fn sign_leaves(
        &self,
        term: Term,
        first_index: Index,
        leaves: Vec<Digest>,
    ) -> Result<CommitProof, ProofError> {
        if leaves.len() > STATEMENT_ENTRIES_MAX {
            return Err(ProofError::TooManyEntries);
        }
        let malformed = ProofError::Malformed {
            term,
            leader_id: self.node_id,
            first_index,
        };
        let last_index = first_index
            .checked_add(leaves.len().saturating_sub(1) as u64)
            .ok_or(malformed.clone())?;
        let tree = MerkleTree::<TokenHash>::from_leaves(leaves).ok_or(ProofError::Empty)?;
        let statement = Statement {
            cluster_id: self.cluster_id,
            term,
            leader_id: self.node_id,
            first_index,
            last_index,
            root: tree.root(),
        };
        if !statement.is_well_formed() {
            return Err(malformed);
        }
        let bytes = statement.to_bytes();
        let signature = match &self.nonces {
            Some(pool) => pool.sign(&bytes),
            None => self.key.sign(&bytes).to_bytes(),
        };
        Ok(CommitProof {
            signed: SignedStatement {
                statement,
                signature,
            },
            tree,
        })
    }
}

/// The leaves of contiguous `entries` of terms up to `term`, and the first
/// entry's index.
fn leaves_of<'a, I>(term: Term, entries: I) -> Result<(Index, Vec<Digest>), ProofError>
where
    I: IntoIterator<Item = EntryView<'a>>,
{
    let mut entries = entries.into_iter().peekable();
    let first_index = entries.peek().ok_or(ProofError::Empty)?.index;
    let mut checked = Vec::with_capacity(entries.size_hint().0.min(STATEMENT_ENTRIES_MAX));
    let mut expected = Some(first_index);
    for entry in entries {
        let Some(next) = expected else {
            return Err(ProofError::IndexOverflow);
        };
        if entry.index != next {
            return Err(ProofError::NotContiguous {
                expected: next,
                found: entry.index,
            });
        }
        if entry.term > term {
            return Err(ProofError::TermAfterStatement {
                index: entry.index,
                entry_term: entry.term,
                term,
            });
        }
        if checked.len() == STATEMENT_ENTRIES_MAX {
            return Err(ProofError::TooManyEntries);
        }
        checked.push(entry);
        expected = next.checked_add(1);
    }
    Ok((first_index, entry_leaves::<TokenHash>(&checked)))
}

/// One signed commit advance and its Merkle tree, from which each entry's
/// token is cut. Keep it until every entry's token has been handed out.
#[derive(Clone, Debug)]
pub struct CommitProof {
    signed: SignedStatement,
    // Invariant: tree.leaf_count() == last_index - first_index + 1 and
    // tree.root() == signed.statement.root.
    tree: MerkleTree<TokenHash>,
}

impl CommitProof {
    /// Rebuilds the proof of a statement signed elsewhere (by the leader)
    /// from the same entries, `signed.statement.first_index..=last_index`.
    /// Checks that the entries hash to the statement's root; does not check
    /// the signature (use a [`super::Verifier`] for that).
    pub fn rebuild<'a, I>(signed: SignedStatement, entries: I) -> Result<Self, ProofError>
    where
        I: IntoIterator<Item = EntryView<'a>>,
    {
        let statement = &signed.statement;
        let (first_index, leaves) = leaves_of(statement.term, entries)?;
        // leaves_of returns at least one leaf and no index past u64::MAX.
        let last_index = first_index + (leaves.len() as u64 - 1);
        if (first_index, last_index) != (statement.first_index, statement.last_index) {
            return Err(ProofError::RangeMismatch {
                first_index,
                last_index,
                statement_first_index: statement.first_index,
                statement_last_index: statement.last_index,
            });
        }
        let tree = MerkleTree::<TokenHash>::from_leaves(leaves).ok_or(ProofError::Empty)?;
        if tree.root() != statement.root {
            return Err(ProofError::RootMismatch);
        }
        Ok(Self { signed, tree })
    }

    /// The signed statement.
    pub fn signed(&self) -> &SignedStatement {
        &self.signed
    }

    /// The statement.
    pub fn statement(&self) -> &Statement {
        &self.signed.statement
    }

    /// The token of the entry at `index`; `None` outside the statement.
    pub fn token(&self, index: Index) -> Option<Token> {
        let position = index.checked_sub(self.signed.statement.first_index)?;
        let path = self.tree.path(usize::try_from(position).ok()?)?;
        Some(Token {
            signed: self.signed,
            path,
        })
    }

    /// `self.token(index)?.to_bytes()` written straight from the tree,
    /// without the intermediate path and token (the leader cuts one per
    /// answer).
    pub fn token_bytes(&self, index: Index) -> Option<Vec<u8>> {
        let statement = &self.signed.statement;
        let position = index.checked_sub(statement.first_index)?;
        let count = statement.last_index - statement.first_index + 1;
        let path_len = super::merkle::path_len(position, count)?;
        let mut bytes = super::encoding::start_bytes(&self.signed, path_len);
        self.tree
            .for_each_sibling(usize::try_from(position).ok()?, |sibling| {
                bytes.extend_from_slice(sibling)
            })?;
        Some(bytes)
    }

    /// Every entry's index and token, in index order.
    pub fn tokens(&self) -> impl Iterator<Item = (Index, Token)> + '_ {
        let statement = &self.signed.statement;
        (statement.first_index..=statement.last_index)
            .filter_map(|index| self.token(index).map(|token| (index, token)))
    }
}
