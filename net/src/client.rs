//! The client protocol: what the `ordo` CLI and the Rust client send to a
//! node, and what they get back.
//!
//! Requests carry a `request_id` chosen by the client; every response echoes
//! it, so a client may pipeline requests on one connection. A
//! [`LogRequest`] is answered by a stream of [`LogResponse`]s with its id.
//! Every answer that a leader change can affect carries a [`LeaderHint`];
//! the Rust client caches it and goes straight to the leader.

use bytes::Bytes;
use ordo_storage::{ClientId, Index, MessageId, NodeId, Seq, Term, TimestampUs};

use crate::message::{ProposeResult, ReadError};

/// A request from a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientRequest {
    /// Append a message to the log.
    Propose(ProposeRequest),
    /// A linearizable read barrier.
    Read(ReadRequest),
    /// The node's view of the cluster.
    Status(StatusRequest),
    /// Stream committed messages in id order.
    Log(LogRequest),
    /// Change or list the membership, or hand leadership over.
    Admin(AdminRequest),
}

impl ClientRequest {
    /// The client's handle for the request.
    pub fn request_id(&self) -> u64 {
        match self {
            ClientRequest::Propose(r) => r.request_id,
            ClientRequest::Read(r) => r.request_id,
            ClientRequest::Status(r) => r.request_id,
            ClientRequest::Log(r) => r.request_id,
            ClientRequest::Admin(r) => r.request_id,
        }
    }
}

/// Append `payload` to the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposeRequest {
    /// The client's handle.
    pub request_id: u64,
    /// The client's session (`0`: no deduplication). A retry with the same
    /// `(client_id, seq)` returns the original answer (thesis §6.3).
    pub client_id: ClientId,
    /// Sequence number within the session.
    pub seq: Seq,
    /// The message (a frame attachment: no copy on either side).
    pub payload: Bytes,
    /// If this node is not the leader: answer `NotLeader` with a hint
    /// instead of forwarding.
    pub redirect: bool,
}

/// Wait until everything committed before the request was applied on this
/// node, then answer with that read index (thesis §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ReadRequest {
    /// The client's handle.
    pub request_id: u64,
}

/// Ask for [`NodeStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StatusRequest {
    /// The client's handle.
    pub request_id: u64,
}

/// Stream committed messages with ids `from_id, from_id + 1, …`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LogRequest {
    /// The client's handle; every [`LogResponse`] of the stream carries it.
    pub request_id: u64,
    /// The first message id wanted (ids start at 1).
    pub from_id: MessageId,
    /// Keep streaming new messages as they commit; otherwise stop at the
    /// last committed message.
    pub follow: bool,
}

/// A response to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientResponse {
    /// Answers a [`ProposeRequest`].
    Propose(ProposeResponse),
    /// Answers a [`ReadRequest`].
    Read(ReadResponse),
    /// Answers a [`StatusRequest`].
    Status(StatusResponse),
    /// One piece of the stream a [`LogRequest`] asked for.
    Log(LogResponse),
    /// A request that could not be served.
    Error(ErrorResponse),
    /// Answers an [`AdminRequest`].
    Admin(AdminResponse),
}

impl ClientResponse {
    /// The handle of the request this answers.
    pub fn request_id(&self) -> u64 {
        match self {
            ClientResponse::Propose(r) => r.request_id,
            ClientResponse::Read(r) => r.request_id,
            ClientResponse::Status(r) => r.request_id,
            ClientResponse::Log(r) => r.request_id,
            ClientResponse::Error(r) => r.request_id,
            ClientResponse::Admin(r) => r.request_id,
        }
    }
}

/// An administrative request (`ordo member`, `ordo transfer`). Changes
/// and transfers must reach the leader: any other node answers
/// [`AdminFailure::not_leader`] with a hint.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AdminRequest {
    /// The client's handle.
    pub request_id: u64,
    /// What to do.
    pub command: AdminCommand,
}

/// One member as [`AdminAnswer::Members`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MemberEntry {
    /// Its id.
    pub id: NodeId,
    /// Voter (otherwise learner).
    pub voter: bool,
    /// Where members connect to it (empty if unknown).
    pub peer_addr: String,
    /// Where clients connect to it (empty if unknown).
    pub client_addr: String,
    /// How far its log matches the leader's; only the leader knows.
    pub match_index: Option<Index>,
}

pub use admin::{AdminAnswer, AdminCommand};

