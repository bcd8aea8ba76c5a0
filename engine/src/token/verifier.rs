//! The verifier's side: check a token offline with only `cluster.keys`.
//!
//! Checks, cheapest first: the cluster id; the entry's index lies in the
//! statement's range; the path has the length the tree's shape implies; the
//! entry's leaf folded with the path gives the statement's root; the
//! statement is signed (`verify_strict`) by the key `cluster.keys` lists for
//! its leader (a voter of the configuration in force before its first
//! entry: [`KeySchedule`]). The last check is skipped for a statement this verifier has
//! already checked (same statement bytes and signature), so the other
//! entries of a commit advance cost only hashing.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ed25519_dalek::Signature;
use ordo_storage::{Index, MessageId, NodeId, Term, TimestampUs};

use super::chain::{ChainError, ConfigLink, KeySchedule};
use super::cluster_keys::ClusterKeys;
use super::encoding::{Token, TokenDecodeError};
use super::hash::{Digest, TokenHash, TreeHash};
use super::keys::{ClusterId, KeyError, PublicKey};
use super::merkle::{leaf, path_len, root_from_path};

/// Statements remembered by default: a gossip node sees a few commit
/// advances per millisecond, each covering many entries.
pub const STATEMENT_CACHE_ENTRIES_DEFAULT: usize = 4096;

/// Why a token does not prove an entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The token text or bytes are malformed.
    #[error(transparent)]
    Decode(#[from] TokenDecodeError),
    /// The statement is not well formed (only possible for a token built
    /// in memory; decoding rejects these).
    #[error("token: malformed statement")]
    MalformedStatement,
    /// The statement is for another cluster.
    #[error("token is for cluster {found}, the keys file is for cluster {expected}")]
    WrongCluster {
        /// The keys file's cluster.
        expected: ClusterId,
        /// The token's.
        found: ClusterId,
    },
    /// The entry's index is not covered by the statement.
    #[error("entry index {index} is outside the statement's entries {first_index}..={last_index}")]
    IndexOutOfRange {
        /// The entry's index.
        index: Index,
        /// The statement's first index.
        first_index: Index,
        /// The statement's last index.
        last_index: Index,
    },
    /// The path's length does not fit the entry's place in the tree.
    #[error("Merkle path of {found} levels, the entry's place in the tree needs {expected}")]
    WrongPathLength {
        /// Length the tree's shape implies.
        expected: usize,
        /// Length of the token's path.
        found: usize,
    },
    /// The entry (payload, id, index, term or ts) or the path does not hash
    /// to the statement's root: the entry is not the one the statement
    /// covers at this index.
    #[error(
        "entry {index} does not match the signed statement (payload, id, term, ts or Merkle path altered)"
    )]
    EntryMismatch {
        /// The entry's index.
        index: Index,
    },
    /// The statement's leader is not in the keys file.
    #[error("statement signed as node {leader_id}, which has no key in the keys file")]
    UnknownSigner {
        /// The claimed leader.
        leader_id: NodeId,
    },
    /// The signature is not node `leader_id`'s over this statement.
    #[error("bad signature: the statement is not signed by node {leader_id}'s key")]
    BadSignature {
        /// The claimed leader.
        leader_id: NodeId,
    },
    /// The signer is not a voter of the configuration in force before the
    /// statement's first entry (it was removed, or never added, as far as
    /// this verifier's chain knows).
    #[error(
        "statement signed as node {leader_id}, which is not a voter of the configuration at index {config_index} (removed, or the verifier lacks a later configuration link)"
    )]
    NotAVoter {
        /// The claimed leader.
        leader_id: NodeId,
        /// Index of the configuration in force.
        config_index: Index,
    },
    /// The signer is a voter that holds no key.
    #[error(
        "statement signed as node {leader_id}, a voter without a key in the configuration at index {config_index}"
    )]
    NoKey {
        /// The claimed leader.
        leader_id: NodeId,
        /// Index of the configuration in force.
        config_index: Index,
    },
    /// The statement covers entries on both sides of a configuration
    /// entry: the ones after it would be signed under the configuration
    /// before it.
    #[error(
        "statement {first_index}..={last_index} extends past the configuration entry at index {config_index}"
    )]
    SpansConfiguration {
        /// The statement's first index.
        first_index: Index,
        /// The statement's last index.
        last_index: Index,
        /// The configuration entry inside it.
        config_index: Index,
    },
}

/// Checks tokens against a cluster's public keys. Owns a bounded LRU cache
/// of checked statements; lives on one shard (no locks), like the gossip
/// connection or CLI loop that uses it.
#[derive(Debug)]
pub struct Verifier {
    keys: ClusterKeys,
    schedule: KeySchedule,
    cache: StatementCache,
}

