//! The statement a leader signs once per commit advance, and its canonical
//! bytes.
//!
//! Signed message (95 bytes, fixed layout, integers little-endian):
//!
//! ```text
//! offset  size  field
//!      0    14  b"ordo-commit-v1"   domain: these bytes are an ordo commit statement
//!     14     1  hash id             which TreeHash built the root (1 = sha256, 2 = blake3)
//!     15    16  cluster_id
//!     31     8  term                the signing leader's term
//!     39     8  leader_id
//!     47     8  first_index         first entry covered
//!     55     8  last_index          last entry covered (inclusive)
//!     63    32  root                Merkle root over first_index..=last_index
//! ```
//!
//! The domain prefix keeps these signatures from being replayed as any other
//! message signed with the same key; the hash id keeps a root of one hash
//! from being read as a root of another.

use ordo_storage::{Index, NodeId, Term};

use super::hash::{Digest, TokenHash, TreeHash};
use super::keys::ClusterId;

/// Domain prefix of the signed statement bytes.
pub const STATEMENT_DOMAIN: &[u8; 14] = b"ordo-commit-v1";
/// Length of the statement fields after the domain and hash id.
pub(crate) const STATEMENT_BODY_LEN: usize = 16 + 4 * 8 + 32;
/// Length of the signed statement bytes.
pub const STATEMENT_BYTES_LEN: usize = STATEMENT_DOMAIN.len() + 1 + STATEMENT_BODY_LEN;
/// Length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// What a voter asserts: the entries `first_index..=last_index` of this
/// cluster's log are committed, and their leaves hash to `root`. The leader
/// signs one per commit advance; a voter signs committed entries it holds
/// that no statement it can get covers (`leader_id` is the signer).
///
/// A well-formed statement has `term >= 1`, `leader_id != 0` and
/// `1 <= first_index <= last_index` ([`Statement::is_well_formed`]); the
/// token decoder rejects any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Statement {
    /// The cluster.
    pub cluster_id: ClusterId,
    /// The signer's term when it signed.
    pub term: Term,
    /// The signer: the leader, or a voter signing committed entries no
    /// statement it could get covers.
    pub leader_id: NodeId,
    /// First entry covered.
    pub first_index: Index,
    /// Last entry covered, inclusive.
    pub last_index: Index,
    /// Merkle root over the leaves of `first_index..=last_index`.
    pub root: Digest,
}

impl Statement {
    /// The canonical bytes that are signed.
    pub fn to_bytes(&self) -> [u8; STATEMENT_BYTES_LEN] {
        let mut bytes = [0u8; STATEMENT_BYTES_LEN];
        let domain = STATEMENT_DOMAIN.len();
        bytes[..domain].copy_from_slice(STATEMENT_DOMAIN);
        bytes[domain] = TokenHash::ID;
        self.write_body(&mut bytes[domain + 1..]);
        bytes
    }

    /// The fields after the domain and hash id (shared with the token
    /// encoding). `out` is [`STATEMENT_BODY_LEN`] bytes.
    pub(crate) fn write_body(&self, out: &mut [u8]) {
        out[0..16].copy_from_slice(&self.cluster_id.0);
        out[16..24].copy_from_slice(&self.term.to_le_bytes());
        out[24..32].copy_from_slice(&self.leader_id.to_le_bytes());
        out[32..40].copy_from_slice(&self.first_index.to_le_bytes());
        out[40..48].copy_from_slice(&self.last_index.to_le_bytes());
        out[48..80].copy_from_slice(&self.root);
    }

    /// Reads the fields written by `write_body`; `body` is
    /// [`STATEMENT_BODY_LEN`] bytes.
    pub(crate) fn read_body(body: &[u8; STATEMENT_BODY_LEN]) -> Self {
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&body[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let mut cluster_id = [0u8; 16];
        cluster_id.copy_from_slice(&body[0..16]);
        let mut root = [0u8; 32];
        root.copy_from_slice(&body[48..80]);
        Self {
            cluster_id: ClusterId(cluster_id),
            term: word(16),
            leader_id: word(24),
            first_index: word(32),
            last_index: word(40),
            root,
        }
    }

    /// `term >= 1`, `leader_id != 0` and `1 <= first_index <= last_index`.
    pub fn is_well_formed(&self) -> bool {
        self.term >= 1
            && self.leader_id != 0
            && 1 <= self.first_index
            && self.first_index <= self.last_index
    }

    /// Number of entries covered; `None` if the statement is not well formed.
    pub fn entry_count(&self) -> Option<u64> {
        if !self.is_well_formed() {
            return None;
        }
        // first_index >= 1, so this cannot overflow.
        Some(self.last_index - self.first_index + 1)
    }
}

/// A statement with its leader's ed25519 signature over
/// [`Statement::to_bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SignedStatement {
    /// What is asserted.
    pub statement: Statement,
    /// The leader's signature.
    pub signature: [u8; SIGNATURE_LEN],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes_have_the_documented_layout() {
        let statement = Statement {
            cluster_id: ClusterId([0x11; 16]),
            term: 2,
            leader_id: 3,
            first_index: 4,
            last_index: 5,
            root: [0x66; 32],
        };
        let bytes = statement.to_bytes();
        assert_eq!(bytes.len(), 95);
        assert_eq!(&bytes[..14], b"ordo-commit-v1");
        assert_eq!(bytes[14], TokenHash::ID);
        assert_eq!(&bytes[15..31], &[0x11; 16]);
        assert_eq!(bytes[31], 2);
        assert_eq!(bytes[39], 3);
        assert_eq!(bytes[47], 4);
        assert_eq!(bytes[55], 5);
        assert_eq!(&bytes[63..], &[0x66; 32]);
        let body: [u8; STATEMENT_BODY_LEN] = bytes[15..].try_into().unwrap();
        assert_eq!(Statement::read_body(&body), statement);
        assert_eq!(statement.entry_count(), Some(2));
        let backwards = Statement {
            first_index: 6,
            ..statement
        };
        assert_eq!(backwards.entry_count(), None);
        let from_zero = Statement {
            first_index: 0,
            last_index: u64::MAX,
            ..statement
        };
        assert_eq!(from_zero.entry_count(), None);
    }
}
