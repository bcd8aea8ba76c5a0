//! The gossip runtime: what runs the pure gossip core ([`crate::gossip`])
//! on glommio, for a gossip node (`ordo gossip`) and for a voter's gossip
//! endpoint (`node/gossip_bridge.rs`).
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
//! - [`driver`]: the core, its transport and clock, and its sends (shared
//!   with the voter side);
//! - [`runtime`]: a gossip node's loop, its client service and its store;
//! - [`store`]: delivered messages by id, durable before the watermark;
//! - [`verifier`]: the real token check behind the core's `Verify`.
//!
//! Design, connection rule and measurements: `docs/gossip.md`.

pub mod driver;
pub mod runtime;
pub mod store;
pub mod verifier;

pub use runtime::{GossipNodeConfig, GossipNodeError, GossipNodeProcess};
pub use store::{DeliveredStore, StoreError, StoreLimits};
pub use verifier::TokenVerifier;
