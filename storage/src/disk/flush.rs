//! Group commit: writing appended batches and fdatasyncing them.
//!
//! A `sync` records the append sequence number it must cover. If no round
//! is in flight it starts one: takes the IO lock, writes every batch
//! appended so far and fdatasyncs. If a round is in flight it waits for it
//! to end (notify.rs); every waiter wakes at once, those the round covered
//! return, and the first uncovered one starts the next round, which covers
//! every append made meanwhile: one fdatasync per round however many
//! appenders share it.
//!
//! A round makes its writes durable one of two ways
//! ([`DiskLogConfig::write_through`](super::DiskLogConfig)): segment files
//! opened with `O_DSYNC`, where each write is durable when it completes (one
//! io_uring operation per round), or writes followed by fdatasync.
//!
//! Two ordering rules make recovery's torn-tail rule sound:
//! - at most `write_window_bytes` are written and not yet synced at any
//!   time (larger rounds sync in between);
//! - a segment is synced before the next segment is created, so only the
//!   last segment can ever hold torn bytes.

use crate::error::{Result, StorageError};
use crate::types::Index;

use super::config::{Durability, FsyncMode};
use super::io::{IO_ALIGN, align_down};
use super::log::DiskLog;
use super::segment::create_segment_file;

/// Marks a group-commit round in flight; when it ends (or its future is
/// dropped) every waiting `sync` wakes.
struct RoundGuard<'a> {
    log: &'a DiskLog,
}

impl<'a> RoundGuard<'a> {
    fn start(log: &'a DiskLog) -> Self {
        debug_assert!(!log.round_in_flight.get());
        log.round_in_flight.set(true);
        Self { log }
    }
}

impl Drop for RoundGuard<'_> {
    fn drop(&mut self) {
        self.log.round_in_flight.set(false);
        self.log.round_done.notify_all();
    }
}

impl DiskLog {
    pub(super) async fn sync_impl(&self) -> Result<Index> {
        let want = {
            let mut core = self.core.borrow_mut();
            core.check_open()?;
            core.stats.sync_calls += 1;
            core.op_seq
        };
        loop {
            {
                let core = self.core.borrow();
                core.check_open()?;
                if core.synced_seq >= want {
                    return Ok(core.durable_index);
                }
            }
            if self.round_in_flight.get() {
                // Share the next round: wait for this one to end, then either
                // it covered us or the first uncovered waiter starts one.
                let seen = self.round_done.generation();
                self.round_done.wait(seen).await;
                continue;
            }
            let _round = RoundGuard::start(self);
            let _permit = self
                .io_lock
                .acquire_permit(1)
                .await
                .map_err(|e| StorageError::Closed(e.to_string()))?;
            if self.core.borrow().synced_seq >= want {
                continue;
            }
            if let FsyncMode::Group(delay) = self.config.fsync_mode {
                // Gather more appends into this round.
                glommio::timer::sleep(delay).await;
            } else {
                // Let the tasks the last round just woke append first: they
                // are ready to run, and without this each round would cover
                // only the appends made while the previous one was in flight
                // by tasks that were not waiting on it (about half of them).
                futures_lite::future::yield_now().await;
            }
            self.flush_locked().await?;
        }
    }

    /// Writes every batch appended so far and syncs. The caller holds the
    /// IO lock. A failure poisons the log.
    pub(super) async fn flush_locked(&self) -> Result<()> {
        let result = self.flush_and_sync().await;
        if let Err(error) = &result {
            let mut core = self.core.borrow_mut();
            tracing::error!(%error, "disk log write or sync failed; the log accepts no more writes");
            core.failed = Some(format!("an earlier write or sync failed: {error}"));
        }
        result
    }

