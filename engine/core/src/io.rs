//! What goes into the core (events) and what comes out (commands).

use bytes::Bytes;
use ordo_net::{Message, ProposeResult, ReadError, SnapshotMeta};
use ordo_storage::{Batch, ClientId, HardState, Index, LogId, NodeId, Seq, Term};

use super::election::TransferError;
use super::membership::{ChangeError, Membership, MembershipChange};

/// The time as the runtime sees it when it hands the core an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// A monotonic clock in microseconds: timers run on it.
    pub mono_us: u64,
    /// Microseconds since the Unix epoch: entry timestamps come from it.
    pub wall_us: u64,
}

/// A proposal from a client connected to this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// The runtime's handle; the answer carries it. Unique over the node's
    /// lifetime, restarts included (the leader drops a forwarded proposal
    /// whose `(node, request_id)` it saw recently, as a duplicated message),
    /// so a runtime seeds its counter from the wall clock at start.
    pub request_id: u64,
    /// The proposer's session, `0` for none.
    pub client_id: ClientId,
    /// Sequence number within the session.
    pub seq: Seq,
    /// The message.
    pub payload: Bytes,
    /// Answer `NotLeader` with a hint instead of forwarding to the leader.
    pub redirect: bool,
}

/// Who a log read is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadPurpose {
    /// Entries a follower needs that the cache no longer holds.
    Peer(NodeId),
    /// Committed entries to apply that the cache does not hold (after a
    /// restart).
    Apply,
    /// The batch holding the last entry, after a truncation went below the
    /// cache: a future leader needs its id and timestamp.
    Tail,
}

/// Everything the core reacts to.
#[derive(Clone, Debug)]
pub enum Event {
    /// Time passed; timers may fire. The runtime sends one at
    /// [`crate::Raft::next_deadline_us`] or earlier.
    Tick,
    /// A message from a peer.
    Message {
        /// The sender.
        from: NodeId,
        /// The message.
        message: Message,
    },
    /// A client proposal received by this node.
    Propose(Proposal),
    /// A client asks for a linearizable read.
    Read {
        /// The runtime's handle for the read.
        request_id: u64,
    },
    /// A sync completed: the log is durable up to `last` (as the log stood
    /// when the sync completed; the core ignores it if the log has changed
    /// under it).
    LogSynced {
        /// The last durable entry.
        last: LogId,
    },
    /// A [`Command::PersistHardState`] completed.
    HardStatePersisted(HardState),
    /// A [`Command::ReadLog`] completed.
    LogRead {
        /// Who it was for.
        purpose: ReadPurpose,
        /// The batches, starting with the one containing the requested
        /// index; empty if the read failed.
        batches: Vec<Batch>,
    },
    /// A [`Command::CreateSnapshot`] completed.
    SnapshotCreated(SnapshotMeta),
    /// A [`Command::CreateSnapshot`] failed, or a newer snapshot (received
    /// from the leader) superseded it: the log is not compacted for it,
    /// and a later snapshot may be asked for.
    SnapshotNotCreated(SnapshotMeta),
    /// A [`Command::RestoreSnapshot`] could not run: the snapshot is not
    /// (yet) durable here, or the state machine refused it. The follower
    /// takes the leader's next `InstallSnapshot` again.
    SnapshotNotRestored(SnapshotMeta),
    /// The latest snapshot could not be read back (damage on disk): the
    /// core asks for a new one at once.
    SnapshotUnreadable,
    /// Take a snapshot at the applied index now, whatever the entry
    /// threshold (the runtime's retention bound was reached).
    TakeSnapshot,
    /// A [`Command::SendSnapshot`] finished streaming (`ok`) or gave up.
    SnapshotSent {
        /// The follower.
        to: NodeId,
        /// Whether the follower received all of it.
        ok: bool,
    },
    /// A [`Command::RestoreSnapshot`] completed: the state machine holds the
    /// snapshot and the log was reset to its point.
    SnapshotRestored(SnapshotMeta),
    /// The transport could not deliver to `to`; replicate to it cautiously.
    Unreachable {
        /// The peer.
        to: NodeId,
    },
    /// Hand leadership to `to` (thesis §3.10); answered by
    /// [`Command::TransferResult`].
    TransferLeadership {
        /// The voter to hand over to.
        to: NodeId,
        /// The runtime's handle; the answer carries it.
        request_id: u64,
    },
    /// Change the membership by one server (thesis §4.1); answered by
    /// [`Command::MembershipResult`] once the change commits or fails.
    ChangeMembership {
        /// The runtime's handle; the answer carries it.
        request_id: u64,
        /// The change.
        change: MembershipChange,
        /// Runtime information for members whose entry carries none (the
        /// bootstrap configuration's): written into the new entry, so
        /// that every node learns how to reach every member.
        known_info: Vec<(NodeId, Bytes)>,
    },
}

/// Committed entries to apply, in log order: the entries `[first_index,
/// last_index]` out of `batches` (the first batch may begin before
/// `first_index`, the last may end after `last_index`; batches are never
/// re-encoded to trim them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyBatch {
    /// The batches holding the entries.
    pub batches: Vec<Batch>,
    /// First entry to apply.
    pub first_index: Index,
    /// Last entry to apply.
    pub last_index: Index,
}

