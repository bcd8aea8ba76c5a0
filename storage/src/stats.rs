//! Counters of a disk log, for benchmarks, metrics and tuning.

/// What a [`DiskLog`](crate::DiskLog) has done since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskLogStats {
    /// `append` calls that succeeded.
    pub appends: u64,
    /// Batches appended.
    pub batches: u64,
    /// Entries appended.
    pub entries: u64,
    /// Frame bytes appended.
    pub bytes: u64,
    /// Group commits that reached the disk: rounds of writes + fdatasync
    /// started by a `sync` (every waiting `sync` shares one).
    pub syncs: u64,
    /// `sync` calls, including those another call's round answered.
    pub sync_calls: u64,
    /// fdatasync calls on segment files (a round may need more than one
    /// when it crosses a segment or the unsynced window).
    pub fdatasyncs: u64,
    /// Writes made with `O_DSYNC` (write-through), each durable when it
    /// completed: in that mode they take the place of fdatasync calls.
    pub durable_writes: u64,
    /// Bytes written to segment files, alignment padding included.
    pub bytes_written: u64,
}

impl DiskLogStats {
    /// Mean `append` calls per group commit: how well group commit works.
    pub fn appends_per_sync(&self) -> f64 {
        if self.syncs == 0 {
            return 0.0;
        }
        self.appends as f64 / self.syncs as f64
    }

    /// Mean entries made durable per group commit.
    pub fn entries_per_sync(&self) -> f64 {
        if self.syncs == 0 {
            return 0.0;
        }
        self.entries as f64 / self.syncs as f64
    }
}