// As `errors` below: the rkyv derive's resolver enums carry no docs.
#[allow(missing_docs)]
mod admin {
    use ordo_storage::{Index, NodeId};

    use super::MemberEntry;

    /// What an [`AdminRequest`] asks for.
    #[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub enum AdminCommand {
        /// Add a member.
        AddMember {
            /// Its id.
            id: NodeId,
            /// As a learner (otherwise as a voter).
            learner: bool,
            /// Its addresses and public key, encoded by the engine.
            info: Vec<u8>,
        },
        /// Promote a learner to voter.
        PromoteMember {
            /// The learner.
            id: NodeId,
        },
        /// Remove a member.
        RemoveMember {
            /// The member.
            id: NodeId,
        },
        /// List the configuration in force.
        ListMembers,
        /// Hand leadership to a voter.
        TransferLeadership {
            /// The voter.
            to: NodeId,
        },
        /// The configuration links (committed configuration entries with
        /// their tokens) after index `after`: the chain a verifier follows
        /// from `cluster.keys`. Any member answers from what it holds.
        Chain {
            /// Only links of entries after this index.
            after: Index,
        },
    }

    /// What an [`AdminRequest`] achieved.
    #[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    pub enum AdminAnswer {
        /// The change committed as the configuration entry at `index`.
        Changed {
            /// The entry's index.
            index: Index,
        },
        /// The configuration in force.
        Members {
            /// Its entry's index (`0`: the bootstrap configuration).
            index: Index,
            /// Whether that entry is committed.
            committed: bool,
            /// The members, by id.
            members: Vec<MemberEntry>,
        },
        /// `leader` leads now.
        Transferred {
            /// The new leader.
            leader: NodeId,
        },
        /// Configuration links, by index, each encoded by the engine.
        Chain {
            /// The links.
            links: Vec<Vec<u8>>,
            /// More follow: ask again after the last one.
            more: bool,
        },
    }
}

/// Why an [`AdminRequest`] failed.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AdminFailure {
    /// The request must go to the leader ([`AdminResponse::leader`]).
    pub not_leader: bool,
    /// What went wrong, for people.
    pub message: String,
}

/// Answers an [`AdminRequest`].
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct AdminResponse {
    /// The request's handle.
    pub request_id: u64,
    /// The outcome.
    pub result: Result<AdminAnswer, AdminFailure>,
    /// The current leader.
    pub leader: LeaderHint,
}

/// Where the leader is, as far as the answering node knows.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct LeaderHint {
    /// The leader's id; `0` if unknown.
    pub id: NodeId,
    /// The leader's client address (`host:port`); empty if unknown.
    pub client_addr: String,
}

/// The outcome of a proposal.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ProposeResponse {
    /// The request's handle.
    pub request_id: u64,
    /// Where it committed, or why not.
    pub result: ProposeResult,
    /// The current leader.
    pub leader: LeaderHint,
    /// The commit token (encoded `ordo_engine::token::Token`) when the
    /// proposal committed; empty otherwise.
    pub token: Vec<u8>,
}

/// The outcome of a read barrier.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ReadResponse {
    /// The request's handle.
    pub request_id: u64,
    /// The read index, applied on this node before the answer, or why not.
    pub result: Result<Index, ReadError>,
    /// The current leader.
    pub leader: LeaderHint,
}

/// A node's role as `ordo status` shows it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum NodeRole {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking for pre-votes.
    PreCandidate,
    /// Asking for votes.
    Candidate,
    /// Leads its term.
    Leader,
    /// Catches up without a vote.
    Learner,
    /// A gossip node: not a voter; it receives committed messages by
    /// gossip and serves them (`ordo log`).
    Gossip,
}

/// A node's view of itself and the cluster.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct NodeStatus {
    /// The node's id.
    pub id: NodeId,
    /// Its role.
    pub role: NodeRole,
    /// Its current term.
    pub term: Term,
    /// The leader it knows; `0` if none.
    pub leader: NodeId,
    /// Highest index known committed.
    pub commit_index: Index,
    /// Last index in its log.
    pub last_index: Index,
    /// Last index its fsync covers.
    pub durable_index: Index,
    /// Last index applied to its state machine.
    pub applied_index: Index,
    /// The node lost or damaged durable state it may have acknowledged and
    /// takes no part in elections until a leader has repaired it.
    pub repairing: bool,
    /// While repairing: what it lost and where (file, offset, indexes);
    /// empty otherwise.
    pub repair: String,
    /// Peers whose latest answer said they are repairing (they grant no
    /// vote): why a cluster may elect no leader.
    pub peers_repairing: Vec<NodeId>,
}

