//! A gossip node (`ordo gossip`): the pure gossip core ([`crate::gossip`])
//! run on glommio, with a store for what it delivers and a client service.
//! A voter's gossip endpoint (`node/gossip_bridge.rs`) runs the same core
//! through the same driver ([`crate::node::gossip_driver`]); this module
//! builds on the node's public pieces and the node does not depend on it.
//!
//! ```text
//!   gossip peers ──► GossipTransport ──► Driver ──► GossipNode (pure core)
//!   (TCP, one-way      (ordo-net)          │  ▲         │ commands
//!    connections)                          │  └─ Tick ──┘
//!                                          ├─► Send ──► GossipTransport
//!   clients ──► ClientServer (same port) ──┤   Deliver ──► DeliveredStore ──► log streams
//!   (`ordo log`, `ordo status`)            └─► PersistWatermark ──► write + fdatasync
//! ```
//!
//! - [`crate::node::gossip_driver`]: the core, its transport and clock,
//!   and its sends (shared with the voter side);
//! - [`runtime`]: a gossip node's loop, its client service and its store;
//! - [`store`]: delivered messages by id, durable before the watermark;
//! - [`crate::gossip::TokenVerifier`]: the real token check behind the
//!   core's `Verify`.
//!
//! Design, connection rule and measurements: `docs/gossip.md`.

pub mod runtime;
pub mod store;

pub use runtime::{GossipNodeConfig, GossipNodeError, GossipNodeProcess};
pub use store::{DeliveredStore, StoreError, StoreLimits};