impl Verifier {
    /// A verifier for `keys`, remembering
    /// [`STATEMENT_CACHE_ENTRIES_DEFAULT`] statements.
    pub fn new(keys: ClusterKeys) -> Self {
        Self::with_cache_entries(keys, STATEMENT_CACHE_ENTRIES_DEFAULT)
    }

    /// A verifier for `keys` remembering at most `entries_max` statements
    /// (0 checks every signature).
    pub fn with_cache_entries(keys: ClusterKeys, entries_max: usize) -> Self {
        Self {
            schedule: KeySchedule::new(&keys),
            keys,
            cache: StatementCache::new(entries_max),
        }
    }

    /// A verifier for the keys in a `cluster.keys` file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        ClusterKeys::load(path).map(Self::new)
    }

    /// The keys it checks against.
    pub fn keys(&self) -> &ClusterKeys {
        &self.keys
    }

    /// The configurations this verifier trusts: `cluster.keys` and the
    /// links it learned.
    pub fn schedule(&self) -> &KeySchedule {
        &self.schedule
    }

    /// Learns a configuration change ([`KeySchedule::learn`]): later
    /// statements are checked against the voters it names. Returns
    /// `Ok(false)` for a link already known.
    pub fn learn(&mut self, link: &ConfigLink) -> Result<bool, ChainError> {
        let learned = self.schedule.learn(link)?;
        if learned {
            // A statement checked before may extend past the new
            // configuration entry.
            self.cache = StatementCache::new(self.cache.entries_max);
        }
        Ok(learned)
    }

    /// Number of statements currently remembered.
    pub fn cached_statements(&self) -> usize {
        self.cache.len()
    }

    /// Checks that `token` proves the entry `(index, term, id, ts, payload)`
    /// committed.
    pub fn verify(
        &mut self,
        token: &Token,
        payload: &[u8],
        id: MessageId,
        index: Index,
        term: Term,
        ts: TimestampUs,
    ) -> Result<(), VerifyError> {
        // The cheap checks first: a token for another index or cluster
        // fails without hashing the payload.
        let place = self.check_place(token, index)?;
        let leaf = leaf::<TokenHash>(index, term, id, ts, payload);
        self.check_leaf_and_signature(token, index, place, &leaf)
    }

    /// Like [`Verifier::verify`] for an entry whose leaf
    /// ([`super::leaf`]) was computed already, e.g. on another shard.
    pub fn verify_leaf(
        &mut self,
        token: &Token,
        index: Index,
        leaf: &Digest,
    ) -> Result<(), VerifyError> {
        let place = self.check_place(token, index)?;
        self.check_leaf_and_signature(token, index, place, leaf)
    }

    /// Checks everything but the entry itself: the statement is this
    /// cluster's, covers `index`, is signed by its leader's listed key, and
    /// the path has the right length for `index`. For a caller that does not
    /// hold the payload (an `ordo send` answer line): it proves that a
    /// leader committed *some* entry at `index`, not which one.
    pub fn verify_statement(&mut self, token: &Token, index: Index) -> Result<(), VerifyError> {
        self.check_place(token, index)?;
        self.check_signature(token)
    }

    /// Decodes `token_text` (as printed in a `"token"` JSON field) and
    /// verifies it.
    pub fn verify_text(
        &mut self,
        token_text: &str,
        payload: &[u8],
        id: MessageId,
        index: Index,
        term: Term,
        ts: TimestampUs,
    ) -> Result<(), VerifyError> {
        let token = Token::from_text(token_text)?;
        self.verify(&token, payload, id, index, term, ts)
    }

    /// The cluster, the index's place in the statement and the path's
    /// length; returns the entry's position and the statement's entry count.
    fn check_place(&self, token: &Token, index: Index) -> Result<(u64, u64), VerifyError> {
        check_place(token, self.keys.cluster_id(), index)
    }

    /// The leaf folded with the path gives the root; then the signature.
    fn check_leaf_and_signature(
        &mut self,
        token: &Token,
        index: Index,
        (position, entry_count): (u64, u64),
        leaf: &Digest,
    ) -> Result<(), VerifyError> {
        let root = root_from_path::<TokenHash>(*leaf, position, entry_count, &token.path);
        if root != Some(token.signed.statement.root) {
            return Err(VerifyError::EntryMismatch { index });
        }
        self.check_signature(token)
    }

    /// The statement's signer and signature, unless already checked.
    fn check_signature(&mut self, token: &Token) -> Result<(), VerifyError> {
        let signed = &token.signed;
        let message = signed.statement.to_bytes();
        let cache_key = TokenHash::concat(&[&message, &signed.signature]);
        if self.cache.touch(&cache_key) {
            return Ok(());
        }
        let key = self.schedule.signer_key(&signed.statement)?;
        check_signed(token, &key)?;
        self.cache.insert(cache_key);
        Ok(())
    }
}

