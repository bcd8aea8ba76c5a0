//! The connection handshake: the first frame each way on every connection.
//!
//! The dialer sends [`Hello`] and, in the same write, [`HelloNonce`]; the
//! acceptor answers [`HelloChallenge`] (its own nonce and its signature over
//! the transcript, see [`crate::auth`]) or [`HelloReject`] and closes; the
//! dialer checks the challenge and sends [`HelloProof`] (its signature); the
//! acceptor answers [`HelloAck`] or [`HelloReject`] (reason
//! [`RejectReason::Unauthenticated`]) and closes. Nothing else may be sent
//! before the handshake completes. `Hello`, `HelloAck` and `HelloReject`
//! must keep their layout in every protocol version, so that a node can
//! tell a peer of another version why it refuses it: the authentication
//! frames are separate frames for that reason.

use ordo_storage::NodeId;

/// The protocol version this build speaks. The acceptor refuses any other:
/// adding a frame kind or changing a body bumps it.
pub const PROTOCOL_VERSION: u16 = 4;

/// What the dialer is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub enum ConnectionRole {
    /// A voter of the same cluster: peer frames follow.
    Peer,
    /// A client: client requests follow.
    Client,
    /// A gossip peer (a gossip node or a voter's gossip endpoint): a
    /// [`crate::GossipIntro`] then gossip frames follow, in one direction
    /// only (see `docs/protocol.md`).
    Gossip,
}

/// The dialer introduces itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Hello {
    /// The cluster the dialer belongs to (or, for a client, wants).
    pub cluster_id: u64,
    /// The dialer's node id; `0` for a client.
    pub node_id: NodeId,
    /// [`PROTOCOL_VERSION`] of the dialer.
    pub protocol_version: u16,
    /// What follows the handshake.
    pub role: ConnectionRole,
}

/// The acceptor agrees; frames of the dialer's role may follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HelloAck {
    /// The acceptor's cluster.
    pub cluster_id: u64,
    /// The acceptor's node id: the dialer checks it reached whom it meant.
    pub node_id: NodeId,
    /// The acceptor's [`PROTOCOL_VERSION`].
    pub protocol_version: u16,
}

/// Why the acceptor refuses a connection.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub enum RejectReason {
    /// The dialer belongs to another cluster.
    ClusterMismatch,
    /// The dialer speaks another protocol version.
    VersionMismatch,
    /// A peer dialed the client port, or a client the peer port.
    RoleMismatch,
    /// The dial rule was broken: only the lower id of a pair dials, and a
    /// node never dials itself (see `docs/protocol.md`).
    DialRule,
    /// The acceptor is shutting down or at its connection limit.
    Unavailable,
    /// The dialer did not prove it holds the credential its role needs (a
    /// voter's node key, the cluster's gossip secret, the client secret).
    Unauthenticated,
}

impl RejectReason {
    /// A short, fixed name for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            RejectReason::ClusterMismatch => "cluster_mismatch",
            RejectReason::VersionMismatch => "version_mismatch",
            RejectReason::RoleMismatch => "role_mismatch",
            RejectReason::DialRule => "dial_rule",
            RejectReason::Unavailable => "unavailable",
            RejectReason::Unauthenticated => "unauthenticated",
        }
    }
}

/// The acceptor refuses, then closes the connection.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HelloReject {
    /// Why.
    pub reason: RejectReason,
    /// The acceptor's [`PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// A human-readable detail for the dialer's log.
    pub detail: String,
}

/// The dialer's nonce, sent right after [`Hello`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HelloNonce {
    /// Fresh random bytes: the acceptor's signature must cover them.
    pub nonce: crate::auth::Nonce,
}

/// The acceptor's challenge: who it is, its nonce, and its signature over
/// the acceptor transcript ([`crate::auth::transcript`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HelloChallenge {
    /// The acceptor's cluster.
    pub cluster_id: u64,
    /// The acceptor's node id (`0` for a gossip node).
    pub node_id: NodeId,
    /// Fresh random bytes: the dialer's proof must cover them.
    pub nonce: crate::auth::Nonce,
    /// The acceptor's signature.
    pub signature: crate::auth::Signature,
}

/// The dialer's proof: its signature over the dialer transcript.
#[derive(Clone, Copy, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct HelloProof {
    /// The dialer's signature.
    pub signature: crate::auth::Signature,
}

/// A handshake frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`HelloAck`].
    Ack(HelloAck),
    /// See [`HelloReject`].
    Reject(HelloReject),
    /// See [`HelloNonce`].
    Nonce(HelloNonce),
    /// See [`HelloChallenge`].
    Challenge(HelloChallenge),
    /// See [`HelloProof`].
    Proof(HelloProof),
}
