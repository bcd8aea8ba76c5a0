//! [`DiskLog`]: the segmented log on glommio's io_uring file API, its
//! in-memory state and the read and append paths. Syncs are in flush.rs;
//! truncation, compaction and reset in layout.rs.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::sync::Semaphore;

use crate::error::{Result, StorageError};
use crate::frame::{Batch, BatchHeader};
use crate::hard_state::HardState;
use crate::log_store::{LogState, LogStore, TermRun};
use crate::types::{Index, LogId};

use super::cache::{CachedBatch, RecentBatches};
use super::config::{DiskLogConfig, FsyncMode};
use super::hard_state_file::HardStateFile;
use super::recovery::{LogCut, recover};
use super::scan::BatchLoc;
use super::segment::{Segment, create_segment_file};
use super::segment_header::SegmentHeader;
use super::spare::Spares;
use super::vfs::{GlommioVfs, Vfs};
use crate::stats::DiskLogStats;

/// The mutable state of a disk log. Never borrowed across an await.
pub(super) struct Core {
    /// Invariant: non-empty; `segments[0].header.first_index ==
    /// prev.index + 1`; each segment starts where the previous one ends.
    pub segments: VecDeque<Segment>,
    pub prev: LogId,
    /// Header of the last batch; `None` when the log is empty.
    pub last_header: Option<BatchHeader>,
    pub term_runs: Vec<TermRun>,
    /// First indexes of the configuration batches held, in order.
    pub configs: Vec<Index>,
    pub cache: RecentBatches,
    /// The highest index known durable. Invariant: `prev.index <=
    /// durable_index <= last().index` (compaction removes only synced
    /// segments; truncation lowers it to the cut).
    pub durable_index: Index,
    /// Bumped by every append and truncation.
    pub op_seq: u64,
    /// `op_seq` covered by the last completed sync. Invariant:
    /// `synced_seq <= op_seq`.
    pub synced_seq: u64,
    /// Bumped whenever bytes on disk stop meaning what the index says
    /// (truncate, compact, reset), so that a read racing one retries.
    pub layout_epoch: u64,
    /// Set while a truncate or reset rewrites bytes that the index already
    /// describes: disk reads wait for the IO lock instead.
    pub layout_busy: bool,
    pub hard_state: HardState,
    pub stats: DiskLogStats,
    /// Set when a write or sync failed: after a failed fdatasync the page
    /// cache and disk may disagree, so the log accepts nothing more.
    pub failed: Option<String>,
}

impl Core {
    pub fn last(&self) -> LogId {
        self.last_header.map_or(self.prev, |h| h.last_log_id())
    }

    pub fn check_open(&self) -> Result<()> {
        match &self.failed {
            Some(reason) => Err(StorageError::Closed(reason.clone())),
            None => Ok(()),
        }
    }

    pub fn out_of_range(&self, index: Index) -> StorageError {
        StorageError::OutOfRange {
            index,
            first_index: self.prev.index + 1,
            last_index: self.last().index,
        }
    }

    /// Position of the segment holding `index` (or that would hold it).
    pub fn segment_position(&self, index: Index) -> usize {
        self.segments
            .partition_point(|s| s.header.first_index <= index)
            .saturating_sub(1)
    }

    /// Validates `batches` against the log's end, then records them: index,
    /// cache, term runs. Memory only; the next flush writes them.
    fn append(&mut self, dir: &Path, config: &DiskLogConfig, batches: &[Batch]) -> Result<()> {
        let mut last = self.last();
        for batch in batches {
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
            last = batch.header().last_log_id();
        }
        for batch in batches {
            self.place(dir, config, batch.clone());
        }
        self.stats.appends += 1;
        Ok(())
    }

