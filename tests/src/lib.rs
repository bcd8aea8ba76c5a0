//! ordo-tests: integration tests that need more than one crate.
//!
//! - [`sim`]: the deterministic simulator of the Raft core;
//! - [`runtime_sim`]: the deterministic simulator of the real node runtime;
//! - [`disk_sim`]: the real disk log over a simulated faulty disk;
//! - [`power_loss_fs`]: a FUSE file system that drops unsynced writes;
//! - [`procs`]: real `ordo` processes for integration tests;
//! - [`gossip_procs`]: real `ordo gossip` processes beside them.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod disk_sim;
pub mod gossip_procs;
pub mod gossip_sim;
pub mod power_loss_fs;
pub mod procs;
pub mod runtime_sim;
pub mod sim;

/// A broken invariant of a simulator run, with the command that replays it.
#[derive(Debug)]
pub struct Failure {
    /// The seed of the run.
    pub seed: u64,
    /// Which invariant, and how it broke.
    pub what: String,
    /// Virtual time of the failure (µs).
    pub at_us: u64,
    /// The command that replays the seed.
    pub replay: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} failed at {} µs: {}\nreplay: {}",
            self.seed, self.at_us, self.what, self.replay
        )
    }
}

/// The message of a caught panic (`panic!` with a format or a literal).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// The number in environment variable `name`, or `default` when unset;
/// panics naming the variable when it is set to something else.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
        })
        .unwrap_or(default)
}
