//! Drivers for the core without a runtime, for tests, the simulator and the
//! core benchmark: [`Host`] runs one core over an in-memory log, or the
//! real disk log on a simulated disk ([`host_log`]), and hands its effects
//! to a driver; [`Cluster`] wires hosts together with instant disks
//! and an in-order network.

mod cluster;
mod host;
pub mod host_log;

pub use cluster::{Cluster, WALL_START_US};
pub use host::{AppliedEntry, Effect, Host};
pub use host_log::{HostLog, HostSyncPoint, SimDiskLog};
