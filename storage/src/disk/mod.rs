//! The segmented disk log: [`DiskLog`], its knobs, its on-disk formats and
//! recovery.
//!
//! ```text
//!  appenders ──append──▶ index + cache (memory) ──flush──▶ segment files
//!       │                                           ▲  (O_DIRECT, 4 KiB
//!       └──sync──▶ IO lock queue: the holder writes ┘   aligned, one write
//!                  everything appended, fdatasyncs,     per round) then
//!                  every queued sync it covered returns fdatasync
//! ```
//!
//! Files: `config.rs` knobs and [`FsyncMode`]; `segment_header.rs` and
//! `scan.rs` the on-disk segment format and its pure validation;
//! `recovery.rs` opening a directory; `log.rs` the store and its read and
//! append paths; `flush.rs` group commit; `layout.rs` truncate, compact,
//! reset; `spare.rs` zero-filled segment preparation; `hard_state_file.rs`
//! the two-slot hard state; `fuzz.rs` the entry point for fuzzing recovery;
//! `vfs.rs` the file system the log runs on, and `sim_disk.rs` the
//! simulated one with a fault model.

mod cache;
pub mod config;
mod flush;
mod fuzz;
mod hard_state_file;
pub(crate) mod io;
mod layout;
mod log;
mod notify;
mod recovery;
pub mod scan;
mod segment;
pub mod segment_header;
mod sim_disk;
mod spare;

pub mod vfs;

pub use crate::stats::DiskLogStats;
pub use config::{ConfigError, DiskLogConfig, FsyncMode, FsyncModeParseError, SEGMENT_BYTES_LIMIT};
pub use fuzz::{FuzzOutcome, fuzz_open};
pub use hard_state_file::{HARD_STATE_FILE_NAME, parse_hard_state_file};
pub use io::prime_iopoll_probe;
pub use log::{DiskLog, RecoveryReport};
pub use recovery::LogCut;
pub use sim_disk::{SECTOR_BYTES, SimDisk, SimDiskFaults, SimFault, SyncLatency};

/// Locked memory glommio registers for IO buffers on each executor that
/// runs a disk log: enough for a few in-flight 1 MiB writes and reads, and
/// well within the 8 MiB `ulimit -l` of a default unprivileged account.
/// Larger buffers come from the ordinary allocator.
pub const IO_MEMORY_BYTES: usize = 2 << 20;

/// A glommio executor builder sized to run disk logs: unpinned, with
/// [`IO_MEMORY_BYTES`] of registered IO memory. The node runtime may use
/// its own builder; it should keep `io_memory` this small or the locked
/// memory limit must be raised.
pub fn executor_builder(name: &str) -> glommio::LocalExecutorBuilder {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name(name)
        .io_memory(IO_MEMORY_BYTES)
}
