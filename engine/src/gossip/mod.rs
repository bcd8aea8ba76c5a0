//! Gossip: committed messages spread from the voters to many gossip nodes,
//! which verify each one, deliver every message exactly once and in id
//! order, and forward it. A pure, deterministic state machine like the
//! Raft core ([`crate::core`]): events in, commands out, no clock, no IO,
//! randomness from a seeded generator; the runtime only executes.
//!
//! ```text
//!             events                                       commands
//!   ┌───────────────────────────┐                 ┌──────────────────────────────┐
//!   │ Tick                      │   ┌──────────┐  │ Send { to, Wire }            │
//!   │ Message { from, Wire }    ├──►│GossipNode├─►│ Deliver(messages in id order)│
//!   │ Publish, CommitAdvanced,  │   └──────────┘  │ PersistWatermark { delivered}│
//!   │ CommittedRead  (voter)    │  membership     │ ReadCommitted  (voter)       │
//!   │ Unreachable { peer }      │  (SWIM, foca),  └──────────────────────────────┘
//!   └───────────────────────────┘  Plumtree, order,
//!                                  anti-entropy, Verify
//! ```
//!
//! The layers, bottom up:
//! - **membership** ([`membership`]): SWIM by `foca`; members learn of each
//!   other from seed addresses (voters serve) and detect failed members;
//! - **overlay** (`neighbors.rs`): a few symmetric links per gossip node to
//!   random live members;
//! - **dissemination** (`dissemination.rs`, [`plumtree`]): Plumtree over
//!   the links; a voter pushes each message it committed into the tree at
//!   one link; announcements carry the delivered watermark, since ids are
//!   dense;
//! - **order** ([`order`]): the delivered watermark and a bounded reorder
//!   buffer, which together are the dedup set;
//! - **repair** ([`repair`]): any gap in the ids is pulled from a
//!   neighbour that announced the ids (grafted instead when the tree looks
//!   broken), then from a voter, which serves any committed message from
//!   its log; a repaired message is passed on to the neighbours below.
//!
//! Where and why this departs from Plumtree, and what it measured:
//! `docs/gossip.md`.
//!
//! Every message is checked by a [`Verify`] before it is buffered,
//! delivered or forwarded; one that fails is logged and dropped.

mod cache;
mod checksum;
mod config;
mod dissemination;
mod io;
pub mod membership;
mod message;
mod neighbors;
mod node;
pub mod order;
pub mod plumtree;
pub mod repair;
mod stats;
pub mod swim_codec;
mod token_verifier;
mod verify;
mod voter;

pub use cache::MessageCache;
pub use checksum::{ChecksumError, ChecksumSigner, ChecksumVerifier};
pub use config::GossipConfig;
pub use io::{Command, Event, GossipStart};
pub use message::{GossipMessage, PeerAddr, PeerKind, Wire};
pub use node::GossipNode;
pub use stats::GossipStats;
pub use token_verifier::{TokenCheckError, TokenVerifier};
pub use verify::Verify;

#[cfg(test)]
mod tests;