    /// Places one validated batch at the end of the active segment, or of a
    /// new one when it would overflow `segment_bytes_max`.
    pub(super) fn place(&mut self, dir: &Path, config: &DiskLogConfig, batch: Batch) {
        let len = batch.len_bytes() as u64;
        let active = self.segments.back().expect("segments is never empty");
        if !active.batches.is_empty() && active.end_offset + len > config.segment_bytes_max {
            let header = SegmentHeader {
                first_index: batch.first_index(),
                prev_term: self.last().term,
                base: false,
                write_bytes_max: config.write_bytes_max,
            };
            self.segments.push_back(Segment::new_in_memory(dir, header));
        }
        let active = self.segments.back_mut().expect("segments is never empty");
        let offset = active.end_offset;
        active.batches.push(BatchLoc {
            first_index: batch.first_index(),
            term: batch.term(),
            offset: u32::try_from(offset).expect("segment size limit keeps offsets in u32"),
            len: u32::try_from(len).expect("frames are at most 64 MiB"),
        });
        active.end_offset += len;
        active.next_index = batch.last_index() + 1;
        let segment_first_index = active.header.first_index;
        if self
            .term_runs
            .last()
            .is_none_or(|run| run.term != batch.term())
        {
            self.term_runs.push(TermRun {
                term: batch.term(),
                first_index: batch.first_index(),
            });
        }
        if batch.kind() == crate::frame::BatchKind::Config {
            self.configs.push(batch.first_index());
        }
        self.last_header = Some(*batch.header());
        self.op_seq += 1;
        self.stats.batches += 1;
        self.stats.entries += u64::from(batch.count());
        self.stats.bytes += len;
        self.cache.push_unflushed(CachedBatch {
            batch,
            segment_first_index,
            offset,
        });
    }

    /// Checks the invariants (debug builds, after every mutation).
    pub fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        assert!(!self.segments.is_empty());
        assert_eq!(self.segments[0].header.first_index, self.prev.index + 1);
        for pair in self.segments.iter().zip(self.segments.iter().skip(1)) {
            assert_eq!(pair.0.next_index, pair.1.header.first_index);
        }
        for segment in &self.segments {
            segment.check_invariants();
        }
        let last = self.last();
        assert_eq!(
            self.segments.back().expect("non-empty").last_index(),
            last.index
        );
        assert!(self.synced_seq <= self.op_seq);
        assert!(self.prev.index <= self.durable_index && self.durable_index <= last.index);
        self.cache.check_invariants();
    }
}

/// A Raft log in segment files on one shard, written with O_DIRECT through
/// glommio's io_uring reactor, with group fsync.
///
/// Lives on the glommio executor (shard) that opened it: its futures are not
/// `Send`. Every method takes `&self`, so many tasks of the shard can append
/// and `sync` concurrently: appends only touch memory, and every `sync`
/// issued while a write + fdatasync is in flight shares the next one (group
/// commit).
///
/// Directory layout: segments named by their first index
/// (`00000000000000000001.seg`), the `hard_state` file, and temporary
/// `*.tmp` files that recovery deletes.
pub struct DiskLog {
    pub(super) vfs: Rc<dyn Vfs>,
    pub(super) dir: PathBuf,
    pub(super) config: DiskLogConfig,
    /// Most bytes written between two fdatasyncs: `config.write_bytes_max`,
    /// or less if a recovered segment was written with a smaller window.
    pub(super) write_window_bytes: u64,
    pub(super) core: RefCell<Core>,
    /// Serializes what writes segment files or changes their layout:
    /// flush + sync, truncate, compact, reset. Appends and reads never take
    /// it, so appends continue while a sync is in flight.
    pub(super) io_lock: Semaphore,
    /// Whether a group-commit round is in flight (flush.rs).
    pub(super) round_in_flight: std::cell::Cell<bool>,
    /// Notified when a round ends.
    pub(super) round_done: super::notify::Notify,
    /// Serializes hard-state saves (each writes the other slot).
    hard_state_lock: Semaphore,
    hard_state_file: HardStateFile,
    pub(super) spares: Rc<Spares>,
    recovery: RecoveryReport,
}

/// What [`DiskLog::open`] found besides the log itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Entries cut off the log (a torn tail, or damage to durable bytes).
    pub cut: Option<LogCut>,
    /// The directory held neither a segment nor a hard-state file: a new
    /// log, or one whose disk was wiped (the node tells which).
    pub fresh: bool,
    /// The hard-state file was missing beside segments, or held no valid
    /// slot: term and vote were lost (why).
    pub hard_state_lost: Option<String>,
}

impl DiskLog {
    /// Opens the log in `dir` (created if missing): recovers every segment,
    /// CRC-checking every batch, cuts a torn tail or damaged durable bytes
    /// (and everything after them; [`DiskLog::recovery`] says what; a later
    /// segment whose two header copies are both damaged is such a cut),
    /// loads the hard state (a lost one is reported, not fatal). Fails with
    /// [`StorageError::Corrupt`] naming file and offset if a segment is
    /// missing or the first segment's header is damaged. Must run on a
    /// glommio executor; the log then lives on it.
    pub async fn open(dir: impl AsRef<Path>, config: DiskLogConfig) -> Result<DiskLog> {
        Self::open_on(Rc::new(GlommioVfs), dir, config).await
    }

