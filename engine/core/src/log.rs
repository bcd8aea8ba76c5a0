//! The core's view of its log: bounds, terms, commit and apply cursors, and a
//! bounded cache of recent batches. The entries themselves live in the
//! [`ordo_storage::LogStore`] the runtime drives; this knows enough to run
//! the protocol without IO.

use std::collections::VecDeque;

use ordo_net::SnapshotMeta;
use ordo_storage::{
    Batch, BatchHeader, BatchKind, Index, LogId, MessageId, Term, TermRun, TimestampUs,
};

/// Where the log's ids and timestamps stand after an entry: the id the
/// next user entry takes (user entries' ids are dense from 1; internal
/// entries take none) and the timestamp the next entry's must exceed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogTail {
    /// The id the next user entry takes.
    pub next_id: MessageId,
    /// The last entry's timestamp.
    pub last_ts: TimestampUs,
}

impl LogTail {
    /// The tail of a log that never held an entry.
    pub const START: Self = Self {
        next_id: 1,
        last_ts: 0,
    };

    /// The tail after the entry at `index` of the batch `header` heads.
    pub fn at(header: &BatchHeader, index: Index) -> Self {
        debug_assert!(header.contains(index), "{index} not in {header:?}");
        let offset = index - header.first_index;
        let next_id = match header.kind {
            BatchKind::Entries => header.first_id + offset + 1,
            BatchKind::Noop | BatchKind::Config => header.first_id,
        };
        Self {
            next_id,
            last_ts: header.first_ts + offset,
        }
    }

    /// The tail after the last entry of the batch `header` heads.
    pub fn after(header: &BatchHeader) -> Self {
        Self {
            next_id: header.next_id(),
            last_ts: header.last_ts(),
        }
    }

    /// The tail after the last entry a snapshot covers.
    pub fn after_snapshot(meta: &SnapshotMeta) -> Self {
        Self {
            next_id: meta.last_id + 1,
            last_ts: meta.last_ts,
        }
    }

    /// The id of the last user entry before the tail (`0`: none).
    pub fn last_id(&self) -> MessageId {
        self.next_id - 1
    }
}

impl Default for LogTail {
    fn default() -> Self {
        Self::START
    }
}

/// Everything the core needs from storage at start.
#[derive(Clone, Debug, Default)]
pub struct RestoredLog {
    /// The entry before the first one held (compaction or snapshot point).
    pub prev: LogId,
    /// The last entry held (`prev` if none).
    pub last: LogId,
    /// Term runs of the entries held.
    pub term_runs: Vec<TermRun>,
    /// The tail after the last entry: from the last batch's header, or the
    /// snapshot when the log is empty.
    pub tail: LogTail,
    /// The tail after `prev`: from the snapshot (or [`LogTail::START`] for a
    /// log that was never compacted).
    pub prev_tail: LogTail,
    /// The last batch, if any, to seed the cache.
    pub last_batch: Option<Batch>,
    /// A commit index known durable at shutdown (hard state hint).
    pub commit: Index,
    /// The index the state machine's snapshot covers (apply resumes after).
    pub applied: Index,
}

/// The protocol's view of the log.
#[derive(Debug)]
pub struct RaftLog {
    /// The entry before the first entry held.
    prev: LogId,
    /// Term runs of `(prev.index, last.index]`.
    /// Invariant: strictly increasing in `first_index` and `term`; the first
    /// run starts at `prev.index + 1` when the log is not empty.
    runs: Vec<TermRun>,
    last: LogId,
    /// The tail after `prev`.
    tail_at_prev: LogTail,
    /// The tail after `last`; `None` when a truncation went below what the
    /// cache knows and the runtime has not yet read it back.
    tail: Option<LogTail>,
    /// Recent batches: a contiguous suffix of the log ending at `last`.
    /// Invariant: if non-empty, `cache.back().last_index() == last.index`.
    cache: VecDeque<Batch>,
    cache_bytes: usize,
    cache_bytes_max: usize,
    /// Highest index known durable in this node's log.
    /// Invariant: `durable <= last.index`.
    durable: Index,
    /// Highest index known committed. Invariant: `commit <= last.index`
    /// except transiently on a restarted node whose hint exceeds its log.
    commit: Index,
    /// Highest index handed to the state machine. Invariant: `applied <= commit`.
    applied: Index,
}

