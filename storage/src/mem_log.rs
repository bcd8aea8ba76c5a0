//! An in-memory log with a crash model, for tests, the simulator and the
//! engine-only benchmark.
//!
//! The model: what `sync` covered survives a crash; a crash may keep a
//! prefix of the appends issued after the last sync, or none of them; a
//! truncation not yet synced is undone by a crash (the truncated durable
//! entries reappear), exactly as a real disk may behave.

use std::cell::RefCell;
use std::rc::Rc;

use crate::chunked::ChunkedDeque;
use crate::error::{Result, StorageError};
use crate::frame::Batch;
use crate::hard_state::HardState;
use crate::log_store::{LogState, LogStore, TermRun};
use crate::types::{Index, LogId};

#[derive(Default)]
struct Inner {
    /// The current log `C`: contiguous batches after `prev` (in chunks:
    /// growing never copies, see `chunked.rs`).
    batches: ChunkedDeque<Batch>,
    prev: LogId,
    /// `C[..durable_batches]` is durable and unchanged since it was synced.
    /// Invariant: `durable_batches <= batches.len()`.
    durable_batches: usize,
    /// Durable batches removed by truncations since the last sync. The
    /// durable log is `C[..durable_batches] ++ restore`.
    restore: Vec<Batch>,
    hard_state: HardState,
    appends: u64,
    syncs: u64,
    /// The write sequence number of each batch of `batches` (appends and
    /// the rewritten prefix of a truncated batch take the next number;
    /// after a crash everything is durable and numbered 0). Increasing
    /// along the log. Invariant: `seqs.len() == batches.len()`.
    seqs: std::collections::VecDeque<u64>,
    /// The next write sequence number.
    next_seq: u64,
    /// The sequence number of the truncation that last moved durable
    /// batches into `restore`.
    restore_seq: u64,
}

/// What a sync begun now covers: every write made before it began (see
/// [`MemLog::sync_begin`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncPoint {
    seq: u64,
}

impl Inner {
    fn last(&self) -> LogId {
        self.batches
            .back()
            .map_or(self.prev, |b| b.header().last_log_id())
    }

    fn durable_index(&self) -> Index {
        match self.durable_batches {
            0 => self.prev.index,
            n => self.batches[n - 1].last_index(),
        }
    }

    /// Position of the batch containing `index`, which must be held.
    fn position(&self, index: Index) -> usize {
        self.batches.partition_point(|b| b.last_index() < index)
    }

    fn out_of_range(&self, index: Index) -> StorageError {
        StorageError::OutOfRange {
            index,
            first_index: self.prev.index + 1,
            last_index: self.last().index,
        }
    }

    fn check_invariants(&self) {
        debug_assert!(self.durable_batches <= self.batches.len());
        debug_assert_eq!(self.seqs.len(), self.batches.len());
        let mut expected = self.prev.index + 1;
        for batch in self.batches.iter() {
            debug_assert_eq!(batch.first_index(), expected);
            expected = batch.last_index() + 1;
        }
    }
}

/// An in-memory [`LogStore`]. Clones share the same "disk", so a harness
/// can keep one handle across a simulated crash and reopen.
#[derive(Clone, Default)]
pub struct MemLog {
    inner: Rc<RefCell<Inner>>,
}

