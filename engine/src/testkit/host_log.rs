//! The log under a [`Host`](super::Host): the in-memory log with its crash
//! model, or the real disk log over a [`SimDisk`].
//!
//! The disk log is the node's own code (segments, group commit, the
//! recovery scan, the hard-state file); over a simulated disk every IO
//! completes when first polled, so its futures are driven to completion
//! here without an executor ([`ready`]).

use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use ordo_storage::disk::SimDisk;
use ordo_storage::{
    Batch, DiskLog, DiskLogConfig, HardState, Index, LogId, LogState, LogStore, MemLog,
    RecoveryReport, Result, SyncPoint, TermRun,
};

/// The directory a simulated node's log lives in, on its own disk.
pub const SIM_LOG_DIR: &str = "/sim/data/log";

/// Polls `future` to completion with no executor. Every IO of a
/// [`SimDisk`] completes at once, and the disk log yields only to let
/// other tasks run (none here), so a handful of polls suffice; more means
/// the log waits for something that will never come.
pub fn ready<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..10_000 {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
    }
    panic!("a disk log operation over the simulated disk did not complete");
}

/// The real disk log on a simulated disk.
pub struct SimDiskLog {
    /// The disk: the simulator crashes, corrupts and wipes it.
    pub disk: SimDisk,
    /// The log, reopened after every crash.
    pub log: DiskLog,
}

impl SimDiskLog {
    /// The knobs of a simulated node's log: small segments and window, so
    /// that a run rolls, compacts and tears segments.
    pub fn config() -> DiskLogConfig {
        DiskLogConfig {
            segment_bytes_max: 64 << 10,
            write_bytes_max: 8 << 10,
            cache_bytes_max: 32 << 10,
            unflushed_bytes_max: 32 << 10,
            zero_fill_segments: false,
            ..DiskLogConfig::default()
        }
    }

    /// Opens the log on `disk`.
    pub fn open(disk: SimDisk) -> Result<Self> {
        let log = ready(DiskLog::open_on(
            Rc::new(disk.clone()),
            SIM_LOG_DIR,
            Self::config(),
        ))?;
        Ok(Self { disk, log })
    }
}

/// Where a sync began.
#[derive(Clone, Copy, Debug)]
pub enum HostSyncPoint {
    /// The in-memory log's point.
    Memory(SyncPoint),
    /// The disk log's last entry when the sync began.
    Disk(LogId),
}

/// The log of one simulated node.
pub enum HostLog {
    /// In memory, with [`MemLog`]'s crash model.
    Memory(MemLog),
    /// The disk log on a simulated disk (boxed: it is large, the
    /// in-memory log a pointer).
    Disk(Box<SimDiskLog>),
}

impl HostLog {
    /// Bounds and durability.
    pub fn state_now(&self) -> LogState {
        match self {
            Self::Memory(log) => log.state_now(),
            Self::Disk(disk) => disk.log.state(),
        }
    }

    /// Batches from `from`, as [`LogStore::read`].
    pub fn read_now(&self, from: Index, bytes_max: usize) -> Result<Vec<Batch>> {
        match self {
            Self::Memory(log) => log.read_now(from, bytes_max),
            Self::Disk(disk) => ready(disk.log.read(from, bytes_max)),
        }
    }

    /// The term runs.
    pub fn term_runs_now(&self) -> Vec<TermRun> {
        match self {
            Self::Memory(log) => log.term_runs_now(),
            Self::Disk(disk) => disk.log.term_runs(),
        }
    }

    /// The saved hard state.
    pub fn hard_state(&self) -> HardState {
        match self {
            Self::Memory(log) => LogStore::hard_state(log),
            Self::Disk(disk) => disk.log.hard_state(),
        }
    }

    /// Appends; durable after a sync.
    pub fn append_now(&self, batches: &[Batch]) -> Result<()> {
        match self {
            Self::Memory(log) => log.append_now(batches),
            Self::Disk(disk) => disk.log.append_now(batches),
        }
    }

    /// Removes entries from `from` on.
    pub fn truncate_suffix_now(&self, from: Index) -> Result<()> {
        match self {
            Self::Memory(log) => log.truncate_suffix_now(from),
            Self::Disk(disk) => ready(disk.log.truncate_suffix(from)),
        }
    }