impl RaftLog {
    /// The log as storage left it.
    pub fn new(restored: RestoredLog, cache_bytes_max: usize) -> Self {
        let mut log = Self {
            prev: restored.prev,
            runs: restored.term_runs,
            last: restored.last,
            tail_at_prev: restored.prev_tail,
            tail: Some(restored.tail),
            cache: VecDeque::new(),
            cache_bytes: 0,
            cache_bytes_max,
            durable: restored.last.index,
            // A snapshot covers only applied, hence committed, entries: the
            // commit index is at least the snapshot's, even when the hard
            // state's commit hint is older (it is written with term and
            // vote changes only). Lowering `applied` to a stale hint would
            // apply the entries after the snapshot a second time to a state
            // machine that already holds them (simulator seed 9967: a crash
            // between taking a snapshot and compacting the log).
            commit: restored
                .commit
                .max(restored.prev.index)
                .max(restored.applied)
                .min(restored.last.index.max(restored.prev.index)),
            applied: restored.applied.max(restored.prev.index),
        };
        log.applied = log.applied.min(log.commit);
        if let Some(batch) = restored.last_batch
            && batch.last_index() == log.last.index
            && batch.first_index() > log.prev.index
        {
            log.cache_bytes = batch.len_bytes();
            log.cache.push_back(batch);
        }
        log.check();
        log
    }

    /// Checks the invariants written on the fields.
    pub fn check(&self) {
        assert!(
            self.durable <= self.last.index,
            "durable {} > last {:?}",
            self.durable,
            self.last
        );
        assert!(
            self.applied <= self.commit,
            "applied {} > commit {}",
            self.applied,
            self.commit
        );
        assert!(self.commit <= self.last.index.max(self.prev.index));
        assert!(self.prev.index <= self.last.index);
        if let Some(first) = self.runs.first() {
            assert_eq!(
                first.first_index,
                self.prev.index + 1,
                "runs {:?} prev {:?}",
                self.runs,
                self.prev
            );
        } else {
            assert_eq!(self.last, self.prev);
        }
        for pair in self.runs.windows(2) {
            assert!(pair[0].first_index < pair[1].first_index && pair[0].term < pair[1].term);
        }
        if let Some(back) = self.cache.back() {
            assert_eq!(back.last_index(), self.last.index);
            assert_eq!(back.term(), self.last.term);
        }
        assert_eq!(
            self.runs.last().map_or(self.prev.term, |r| r.term),
            self.last.term
        );
    }

    /// The entry before the first entry held.
    pub fn prev(&self) -> LogId {
        self.prev
    }

    /// First index held.
    pub fn first_index(&self) -> Index {
        self.prev.index + 1
    }

    /// The last entry.
    pub fn last(&self) -> LogId {
        self.last
    }

    /// Last index.
    pub fn last_index(&self) -> Index {
        self.last.index
    }

    /// Highest durable index.
    pub fn durable(&self) -> Index {
        self.durable
    }

    /// Commit index.
    pub fn commit(&self) -> Index {
        self.commit
    }

    /// Highest index handed to the state machine.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// The tail after the last entry, if known.
    pub fn tail(&self) -> Option<LogTail> {
        self.tail
    }

    /// Learns the tail from a batch read back from storage.
    pub fn set_tail_from(&mut self, batch: &Batch) {
        if batch.header().contains(self.last.index) && batch.term() == self.last.term {
            self.tail = Some(LogTail::at(batch.header(), self.last.index));
        }
    }

