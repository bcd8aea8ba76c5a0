//! Frame kinds: the one byte that says how to read a frame's body.

use crate::wire::WireError;

/// What a frame carries. The numbering is part of the protocol: a value is
/// never reused for another meaning. Ranges group kinds by connection role:
///
/// | range    | role                                    |
/// |----------|-----------------------------------------|
/// | 1..=15   | handshake (any connection)              |
/// | 16..=63  | peer (voter to voter)                   |
/// | 64..=79  | client requests                         |
/// | 80..=95  | client responses                        |
/// | 96..=127 | gossip (gossip nodes and voters' gossip endpoints) |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// [`crate::Hello`]: the dialer's first frame.
    Hello = 1,
    /// [`crate::HelloAck`]: the acceptor agrees.
    HelloAck = 2,
    /// [`crate::HelloReject`]: the acceptor refuses, then closes.
    HelloReject = 3,
    /// [`crate::HelloNonce`]: the dialer's nonce, right after its hello.
    HelloNonce = 4,
    /// [`crate::HelloChallenge`]: the acceptor's nonce and signature.
    HelloChallenge = 5,
    /// [`crate::HelloProof`]: the dialer's signature.
    HelloProof = 6,
    /// [`crate::VoteRequest`].
    Vote = 16,
    /// [`crate::VoteResponse`].
    VoteResponse = 17,
    /// [`crate::AppendRequest`]; attachments are storage batch frames.
    Append = 18,
    /// [`crate::AppendResponse`].
    AppendResponse = 19,
    /// [`crate::Heartbeat`].
    Heartbeat = 20,
    /// [`crate::HeartbeatResponse`].
    HeartbeatResponse = 21,
    /// [`crate::ForwardRequest`]; attachments are proposal payloads.
    Forward = 22,
    /// [`crate::ForwardResults`].
    ForwardResults = 23,
    /// [`crate::ReadIndexRequest`].
    ReadIndex = 24,
    /// [`crate::ReadIndexResponse`].
    ReadIndexResponse = 25,
    /// [`crate::InstallSnapshot`]; the attachment is the core state.
    InstallSnapshot = 26,
    /// [`crate::TimeoutNow`].
    TimeoutNow = 27,
    /// [`crate::SnapshotChunk`]; the attachment is the chunk's data.
    SnapshotChunk = 28,
    /// [`crate::SnapshotAck`].
    SnapshotAck = 29,
    /// [`crate::Certificate`].
    Certificate = 30,
    /// [`crate::CertificateRequest`].
    CertificateRequest = 31,
    /// [`crate::ForwardTokens`].
    ForwardTokens = 32,
    /// [`crate::ProposeRequest`]; the attachment is the payload.
    ProposeRequest = 64,
    /// [`crate::ReadRequest`].
    ReadRequest = 65,
    /// [`crate::StatusRequest`].
    StatusRequest = 66,
    /// [`crate::LogRequest`].
    LogRequest = 67,
    /// [`crate::AdminRequest`].
    AdminRequest = 68,
    /// [`crate::ProposeResponse`].
    ProposeResponse = 80,
    /// [`crate::ReadResponse`].
    ReadResponse = 81,
    /// [`crate::StatusResponse`].
    StatusResponse = 82,
    /// [`crate::LogResponse`]; attachments are payloads and tokens.
    LogResponse = 83,
    /// [`crate::ErrorResponse`].
    ErrorResponse = 84,
    /// [`crate::AdminResponse`].
    AdminResponse = 85,
    /// [`crate::GossipIntro`]: the first frame of a gossip connection.
    GossipIntro = 96,
    /// [`crate::Wire::Membership`]; the attachment is the SWIM packet.
    GossipMembership = 97,
    /// [`crate::Wire::Neighbor`].
    GossipNeighbor = 98,
    /// [`crate::Wire::NeighborReply`].
    GossipNeighborReply = 99,
    /// [`crate::Wire::Disconnect`].
    GossipDisconnect = 100,
    /// [`crate::Wire::Push`]; attachments are the payload and the token.
    GossipPush = 101,
    /// [`crate::Wire::IHave`].
    GossipIHave = 102,
    /// [`crate::Wire::Graft`].
    GossipGraft = 103,
    /// [`crate::Wire::Prune`].
    GossipPrune = 104,
    /// [`crate::Wire::Pull`].
    GossipPull = 105,
    /// [`crate::Wire::PullReply`]; attachments are each message's payload
    /// and token.
    GossipPullReply = 106,
    /// [`crate::Wire::Chain`]; attachments are the configuration links.
    GossipChain = 107,
}

/// Which family of messages a kind belongs to; a connection accepts one
/// family after its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KindClass {
    /// Handshake frames.
    Handshake,
    /// Voter-to-voter messages.
    Peer,
    /// Client to node.
    ClientRequest,
    /// Node to client.
    ClientResponse,
    /// Between gossip peers.
    Gossip,
}