/// The cluster, the index's place in the statement and the path's length;
/// returns the entry's position and the statement's entry count.
fn check_place(token: &Token, cluster: ClusterId, index: Index) -> Result<(u64, u64), VerifyError> {
    let statement = &token.signed.statement;
    let entry_count = statement
        .entry_count()
        .ok_or(VerifyError::MalformedStatement)?;
    if statement.cluster_id != cluster {
        return Err(VerifyError::WrongCluster {
            expected: cluster,
            found: statement.cluster_id,
        });
    }
    if index < statement.first_index || index > statement.last_index {
        return Err(VerifyError::IndexOutOfRange {
            index,
            first_index: statement.first_index,
            last_index: statement.last_index,
        });
    }
    let position = index - statement.first_index;
    let expected = path_len(position, entry_count).ok_or(VerifyError::MalformedStatement)?;
    if token.path.len() != expected {
        return Err(VerifyError::WrongPathLength {
            expected,
            found: token.path.len(),
        });
    }
    Ok((position, entry_count))
}

/// Everything but the signature: `token` proves the entry
/// `(index, term, id, ts, payload)` under its statement's root.
pub(super) fn check_entry(
    token: &Token,
    cluster: ClusterId,
    index: Index,
    term: Term,
    id: MessageId,
    ts: TimestampUs,
    payload: &[u8],
) -> Result<(), VerifyError> {
    let (position, entry_count) = check_place(token, cluster, index)?;
    let leaf = leaf::<TokenHash>(index, term, id, ts, payload);
    let root = root_from_path::<TokenHash>(leaf, position, entry_count, &token.path);
    if root != Some(token.signed.statement.root) {
        return Err(VerifyError::EntryMismatch { index });
    }
    Ok(())
}

/// The statement's signature by `key` (strict: rejects non-canonical and
/// small-order signature parts, so a signature cannot be altered into
/// another valid one).
pub(super) fn check_signed(token: &Token, key: &PublicKey) -> Result<(), VerifyError> {
    let signed = &token.signed;
    let leader_id = signed.statement.leader_id;
    key.verifying_key()
        .verify_strict(
            &signed.statement.to_bytes(),
            &Signature::from_bytes(&signed.signature),
        )
        .map_err(|_| VerifyError::BadSignature { leader_id })
}

/// A bounded LRU set of checked statements, keyed by a digest of the
/// statement bytes and signature.
#[derive(Debug)]
struct StatementCache {
    entries_max: usize,
    /// Key → its last use.
    // Invariant: `by_use` holds exactly the inverse of `last_use`.
    last_use: HashMap<Digest, u64>,
    /// Last use → key, oldest first.
    by_use: BTreeMap<u64, Digest>,
    clock: u64,
}

impl StatementCache {
    fn new(entries_max: usize) -> Self {
        Self {
            entries_max,
            last_use: HashMap::new(),
            by_use: BTreeMap::new(),
            clock: 0,
        }
    }

    fn len(&self) -> usize {
        self.last_use.len()
    }

    /// Whether `key` is cached; marks it most recently used.
    fn touch(&mut self, key: &Digest) -> bool {
        let Some(last_use) = self.last_use.get_mut(key) else {
            return false;
        };
        self.clock += 1;
        self.by_use.remove(last_use);
        *last_use = self.clock;
        self.by_use.insert(self.clock, *key);
        true
    }

    /// Adds `key` (not cached), evicting the least recently used if full.
    fn insert(&mut self, key: Digest) {
        if self.entries_max == 0 {
            return;
        }
        if self.last_use.len() >= self.entries_max
            && let Some((_, oldest)) = self.by_use.pop_first()
        {
            self.last_use.remove(&oldest);
        }
        self.clock += 1;
        self.last_use.insert(key, self.clock);
        self.by_use.insert(self.clock, key);
        debug_assert_eq!(self.last_use.len(), self.by_use.len());
    }
}

#[cfg(test)]
mod tests {
    use super::StatementCache;

    #[test]
    fn cache_evicts_the_least_recently_used() {
        let mut cache = StatementCache::new(2);
        cache.insert([1; 32]);
        cache.insert([2; 32]);
        assert!(cache.touch(&[1; 32]));
        cache.insert([3; 32]);
        assert!(cache.touch(&[1; 32]));
        assert!(!cache.touch(&[2; 32]));
        assert!(cache.touch(&[3; 32]));
        assert_eq!(cache.len(), 2);
        let mut off = StatementCache::new(0);
        off.insert([1; 32]);
        assert!(!off.touch(&[1; 32]));
    }
}
