//! Retention: how much of the log the node keeps. `storage.retain_bytes`
//! bounds the log's directory (the node takes snapshots so that the core
//! compacts), and no compaction passes an entry whose commit statement this
//! node does not hold.

use ordo_storage::{Index, LogStore};

use super::Group;
use crate::core::Event;

/// How often the log's disk is measured against `storage.retain_bytes`
/// (µs).
const RETAIN_CHECK_US: u64 = 20_000;
/// The log directory's files besides segments (the hard state), with room
/// to spare.
const RETAIN_SLACK_BYTES: u64 = 64 << 10;

impl<S: LogStore + 'static> Group<S> {
    /// `storage.retain_bytes`: every `RETAIN_CHECK_US`, measures the log's
    /// directory (blocks allocated: its segments, the prepared spare and
    /// the hard state). With the bound less three segments and the hard
    /// state as `room`, it takes a snapshot once the segments after the
    /// latest snapshot hold half of `room` (or the whole directory reaches
    /// `room`, whatever the snapshots did). The core compacts to the
    /// snapshot before (`compact_to_previous_snapshot`), so the log keeps
    /// between half and all of `room`: the entries of the last interval
    /// stay for followers and readers a little behind. (A single
    /// threshold on the whole directory took snapshots in pairs, and the
    /// second compacted to the first, a few milliseconds back.)
    pub(super) fn retain(&mut self, now: crate::core::Now) {
        let storage = &self.config.storage;
        if storage.retain_bytes == 0
            || !storage.retain_log
            || storage.kind != "disk"
            || now.mono_us < self.retain_next_us
        {
            return;
        }
        self.retain_next_us = now.mono_us + RETAIN_CHECK_US;
        let room = storage
            .retain_bytes
            .saturating_sub(3 * storage.segment_bytes + RETAIN_SLACK_BYTES);
        let snapshot = self.raft.snapshot_meta().last.index;
        let usage = crate::node::durability::log_usage(&self.config.data_dir.join("log"), snapshot);
        if usage.since >= room / 2 || usage.total >= room {
            tracing::debug!(
                id = self.config.id,
                used = usage.total,
                since_snapshot = usage.since,
                bound = storage.retain_bytes,
                "log at its retention interval: taking a snapshot"
            );
            self.raft.step(now, Event::TakeSnapshot);
        }
    }

    /// How far the log may be compacted toward `upto`: never past an
    /// entry this node holds no commit statement for. Its token could not
    /// be cut again without the entry, and if every node that held the
    /// statement lost it (a crash drops the unsynced tail of the
    /// certificates file), a follower that still holds the entry could
    /// never serve it (found by the runtime simulator). Kept, the entry
    /// lets this node sign the gap when it leads.
    pub(super) fn compaction_point(&self, upto: Index) -> Index {
        if !self.certificates.enabled() {
            return upto;
        }
        let floor = self.log.store().state().first_index();
        // Not past a configuration entry whose link has not formed: after
        // compaction only the chain file would hold it.
        let upto = match self.certificates.first_pending_link() {
            Some(index) => upto.min(index.saturating_sub(1)),
            None => upto,
        };
        match self.certificates.first_gap(floor, upto) {
            Some((from, _)) => upto.min(from.saturating_sub(1)),
            None => upto,
        }
    }
}
