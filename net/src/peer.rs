//! What travels on a peer connection: the core's [`Message`]s plus the
//! runtime's own traffic (snapshot streaming; gossip later, issue 7).

use bytes::Bytes;
use ordo_storage::{LogId, Term};

use crate::message::Message;

/// A frame's content on a voter-to-voter connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerMessage {
    /// A Raft message for the core.
    Raft(Message),
    /// A piece of a snapshot the leader streams before
    /// [`Message::InstallSnapshot`].
    SnapshotChunk(SnapshotChunk),
    /// The follower's answer to a [`SnapshotChunk`], for flow control.
    SnapshotAck(SnapshotAck),
    /// The leader's signed commit statement (an encoded
    /// `ordo_engine::token::SignedStatement`), so every voter can hand out
    /// tokens for the entries it covers.
    Certificate(Certificate),
    /// A voter asks the leader for the statements covering committed
    /// entries it has no statement for (it was down when they were sent).
    CertificateRequest(CertificateRequest),
    /// The commit tokens of the entries a [`Message::ForwardResults`]
    /// answers, sent by the leader's runtime just before it on the same
    /// lane, so the follower can hand each proposer its token.
    ForwardTokens(ForwardTokens),
}

/// Commit tokens for forwarded proposals, keyed by the committed index.
/// Tokens are the runtime's data: the core's [`Message::ForwardResults`]
/// carries only the results.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ForwardTokens {
    /// The leader's term.
    pub term: Term,
    /// `(index, encoded token)` for each committed entry answered.
    pub tokens: Vec<(u64, Vec<u8>)>,
}

/// Which committed entries a voter lacks statements for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CertificateRequest {
    /// The voter's term.
    pub term: Term,
    /// First index without a statement.
    pub from_index: u64,
    /// Last index wanted.
    pub to_index: u64,
    /// The first index the voter's log holds: a statement must start at
    /// or after it, or the voter cannot cut tokens from it.
    pub floor_index: u64,
}

/// A signed commit statement, replicated from the leader to every voter.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Certificate {
    /// The leader's term.
    pub term: Term,
    /// The encoded signed statement.
    pub statement: Vec<u8>,
}

impl From<Message> for PeerMessage {
    fn from(message: Message) -> Self {
        PeerMessage::Raft(message)
    }
}

impl PeerMessage {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PeerMessage::Raft(message) => message.kind(),
            PeerMessage::SnapshotChunk(_) => "snapshot_chunk",
            PeerMessage::SnapshotAck(_) => "snapshot_ack",
            PeerMessage::Certificate(_) => "certificate",
            PeerMessage::CertificateRequest(_) => "certificate_request",
            PeerMessage::ForwardTokens(_) => "forward_tokens",
        }
    }
}

/// A piece of the snapshot covering `last`, streamed in order by `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The leader's term.
    pub term: Term,
    /// The last entry the snapshot covers: identifies the snapshot.
    pub last: LogId,
    /// Byte offset of `data` within the snapshot.
    pub offset: u64,
    /// The bytes (a frame attachment: no copy on either side).
    pub data: Bytes,
    /// This is the last chunk.
    pub done: bool,
}

/// The follower's progress on the snapshot covering `last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SnapshotAck {
    /// The follower's term.
    pub term: Term,
    /// The snapshot's last entry.
    #[rkyv(with = crate::wire::LogIdDef)]
    pub last: LogId,
    /// Bytes received and durable; the next chunk starts here.
    pub next_offset: u64,
    /// `false`: the follower gave up (different snapshot, out of space);
    /// the leader restarts the stream.
    pub ok: bool,
}