impl ApplyBatch {
    /// The entries to apply, with everything derived from their batch.
    pub fn entries(&self) -> impl Iterator<Item = ordo_storage::EntryView<'_>> + '_ {
        let (first, last) = (self.first_index, self.last_index);
        self.batches
            .iter()
            .flat_map(|b| b.entries())
            .filter(move |e| e.index >= first && e.index <= last)
    }

    /// Id of the last user message at or before `last_index` (`0` if there
    /// is none yet), from the last batch's header: no walk over entries.
    pub fn last_id(&self) -> ordo_storage::MessageId {
        let Some(batch) = self.batches.last() else {
            return 0;
        };
        let header = batch.header();
        match header.kind {
            ordo_storage::BatchKind::Entries => {
                header.first_id + self.last_index.min(header.last_index()) - header.first_index
            }
            _ => header.first_id - 1,
        }
    }

    /// The user messages among the entries (no-ops and configuration
    /// entries left out).
    pub fn messages(&self) -> impl Iterator<Item = ordo_storage::EntryView<'_>> + '_ {
        self.entries()
            .filter(|e| e.kind == ordo_storage::BatchKind::Entries)
    }
}

/// The core's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking for pre-votes; its term has not changed (thesis §9.6).
    PreCandidate,
    /// Asking for votes in a new term.
    Candidate,
    /// Leads its term.
    Leader,
}

impl Role {
    /// Lowercase name, as `ordo status` prints it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre_candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// What the core asks the runtime to do, in order.
#[derive(Clone, Debug)]
pub enum Command {
    /// Send a message to a peer. Any message the core emits may be sent
    /// at once: messages that promise durability are held back by the core
    /// until the completion that makes them true.
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// Durably save term, vote and commit hint; answer with
    /// [`Event::HardStatePersisted`].
    PersistHardState(HardState),
    /// Remove the log's entries from `from` on (before the next append).
    Truncate {
        /// First index to remove.
        from: Index,
    },
    /// Append batches to the log.
    Append {
        /// Consecutive batches continuing the log.
        batches: Vec<Batch>,
    },
    /// Make the log durable; answer with [`Event::LogSynced`]. One answer
    /// may cover several requests (group commit).
    Sync,
    /// Read batches from the log; answer with [`Event::LogRead`].
    ReadLog {
        /// Who it is for.
        purpose: ReadPurpose,
        /// First index wanted.
        from: Index,
        /// Byte budget for the answer.
        bytes_max: usize,
    },
    /// Apply committed entries to the state machine, in order.
    Apply(ApplyBatch),
    /// Answer a local proposal.
    Respond {
        /// The proposal's handle.
        request_id: u64,
        /// Its outcome.
        result: ProposeResult,
    },
    /// A linearizable read may be served once the state machine has applied
    /// `index` (or fails).
    ReadReady {
        /// The read's handle.
        request_id: u64,
        /// The read index, or why there is none.
        result: Result<Index, ReadError>,
    },
    /// Snapshot the state machine; every `Apply` emitted before this command
    /// covers exactly up to `meta.last.index`. Answer with
    /// [`Event::SnapshotCreated`].
    CreateSnapshot(SnapshotMeta),
    /// Entries up to `upto` are covered by a snapshot and may be dropped.
    CompactLog {
        /// Last index that may be dropped.
        upto: Index,
    },
    /// Stream the latest snapshot to `to`, then deliver
    /// [`Message::InstallSnapshot`] with `meta` to it; report with
    /// [`Event::SnapshotSent`].
    SendSnapshot {
        /// The follower.
        to: NodeId,
        /// The snapshot to send.
        meta: SnapshotMeta,
        /// The leader's term.
        term: Term,
    },
    /// Restore the state machine from the snapshot received for `meta` and
    /// reset the log to `meta.last`; answer with [`Event::SnapshotRestored`].
    RestoreSnapshot(SnapshotMeta),
    /// A repair ended (see [`super::Loss`]): the node holds again what it
    /// may have acknowledged; the runtime durably clears the recorded loss.
    Repaired,
    /// The role, term or leader changed (for status and metrics).
    RoleChanged {
        /// The new role.
        role: Role,
        /// The current term.
        term: Term,
        /// The known leader, `0` if none.
        leader: NodeId,
    },
    /// The configuration in force changed (appended, truncated away, or
    /// restored from a snapshot): connect to new members, drop removed
    /// ones. It may still be undone until `index` commits.
    MembershipChanged {
        /// Index of its entry (`0`: the bootstrap configuration).
        index: Index,
        /// The configuration.
        membership: Membership,
    },
    /// Answer to [`Event::ChangeMembership`]: the index of the committed
    /// configuration entry, or why there is none.
    MembershipResult {
        /// The request's handle.
        request_id: u64,
        /// The outcome.
        result: Result<Index, ChangeError>,
    },
    /// Answer to [`Event::TransferLeadership`]: the new leader, or why the
    /// transfer failed (this node, or another, leads then).
    TransferResult {
        /// The request's handle.
        request_id: u64,
        /// The outcome.
        result: Result<NodeId, TransferError>,
    },
}
