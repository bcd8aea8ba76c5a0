//! The gossip wire messages as plain values. They are defined in `ordo-net`
//! ([`ordo_net::gossip`]), next to their rkyv frames (kinds 96–127), the
//! way the Raft messages are; payloads and tokens stay `Bytes` so a message
//! read from a receive buffer is forwarded and delivered without a copy.

pub use ordo_net::gossip::{GossipMessage, PeerAddr, PeerKind, Wire};
