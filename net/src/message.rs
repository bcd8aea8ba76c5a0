//! The Raft protocol's messages as plain Rust values.
//!
//! The core consumes and produces these; [`crate::wire`] turns them into
//! frames and back. Entry data travels as [`Batch`]es: the frame bytes the
//! leader encoded once, carried by reference count from the leader's log to
//! the socket and from the follower's socket to its log.

use bytes::Bytes;
use ordo_storage::{Batch, ClientId, Index, LogId, MessageId, NodeId, Seq, Term, TimestampUs};

/// A message between two voters of one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A candidate (or pre-candidate) asks for a vote (Raft §5.2, thesis §9.6).
    Vote(VoteRequest),
    /// The answer to a [`VoteRequest`].
    VoteResponse(VoteResponse),
    /// Entries from the leader (Raft §5.3); empty `batches` is a probe.
    Append(AppendRequest),
    /// The answer to an [`AppendRequest`].
    AppendResponse(AppendResponse),
    /// The leader's heartbeat: commit index and a read-confirmation round.
    Heartbeat(Heartbeat),
    /// The answer to a [`Heartbeat`].
    HeartbeatResponse(HeartbeatResponse),
    /// A follower forwards proposals it received to the leader.
    Forward(ForwardRequest),
    /// The leader answers forwarded proposals.
    ForwardResults(ForwardResults),
    /// A follower asks the leader for a read index on behalf of its readers.
    ReadIndex(ReadIndexRequest),
    /// The leader's answer to a [`ReadIndexRequest`].
    ReadIndexResponse(ReadIndexResponse),
    /// The leader installs a snapshot on a follower whose next entry it has
    /// compacted away (Raft §7). The runtime streams the snapshot's data
    /// beforehand; the core sees this once the data is complete and durable.
    InstallSnapshot(InstallSnapshot),
    /// The leader tells the transfer target to start an election now
    /// (thesis §3.10).
    TimeoutNow(TimeoutNow),
}

impl Message {
    /// The sender's term.
    pub fn term(&self) -> Term {
        match self {
            Message::Vote(m) => m.term,
            Message::VoteResponse(m) => m.term,
            Message::Append(m) => m.term,
            Message::AppendResponse(m) => m.term,
            Message::Heartbeat(m) => m.term,
            Message::HeartbeatResponse(m) => m.term,
            Message::Forward(m) => m.term,
            Message::ForwardResults(m) => m.term,
            Message::ReadIndex(m) => m.term,
            Message::ReadIndexResponse(m) => m.term,
            Message::InstallSnapshot(m) => m.term,
            Message::TimeoutNow(m) => m.term,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Vote(m) if m.pre_vote => "pre_vote",
            Message::Vote(_) => "vote",
            Message::VoteResponse(m) if m.pre_vote => "pre_vote_response",
            Message::VoteResponse(_) => "vote_response",
            Message::Append(_) => "append",
            Message::AppendResponse(_) => "append_response",
            Message::Heartbeat(_) => "heartbeat",
            Message::HeartbeatResponse(_) => "heartbeat_response",
            Message::Forward(_) => "forward",
            Message::ForwardResults(_) => "forward_results",
            Message::ReadIndex(_) => "read_index",
            Message::ReadIndexResponse(_) => "read_index_response",
            Message::InstallSnapshot(_) => "install_snapshot",
            Message::TimeoutNow(_) => "timeout_now",
        }
    }

    /// Bytes of entry data carried (for inflight accounting).
    pub fn batch_bytes(&self) -> usize {
        match self {
            Message::Append(m) => m.batches.iter().map(Batch::len_bytes).sum(),
            Message::Forward(m) => m.proposals.iter().map(|p| p.payload.len()).sum(),
            _ => 0,
        }
    }
}

/// RequestVote (Figure 2), also used for pre-vote (thesis §9.6).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct VoteRequest {
    /// The term the candidate stands in. For a pre-vote, the term it would
    /// stand in (its current term + 1); nobody's term changes.
    pub term: Term,
    /// The candidate's last entry, for the up-to-date check (§5.4.1).
    #[rkyv(with = crate::wire::LogIdDef)]
    pub last: LogId,
    /// A pre-vote: "would you vote for me?", without side effects.
    pub pre_vote: bool,
    /// Sent on a leadership transfer: voters grant it even though they heard
    /// from a leader recently (thesis §3.10, §4.2.3).
    pub transfer: bool,
}

