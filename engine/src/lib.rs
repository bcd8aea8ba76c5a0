//! ordo-engine: the Raft core and everything that drives it.
//!
//! - [`core`]: the Raft protocol as a pure state machine (events in,
//!   commands out).

#![warn(missing_docs)]

pub mod core;
