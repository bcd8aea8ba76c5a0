//! The gossip messages as plain values: what gossip nodes and voters'
//! gossip endpoints send each other. The gossip core
//! (`ordo_engine::gossip`) consumes and produces them; their rkyv frames
//! (kinds 96–127) are in `wire/codec_gossip.rs`. Payloads and tokens stay
//! `Bytes`, so a message read from a receive buffer is forwarded and
//! delivered without a copy.

use std::net::SocketAddr;

use bytes::Bytes;
use ordo_storage::{Index, MessageId, Term, TimestampUs};

/// How a gossip peer is addressed: the address it listens on. Voters take
/// part too (as seeds and as the sources of messages), under the address of
/// their gossip listener.
pub type PeerAddr = SocketAddr;

/// What a member of the gossip cluster is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerKind {
    /// A Raft voter: publishes the messages it committed, serves any
    /// committed message from its log, and never receives pushes.
    Voter,
    /// A gossip node: receives, verifies, delivers and forwards.
    Gossip,
}

/// A committed message as it travels between gossip peers. Everything but
/// the payload and the token is covered by the token: a verifier that
/// accepts it proves the message was committed with exactly these values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipMessage {
    /// Dense message id (1, 2, 3, … over user messages).
    pub id: MessageId,
    /// Log index of the entry.
    pub index: Index,
    /// Term of the entry.
    pub term: Term,
    /// Commit timestamp (µs since the Unix epoch).
    pub ts: TimestampUs,
    /// The message (a frame attachment).
    pub payload: Bytes,
    /// Proof of commitment (an encoded token; a frame attachment).
    pub token: Bytes,
}

impl GossipMessage {
    /// Bytes this message holds in memory and on the wire, roughly: what
    /// the caches and the reorder buffer count against their byte bounds.
    pub fn size_bytes(&self) -> usize {
        self.payload.len() + self.token.len() + 32
    }
}

/// One message between gossip peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wire {
    /// A SWIM packet, encoded by the membership layer; opaque here.
    Membership(Bytes),
    /// Ask to become neighbours (symmetric links of the overlay that
    /// Plumtree's tree is built on). `urgent` when the sender has no
    /// neighbour at all: the receiver then accepts even when full.
    Neighbor {
        /// The sender has no neighbour.
        urgent: bool,
    },
    /// Answer to [`Wire::Neighbor`].
    NeighborReply {
        /// Whether the receiver added the sender as a neighbour.
        accepted: bool,
    },
    /// The sender dropped the receiver from its neighbours.
    Disconnect,
    /// Eager push of a message along the tree (Plumtree GOSSIP).
    Push {
        /// The message.
        message: GossipMessage,
        /// Hops from the voter that published it.
        hops: u16,
        /// The sender repaired this message (pulled it) and passes it on to
        /// neighbours that had not announced it: a duplicate of it says
        /// nothing about the tree, so it prunes nothing.
        repair: bool,
    },
    /// Lazy announcement (Plumtree IHAVE). Ids are dense and a gossip node
    /// delivers in order, so "I delivered every id up to `delivered`, and
    /// hold these of the next 64" announces a whole range in sixteen bytes.
    IHave {
        /// The sender holds every message up to this id (a voter: every
        /// committed one).
        delivered: MessageId,
        /// Bit `i` set: the sender also holds id `delivered + 1 + i` (it
        /// waits there for a gap below to close).
        above: u64,
    },
    /// Plumtree GRAFT: make the link eager again and send the missing
    /// messages `[from, to]`.
    Graft {
        /// First id wanted.
        from: MessageId,
        /// Last id wanted.
        to: MessageId,
    },
    /// Plumtree PRUNE: the link carried a duplicate; make it lazy.
    Prune,
    /// Anti-entropy: send the messages `[from, to]` (at most
    /// `pull_messages_max`), without changing the tree.
    Pull {
        /// First id wanted.
        from: MessageId,
        /// Last id wanted.
        to: MessageId,
    },
    /// Answer to [`Wire::Pull`]: the messages the sender had, in id order.
    PullReply {
        /// The messages.
        messages: Vec<GossipMessage>,
        /// The highest id the sender knows to be committed or delivered.
        delivered: MessageId,
    },
    /// The configuration links the sender holds (encoded by the engine's
    /// `token::ConfigLink`), oldest first: the chain from `cluster.keys`
    /// to the voters whose statements its messages carry. Sent when a
    /// link to a neighbour is made and when the sender learns new links.
    Chain {
        /// The links.
        links: Vec<Bytes>,
    },
}

impl Wire {
    /// Whether this message carries message payloads (what redundancy is
    /// measured on) rather than control information.
    pub fn is_payload(&self) -> bool {
        matches!(self, Wire::Push { .. } | Wire::PullReply { .. })
    }

    /// Short name for logs and statistics.
    pub fn name(&self) -> &'static str {
        match self {
            Wire::Membership(_) => "membership",
            Wire::Neighbor { .. } => "neighbor",
            Wire::NeighborReply { .. } => "neighbor_reply",
            Wire::Disconnect => "disconnect",
            Wire::Push { .. } => "push",
            Wire::IHave { .. } => "ihave",
            Wire::Graft { .. } => "graft",
            Wire::Prune => "prune",
            Wire::Pull { .. } => "pull",
            Wire::PullReply { .. } => "pull_reply",
            Wire::Chain { .. } => "chain",
        }
    }
}

/// The first frame on a gossip connection after the handshake: the
/// dialer's own gossip address, which is how the acceptor names it to the
/// gossip core. Gossip connections carry one direction only (see
/// `docs/protocol.md`), so the acceptor never answers on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipIntro {
    /// The address the dialer listens on for gossip.
    pub listen_addr: PeerAddr,
}

/// A frame's content on a gossip connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipFrame {
    /// See [`GossipIntro`].
    Intro(GossipIntro),
    /// A gossip message.
    Wire(Wire),
}