    /// The term of the entry at `index`, if the log knows it (`prev` counts).
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.prev.index {
            return Some(self.prev.term);
        }
        if index < self.prev.index || index > self.last.index {
            return None;
        }
        let at = self.runs.partition_point(|run| run.first_index <= index);
        Some(self.runs[at - 1].term)
    }

    /// Whether the log holds `id`.
    pub fn matches(&self, id: LogId) -> bool {
        self.term_at(id.index) == Some(id.term)
    }

    /// Whether a log ending at `last` is at least as up-to-date as this one
    /// (Raft §5.4.1).
    pub fn is_up_to_date(&self, last: LogId) -> bool {
        last.term > self.last.term || (last.term == self.last.term && last.index >= self.last.index)
    }

    /// The largest index `<= index` whose term is `<= term`, or `prev.index`
    /// (the fast-backtracking probe of etcd raft).
    pub fn find_conflict_by_term(&self, index: Index, term: Term) -> Index {
        let index = index.min(self.last.index);
        if index <= self.prev.index {
            return index;
        }
        let mut at = self.runs.partition_point(|run| run.first_index <= index);
        while at > 0 {
            let run = self.runs[at - 1];
            if run.term <= term {
                let run_end = self
                    .runs
                    .get(at)
                    .map_or(self.last.index, |next| next.first_index - 1);
                return run_end.min(index);
            }
            at -= 1;
        }
        self.prev.index
    }

    /// The first index in `[from, to]` (all held) whose term is not `term`,
    /// if any. Terms never decrease along a log, so the indexes holding
    /// `term` form one run.
    pub fn first_term_mismatch(&self, from: Index, to: Index, term: Term) -> Option<Index> {
        if self.term_at(from) != Some(term) {
            return Some(from);
        }
        let at = self.runs.partition_point(|run| run.first_index <= from);
        let run_end = self
            .runs
            .get(at)
            .map_or(self.last.index, |next| next.first_index - 1);
        (run_end < to).then_some(run_end + 1)
    }

    /// Appends a batch continuing the log.
    pub fn append(&mut self, batch: Batch) {
        assert_eq!(
            batch.first_index(),
            self.last.index + 1,
            "non-contiguous append {batch:?}"
        );
        assert!(
            batch.term() >= self.last.term,
            "term regression {batch:?} after {:?}",
            self.last
        );
        if batch.term() != self.last.term || self.runs.is_empty() {
            self.runs.push(TermRun {
                term: batch.term(),
                first_index: batch.first_index(),
            });
        }
        let header = *batch.header();
        self.last = header.last_log_id();
        self.tail = Some(LogTail::after(&header));
        self.cache_bytes += batch.len_bytes();
        self.cache.push_back(batch);
        self.evict();
    }

    /// Removes entries from `from` on. Never below the commit index: that
    /// would lose a committed entry, a bug.
    pub fn truncate(&mut self, from: Index) {
        assert!(
            from > self.commit,
            "truncating committed entries: from {from}, commit {}",
            self.commit
        );
        assert!(from > self.prev.index && from <= self.last.index);
        let keep_term = self.term_at(from - 1).expect("from - 1 is held or prev");
        self.runs.retain(|run| run.first_index < from);
        self.last = LogId::new(keep_term, from - 1);
        self.durable = self.durable.min(from - 1);
        while let Some(back) = self.cache.back() {
            if back.first_index() >= from {
                self.cache_bytes -= back.len_bytes();
                self.cache.pop_back();
            } else {
                break;
            }
        }
        // The tail (next id, last ts) is known again only if the cache still
        // holds the batch with the new last entry; otherwise the caller reads
        // it back.
        self.tail = if self.last == self.prev {
            Some(self.tail_at_prev)
        } else {
            None
        };
        if let Some(back) = self.cache.pop_back() {
            self.cache_bytes -= back.len_bytes();
            let kept = if back.last_index() >= from {
                back.slice(back.first_index(), from - 1)
            } else {
                back
            };
            self.set_tail_from(&kept);
            self.cache_bytes += kept.len_bytes();
            self.cache.push_back(kept);
        }
    }

    /// Sets the tail when the log is empty after `prev` (snapshot point).
    pub fn set_tail(&mut self, tail: LogTail) {
        self.tail = Some(tail);
    }

    /// A completed sync covered `last`. Ignored when the log changed under
    /// it (the entry at that index is no longer the one synced).
    pub fn synced(&mut self, last: LogId) -> bool {
        if last.index > self.durable && self.matches(last) {
            self.durable = last.index.min(self.last.index);
            return true;
        }
        false
    }

    /// Advances the commit index.
    pub fn commit_to(&mut self, index: Index) -> bool {
        if index > self.commit {
            assert!(
                index <= self.last.index,
                "commit {index} beyond last {:?}",
                self.last
            );
            self.commit = index;
            return true;
        }
        false
    }

    /// Records that entries up to `index` were handed to the state machine.
    pub fn applied_to(&mut self, index: Index) {
        assert!(index <= self.commit && index >= self.applied);
        self.applied = index;
        self.evict();
    }

    /// Batches from the cache starting with the one that holds `from`, the
    /// first sliced to begin exactly at `from`, within `bytes_max` (at least
    /// one batch). `None` when the cache does not reach back to `from`.
    pub fn cached_from(&self, from: Index, bytes_max: usize) -> Option<Vec<Batch>> {
        let front = self.cache.front()?;
        if from < front.first_index() || from > self.last.index {
            return None;
        }
        let at = self.cache_position(from);
        let mut out = Vec::new();
        let mut bytes = 0;
        for batch in self.cache.range(at..) {
            if !out.is_empty() && bytes + batch.len_bytes() > bytes_max {
                break;
            }
            bytes += batch.len_bytes();
            out.push(batch.clone());
        }
        if out[0].first_index() < from {
            out[0] = out[0].slice(from, out[0].last_index());
        }
        Some(out)
    }

    /// The position of the first cached batch that ends at or after
    /// `from`. Replication and applying read the newest batches, so this
    /// looks back from the tail first: a binary search over a large cache
    /// touches a cold batch header per probe (it was ~10 % of the
    /// engine-only CPU at C = 1).
    fn cache_position(&self, from: Index) -> usize {
        const TAIL_STEPS: usize = 8;
        let mut at = self.cache.len();
        for _ in 0..TAIL_STEPS {
            if at == 0 || self.cache[at - 1].last_index() < from {
                return at;
            }
            at -= 1;
        }
        self.cache.partition_point(|b| b.last_index() < from)
    }

    /// Batches holding `[from, to]` from the cache without re-encoding, or
    /// `None` if the cache does not reach back to `from`.
    pub fn cached_range(&self, from: Index, to: Index) -> Option<Vec<Batch>> {
        let front = self.cache.front()?;
        if from < front.first_index() || to > self.last.index || from > to {
            return None;
        }
        let at = self.cache_position(from);
        Some(
            self.cache
                .range(at..)
                .take_while(|b| b.first_index() <= to)
                .cloned()
                .collect(),
        )
    }

    /// First index the cache holds, if any.
    pub fn cache_first_index(&self) -> Option<Index> {
        self.cache.front().map(Batch::first_index)
    }

    /// Bytes the cache holds.
    pub fn cache_bytes(&self) -> usize {
        self.cache_bytes
    }

    /// Drops cached batches that are applied, oldest first, while over budget.
    /// The last batch always stays: it gives the tail.
    fn evict(&mut self) {
        while self.cache_bytes > self.cache_bytes_max && self.cache.len() > 1 {
            let front = self.cache.front().expect("len > 1");
            if front.last_index() > self.applied {
                break;
            }
            self.cache_bytes -= front.len_bytes();
            self.cache.pop_front();
        }
    }

    /// Entries up to `upto` are covered by a snapshot; forget them.
    /// `tail` is the tail after `upto`, from the snapshot.
    pub fn compact(&mut self, upto: LogId, tail: LogTail) {
        if upto.index <= self.prev.index || upto.index > self.applied {
            return;
        }
        debug_assert!(self.matches(upto));
        let next_term = self.term_at(upto.index + 1);
        self.prev = upto;
        self.tail_at_prev = tail;
        self.runs.retain(|run| run.first_index > upto.index);
        if let Some(term) = next_term
            && self
                .runs
                .first()
                .is_none_or(|run| run.first_index != upto.index + 1)
        {
            self.runs.insert(
                0,
                TermRun {
                    term,
                    first_index: upto.index + 1,
                },
            );
        }
        // Whole batches at or before `upto` leave the cache; a straddling
        // batch is sliced so that the cache never reaches below `prev`.
        while let Some(front) = self.cache.front() {
            if front.last_index() <= upto.index {
                self.cache_bytes -= front.len_bytes();
                self.cache.pop_front();
            } else {
                break;
            }
        }
        if let Some(front) = self.cache.front()
            && front.first_index() <= upto.index
        {
            let kept = front.slice(upto.index + 1, front.last_index());
            self.cache_bytes = self.cache_bytes - front.len_bytes() + kept.len_bytes();
            self.cache[0] = kept;
        }
        self.check();
    }

    /// Replaces the whole log by a snapshot point (a follower installing a
    /// snapshot).
    pub fn reset(&mut self, point: LogId, tail: LogTail) {
        self.prev = point;
        self.last = point;
        self.runs.clear();
        self.cache.clear();
        self.cache_bytes = 0;
        self.tail_at_prev = tail;
        self.tail = Some(tail);
        self.durable = point.index;
        self.commit = point.index;
        self.applied = point.index;
        self.check();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_storage::conformance::{batch, batches};

    fn log_of(specs: &[(Term, u32)]) -> RaftLog {
        let mut log = RaftLog::new(
            RestoredLog {
                tail: LogTail::START,
                prev_tail: LogTail::START,
                ..RestoredLog::default()
            },
            1 << 20,
        );
        let mut next = 1;
        for &(term, count) in specs {
            log.append(batch(term, next, count));
            next += u64::from(count);
        }
        log.check();
        log
    }

    #[test]
    fn term_lookup_and_conflict_search() {
        let log = log_of(&[(1, 3), (1, 2), (2, 2), (4, 3)]);
        assert_eq!(log.last(), LogId::new(4, 10));
        assert_eq!(log.term_at(0), Some(0));
        assert_eq!(log.term_at(5), Some(1));
        assert_eq!(log.term_at(6), Some(2));
        assert_eq!(log.term_at(10), Some(4));
        assert_eq!(log.term_at(11), None);
        assert_eq!(log.find_conflict_by_term(10, 3), 7);
        assert_eq!(log.find_conflict_by_term(10, 1), 5);
        assert_eq!(log.find_conflict_by_term(4, 9), 4);
        assert_eq!(log.find_conflict_by_term(10, 0), 0);
    }

    #[test]
    fn truncate_inside_a_batch_keeps_the_prefix_and_tail() {
        let mut log = log_of(&[(1, 4), (2, 4)]);
        log.truncate(7);
        assert_eq!(log.last(), LogId::new(2, 6));
        log.check();
        let cached = log.cached_from(5, usize::MAX).unwrap();
        assert_eq!(cached.len(), 1);
        assert_eq!(cached[0].last_index(), 6);
        assert_eq!(
            log.tail(),
            Some(LogTail {
                next_id: 7,
                last_ts: 51
            })
        );
        log.truncate(3);
        assert_eq!(log.last(), LogId::new(1, 2));
        assert_eq!(log.term_at(3), None);
        log.append(batch(3, 3, 2));
        assert_eq!(log.term_at(4), Some(3));
    }

    #[test]
    fn cache_evicts_only_applied_batches() {
        let mut log = RaftLog::new(
            RestoredLog {
                tail: LogTail::START,
                prev_tail: LogTail::START,
                ..RestoredLog::default()
            },
            1,
        );
        for b in batches(1, 1, &[2, 2, 2]) {
            log.append(b);
        }
        assert_eq!(log.cache_first_index(), Some(1));
        log.commit_to(4);
        log.applied_to(4);
        assert_eq!(log.cache_first_index(), Some(5));
        assert!(log.cached_from(1, usize::MAX).is_none());
    }

    #[test]
    fn compact_then_reset() {
        let mut log = log_of(&[(1, 4), (2, 4)]);
        log.commit_to(8);
        log.applied_to(6);
        log.compact(
            LogId::new(2, 6),
            LogTail {
                next_id: 7,
                last_ts: 60,
            },
        );
        assert_eq!(log.prev(), LogId::new(2, 6));
        assert_eq!(log.term_at(5), None);
        assert_eq!(log.term_at(7), Some(2));
        log.reset(
            LogId::new(5, 100),
            LogTail {
                next_id: 90,
                last_ts: 1_000,
            },
        );
        assert_eq!(log.last(), LogId::new(5, 100));
        assert_eq!(log.commit(), 100);
    }
}