/// The answer to a [`VoteRequest`].
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct VoteResponse {
    /// The voter's term (for a granted pre-vote: the request's term).
    pub term: Term,
    /// Whether the vote is granted.
    pub granted: bool,
    /// Answers a pre-vote.
    pub pre_vote: bool,
    /// The voter is repairing a loss and grants no vote (docs/storage.md):
    /// a candidate that cannot win can say which peers hold it back.
    pub repairing: bool,
}

/// AppendEntries (Figure 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendRequest {
    /// The leader's term.
    pub term: Term,
    /// The entry just before `batches` (or before the follower's next entry
    /// for a probe without entries).
    pub prev: LogId,
    /// The leader's commit index.
    pub commit: Index,
    /// Consecutive batches starting at `prev.index + 1`.
    pub batches: Vec<Batch>,
}

impl AppendRequest {
    /// Index of the last entry carried, or `prev.index` when empty.
    pub fn last_index(&self) -> Index {
        self.batches
            .last()
            .map_or(self.prev.index, Batch::last_index)
    }
}

/// The answer to an [`AppendRequest`].
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AppendResponse {
    /// The follower's term.
    pub term: Term,
    /// What the follower says.
    pub result: AppendResult,
    /// The follower is repairing a loss (docs/storage.md): the leader
    /// tracks its match but does not count it towards commit.
    pub repairing: bool,
}

/// The leader's heartbeat (a separate message so that it never waits for log
/// reads and never carries entries).
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Heartbeat {
    /// The leader's term.
    pub term: Term,
    /// `min(commit, follower's match index)`: a follower must not learn a
    /// commit index beyond what it is known to hold.
    pub commit: Index,
    /// The leader's read round; echoed back to confirm leadership for
    /// ReadIndex (thesis §6.4).
    pub read_round: u64,
    /// The leader's last log index: a follower repairing entries it lost
    /// holds them all again once it holds this index (docs/storage.md).
    pub last_index: Index,
}

/// The answer to a [`Heartbeat`].
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HeartbeatResponse {
    /// The follower's term.
    pub term: Term,
    /// The echoed read round.
    pub read_round: u64,
    /// The follower's last index, so the leader notices a lagging follower.
    pub last_index: Index,
    /// The follower is repairing a loss (see [`AppendResponse::repairing`]):
    /// a follower that restarts mid-repair says so here first.
    pub repairing: bool,
}

/// One proposal forwarded from a follower to the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedProposal {
    /// The forwarding node's handle for this proposal.
    pub request_id: u64,
    /// The proposer's session, `0` for none.
    pub client_id: ClientId,
    /// Sequence number within the session.
    pub seq: Seq,
    /// The message.
    pub payload: Bytes,
}

/// Proposals forwarded to the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardRequest {
    /// The forwarder's term.
    pub term: Term,
    /// The proposals, in the order the forwarder received them.
    pub proposals: Vec<ForwardedProposal>,
}

/// Answers to forwarded proposals.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ForwardResults {
    /// The leader's term.
    pub term: Term,
    /// `(request_id, result)` pairs.
    pub results: Vec<(u64, ProposeResult)>,
}

/// A follower asks for a read index.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ReadIndexRequest {
    /// The follower's term.
    pub term: Term,
    /// The follower's handles for the reads.
    pub request_ids: Vec<u64>,
}

/// The leader's read index for a follower's reads.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ReadIndexResponse {
    /// The leader's term.
    pub term: Term,
    /// The follower's handles.
    pub request_ids: Vec<u64>,
    /// The read index, or why there is none.
    pub result: Result<Index, ReadError>,
}

/// What a snapshot covers, and the core's own state at that point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last entry the snapshot covers.
    pub last: LogId,
    /// The last message id at `last`.
    pub last_id: MessageId,
    /// The timestamp of the entry at `last`.
    pub last_ts: TimestampUs,
    /// The voters at `last`.
    pub voters: Vec<NodeId>,
    /// The core's replicated state at `last` (client sessions), encoded by
    /// the core.
    pub core_state: Bytes,
}

/// The leader installs a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallSnapshot {
    /// The leader's term.
    pub term: Term,
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
}

/// The leader hands leadership to the receiver.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TimeoutNow {
    /// The leader's term.
    pub term: Term,
}

/// Where a committed message sits: what its proposer gets back.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct Committed {
    /// The dense message id.
    pub id: MessageId,
    /// The log index.
    pub index: Index,
    /// The term of the entry.
    pub term: Term,
    /// The timestamp.
    pub ts: TimestampUs,
}

/// The outcome of a proposal.
pub type ProposeResult = Result<Committed, ProposeError>;

