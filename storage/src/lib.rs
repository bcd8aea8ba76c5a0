//! ordo-storage: the log.
//!
//! - [`types`]: the identifiers every crate shares;
//! - [`frame`]: the batch frame, one format on disk and on the wire;
//! - [`LogStore`]: the narrow trait the node runtime drives, with its
//!   contract, and [`conformance`], the suite every implementation passes;
//! - [`MemLog`]: the in-memory implementation with a crash model;
//! - [`DiskLog`]: the segmented log on io_uring with group fsync, and
//!   [`SnapshotStore`], snapshot files written and read in chunks;
//! - [`records`]: append-only files of checksummed records, the format and
//!   recovery rule of the runtime's side files (commit statements, a gossip
//!   node's delivered messages).
//!
//! Without the default `io` feature the crate is the formats alone (frames,
//! identifiers, the `LogStore` contract and the in-memory log), with no
//! glommio, libc or nix: that is what the Raft core (`ordo-core`) links.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod aligned;
pub mod chunked;
pub mod conformance;
#[cfg(feature = "io")]
pub mod disk;
pub mod error;
pub mod frame;
pub mod hard_state;
pub mod log_store;
pub mod mem_log;
#[cfg(feature = "io")]
pub mod records;
#[cfg(feature = "io")]
pub mod snapshot;
pub mod stats;
pub mod types;

pub use aligned::{AlignedBuf, DIRECT_IO_ALIGN};
#[cfg(feature = "io")]
pub use disk::{DiskLog, DiskLogConfig, FsyncMode, LogCut, RecoveryReport};
pub use error::{Result, StorageError};
pub use frame::{Batch, BatchHeader, BatchKind, BatchMeta, EntryOut, EntryView, FrameError};
pub use hard_state::HardState;
pub use log_store::{LogState, LogStore, TermRun};
pub use mem_log::{MemLog, SyncPoint};
#[cfg(feature = "io")]
pub use snapshot::{SnapshotMeta, SnapshotReader, SnapshotStore, SnapshotWriter};
pub use stats::DiskLogStats;
pub use types::{ClientId, Index, LogId, MessageId, NodeId, Seq, Term, TimestampUs};