/// Answers a [`StatusRequest`].
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StatusResponse {
    /// The request's handle.
    pub request_id: u64,
    /// The node's status.
    pub status: NodeStatus,
    /// The current leader.
    pub leader: LeaderHint,
}

/// A committed message as the log stream delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedMessage {
    /// Dense message id.
    pub id: MessageId,
    /// Log index.
    pub index: Index,
    /// Term of the entry.
    pub term: Term,
    /// Timestamp, microseconds since the Unix epoch.
    pub ts: TimestampUs,
    /// The message (a frame attachment).
    pub payload: Bytes,
    /// The token proving the commit (a frame attachment; its format belongs
    /// to the token module).
    pub token: Bytes,
}

impl CommittedMessage {
    /// The most this message adds to a [`LogResponse`] frame: its payload
    /// and token attachments plus its archived fields (a `CommittedBody` of
    /// four `u64` and two `u32`, aligned to 8).
    pub fn wire_bytes(&self) -> usize {
        self.payload.len() + self.token.len() + COMMITTED_BODY_BYTES
    }
}

/// The archived fields of one [`CommittedMessage`] in a log response.
const COMMITTED_BODY_BYTES: usize = 48;

/// A run of consecutive committed messages of a log stream.
///
/// A server cuts its runs by bytes: the messages' [`CommittedMessage::wire_bytes`]
/// plus [`LogResponse::ENVELOPE_BYTES`] never exceed the frame limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogResponse {
    /// The [`LogRequest`]'s handle.
    pub request_id: u64,
    /// Messages with consecutive ids, continuing the stream.
    pub messages: Vec<CommittedMessage>,
    /// The stream ends with this response (a non-follow request reached the
    /// last committed message, or the node stops serving it).
    pub done: bool,
}

impl LogResponse {
    /// The most a log response frame holds besides its messages'
    /// [`CommittedMessage::wire_bytes`]: the frame header, the request id,
    /// the message vector's header and the flag.
    pub const ENVELOPE_BYTES: usize = crate::wire::FRAME_HEADER_BYTES + 64;

    /// The most its frame can take.
    pub fn wire_bytes(&self) -> usize {
        Self::ENVELOPE_BYTES
            + self
                .messages
                .iter()
                .map(CommittedMessage::wire_bytes)
                .sum::<usize>()
    }
}

/// Answers a request that could not be served.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ErrorResponse {
    /// The request's handle.
    pub request_id: u64,
    /// What went wrong.
    pub error: ClientError,
    /// The current leader.
    pub leader: LeaderHint,
}

pub use errors::ClientError;

// The rkyv derive emits a public resolver enum whose variant fields carry no
// docs; this module exists so that `allow` covers them. The types are
// re-exported above and documented here.
#[allow(missing_docs)]
mod errors {
    use ordo_storage::MessageId;

    /// Why a request could not be served.
    #[derive(
        Clone,
        Debug,
        PartialEq,
        Eq,
        rkyv::Archive,
        rkyv::Serialize,
        rkyv::Deserialize,
        thiserror::Error,
    )]
    pub enum ClientError {
        /// The requested ids were compacted into a snapshot; the stream can
        /// start at `first_id` at the earliest.
        #[error(
            "message ids before {first_id} are no longer retained: the first retained message id is {first_id}"
        )]
        Compacted {
            /// The first id still in the log.
            first_id: MessageId,
        },
        /// The node cannot take more requests now; retry later.
        #[error("busy")]
        Busy,
        /// The node is shutting down.
        #[error("node is shutting down")]
        Stopped,
        /// The request was malformed or not allowed.
        #[error("bad request: {reason}")]
        BadRequest {
            /// Which rule it broke.
            reason: String,
        },
        /// A stream could not continue past message `id`: what it needs to
        /// serve it (its token's certificate, say) did not arrive within the
        /// node's bound. The stream resumes from `id` when asked again.
        #[error("stream stalled at message id {id}: {reason}")]
        Stalled {
            /// The first message id not served.
            id: MessageId,
            /// What it waited for and how long.
            reason: String,
        },
        /// The node failed to serve it (a storage error, say).
        #[error("internal error: {reason}")]
        Internal {
            /// What failed.
            reason: String,
        },
    }
}
