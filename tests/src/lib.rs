//! ordo-tests: integration tests that need more than one crate.
//!
//! - [`sim`]: the deterministic simulator of the Raft core.

#![warn(missing_docs)]

pub mod gossip_sim;
pub mod sim;
