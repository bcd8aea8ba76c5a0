//! The bounded cache of recent batches, which also holds every batch that
//! is appended but not yet written.
//!
//! Lagging followers mostly read just behind the leader's tail, so the
//! newest batches answer most reads without IO. Unflushed batches are never
//! evicted: the flusher writes them from here.

use std::collections::VecDeque;

use crate::frame::Batch;
use crate::types::Index;

/// A batch with where it lives (or will live) on disk.
#[derive(Clone, Debug)]
pub struct CachedBatch {
    /// The batch.
    pub batch: Batch,
    /// First index of its segment.
    pub segment_first_index: Index,
    /// Byte offset of its frame in the segment file.
    pub offset: u64,
}

/// Recent batches in index order: a contiguous suffix of the log.
#[derive(Debug)]
pub struct RecentBatches {
    /// Invariant: contiguous indexes; `batches[flushed..]` are the batches
    /// not yet written, `flushed <= batches.len()`.
    batches: VecDeque<CachedBatch>,
    flushed: usize,
    /// Invariant: the sum of frame lengths of `batches`.
    bytes: u64,
    /// Invariant: the sum of frame lengths of `batches[flushed..]`.
    unflushed_bytes: u64,
    /// Flushed batches are evicted while `bytes` exceeds this.
    bytes_max: u64,
}

impl RecentBatches {
    /// An empty cache that keeps up to `bytes_max` of flushed batches.
    pub fn new(bytes_max: u64) -> Self {
        Self {
            batches: VecDeque::new(),
            flushed: 0,
            bytes: 0,
            unflushed_bytes: 0,
            bytes_max,
        }
    }

    /// Adds a just-appended (unflushed) batch and evicts old flushed ones.
    pub fn push_unflushed(&mut self, cached: CachedBatch) {
        debug_assert!(
            self.batches
                .back()
                .is_none_or(|b| b.batch.last_index() + 1 == cached.batch.first_index())
        );
        let len = cached.batch.len_bytes() as u64;
        self.bytes += len;
        self.unflushed_bytes += len;
        self.batches.push_back(cached);
        self.evict();
    }

    fn evict(&mut self) {
        while self.bytes > self.bytes_max && self.flushed > 0 {
            let old = self.batches.pop_front().expect("flushed > 0");
            self.bytes -= old.batch.len_bytes() as u64;
            self.flushed -= 1;
        }
    }

    /// First index cached, if any.
    pub fn first_index(&self) -> Option<Index> {
        self.batches.front().map(|b| b.batch.first_index())
    }

    /// Bytes of unflushed batches.
    pub fn unflushed_bytes(&self) -> u64 {
        self.unflushed_bytes
    }

    /// Whether any batch waits to be written.
    pub fn has_unflushed(&self) -> bool {
        self.flushed < self.batches.len()
    }

    /// Position of the batch holding `index`, if cached.
    fn position(&self, index: Index) -> Option<usize> {
        let first = self.first_index()?;
        if index < first || index > self.batches.back()?.batch.last_index() {
            return None;
        }
        Some(
            self.batches
                .partition_point(|b| b.batch.last_index() < index),
        )
    }

    /// The cached batch holding `index`.
    pub fn get(&self, index: Index) -> Option<&CachedBatch> {
        self.position(index).map(|at| &self.batches[at])
    }

    /// Cached batches from the one holding `from`, while their total stays
    /// within `bytes_max` (at least one). Empty if `from` is not cached.
    pub fn read(
        &self,
        from: Index,
        bytes_max: usize,
        out: &mut Vec<crate::frame::Batch>,
        budget_used: &mut usize,
    ) {
        let Some(at) = self.position(from) else {
            return;
        };
        for cached in self.batches.range(at..) {
            let len = cached.batch.len_bytes();
            if (!out.is_empty() || *budget_used > 0) && *budget_used + len > bytes_max {
                break;
            }
            *budget_used += len;
            out.push(cached.batch.clone());
        }
    }