    /// [`DiskLog::open`] over the file system `vfs`: the simulator runs the
    /// log over a [`SimDisk`](super::SimDisk).
    pub async fn open_on(
        vfs: Rc<dyn Vfs>,
        dir: impl AsRef<Path>,
        config: DiskLogConfig,
    ) -> Result<DiskLog> {
        Self::open_with(vfs, dir, config, &|_| Ok(())).await
    }

    /// [`DiskLog::open_on`], calling `before_cut` with each cut recovery
    /// makes before it makes it on disk (see [`BeforeCut`]): a node records
    /// there what the cut may lose.
    ///
    /// [`BeforeCut`]: super::recovery::BeforeCut
    pub async fn open_with(
        vfs: Rc<dyn Vfs>,
        dir: impl AsRef<Path>,
        config: DiskLogConfig,
        before_cut: super::recovery::BeforeCut<'_>,
    ) -> Result<DiskLog> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        vfs.create_dir_all(&dir)?;
        if config.fsync_mode == FsyncMode::None {
            tracing::warn!(
                dir = %dir.display(),
                "fsync mode `none`: the log never calls fdatasync and reports writes durable \
                 that a power loss can lose; use it for benchmarks only"
            );
        }
        vfs.prepare_dir(&dir).await?;
        let recovered = recover(&*vfs, &dir, config.segment_open_flags(), before_cut).await?;
        let hard_state_path = dir.join(super::hard_state_file::HARD_STATE_FILE_NAME);
        let hard_state_existed = vfs.exists(&hard_state_path);
        let mut hard_state_lost = (!hard_state_existed && !recovered.empty).then(|| {
            format!(
                "{} is missing but the log has entries",
                hard_state_path.display()
            )
        });
        let (hard_state_file, hard_state) = match HardStateFile::open(&*vfs, &dir).await {
            Ok(opened) => opened,
            Err(StorageError::Corrupt {
                file,
                offset,
                reason,
            }) => {
                // Term and vote are gone: keep the damaged file aside and
                // start from nothing; the node repairs before it votes.
                let aside = file.with_extension("damaged");
                tracing::error!(file = %file.display(), offset, %reason, "hard state lost");
                vfs.rename(&file, &aside)?;
                hard_state_lost = Some(format!("{} offset {offset}: {reason}", file.display()));
                HardStateFile::open(&*vfs, &dir).await?
            }
            Err(other) => return Err(other),
        };
        let recovery = RecoveryReport {
            cut: recovered.cut.clone(),
            fresh: recovered.empty && !hard_state_existed,
            hard_state_lost,
        };
        let spares = Spares::new(vfs.clone(), &dir, config.segment_bytes_max);
        let mut segments: VecDeque<Segment> = recovered.segments.into();
        if segments.is_empty() {
            let header = SegmentHeader {
                first_index: 1,
                prev_term: 0,
                base: true,
                write_bytes_max: config.write_bytes_max,
            };
            if config.zero_fill_segments {
                spares.prepare_now().await;
            }
            let mut segment = Segment::new_in_memory(&dir, header);
            segment.file = Some(
                create_segment_file(
                    &*vfs,
                    &dir,
                    &header,
                    &spares,
                    config.segment_bytes_max,
                    config.segment_open_flags(),
                )
                .await?,
            );
            segments.push_back(segment);
        }
        let last_segment = segments.back().expect("non-empty");
        // What recovery read may still sit in the device cache only.
        if let Some(file) = &last_segment.file {
            file.fdatasync().await?;
        }
        let write_window_bytes = config
            .write_bytes_max
            .min(last_segment.header.write_bytes_max);
        let first = &segments[0].header;
        let prev = LogId::new(first.prev_term, first.first_index - 1);
        let last_header = recovered.last_header;
        let mut term_runs = Vec::new();
        for segment in &segments {
            for batch in &segment.batches {
                if term_runs
                    .last()
                    .is_none_or(|run: &TermRun| run.term != batch.term)
                {
                    term_runs.push(TermRun {
                        term: batch.term,
                        first_index: batch.first_index,
                    });
                }
            }
        }
        let durable_index = last_header.map_or(prev.index, |h| h.last_index());
        tracing::info!(
            dir = %dir.display(),
            segments = segments.len(),
            batches = recovered.batches,
            bytes = recovered.bytes,
            first_index = prev.index + 1,
            last_index = durable_index,
            "opened disk log"
        );
        let core = Core {
            segments,
            prev,
            last_header,
            term_runs,
            configs: {
                // Only frames recovery kept (a cut may end the last scan).
                let last = last_header.map_or(prev.index, |h| h.last_index());
                let mut configs = recovered.configs;
                configs.retain(|&index| index > prev.index && index <= last);
                configs
            },
            cache: RecentBatches::new(config.cache_bytes_max),
            durable_index,
            op_seq: 0,
            synced_seq: 0,
            layout_epoch: 0,
            layout_busy: false,
            hard_state,
            stats: DiskLogStats::default(),
            failed: None,
        };
        core.check_invariants();
        if config.zero_fill_segments {
            spares.prepare_in_background();
        }
        Ok(DiskLog {
            vfs,
            dir,
            write_window_bytes,
            config,
            core: RefCell::new(core),
            io_lock: Semaphore::new(1),
            round_in_flight: std::cell::Cell::new(false),
            round_done: super::notify::Notify::default(),
            hard_state_lock: Semaphore::new(1),
            hard_state_file,
            spares,
            recovery,
        })
    }

    /// What opening the log found: a cut, a lost hard state, a new
    /// directory.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The knobs the log was opened with.
    pub fn config(&self) -> &DiskLogConfig {
        &self.config
    }

    /// Counters since open.
    pub fn stats(&self) -> DiskLogStats {
        self.core.borrow().stats
    }

    /// Appends like [`LogStore::append`], without IO: the batches are
    /// visible to reads at once and written by the next sync.
    pub fn append_now(&self, batches: &[Batch]) -> Result<()> {
        let mut core = self.core.borrow_mut();
        core.check_open()?;
        core.append(&self.dir, &self.config, batches)?;
        core.check_invariants();
        Ok(())
    }

    /// The batch at position `at` of segment `segment`, from the cache or
    /// disk, validated.
    pub(super) async fn batch_at(&self, segment: usize, at: usize) -> Result<Batch> {
        let (loc, file, path) = {
            let core = self.core.borrow();
            let segment = &core.segments[segment];
            let loc = segment.batches[at];
            if let Some(cached) = core.cache.get(loc.first_index) {
                return Ok(cached.batch.clone());
            }
            (loc, segment.file().clone(), segment.path.clone())
        };
        let bytes = file
            .read_at(u64::from(loc.offset), loc.len as usize)
            .await?;
        decode_at(&path, loc, Bytes::from(bytes))
    }

    /// One disk read of consecutive batches of one segment, starting with
    /// the one holding `from`, within `budget` bytes (at least one batch),
    /// stopping before the cached suffix. `None` if the layout changed
    /// during the read.
    async fn read_disk_run(
        &self,
        from: Index,
        budget: usize,
        first: bool,
    ) -> Result<Option<Vec<Batch>>> {
        let (locs, file, path, epoch) = {
            let core = self.core.borrow();
            let segment = &core.segments[core.segment_position(from)];
            let cached_first = core.cache.first_index().unwrap_or(Index::MAX);
            let mut locs: Vec<BatchLoc> = Vec::new();
            let mut bytes = 0usize;
            for loc in &segment.batches[segment.position(from)..] {
                let len = loc.len as usize;
                let fits = (first && locs.is_empty()) || bytes + len <= budget;
                if loc.first_index >= cached_first || !fits {
                    break;
                }
                bytes += len;
                locs.push(*loc);
            }
            if locs.is_empty() {
                return Ok(Some(Vec::new()));
            }
            (
                locs,
                segment.file().clone(),
                segment.path.clone(),
                core.layout_epoch,
            )
        };
        let start = u64::from(locs[0].offset);
        let end = locs
            .last()
            .map_or(start, |l| u64::from(l.offset) + u64::from(l.len));
        let read = file.read_at(start, (end - start) as usize).await?;
        let core = self.core.borrow();
        if core.layout_epoch != epoch || core.layout_busy {
            return Ok(None);
        }
        drop(core);
        let all = Bytes::from(read);
        let mut out = Vec::with_capacity(locs.len());
        for loc in locs {
            let at = (u64::from(loc.offset) - start) as usize;
            out.push(decode_at(&path, loc, all.slice(at..at + loc.len as usize))?);
        }
        Ok(Some(out))
    }

    async fn read_once(&self, from: Index, bytes_max: usize) -> Result<Option<Vec<Batch>>> {
        let mut out: Vec<Batch> = Vec::new();
        let mut used = 0usize;
        let mut next = from;
        loop {
            {
                let core = self.core.borrow();
                if next > core.last().index {
                    break;
                }
                if core.cache.first_index().is_some_and(|first| next >= first) {
                    core.cache.read(next, bytes_max, &mut out, &mut used);
                    break;
                }
            }
            let Some(run) = self
                .read_disk_run(next, bytes_max.saturating_sub(used), out.is_empty())
                .await?
            else {
                return Ok(None);
            };
            let Some(last) = run.last() else { break };
            next = last.last_index() + 1;
            used += run.iter().map(Batch::len_bytes).sum::<usize>();
            out.extend(run);
        }
        Ok(Some(out))
    }
}