impl MemLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loses what a crash loses: the log becomes its durable state plus the
    /// first `keep_unsynced` batches appended since the last sync (a real
    /// disk may have written some of them). If a truncation is pending, all
    /// unsynced writes are lost and the truncated durable entries return.
    pub fn crash(&self, keep_unsynced: usize) {
        let mut inner = self.inner.borrow_mut();
        if inner.restore.is_empty() {
            let keep = (inner.durable_batches + keep_unsynced).min(inner.batches.len());
            inner.batches.truncate(keep);
        } else {
            let durable = inner.durable_batches;
            inner.batches.truncate(durable);
            let restore = std::mem::take(&mut inner.restore);
            inner.batches.extend(restore);
        }
        inner.durable_batches = inner.batches.len();
        let len = inner.batches.len();
        inner.seqs = std::iter::repeat_n(0, len).collect();
        inner.check_invariants();
    }

    /// Counters: `(appends, syncs)`.
    pub fn counters(&self) -> (u64, u64) {
        let inner = self.inner.borrow();
        (inner.appends, inner.syncs)
    }

    /// Synchronous [`LogStore::state`].
    pub fn state_now(&self) -> LogState {
        let inner = self.inner.borrow();
        LogState {
            prev: inner.prev,
            last: inner.last(),
            durable_index: inner.durable_index(),
            last_header: inner.batches.back().map(|b| *b.header()),
        }
    }

    /// Synchronous [`LogStore::append`].
    pub fn append_now(&self, batches: &[Batch]) -> Result<()> {
        let mut inner = self.inner.borrow_mut();
        for batch in batches {
            let last = inner.last();
            if batch.first_index() != last.index + 1 {
                return Err(StorageError::NonContiguous {
                    last_index: last.index,
                    first_index: batch.first_index(),
                });
            }
            if batch.term() < last.term {
                return Err(StorageError::TermRegression {
                    index: batch.first_index(),
                    term: batch.term(),
                    prev_term: last.term,
                });
            }
            inner.batches.push_back(batch.clone());
            let seq = inner.next_seq;
            inner.seqs.push_back(seq);
            inner.next_seq += 1;
            inner.appends += 1;
        }
        Ok(())
    }

    /// Synchronous [`LogStore::truncate_suffix`].
    pub fn truncate_suffix_now(&self, from: Index) -> Result<()> {
        let mut inner = self.inner.borrow_mut();
        let last = inner.last();
        if from <= inner.prev.index || from > last.index + 1 {
            return Err(inner.out_of_range(from));
        }
        if from == last.index + 1 {
            return Ok(());
        }
        let at = inner.position(from);
        let truncation = inner.next_seq;
        inner.next_seq += 1;
        if at < inner.durable_batches {
            let durable = inner.durable_batches;
            let mut removed: Vec<Batch> = (at..durable).map(|i| inner.batches[i].clone()).collect();
            removed.append(&mut inner.restore);
            inner.restore = removed;
            inner.durable_batches = at;
            inner.restore_seq = truncation;
        }
        let straddling = inner.batches[at].clone();
        inner.batches.truncate(at);
        inner.seqs.truncate(at);
        if straddling.first_index() < from {
            inner
                .batches
                .push_back(straddling.slice(straddling.first_index(), from - 1));
            let seq = inner.next_seq;
            inner.seqs.push_back(seq);
            inner.next_seq += 1;
        }
        inner.check_invariants();
        Ok(())
    }

    /// Begins a sync that completes later ([`MemLog::sync_end`]), as the
    /// disk log's does: it covers the writes made before it began, not
    /// those made while it is in flight.
    pub fn sync_begin(&self) -> SyncPoint {
        SyncPoint {
            seq: self.inner.borrow().next_seq,
        }
    }

    /// Completes the sync begun at `point`; returns the durable last
    /// entry. Batches written before `point` become durable, and so does a
    /// truncation made before it; a truncation of durable batches made
    /// after it stays pending (a crash still undoes it), and then nothing
    /// new becomes durable: the durable log is always a prefix of the log
    /// followed by what such a truncation removed.
    pub fn sync_end(&self, point: SyncPoint) -> LogId {
        let mut inner = self.inner.borrow_mut();
        if inner.restore.is_empty() || inner.restore_seq < point.seq {
            inner.restore.clear();
            let covered = inner.seqs.iter().take_while(|&&s| s < point.seq).count();
            inner.durable_batches = inner.durable_batches.max(covered);
            inner.syncs += 1;
        }
        inner.check_invariants();
        match inner.durable_batches {
            0 => inner.prev,
            n => inner.batches[n - 1].header().last_log_id(),
        }
    }

    /// Synchronous [`LogStore::sync`].
    pub fn sync_now(&self) -> Result<Index> {
        let mut inner = self.inner.borrow_mut();
        inner.durable_batches = inner.batches.len();
        inner.restore.clear();
        inner.syncs += 1;
        Ok(inner.durable_index())
    }

    /// Synchronous [`LogStore::save_hard_state`].
    pub fn save_hard_state_now(&self, hard_state: HardState) {
        self.inner.borrow_mut().hard_state = hard_state;
    }

    /// Synchronous [`LogStore::read`].
    pub fn read_now(&self, from: Index, bytes_max: usize) -> Result<Vec<Batch>> {
        let inner = self.inner.borrow();
        if from <= inner.prev.index || from > inner.last().index {
            return Err(inner.out_of_range(from));
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for batch in inner.batches.iter_from(inner.position(from)) {
            if !out.is_empty() && bytes + batch.len_bytes() > bytes_max {
                break;
            }
            bytes += batch.len_bytes();
            out.push(batch.clone());
        }
        Ok(out)
    }

    /// Synchronous [`LogStore::compact_prefix`]: drops whole batches that
    /// end at or before `upto`.
    pub fn compact_prefix_now(&self, upto: Index) {
        let mut inner = self.inner.borrow_mut();
        while let Some(front) = inner.batches.front() {
            if front.last_index() > upto {
                break;
            }
            inner.prev = front.header().last_log_id();
            inner.batches.pop_front();
            inner.seqs.pop_front();
            inner.durable_batches = inner.durable_batches.saturating_sub(1);
        }
        // Batches a crash would bring back (a truncation not yet synced)
        // that lie at or before the new start are compacted too: a crash
        // must not restore entries before `prev` (simulator seed 75950).
        let prev = inner.prev.index;
        let restore = std::mem::take(&mut inner.restore);
        inner.restore = restore
            .into_iter()
            .filter(|b| b.last_index() > prev)
            .map(|b| {
                if b.first_index() > prev {
                    b
                } else {
                    b.slice(prev + 1, b.last_index())
                }
            })
            .collect();
        inner.check_invariants();
    }

    /// Synchronous [`LogStore::reset`].
    pub fn reset_now(&self, snapshot: LogId) {
        let mut inner = self.inner.borrow_mut();
        inner.batches.clear();
        inner.seqs.clear();
        inner.restore.clear();
        inner.durable_batches = 0;
        inner.prev = snapshot;
    }

    /// Synchronous [`LogStore::config_indexes`].
    pub fn config_indexes_now(&self) -> Vec<Index> {
        self.inner
            .borrow()
            .batches
            .iter()
            .filter(|b| b.kind() == crate::frame::BatchKind::Config)
            .map(|b| b.first_index())
            .collect()
    }

    /// Synchronous [`LogStore::term_runs`].
    pub fn term_runs_now(&self) -> Vec<TermRun> {
        term_runs_of(
            self.inner
                .borrow()
                .batches
                .iter()
                .map(|b| (b.term(), b.first_index())),
        )
    }
}

