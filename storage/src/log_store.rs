//! The narrow trait every ordo log implements, and what correctness needs
//! from it.
//!
//! The Raft core never calls a store: it emits commands (append, truncate,
//! sync, persist hard state, read) and the node runtime executes them against
//! a `LogStore`, feeding completions back as events. The contract below is
//! what the core's safety argument relies on; `conformance` checks it for
//! every implementation.
//!
//! # Contract
//!
//! - **Consecutive, no hole.** The log holds the entries `[first_index,
//!   last_index]` and nothing else. `append` takes batches that continue the
//!   log exactly at `last_index + 1`, and terms never decrease along the log.
//! - **Durability is explicit.** `append` and `truncate_suffix` make data
//!   visible to `read` at once, but durable only once a later `sync`
//!   completes. `sync` returns the durable last index: every entry up to it
//!   survives a crash, as does every truncation issued before the sync.
//!   Concurrent `sync` calls may share one fsync (group commit).
//! - **A crash loses only unsynced writes.** After a crash and reopen, the
//!   log is some state the log passed through at or after its last completed
//!   sync: every synced entry is present and intact, and nothing that failed
//!   its CRC is ever returned.
//! - **Hard state is durable on return.** `save_hard_state` returns only once
//!   the new term and vote would survive a crash.
//! - **Compaction only drops a prefix.** After `compact_prefix(upto)` the log
//!   still holds every entry after `upto`; it may keep older ones.

use crate::error::Result;
use crate::frame::{Batch, BatchHeader};
use crate::hard_state::HardState;
use crate::types::{Index, LogId, Term};

/// Where the log begins and ends, and how much of it is durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    /// The position just before the first entry held: `(0, 0)` for a log
    /// that was never compacted, otherwise the last compacted entry or the
    /// snapshot point the log was reset to.
    pub prev: LogId,
    /// The last entry held, or `prev` when the log is empty.
    pub last: LogId,
    /// The highest index known durable. Invariant: `durable_index <= last.index`.
    pub durable_index: Index,
    /// Header of the batch holding `last`, if the log is not empty. It gives
    /// the next message id and the last timestamp without a read.
    pub last_header: Option<BatchHeader>,
}

impl LogState {
    /// First index held (`prev.index + 1`); greater than `last.index` when
    /// the log is empty.
    pub fn first_index(&self) -> Index {
        self.prev.index + 1
    }
}

/// One run of consecutive entries sharing a term: entries from
/// `first_index` up to the next run's first index (or the log's end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermRun {
    /// The term.
    pub term: Term,
    /// Index of the run's first entry.
    pub first_index: Index,
}

/// A Raft log. Lives on one shard: its futures are not `Send`, and it may
/// use interior mutability so that a sync can be in flight while appends
/// continue (group commit).
#[allow(async_fn_in_trait)] // single-shard by design; see the type docs
pub trait LogStore {
    /// Bounds and durability now.
    fn state(&self) -> LogState;

    /// The disk log's counters, for metrics (`None`: not a disk log).
    fn disk_stats(&self) -> Option<crate::DiskLogStats> {
        None
    }

    /// The persisted hard state (default when none was ever saved).
    fn hard_state(&self) -> HardState;

    /// The term runs of the entries held, in index order. The core keeps
    /// them in memory so that it can answer "term at index" without IO.
    fn term_runs(&self) -> Vec<TermRun>;

    /// First indexes of the configuration batches held
    /// ([`crate::BatchKind::Config`]), in order: a restarting node reads
    /// them to learn the configuration in force without scanning its log.
    fn config_indexes(&self) -> Vec<Index>;

    /// Appends batches that continue the log at `last.index + 1`. Visible to
    /// `read` on return, durable after the next `sync`.
    async fn append(&self, batches: &[Batch]) -> Result<()>;

    /// Removes every entry with index `>= from`. `from` must lie in
    /// `[first_index, last.index + 1]`. A batch that straddles `from` keeps
    /// its entries before `from`.
    async fn truncate_suffix(&self, from: Index) -> Result<()>;

    /// Makes every append and truncation issued before the call durable and
    /// returns the durable last index.
    async fn sync(&self) -> Result<Index>;

    /// Durably replaces the hard state.
    async fn save_hard_state(&self, hard_state: HardState) -> Result<()>;

    /// Batches covering `from` onwards, in order: the first one contains
    /// `from` (it may begin before it); more follow while their total size
    /// stays within `bytes_max`; at least one is returned. Every batch
    /// returned passed its CRC check.
    async fn read(&self, from: Index, bytes_max: usize) -> Result<Vec<Batch>>;

    /// Allows dropping entries `<= upto` (after a snapshot covers them).
    async fn compact_prefix(&self, upto: Index) -> Result<()>;

    /// Drops the whole log and restarts it empty after `snapshot` (a
    /// follower installing a snapshot its log does not reach). Durable on
    /// return.
    async fn reset(&self, snapshot: LogId) -> Result<()>;

    /// Why the store stopped accepting work, if it did: a failed write or
    /// sync, or damage a read met in entries recovery had accepted. The
    /// node must stop (and, restarted, recover and repair) rather than run
    /// on a log it can no longer read.
    fn failure(&self) -> Option<String> {
        None
    }
}