/// Validates the frame of `loc` read from `path`: CRC and body, and that it
/// is the batch the index expects.
fn decode_at(path: &Path, loc: BatchLoc, bytes: Bytes) -> Result<Batch> {
    let corrupt = |reason: String| StorageError::Corrupt {
        file: path.to_path_buf(),
        offset: u64::from(loc.offset),
        reason,
    };
    let batch = Batch::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    if batch.first_index() != loc.first_index || batch.term() != loc.term {
        return Err(corrupt(format!(
            "batch ({}, {}) where the index expects ({}, {})",
            batch.term(),
            batch.first_index(),
            loc.term,
            loc.first_index
        )));
    }
    Ok(batch)
}

impl LogStore for DiskLog {
    fn disk_stats(&self) -> Option<DiskLogStats> {
        Some(self.stats())
    }

    fn state(&self) -> LogState {
        let core = self.core.borrow();
        let last = core.last();
        LogState {
            prev: core.prev,
            last,
            durable_index: core.durable_index,
            last_header: core.last_header,
        }
    }

    fn hard_state(&self) -> HardState {
        self.core.borrow().hard_state
    }

    fn term_runs(&self) -> Vec<TermRun> {
        self.core.borrow().term_runs.clone()
    }

    fn config_indexes(&self) -> Vec<Index> {
        self.core.borrow().configs.clone()
    }

