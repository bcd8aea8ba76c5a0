//! Storage errors: operating failures and corruption, never panics.

use std::path::PathBuf;

use crate::frame::FrameError;
use crate::types::Index;

/// What a log store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An IO call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", "fdatasync", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Bytes on disk failed validation somewhere a torn write cannot explain.
    /// The store refuses to open rather than serve a log with a hole.
    #[error("corrupt log at {file}:{offset}: {reason}")]
    Corrupt {
        /// The file holding the bad bytes.
        file: PathBuf,
        /// Byte offset within the file.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A batch that does not continue the log where it ends.
    #[error("non-contiguous append: log ends at index {last_index}, batch starts at {first_index}")]
    NonContiguous {
        /// The log's last index before the append.
        last_index: Index,
        /// The first index of the offending batch.
        first_index: Index,
    },
    /// A batch whose term is lower than the term of the entry before it.
    #[error("term goes backwards at index {index}: {term} after {prev_term}")]
    TermRegression {
        /// Index of the offending batch's first entry.
        index: Index,
        /// Its term.
        term: u64,
        /// The term of the entry before it.
        prev_term: u64,
    },
    /// A read or truncate outside the entries the log holds.
    #[error("index {index} outside the log [{first_index}, {last_index}]")]
    OutOfRange {
        /// The requested index.
        index: Index,
        /// First index held.
        first_index: Index,
        /// Last index held.
        last_index: Index,
    },
    /// A frame failed validation.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// A configuration knob out of its domain or in conflict with another.
    #[error(transparent)]
    #[cfg(feature = "io")]
    Config(#[from] crate::disk::ConfigError),
    /// The store was closed or has failed earlier; it accepts no more writes.
    #[error("log store is closed: {0}")]
    Closed(String),
    /// A snapshot finished after a newer one was installed (a snapshot
    /// received from the leader overtook one being taken locally): it is
    /// discarded, since installing it would hide the newer one.
    #[error("snapshot at index {snapshot} superseded by the installed snapshot at index {latest}")]
    SnapshotSuperseded {
        /// The last index the discarded snapshot covers.
        snapshot: Index,
        /// The last index the installed snapshot covers.
        latest: Index,
    },
}

/// Result alias for storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
