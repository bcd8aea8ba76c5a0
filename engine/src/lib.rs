//! ordo-engine: the Raft core and everything that drives it.
//!
//! - [`core`]: the Raft protocol as a pure state machine (events in,
//!   commands out);
//! - [`testkit`]: drivers that run the core without a runtime (tests,
//!   simulator, core benchmark).

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod client;
pub mod gossip;
pub mod gossip_node;
pub mod metrics;
pub mod node;
pub mod preflight;
pub mod status;
pub mod testkit;
pub mod token;

/// The Raft core, from its own crate ([`ordo_core`]): it compiles without
/// glommio, libc or nix, so it can run under any runtime.
pub use ordo_core as core;