    /// Drops entries up to `upto` (maybe fewer).
    pub fn compact_prefix_now(&self, upto: Index) -> Result<()> {
        match self {
            Self::Memory(log) => {
                log.compact_prefix_now(upto);
                Ok(())
            }
            Self::Disk(disk) => ready(disk.log.compact_prefix(upto)),
        }
    }

    /// Restarts the log empty after `snapshot`, durably.
    pub fn reset_now(&self, snapshot: LogId) -> Result<()> {
        match self {
            Self::Memory(log) => {
                log.reset_now(snapshot);
                Ok(())
            }
            Self::Disk(disk) => ready(disk.log.reset(snapshot)),
        }
    }

    /// Durably saves the hard state.
    pub fn save_hard_state_now(&self, hard_state: HardState) -> Result<()> {
        match self {
            Self::Memory(log) => {
                log.save_hard_state_now(hard_state);
                Ok(())
            }
            Self::Disk(disk) => ready(disk.log.save_hard_state(hard_state)),
        }
    }

    /// Syncs everything now; the durable last entry.
    pub fn sync_now(&self) -> Result<LogId> {
        match self {
            Self::Memory(log) => {
                log.sync_now()?;
                Ok(log.state_now().last)
            }
            Self::Disk(disk) => {
                let last = disk.log.state().last;
                ready(disk.log.sync())?;
                Ok(last)
            }
        }
    }

    /// Begins a sync that completes at [`HostLog::sync_end`].
    pub fn sync_begin(&self) -> HostSyncPoint {
        match self {
            Self::Memory(log) => HostSyncPoint::Memory(log.sync_begin()),
            Self::Disk(disk) => HostSyncPoint::Disk(disk.log.state().last),
        }
    }

    /// Completes the sync begun at `point`: the last entry it made
    /// durable. The disk log's sync runs now and covers every write so
    /// far; it reports the last entry as it stood when the sync began,
    /// as the node runtime does (`node/log_io.rs`).
    pub fn sync_end(&self, point: HostSyncPoint) -> Result<LogId> {
        match (self, point) {
            (Self::Memory(log), HostSyncPoint::Memory(point)) => Ok(log.sync_end(point)),
            (Self::Disk(disk), HostSyncPoint::Disk(last)) => {
                ready(disk.log.sync())?;
                Ok(last)
            }
            _ => panic!("a sync point from another log"),
        }
    }

    /// What the disk log's recovery found when it last opened (nothing
    /// for the in-memory log).
    pub fn recovery(&self) -> RecoveryReport {
        match self {
            Self::Memory(_) => RecoveryReport::default(),
            Self::Disk(disk) => disk.log.recovery().clone(),
        }
    }
}

impl LogStore for HostLog {
    fn state(&self) -> LogState {
        self.state_now()
    }

    fn hard_state(&self) -> HardState {
        HostLog::hard_state(self)
    }

    fn term_runs(&self) -> Vec<TermRun> {
        self.term_runs_now()
    }

    fn config_indexes(&self) -> Vec<Index> {
        match self {
            Self::Memory(log) => log.config_indexes_now(),
            Self::Disk(disk) => disk.log.config_indexes(),
        }
    }

    async fn append(&self, batches: &[Batch]) -> Result<()> {
        self.append_now(batches)
    }

    async fn truncate_suffix(&self, from: Index) -> Result<()> {
        self.truncate_suffix_now(from)
    }

    async fn sync(&self) -> Result<Index> {
        Ok(self.sync_now()?.index)
    }

    async fn save_hard_state(&self, hard_state: HardState) -> Result<()> {
        self.save_hard_state_now(hard_state)
    }

    async fn read(&self, from: Index, bytes_max: usize) -> Result<Vec<Batch>> {
        self.read_now(from, bytes_max)
    }

    async fn compact_prefix(&self, upto: Index) -> Result<()> {
        self.compact_prefix_now(upto)
    }

    async fn reset(&self, snapshot: LogId) -> Result<()> {
        self.reset_now(snapshot)
    }
}
