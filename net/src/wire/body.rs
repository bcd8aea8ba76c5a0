//! rkyv bodies for the messages that carry attachments.
//!
//! A message holding `Bytes` or storage `Batch`es is archived as a body that
//! lists the attachments' lengths; the bytes themselves follow the body in
//! the frame, untouched. Messages of plain fields archive themselves (their
//! derives are on the types in [`crate::message`], [`crate::client`] and
//! [`crate::handshake`]).

use ordo_storage::{ClientId, Index, LogId, MessageId, NodeId, Seq, Term, TimestampUs};

/// rkyv's view of the storage crate's [`LogId`] (a remote type: the
/// storage crate does not depend on rkyv derives for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(remote = LogId)]
#[rkyv(archived = ArchivedLogId)]
pub struct LogIdDef {
    /// The entry's term.
    pub term: Term,
    /// The entry's index.
    pub index: Index,
}

impl From<LogIdDef> for LogId {
    fn from(value: LogIdDef) -> Self {
        LogId::new(value.term, value.index)
    }
}

/// AppendEntries: attachments are the batch frames, in order.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct AppendBody {
    pub term: Term,
    #[rkyv(with = LogIdDef)]
    pub prev: LogId,
    pub commit: Index,
    pub batch_lens: Vec<u32>,
}

/// One forwarded proposal; its payload is the next attachment.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct ForwardedBody {
    pub request_id: u64,
    pub client_id: ClientId,
    pub seq: Seq,
    pub payload_len: u32,
}

/// Forwarded proposals: attachments are the payloads, in order.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct ForwardBody {
    pub term: Term,
    pub proposals: Vec<ForwardedBody>,
}

/// InstallSnapshot: the one attachment is the core state.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct InstallSnapshotBody {
    pub term: Term,
    #[rkyv(with = LogIdDef)]
    pub last: LogId,
    pub last_id: MessageId,
    pub last_ts: TimestampUs,
    pub voters: Vec<NodeId>,
    pub core_state_len: u32,
}

/// A snapshot chunk: the one attachment is the data.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct SnapshotChunkBody {
    pub term: Term,
    #[rkyv(with = LogIdDef)]
    pub last: LogId,
    pub offset: u64,
    pub data_len: u32,
    pub done: bool,
}

/// A client proposal: the one attachment is the payload.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct ProposeBody {
    pub request_id: u64,
    pub client_id: ClientId,
    pub seq: Seq,
    pub redirect: bool,
    pub payload_len: u32,
}

/// One committed message of a log stream; its payload then its token are
/// the next two attachments.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct CommittedBody {
    pub id: MessageId,
    pub index: Index,
    pub term: Term,
    pub ts: TimestampUs,
    pub payload_len: u32,
    pub token_len: u32,
}

/// A run of a log stream.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct LogResponseBody {
    pub request_id: u64,
    pub messages: Vec<CommittedBody>,
    pub done: bool,
}

/// The dialer's gossip address, as text (`ip:port`); parsed on decode.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct GossipIntroBody {
    pub listen_addr: String,
}

/// A SWIM packet: the one attachment is the packet.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct GossipMembershipBody {
    pub packet_len: u32,
}

/// A gossip frame with one flag (neighbor request, neighbor reply).
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct GossipFlagBody {
    pub flag: bool,
}

/// A gossip frame with no fields (disconnect, prune).
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct GossipEmptyBody {}

/// An eager push: the message's payload then its token are the two
/// attachments.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct GossipPushBody {
    pub message: CommittedBody,
    pub hops: u16,
    pub repair: bool,
}

/// A lazy announcement.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct GossipIHaveBody {
    pub delivered: MessageId,
    pub above: u64,
}

/// A range of ids (graft, pull).
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct GossipRangeBody {
    pub from: MessageId,
    pub to: MessageId,
}

/// Configuration links: attachments are the links, of these lengths.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct GossipChainBody {
    pub link_lens: Vec<u32>,
}

/// A pull reply: attachments are each message's payload then token.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub(crate) struct GossipPullReplyBody {
    pub delivered: MessageId,
    pub messages: Vec<CommittedBody>,
}