    /// The oldest unflushed batches that share one segment, while their
    /// total stays within `bytes_max` (at least one), and none past
    /// `last_index`.
    pub fn unflushed_run(&self, bytes_max: u64, last_index: Index) -> Vec<CachedBatch> {
        let mut run: Vec<CachedBatch> = Vec::new();
        let mut bytes = 0u64;
        for cached in self.batches.range(self.flushed..) {
            if cached.batch.first_index() > last_index {
                break;
            }
            if let Some(first) = run.first() {
                let len = cached.batch.len_bytes() as u64;
                if first.segment_first_index != cached.segment_first_index
                    || bytes + len > bytes_max
                {
                    break;
                }
            }
            bytes += cached.batch.len_bytes() as u64;
            run.push(cached.clone());
        }
        run
    }

    /// Marks the `count` oldest unflushed batches written.
    pub fn mark_flushed(&mut self, count: usize) {
        assert!(
            self.flushed + count <= self.batches.len(),
            "flushing batches that are not cached"
        );
        for cached in self.batches.range(self.flushed..self.flushed + count) {
            self.unflushed_bytes -= cached.batch.len_bytes() as u64;
        }
        self.flushed += count;
        self.evict();
    }

    /// Drops every batch whose first index is `>= from`.
    pub fn truncate_from(&mut self, from: Index) {
        while let Some(back) = self.batches.back() {
            if back.batch.first_index() < from {
                break;
            }
            let len = back.batch.len_bytes() as u64;
            self.bytes -= len;
            if self.batches.len() > self.flushed {
                self.unflushed_bytes -= len;
            } else {
                self.flushed -= 1;
            }
            self.batches.pop_back();
        }
    }

    /// Drops every batch that ends at or before `upto`.
    pub fn drop_upto(&mut self, upto: Index) {
        while let Some(front) = self.batches.front() {
            if front.batch.last_index() > upto {
                break;
            }
            assert!(self.flushed > 0, "compacting unflushed batches");
            self.bytes -= front.batch.len_bytes() as u64;
            self.flushed -= 1;
            self.batches.pop_front();
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.batches.clear();
        self.flushed = 0;
        self.bytes = 0;
        self.unflushed_bytes = 0;
    }

    /// Checks the invariants (debug builds and tests).
    pub fn check_invariants(&self) {
        debug_assert!(self.flushed <= self.batches.len());
        debug_assert_eq!(
            self.bytes,
            self.batches
                .iter()
                .map(|b| b.batch.len_bytes() as u64)
                .sum::<u64>()
        );
        debug_assert_eq!(
            self.unflushed_bytes,
            self.batches
                .range(self.flushed..)
                .map(|b| b.batch.len_bytes() as u64)
                .sum::<u64>()
        );
        debug_assert!(
            self.batches
                .iter()
                .zip(self.batches.iter().skip(1))
                .all(|(a, b)| a.batch.last_index() + 1 == b.batch.first_index())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::batches;

    fn cached(batch: Batch, offset: u64) -> CachedBatch {
        CachedBatch {
            batch,
            segment_first_index: 1,
            offset,
        }
    }

    #[test]
    fn evicts_only_flushed_batches() {
        let written = batches(1, 1, &[10, 10, 10]);
        let one = written[0].len_bytes() as u64;
        let mut cache = RecentBatches::new(one);
        for (i, batch) in written.iter().enumerate() {
            cache.push_unflushed(cached(batch.clone(), i as u64));
        }
        cache.check_invariants();
        assert_eq!(cache.first_index(), Some(1), "unflushed batches stay");
        assert_eq!(cache.unflushed_run(u64::MAX, 30).len(), 3);
        assert_eq!(cache.unflushed_run(one, 30).len(), 1);
        assert_eq!(cache.unflushed_run(u64::MAX, 20).len(), 2);
        cache.mark_flushed(2);
        cache.check_invariants();
        assert_eq!(cache.first_index(), Some(21));
        cache.truncate_from(21);
        cache.check_invariants();
        assert_eq!(cache.first_index(), None);
        assert!(!cache.has_unflushed());
    }

    #[test]
    fn reads_stay_within_budget() {
        let written = batches(1, 1, &[4, 4, 4]);
        let mut cache = RecentBatches::new(u64::MAX);
        for batch in &written {
            cache.push_unflushed(cached(batch.clone(), 0));
        }
        let mut out = Vec::new();
        let mut used = 0;
        cache.read(6, written[1].len_bytes(), &mut out, &mut used);
        assert_eq!(out, written[1..2].to_vec());
        let mut all = Vec::new();
        let mut used = 0;
        cache.read(1, usize::MAX, &mut all, &mut used);
        assert_eq!(all, written);
    }
}
