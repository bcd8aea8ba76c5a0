//! ordo-storage: the log.
//!
//! - [`types`]: the identifiers every crate shares;
//! - [`frame`]: the batch frame, one format on disk and on the wire;
//! - [`LogStore`]: the narrow trait the node runtime drives, with its
//!   contract, and [`conformance`], the suite every implementation passes;
//! - [`MemLog`]: the in-memory implementation with a crash model;
//! - [`DiskLog`]: the segmented log on io_uring with group fsync, and
//!   [`SnapshotStore`], snapshot files written and read in chunks.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod aligned;
pub mod chunked;
pub mod conformance;
pub mod disk;
pub mod error;
pub mod frame;
pub mod hard_state;
pub mod log_store;
pub mod mem_log;
pub mod snapshot;
pub mod types;

pub use aligned::{AlignedBuf, DIRECT_IO_ALIGN};
pub use disk::{DiskLog, DiskLogConfig, DiskLogStats, FsyncMode, LogCut, RecoveryReport};
pub use error::{Result, StorageError};
pub use frame::{Batch, BatchHeader, BatchKind, BatchMeta, EntryOut, EntryView, FrameError};
pub use hard_state::HardState;
pub use log_store::{LogState, LogStore, TermRun};
pub use mem_log::{MemLog, SyncPoint};
pub use snapshot::{SnapshotMeta, SnapshotReader, SnapshotStore, SnapshotWriter};
pub use types::{ClientId, Index, LogId, MessageId, NodeId, Seq, Term, TimestampUs};
