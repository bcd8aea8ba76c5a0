//! ordo-tests: integration tests that need more than one crate.
//!
//! - [`sim`]: the deterministic simulator of the Raft core;
//! - [`disk_sim`]: the real disk log over a simulated faulty disk;
//! - [`power_loss_fs`]: a FUSE file system that drops unsynced writes;
//! - [`procs`]: real `ordo` processes for integration tests;
//! - [`gossip_procs`]: real `ordo gossip` processes beside them.

#![warn(missing_docs)]

pub mod disk_sim;
pub mod gossip_procs;
pub mod gossip_sim;
pub mod power_loss_fs;
pub mod procs;
pub mod sim;