    fn failure(&self) -> Option<String> {
        self.core.borrow().failed.clone()
    }

    async fn append(&self, batches: &[Batch]) -> Result<()> {
        self.append_now(batches)?;
        let unflushed = self.core.borrow().cache.unflushed_bytes();
        if unflushed > self.config.unflushed_bytes_max {
            // Backpressure: memory stays bounded even if nobody syncs.
            self.sync().await?;
        }
        Ok(())
    }

    async fn truncate_suffix(&self, from: Index) -> Result<()> {
        self.truncate_suffix_impl(from).await
    }

    async fn sync(&self) -> Result<Index> {
        self.sync_impl().await
    }

    async fn save_hard_state(&self, hard_state: HardState) -> Result<()> {
        let _permit = self
            .hard_state_lock
            .acquire_permit(1)
            .await
            .map_err(|e| StorageError::Closed(e.to_string()))?;
        self.core.borrow().check_open()?;
        self.hard_state_file.save(&hard_state).await?;
        self.core.borrow_mut().hard_state = hard_state;
        Ok(())
    }

    async fn read(&self, from: Index, bytes_max: usize) -> Result<Vec<Batch>> {
        loop {
            {
                let core = self.core.borrow();
                if from <= core.prev.index || from > core.last().index {
                    return Err(core.out_of_range(from));
                }
            }
            if self.core.borrow().layout_busy {
                // Wait for the truncate or reset to finish its disk work.
                let _permit = self
                    .io_lock
                    .acquire_permit(1)
                    .await
                    .map_err(|e| StorageError::Closed(e.to_string()))?;
            }
            match self.read_once(from, bytes_max).await {
                Ok(Some(batches)) => {
                    debug_assert!(batches.first().is_some_and(|b| b.header().contains(from)));
                    return Ok(batches);
                }
                Ok(None) => {}
                Err(error @ StorageError::Corrupt { .. }) => {
                    // Damage after recovery accepted these bytes (a
                    // misdirected or decayed write): stop taking work, so
                    // the node stops and its next start recovers from it.
                    let mut core = self.core.borrow_mut();
                    if core.failed.is_none() {
                        core.failed = Some(format!("a read met damage in the log: {error}"));
                    }
                    return Err(error);
                }
                Err(error) => return Err(error),
            }
            // A truncation or compaction changed the layout under the read.
        }
    }

    async fn compact_prefix(&self, upto: Index) -> Result<()> {
        self.compact_prefix_impl(upto).await
    }

    async fn reset(&self, snapshot: LogId) -> Result<()> {
        self.reset_impl(snapshot).await
    }
}
