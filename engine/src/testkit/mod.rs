//! Drivers for the core without a runtime, for tests, the simulator and the
//! core benchmark: [`Host`] runs one core over an in-memory log and hands its
//! effects to a driver; [`Cluster`] wires hosts together with instant disks
//! and an in-order network.

mod cluster;
mod host;

pub use cluster::{Cluster, WALL_START_US};
pub use host::{AppliedEntry, Effect, Host};
