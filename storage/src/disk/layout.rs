//! Changes to the log's extent: truncating a suffix, compacting a prefix,
//! resetting to a snapshot point.
//!
//! Truncation is durable on return whenever it cuts bytes already written.
//! Why: if the cut only became durable at the next sync, a crash after new
//! batches were written over the cut could leave old frames behind the new
//! ones; an old frame that happens to continue the new log's index and term
//! would then be served as part of a log that never existed (violating Log
//! Matching, Raft §5.3). So the cut bytes are zeroed (hole punched) and
//! synced before any new byte lands on them. Truncations are rare (leader
//! changes), so the extra fsync is cheap.
//!
//! A batch straddling the cut is rewritten in place as its kept prefix in
//! the same step. A power loss during that one write can tear the batch,
//! whose kept entries were durable; a process crash cannot (an O_DIRECT
//! write in flight completes in the kernel). docs/storage.md lists this.

use crate::error::{Result, StorageError};
use crate::types::{Index, LogId};

use super::io::{IO_ALIGN, align_down, align_up};
use super::log::DiskLog;
use super::segment::{Segment, create_segment_file};
use super::segment_header::SegmentHeader;

impl DiskLog {
    async fn lock_layout(&self) -> Result<glommio::sync::Permit<'_>> {
        self.io_lock
            .acquire_permit(1)
            .await
            .map_err(|e| StorageError::Closed(e.to_string()))
    }

    /// Poisons the log after a failure that left disk and memory unsure.
    fn poison(&self, error: &StorageError) {
        tracing::error!(%error, "disk log layout change failed; the log accepts no more writes");
        self.core.borrow_mut().failed = Some(format!(
            "an earlier truncate, compact or reset failed: {error}"
        ));
    }

    pub(super) async fn truncate_suffix_impl(&self, from: Index) -> Result<()> {
        let check = |core: &super::log::Core| -> Result<bool> {
            core.check_open()?;
            let last = core.last().index;
            if from <= core.prev.index || from > last + 1 {
                return Err(core.out_of_range(from));
            }
            Ok(from == last + 1)
        };
        if check(&self.core.borrow())? {
            return Ok(());
        }
        let _permit = self.lock_layout().await?;
        if check(&self.core.borrow())? {
            return Ok(());
        }
        let result = self.truncate_locked(from).await;
        if let Err(error) = &result {
            self.poison(error);
        }
        result
    }

    async fn truncate_locked(&self, from: Index) -> Result<()> {
        let (position, at, loc) = {
            let core = self.core.borrow();
            let position = core.segment_position(from);
            let at = core.segments[position].position(from);
            (position, at, core.segments[position].batches[at])
        };
        // The kept prefix of a straddling batch, read before anything changes.
        let slice = if loc.first_index < from {
            Some(
                self.batch_at(position, at)
                    .await?
                    .slice(loc.first_index, from - 1),
            )
        } else {
            None
        };
        // The header the log ends with afterwards.
        let new_last_header = match &slice {
            Some(slice) => Some(*slice.header()),
            None if at > 0 => Some(*self.batch_at(position, at - 1).await?.header()),
            None if position > 0 => {
                let before = self.core.borrow().segments[position - 1].batches.len() - 1;
                Some(*self.batch_at(position - 1, before).await?.header())
            }
            None => None,
        };
        // Memory first, in one step, so that appends racing the disk work
        // below land after the cut; readers wait while `layout_busy`.
        let cut = u64::from(loc.offset);
        let slice_bytes = slice.as_ref().map(|s| s.bytes().clone());
        let (later, flushed, file, on_disk, truncation_seq, was_synced) = {
            let mut core = self.core.borrow_mut();
            core.layout_epoch += 1;
            let was_synced = core.synced_seq == core.op_seq;
            let later: Vec<Segment> = core.segments.drain(position + 1..).collect();
            let segment = &mut core.segments[position];
            let flushed = segment.flushed_offset;
            let on_disk = cut < flushed;
            let file = segment.file.clone();
            segment.batches.truncate(at);
            segment.end_offset = cut;
            segment.next_index = loc.first_index;
            if on_disk {
                segment.flushed_offset = cut;
                segment.tail = None;
            }
            core.cache.truncate_from(loc.first_index);
            core.term_runs
                .retain(|run| run.first_index < loc.first_index);
            core.configs.retain(|&index| index < loc.first_index);
            core.last_header = new_last_header;
            core.op_seq += 1;
            if let Some(slice) = slice {
                core.place(&self.dir, &self.config, slice);
                if on_disk {
                    // Written below, before the lock is released.
                    let segment = &mut core.segments[position];
                    segment.flushed_offset = segment.end_offset;
                    core.cache.mark_flushed(1);
                }
            }
            core.durable_index = core.durable_index.min(from - 1);
            core.layout_busy = on_disk;
            core.check_invariants();
            (later, flushed, file, on_disk, core.op_seq, was_synced)
        };
        // Later segments go newest first, so that a crash leaves a prefix
        // of the old log.
        let mut removed = false;
        for segment in later.iter().rev() {
            if segment.file.is_some() {
                self.vfs.remove_file(&segment.path)?;
                removed = true;
            }
        }
        if removed {
            self.vfs.sync_dir(&self.dir).await?;
        }
        let mut new_tail = None;
        if on_disk {
            let file = file.expect("a segment with flushed bytes has a file");
            let block_start = align_down(cut);
            let keep = (cut - block_start) as usize;
            let mut tail = if keep > 0 {
                let block = file.read_at(block_start, IO_ALIGN as usize).await?;
                block[..keep].to_vec()
            } else {
                Vec::new()
            };
            let slice_bytes: &[u8] = slice_bytes.as_deref().unwrap_or(&[]);
            if keep > 0 || !slice_bytes.is_empty() {
                file.write_at(block_start, &[&tail, slice_bytes]).await?;
            }
            let new_flushed = cut + slice_bytes.len() as u64;
            let zero_from = align_up(new_flushed);
            let zero_to = align_up(flushed);
            if zero_to > zero_from {
                file.deallocate(zero_from, zero_to - zero_from).await?;
            }
            file.fsync()?;
            tail.extend_from_slice(slice_bytes);
            let keep = (new_flushed - align_down(new_flushed)) as usize;
            new_tail = Some(tail[tail.len() - keep..].to_vec());
        }
        let mut core = self.core.borrow_mut();
        if let Some(tail) = new_tail {
            let segment = &mut core.segments[position];
            segment.tail = Some(tail);
            segment.unsynced = false;
        }
        if was_synced {
            // Nothing unsynced before, and the cut itself is durable now.
            if !core.cache.has_unflushed() {
                core.synced_seq = core.synced_seq.max(truncation_seq);
            }
        }
        core.layout_busy = false;
        core.layout_epoch += 1;
        core.check_invariants();
        Ok(())
    }

    pub(super) async fn compact_prefix_impl(&self, upto: Index) -> Result<()> {
        self.core.borrow().check_open()?;
        let _permit = self.lock_layout().await?;
        loop {
            let victim = {
                let core = self.core.borrow();
                let first = &core.segments[0];
                let removable = core.segments.len() > 1
                    && first.last_index() <= upto
                    && first.last_index() <= core.durable_index
                    && !first.unsynced
                    && first.flushed_offset == first.end_offset;
                if !removable {
                    break;
                }
                first.path.clone()
            };
            // Compaction need not be durable ("may keep older ones"): a
            // crash before the unlink reaches the disk brings back a prefix.
            self.vfs.remove_file(&victim)?;
            let mut core = self.core.borrow_mut();
            core.segments.pop_front();
            core.layout_epoch += 1;
            let next = core.segments[0].header;
            core.prev = LogId::new(next.prev_term, next.first_index - 1);
            let prev_index = core.prev.index;
            core.cache.drop_upto(prev_index);
            core.configs.retain(|&index| index > prev_index);
            if core.last().index <= prev_index {
                core.last_header = None;
                core.term_runs.clear();
            } else {
                while core.term_runs.len() > 1 && core.term_runs[1].first_index <= prev_index + 1 {
                    core.term_runs.remove(0);
                }
                if let Some(run) = core.term_runs.first_mut() {
                    run.first_index = run.first_index.max(prev_index + 1);
                }
            }
            core.check_invariants();
        }
        Ok(())
    }

    pub(super) async fn reset_impl(&self, snapshot: LogId) -> Result<()> {
        self.core.borrow().check_open()?;
        let Some(first_index) = snapshot.index.checked_add(1).filter(|&i| i < Index::MAX) else {
            return Err(StorageError::OutOfRange {
                index: snapshot.index,
                first_index: 0,
                last_index: Index::MAX - 2,
            });
        };
        let _permit = self.lock_layout().await?;
        let result = self.reset_locked(snapshot, first_index).await;
        if let Err(error) = &result {
            self.poison(error);
        }
        result
    }

    /// The new segment is flagged BASE: once its name is durable, recovery
    /// ignores (and deletes) every older segment, so the switch is atomic.
    /// Segments at or after the new first index go before it is created,
    /// so that none of them can be mistaken for its continuation.
    async fn reset_locked(&self, snapshot: LogId, first_index: Index) -> Result<()> {
        let header = SegmentHeader {
            first_index,
            prev_term: snapshot.term,
            base: true,
            write_bytes_max: self.config.write_bytes_max,
        };
        // Memory first (see truncate); the new segment's file comes below.
        let (old, reset_seq) = {
            let mut core = self.core.borrow_mut();
            core.layout_epoch += 1;
            let old: Vec<Segment> = core.segments.drain(..).collect();
            core.segments
                .push_back(Segment::new_in_memory(&self.dir, header));
            core.prev = snapshot;
            core.last_header = None;
            core.term_runs.clear();
            core.configs.clear();
            core.cache.clear();
            core.durable_index = snapshot.index;
            core.op_seq += 1;
            core.layout_busy = true;
            core.check_invariants();
            (old, core.op_seq)
        };
        let (newer, older): (Vec<&Segment>, Vec<&Segment>) = old
            .iter()
            .partition(|s| s.header.first_index >= first_index);
        let mut removed = false;
        for segment in newer.iter().rev() {
            if segment.file.is_some() {
                self.vfs.remove_file(&segment.path)?;
                removed = true;
            }
        }
        if removed {
            self.vfs.sync_dir(&self.dir).await?;
        }
        let file = create_segment_file(
            &*self.vfs,
            &self.dir,
            &header,
            &self.spares,
            self.config.segment_bytes_max,
            self.config.segment_open_flags(),
        )
        .await?;
        if self.config.zero_fill_segments {
            self.spares.prepare_in_background();
        }
        for segment in older {
            if segment.file.is_some() {
                self.vfs.remove_file(&segment.path)?;
            }
        }
        let mut core = self.core.borrow_mut();
        core.segments[0].file = Some(file);
        if !core.cache.has_unflushed() {
            core.synced_seq = core.synced_seq.max(reset_seq);
        }
        core.layout_busy = false;
        core.layout_epoch += 1;
        core.check_invariants();
        Ok(())
    }
}