    async fn flush_and_sync(&self) -> Result<()> {
        let (target_seq, target_index) = {
            let core = self.core.borrow();
            (core.op_seq, core.last().index)
        };
        let durability = self.config.durability();
        // Whether written segments need an fdatasync before they count.
        let fsync = durability == Durability::Fdatasync;
        loop {
            let run = self
                .core
                .borrow()
                .cache
                .unflushed_run(self.write_window_bytes, target_index);
            let Some(first) = run.first() else { break };
            let position = {
                let core = self.core.borrow();
                let position = core.segment_position(first.batch.first_index());
                debug_assert_eq!(
                    core.segments[position].header.first_index,
                    first.segment_first_index
                );
                position
            };
            // Earlier segments (and this one's previous round) are synced
            // first: see the ordering rules above.
            if fsync {
                for at in 0..=position {
                    self.sync_segment(at).await?;
                }
            }
            self.ensure_segment_file(position).await?;
            let (file, path, start, data) = {
                let core = self.core.borrow();
                let segment = &core.segments[position];
                debug_assert_eq!(first.offset, segment.flushed_offset);
                let tail = segment.tail.clone();
                (
                    segment.file().clone(),
                    segment.path.clone(),
                    segment.flushed_offset,
                    tail,
                )
            };
            let tail = match data {
                Some(tail) => tail,
                None => {
                    let block = file.read_at(align_down(start), IO_ALIGN as usize).await?;
                    let keep = (start - align_down(start)) as usize;
                    if block.len() < keep {
                        return Err(StorageError::Corrupt {
                            file: path.clone(),
                            offset: align_down(start),
                            reason: "segment shorter than its written bytes".to_string(),
                        });
                    }
                    block[..keep].to_vec()
                }
            };
            let mut parts: Vec<&[u8]> = Vec::with_capacity(run.len() + 1);
            parts.push(&tail);
            parts.extend(run.iter().map(|c| c.batch.bytes().as_ref()));
            let written: u64 = parts.iter().map(|p| p.len() as u64).sum();
            let write_at = align_down(start);
            file.write_at(write_at, &parts).await?;
            let end = write_at + written;
            let new_tail = {
                // The last partial block: the end of `parts`.
                let keep = (end - align_down(end)) as usize;
                let mut tail = Vec::with_capacity(keep);
                for part in parts.iter().rev() {
                    let need = keep - tail.len();
                    if need == 0 {
                        break;
                    }
                    let take = need.min(part.len());
                    let mut chunk = part[part.len() - take..].to_vec();
                    chunk.extend_from_slice(&tail);
                    tail = chunk;
                }
                tail
            };
            let mut core = self.core.borrow_mut();
            core.stats.bytes_written += written.div_ceil(IO_ALIGN) * IO_ALIGN;
            core.cache.mark_flushed(run.len());
            let segment = &mut core.segments[position];
            segment.flushed_offset = end;
            segment.tail = Some(new_tail);
            // A write-through write was durable when it completed.
            segment.unsynced = fsync;
            if durability == Durability::WriteThrough {
                core.stats.durable_writes += 1;
            }
            core.check_invariants();
        }
        let segments = self.core.borrow().segments.len();
        if fsync {
            for at in 0..segments {
                self.sync_segment(at).await?;
            }
        }
        let mut core = self.core.borrow_mut();
        if durability == Durability::Never {
            for segment in core.segments.iter_mut() {
                segment.unsynced = false;
            }
        }
        core.stats.syncs += 1;
        core.synced_seq = core.synced_seq.max(target_seq);
        core.durable_index = core.durable_index.max(target_index.min(core.last().index));
        core.check_invariants();
        Ok(())
    }

    /// fdatasyncs segment `at` if it has unsynced writes.
    async fn sync_segment(&self, at: usize) -> Result<()> {
        let file = {
            let core = self.core.borrow();
            let segment = &core.segments[at];
            if !segment.unsynced {
                return Ok(());
            }
            segment.file().clone()
        };
        file.fdatasync().await?;
        let mut core = self.core.borrow_mut();
        core.segments[at].unsynced = false;
        core.stats.fdatasyncs += 1;
        Ok(())
    }

    /// Creates the file of segment `at` if the first flush into it is due.
    async fn ensure_segment_file(&self, at: usize) -> Result<()> {
        let header = {
            let core = self.core.borrow();
            let segment = &core.segments[at];
            if segment.file.is_some() {
                return Ok(());
            }
            segment.header
        };
        let file = create_segment_file(
            &*self.vfs,
            &self.dir,
            &header,
            &self.spares,
            self.config.segment_bytes_max,
            self.config.segment_open_flags(),
        )
        .await?;
        self.core.borrow_mut().segments[at].file = Some(file);
        if self.config.zero_fill_segments {
            self.spares.prepare_in_background();
        }
        Ok(())
    }
}
