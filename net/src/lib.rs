//! ordo-net: the wire.
//!
//! - [`message`]: the Raft protocol's messages as plain values, which the
//!   core consumes and produces.

#![warn(missing_docs)]

pub mod message;

pub use message::*;
