//! What goes into the gossip core (events) and what comes out (commands).

use ordo_storage::MessageId;

use super::{GossipMessage, PeerAddr, PeerKind, Wire};

/// Who a gossip core is and where it starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipStart {
    /// This member's gossip address.
    pub addr: PeerAddr,
    /// Voter or gossip node.
    pub kind: PeerKind,
    /// Grows at each restart (the runtime keeps a counter in the data
    /// directory, or uses the wall clock in seconds): SWIM tells a
    /// restarted member from its earlier self by it.
    pub generation: u32,
    /// The last id delivered before a restart (the persisted watermark),
    /// `0` for a fresh node; a voter passes its last committed id.
    pub delivered: MessageId,
    /// Members to announce this one to (voters can serve).
    pub seeds: Vec<PeerAddr>,
    /// Seed of the core's random generator (the runtime draws it from the
    /// OS; the simulator from its own seed).
    pub rng_seed: u64,
}

/// Everything the gossip core reacts to.
#[derive(Clone, Debug)]
pub enum Event {
    /// Time passed; timers may fire. The runtime sends one at
    /// [`super::GossipNode::next_deadline_us`] or earlier.
    Tick,
    /// A message from a peer (untrusted: anything in it may be wrong).
    Message {
        /// The sender's gossip address, as the transport knows it.
        from: PeerAddr,
        /// The message.
        message: Wire,
    },
    /// Voter only: a message this voter received from a client committed;
    /// the voter starts its dissemination.
    Publish(GossipMessage),
    /// Voter only: every message up to `id` is committed (whichever voter
    /// received it), so this voter can serve it from its log.
    CommitAdvanced {
        /// The last committed message id.
        id: MessageId,
    },
    /// Voter only: a [`Command::ReadCommitted`] completed.
    CommittedRead {
        /// The peer that asked.
        peer: PeerAddr,
        /// The committed messages read, in id order, tokens included;
        /// empty if the read failed.
        messages: Vec<GossipMessage>,
    },
    /// Voter only: the configuration links its node holds (encoded
    /// `token::ConfigLink`s, oldest first); new ones are learned and sent
    /// to the gossip nodes it feeds.
    Chain {
        /// The links.
        links: Vec<bytes::Bytes>,
    },
    /// The transport could not reach `peer` (connect failed, connection
    /// lost, or its send queue overflowed): it is dropped from the links.
    Unreachable {
        /// The peer.
        peer: PeerAddr,
    },
}

/// What the gossip core asks the runtime to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Send a message to a peer. Best effort: the core repairs whatever is
    /// lost, so a runtime may drop sends to a peer whose queue is full
    /// (and should then report [`Event::Unreachable`]).
    Send {
        /// The peer.
        to: PeerAddr,
        /// The message.
        message: Wire,
    },
    /// Hand these messages to the subscribers: consecutive ids, continuing
    /// from the previous delivery (or from the start watermark), each
    /// verified, each exactly once.
    Deliver(Vec<GossipMessage>),
    /// Make the delivered watermark durable: after a restart the node
    /// starts from the last watermark that was. A runtime that stores the
    /// delivered messages makes them durable first, so that the store and
    /// the watermark agree (messages after a durable watermark are
    /// delivered again after a crash, and a store keyed by id takes them
    /// once).
    PersistWatermark {
        /// Every id up to here was delivered.
        delivered: MessageId,
    },
    /// Voter only: read the committed messages `[from, to]` (at most
    /// `bytes_max` bytes of them) from the log, with their tokens, and
    /// answer with [`Event::CommittedRead`].
    ReadCommitted {
        /// Who they are for.
        peer: PeerAddr,
        /// First id.
        from: MessageId,
        /// Last id.
        to: MessageId,
        /// Byte budget of the answer.
        bytes_max: usize,
    },
}