/// Collapses `(term, first_index)` of consecutive batches into runs.
pub fn term_runs_of(batches: impl Iterator<Item = (u64, Index)>) -> Vec<TermRun> {
    let mut runs: Vec<TermRun> = Vec::new();
    for (term, first_index) in batches {
        if runs.last().is_none_or(|run| run.term != term) {
            runs.push(TermRun { term, first_index });
        }
    }
    runs
}

impl LogStore for MemLog {
    fn state(&self) -> LogState {
        self.state_now()
    }

    fn hard_state(&self) -> HardState {
        self.inner.borrow().hard_state
    }

    fn term_runs(&self) -> Vec<TermRun> {
        self.term_runs_now()
    }

    fn config_indexes(&self) -> Vec<Index> {
        self.config_indexes_now()
    }

    async fn append(&self, batches: &[Batch]) -> Result<()> {
        self.append_now(batches)
    }

    async fn truncate_suffix(&self, from: Index) -> Result<()> {
        self.truncate_suffix_now(from)
    }

    async fn sync(&self) -> Result<Index> {
        self.sync_now()
    }

    async fn save_hard_state(&self, hard_state: HardState) -> Result<()> {
        self.save_hard_state_now(hard_state);
        Ok(())
    }

    async fn read(&self, from: Index, bytes_max: usize) -> Result<Vec<Batch>> {
        self.read_now(from, bytes_max)
    }

    async fn compact_prefix(&self, upto: Index) -> Result<()> {
        self.compact_prefix_now(upto);
        Ok(())
    }

    async fn reset(&self, snapshot: LogId) -> Result<()> {
        self.reset_now(snapshot);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{self, Harness};

    struct MemHarness {
        disk: MemLog,
        keep_unsynced: usize,
    }

    impl Harness for MemHarness {
        type Store = MemLog;

        async fn open(&mut self) -> MemLog {
            self.disk.clone()
        }

        async fn crash(&mut self, store: MemLog) {
            // Alternate between losing every unsynced write and keeping some.
            self.keep_unsynced = (self.keep_unsynced + 1) % 3;
            store.crash(self.keep_unsynced);
        }
    }

    #[test]
    fn conformance() {
        pollster::block_on(conformance::run_all(|| MemHarness {
            disk: MemLog::new(),
            keep_unsynced: 0,
        }));
    }

    #[test]
    fn crash_undoes_unsynced_truncation() {
        let log = MemLog::new();
        let batches = conformance::batches(1, 1, &[3, 3]);
        log.append_now(&batches).unwrap();
        log.sync_now().unwrap();
        log.truncate_suffix_now(2).unwrap();
        assert_eq!(log.state_now().last.index, 1);
        log.crash(0);
        assert_eq!(log.state_now().last.index, 6);
        assert_eq!(log.read_now(1, usize::MAX).unwrap(), batches);
    }
}

#[cfg(test)]
mod sync_point_tests {
    use super::*;
    use crate::conformance::batch;

    #[test]
    fn a_sync_covers_only_what_was_written_before_it_began() {
        let log = MemLog::new();
        log.append_now(&[batch(1, 1, 2)]).unwrap();
        let point = log.sync_begin();
        log.append_now(&[batch(1, 3, 2)]).unwrap();
        assert_eq!(log.sync_end(point), LogId::new(1, 2));
        log.crash(0);
        assert_eq!(log.state_now().last, LogId::new(1, 2));
    }

    #[test]
    fn a_truncation_of_durable_batches_during_a_sync_stays_pending() {
        let log = MemLog::new();
        log.append_now(&[batch(1, 1, 2), batch(1, 3, 2)]).unwrap();
        log.sync_now().unwrap();
        let point = log.sync_begin();
        // A new leader's entries replace 3..=4 while the sync is in flight.
        log.truncate_suffix_now(3).unwrap();
        log.append_now(&[batch(2, 3, 1)]).unwrap();
        assert_eq!(log.sync_end(point), LogId::new(1, 2));
        // The truncation was not covered: a crash undoes it.
        log.crash(0);
        assert_eq!(log.state_now().last, LogId::new(1, 4));
        // A sync begun after a truncation covers it.
        log.truncate_suffix_now(3).unwrap();
        log.append_now(&[batch(2, 3, 1)]).unwrap();
        let point = log.sync_begin();
        assert_eq!(log.sync_end(point), LogId::new(2, 3));
        log.crash(0);
        assert_eq!(log.state_now().last, LogId::new(2, 3));
    }
}