pub use outcomes::{AppendResult, ProposeError, ReadError};

// The rkyv derive emits a public resolver enum whose variant fields carry no
// docs; this module exists so that `allow` covers them. The types are
// re-exported above and documented here.
#[allow(missing_docs)]
mod outcomes {
    use ordo_storage::{ClientId, Index, LogId, NodeId, Seq};

    /// A follower's verdict on an append.
    #[derive(
        Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
    )]
    pub enum AppendResult {
        /// The follower's log matches the leader's up to `match_index` and holds
        /// it durably. Sent only once a completed sync covers `match_index`.
        Success {
            /// The highest index known to match the leader and to be durable.
            match_index: Index,
        },
        /// The follower's log did not hold `prev`. The hint lets the leader skip
        /// whole terms of conflicting entries in one round trip (the fast
        /// backtracking of etcd raft, thesis §5.3 end).
        Conflict {
            /// The `prev.index` the leader sent.
            rejected: Index,
            /// The follower's entry at `min(rejected, its last index)`: the
            /// leader may resume at the latest index whose term it holds at or
            /// below `hint.term`.
            #[rkyv(with = crate::wire::LogIdDef)]
            hint: LogId,
        },
    }

    /// Why a proposal was not committed, and whether it may still be.
    #[derive(
        Clone,
        Copy,
        Debug,
        PartialEq,
        Eq,
        thiserror::Error,
        rkyv::Archive,
        rkyv::Serialize,
        rkyv::Deserialize,
    )]
    pub enum ProposeError {
        /// This node is not the leader and did not forward (the proposer asked
        /// for a redirect, or no leader is known). The proposal was not appended
        /// anywhere: retrying at `leader` is safe.
        #[error("not the leader (leader hint: {leader})")]
        NotLeader {
            /// The leader as far as this node knows; `0` if unknown.
            leader: NodeId,
        },
        /// Leadership was lost after the proposal may have entered a log: it may
        /// still commit. Retry with the same `(client_id, seq)` to learn the
        /// outcome without creating a duplicate.
        #[error("outcome unknown: leadership changed (leader hint: {leader})")]
        Unknown {
            /// The leader as far as this node knows; `0` if unknown.
            leader: NodeId,
        },
        /// A bounded queue on the way is full. Not appended; retry later.
        #[error("busy: too many proposals in flight (leader hint: {leader})")]
        Busy {
            /// The leader as far as this node knows; `0` if unknown.
            leader: NodeId,
        },
        /// The payload exceeds `proposal_bytes_max`. Not appended.
        #[error("proposal of {bytes} bytes exceeds the maximum of {max}")]
        TooLarge {
            /// The payload's size.
            bytes: u64,
            /// The limit.
            max: u64,
        },
        /// `(client_id, seq)` was committed so long ago that its answer has left
        /// the session window: it committed once, its details are gone.
        #[error("session {client_id} seq {seq} committed earlier; its answer has expired")]
        SessionExpired {
            /// The session.
            client_id: ClientId,
            /// The sequence number.
            seq: Seq,
        },
        /// The node is shutting down. Not appended by this node.
        #[error("node is shutting down")]
        Stopped,
    }

    impl ProposeError {
        /// The leader hint this error carries, `0` if none.
        pub fn leader_hint(&self) -> NodeId {
            match *self {
                ProposeError::NotLeader { leader }
                | ProposeError::Unknown { leader }
                | ProposeError::Busy { leader } => leader,
                _ => 0,
            }
        }

        /// Whether the proposal may still commit (its outcome is unknown).
        pub fn outcome_unknown(&self) -> bool {
            matches!(self, ProposeError::Unknown { .. })
        }
    }

    /// Why a linearizable read could not be served.
    #[derive(
        Clone,
        Copy,
        Debug,
        PartialEq,
        Eq,
        thiserror::Error,
        rkyv::Archive,
        rkyv::Serialize,
        rkyv::Deserialize,
    )]
    pub enum ReadError {
        /// Leadership was lost or never held; retry at `leader`.
        #[error("not the leader (leader hint: {leader})")]
        NotLeader {
            /// The leader as far as this node knows; `0` if unknown.
            leader: NodeId,
        },
        /// Too many reads are waiting.
        #[error("busy: too many reads pending (leader hint: {leader})")]
        Busy {
            /// The leader as far as this node knows; `0` if unknown.
            leader: NodeId,
        },
        /// The node is shutting down.
        #[error("node is shutting down")]
        Stopped,
    }
}