impl FrameKind {
    /// Every kind, for tests and documentation.
    pub const ALL: [FrameKind; 46] = [
        FrameKind::Hello,
        FrameKind::HelloAck,
        FrameKind::HelloReject,
        FrameKind::HelloNonce,
        FrameKind::HelloChallenge,
        FrameKind::HelloProof,
        FrameKind::Vote,
        FrameKind::VoteResponse,
        FrameKind::Append,
        FrameKind::AppendResponse,
        FrameKind::Heartbeat,
        FrameKind::HeartbeatResponse,
        FrameKind::Forward,
        FrameKind::ForwardResults,
        FrameKind::ReadIndex,
        FrameKind::ReadIndexResponse,
        FrameKind::InstallSnapshot,
        FrameKind::TimeoutNow,
        FrameKind::SnapshotChunk,
        FrameKind::SnapshotAck,
        FrameKind::Certificate,
        FrameKind::CertificateRequest,
        FrameKind::ForwardTokens,
        FrameKind::ProposeRequest,
        FrameKind::ReadRequest,
        FrameKind::StatusRequest,
        FrameKind::LogRequest,
        FrameKind::AdminRequest,
        FrameKind::ProposeResponse,
        FrameKind::ReadResponse,
        FrameKind::StatusResponse,
        FrameKind::LogResponse,
        FrameKind::ErrorResponse,
        FrameKind::AdminResponse,
        FrameKind::GossipIntro,
        FrameKind::GossipMembership,
        FrameKind::GossipNeighbor,
        FrameKind::GossipNeighborReply,
        FrameKind::GossipDisconnect,
        FrameKind::GossipPush,
        FrameKind::GossipIHave,
        FrameKind::GossipGraft,
        FrameKind::GossipPrune,
        FrameKind::GossipPull,
        FrameKind::GossipPullReply,
        FrameKind::GossipChain,
    ];

    /// Parses the kind byte of an untrusted header.
    pub fn from_u8(value: u8) -> Result<Self, WireError> {
        Self::ALL
            .iter()
            .copied()
            .find(|kind| *kind as u8 == value)
            .ok_or(WireError::UnknownKind(value))
    }

    /// The family the kind belongs to.
    pub fn class(self) -> KindClass {
        match self as u8 {
            1..=15 => KindClass::Handshake,
            16..=63 => KindClass::Peer,
            64..=79 => KindClass::ClientRequest,
            80..=95 => KindClass::ClientResponse,
            _ => KindClass::Gossip,
        }
    }

    /// Whether the frame's attachments carry their own CRC, so that the
    /// frame CRC stops at the end of the body. Only AppendEntries: its
    /// attachments are storage batch frames, each with a CRC32 over all of
    /// its bytes that [`ordo_storage::Batch::decode`] checks anyway. Every
    /// other attachment (payloads, tokens, snapshot data) has no checksum of
    /// its own and is covered by the frame CRC. Each byte is thus summed
    /// exactly once on each side.
    pub fn attachments_self_checked(self) -> bool {
        self == FrameKind::Append
    }

    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Hello => "hello",
            FrameKind::HelloAck => "hello_ack",
            FrameKind::HelloReject => "hello_reject",
            FrameKind::HelloNonce => "hello_nonce",
            FrameKind::HelloChallenge => "hello_challenge",
            FrameKind::HelloProof => "hello_proof",
            FrameKind::Vote => "vote",
            FrameKind::VoteResponse => "vote_response",
            FrameKind::Append => "append",
            FrameKind::AppendResponse => "append_response",
            FrameKind::Heartbeat => "heartbeat",
            FrameKind::HeartbeatResponse => "heartbeat_response",
            FrameKind::Forward => "forward",
            FrameKind::ForwardResults => "forward_results",
            FrameKind::ReadIndex => "read_index",
            FrameKind::ReadIndexResponse => "read_index_response",
            FrameKind::InstallSnapshot => "install_snapshot",
            FrameKind::TimeoutNow => "timeout_now",
            FrameKind::SnapshotChunk => "snapshot_chunk",
            FrameKind::SnapshotAck => "snapshot_ack",
            FrameKind::Certificate => "certificate",
            FrameKind::CertificateRequest => "certificate_request",
            FrameKind::ForwardTokens => "forward_tokens",
            FrameKind::ProposeRequest => "propose_request",
            FrameKind::ReadRequest => "read_request",
            FrameKind::StatusRequest => "status_request",
            FrameKind::LogRequest => "log_request",
            FrameKind::AdminRequest => "admin_request",
            FrameKind::ProposeResponse => "propose_response",
            FrameKind::ReadResponse => "read_response",
            FrameKind::StatusResponse => "status_response",
            FrameKind::LogResponse => "log_response",
            FrameKind::ErrorResponse => "error_response",
            FrameKind::AdminResponse => "admin_response",
            FrameKind::GossipIntro => "gossip_intro",
            FrameKind::GossipMembership => "gossip_membership",
            FrameKind::GossipNeighbor => "gossip_neighbor",
            FrameKind::GossipNeighborReply => "gossip_neighbor_reply",
            FrameKind::GossipDisconnect => "gossip_disconnect",
            FrameKind::GossipPush => "gossip_push",
            FrameKind::GossipIHave => "gossip_ihave",
            FrameKind::GossipGraft => "gossip_graft",
            FrameKind::GossipPrune => "gossip_prune",
            FrameKind::GossipPull => "gossip_pull",
            FrameKind::GossipPullReply => "gossip_pull_reply",
            FrameKind::GossipChain => "gossip_chain",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_back_and_unknown_bytes_do_not() {
        for kind in FrameKind::ALL {
            assert_eq!(FrameKind::from_u8(kind as u8), Ok(kind));
        }
        let known: Vec<u8> = FrameKind::ALL.iter().map(|k| *k as u8).collect();
        for value in 0..=u8::MAX {
            if !known.contains(&value) {
                assert_eq!(
                    FrameKind::from_u8(value),
                    Err(WireError::UnknownKind(value))
                );
            }
        }
    }
}
