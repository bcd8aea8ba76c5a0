//! Tokens: offline proof that an entry was committed.
//!
//! Per commit advance the leader signs one [`Statement`] — cluster id, its
//! term and id, the advance's first and last index, and the Merkle root over
//! the advance's entries — with its ed25519 key. An entry's [`Token`] is
//! that signed statement plus the entry's Merkle path. Anyone holding
//! `cluster.keys` can check it: the [`Verifier`] recomputes the entry's
//! leaf from `(index, term, id, ts, payload)`, folds the path to the root,
//! and checks the signature strictly, once per statement (cached).
//!
//! | file | job |
//! |---|---|
//! | `hash.rs` | the hash ([`TokenHash`]) and its domain-separated uses |
//! | `merkle.rs` | leaves, the tree, paths, roots from paths |
//! | `statement.rs` | the signed statement and its canonical bytes |
//! | `encoding.rs` | the token's bytes and base64url text |
//! | `keys.rs` | cluster id, key pair, the `node.key` file |
//! | `cluster_keys.rs` | the `cluster.keys` file |
//! | `signer.rs` | the leader's side: one signature per commit advance |
//! | `nonce.rs` | signing nonces prepared on a background thread |
//! | `verifier.rs` | the verifier's side, with its statement cache |
//!
//! Formats and measurements: `docs/tokens.md`.
//!
//! # The leader's runtime
//!
//! ```
//! use ordo_engine::token::{ClusterId, ClusterKeys, NodeKey, Signer, Verifier};
//! use ordo_storage::{BatchKind, EntryView};
//!
//! // At startup: the key from the data directory (NodeKey::load), the
//! // cluster id from cluster.keys.
//! let key = NodeKey::from_secret_bytes(&[1; 32]);
//! let cluster_id = ClusterId([7; 16]);
//! let mut keys = ClusterKeys::new(cluster_id);
//! keys.insert(1, key.public_key()).unwrap();
//! let signer = Signer::new(cluster_id, 1, key);
//!
//! // On each Command::Apply while leader of term 3: sign every entry of
//! // the advance (`apply_batch.entries()`), then cut each user entry's token.
//! let entry = |index: u64, id: u64, payload: &'static [u8]| EntryView {
//!     kind: BatchKind::Entries, index, term: 3, id, ts: 1_000 + index,
//!     client_id: 0, seq: 0, payload,
//! };
//! let entries = [entry(10, 4, b"hello"), entry(11, 5, b"world")];
//! let proof = signer.sign_entries(3, entries).unwrap();
//! let token = proof.token(11).unwrap();
//! let text = token.to_text(); // the "token" field of `ordo send` / `ordo log`
//!
//! // A gossip node or `ordo verify`: Verifier::load("cluster.keys").
//! let mut verifier = Verifier::new(keys);
//! verifier.verify_text(&text, b"world", 5, 11, 3, 1_011).unwrap();
//! assert!(verifier.verify_text(&text, b"w0rld", 5, 11, 3, 1_011).is_err());
//! ```

mod chain;
mod cluster_keys;
mod encoding;
mod hash;
mod hex;
mod keys;
mod merkle;
mod nonce;
mod signer;
mod statement;
mod verifier;

#[cfg(test)]
mod tests;

pub use chain::{
    CHAIN_CONFIGS_MAX, ChainError, ConfigLink, KeySchedule, LINK_BYTES_MAX, TrustedConfig,
};
pub use cluster_keys::{
    CLUSTER_KEYS_FILE, CLUSTER_KEYS_FILE_BYTES_MAX, ClusterKeys, ClusterKeysEntryError,
};
pub use encoding::{
    TOKEN_BYTES_MAX, TOKEN_HEADER_LEN, TOKEN_PATH_LEN_MAX, TOKEN_TEXT_LEN_MAX, TOKEN_VERSION,
    Token, TokenDecodeError,
};
pub use hash::{Blake3Tree, Digest, LEAF_FIELDS_LEN, Sha256Tree, TokenHash, TreeHash};
pub use hex::HexError;
pub use keys::{
    ClusterId, ClusterIdError, KeyError, MalformedKeyFile, NODE_KEY_FILE, NODE_KEY_FILE_BYTES_MAX,
    NodeKey, PublicKey, PublicKeyError,
};
pub use merkle::{
    MerkleTree, entry_leaf, entry_leaves, leaf, leaf_fields, path_len, root_from_path,
};
pub use nonce::{NONCE_POOL_CAPACITY, NoncePool};
pub use signer::{CommitProof, ProofError, STATEMENT_ENTRIES_MAX, Signer};
pub use statement::{
    SIGNATURE_LEN, STATEMENT_BYTES_LEN, STATEMENT_DOMAIN, SignedStatement, Statement,
};
pub use verifier::{STATEMENT_CACHE_ENTRIES_DEFAULT, Verifier, VerifyError};
