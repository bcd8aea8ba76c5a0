//! The vocabulary every ordo crate shares: identifiers and positions.
//!
//! They are plain integers with names, not newtypes: they cross the wire and
//! the disk as little-endian `u64`s, and arithmetic on them (`index + 1`) is
//! the common case. Zero is reserved as "none" for every one of them.

/// A voter's identity within one cluster. `0` means "no node".
pub type NodeId = u64;

/// A Raft term. Terms start at 1; `0` is the term of the empty log.
pub type Term = u64;

/// A log position. The first entry has index 1; `0` is "before the log".
pub type Index = u64;

/// The dense sequence number of a user message: 1, 2, 3, ... over user
/// entries only (no-ops and configuration entries take none), so a gap in
/// ids is always detectable downstream. `0` means "no message yet".
pub type MessageId = u64;

/// Microseconds since the Unix epoch. Along the log these strictly increase:
/// each entry's `ts = max(now, previous entry's ts + 1)`.
pub type TimestampUs = u64;

/// A client session's identity, chosen by the client (random 64-bit). `0`
/// means "no session": the proposal is not deduplicated.
pub type ClientId = u64;

/// A proposal's sequence number within its client session.
pub type Seq = u64;

/// The position of an entry: index and the term it was created in.
/// Two logs that hold the same `LogId` hold the same entry and the same
/// prefix before it (Raft §5.3, Log Matching).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogId {
    /// The term the entry was created in.
    pub term: Term,
    /// The entry's position in the log.
    pub index: Index,
}

impl LogId {
    /// A log id from its parts.
    pub const fn new(term: Term, index: Index) -> Self {
        Self { term, index }
    }
}
