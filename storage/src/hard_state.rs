//! The persistent Raft state that is not in the log.

use crate::types::{Index, NodeId, Term};

/// Term and vote, which must be durable before a vote is granted (Raft §5.1,
/// Figure 2 "persistent state"), plus the last known commit index as a hint
/// for restart (not needed for safety: a node may learn commit again).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate voted for in `term`; `0` if none.
    pub vote: NodeId,
    /// A commit index known at the time of writing; may lag.
    pub commit: Index,
}

impl HardState {
    /// Bytes in the encoded form.
    pub const ENCODED_BYTES: usize = 24;

    /// Little-endian `term, vote, commit`.
    pub fn encode(&self) -> [u8; Self::ENCODED_BYTES] {
        let mut out = [0u8; Self::ENCODED_BYTES];
        out[0..8].copy_from_slice(&self.term.to_le_bytes());
        out[8..16].copy_from_slice(&self.vote.to_le_bytes());
        out[16..24].copy_from_slice(&self.commit.to_le_bytes());
        out
    }

    /// The inverse of [`HardState::encode`].
    pub fn decode(bytes: &[u8; Self::ENCODED_BYTES]) -> Self {
        let field = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Self {
            term: field(0),
            vote: field(8),
            commit: field(16),
        }
    }
}
