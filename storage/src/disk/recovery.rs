//! Opening a log directory: find the segments, read and CRC-check every
//! batch, cut a torn tail, refuse corruption.
//!
//! The rules (scan.rs has the per-segment ones):
//! - segments are ordered by the first index in their names, which must
//!   match their headers;
//! - the newest segment flagged BASE starts the log: older segments are
//!   leftovers of a `reset` that crashed before deleting them;
//! - each segment must start exactly where the previous one ends, with the
//!   previous term in its header: a gap is a missing segment, an error;
//! - only the last segment may end torn; the torn bytes are zeroed on disk
//!   and synced before the log accepts writes, so that no stale frame can
//!   ever follow new ones.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{Result, StorageError};
use crate::frame::{BatchHeader, FRAME_BYTES_MAX};
use crate::types::{Index, Term};

use super::config::SEGMENT_BYTES_LIMIT;
use super::hard_state_file::HARD_STATE_FILE_NAME;
use super::io::{align_down, align_up};
use super::scan::{ScanEnd, ScanStart, scan_segment};
use super::segment::Segment;
use super::segment_header::{
    SEGMENT_HEADER_BYTES, SegmentHeader, SegmentHeaderError, parse_segment_file_name,
};
use super::vfs::{Vfs, VfsFile};

/// Entries recovery cut off the log: a torn tail, or damage to bytes that
/// were durable. The log ends just before `from_index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCut {
    /// The first index no longer in the log.
    pub from_index: Index,
    /// The highest index intact frames past the cut show the log held
    /// (`from_index - 1` when none: nothing says more was written).
    pub held_through: Index,
    /// Whether the cut bytes had been durable (an intact frame continues
    /// the log beyond the unsynced window, or a later segment exists):
    /// entries this node may have acknowledged were lost. A torn tail is
    /// not, by itself: the node's acknowledgement watermark decides.
    pub durable: bool,
    /// The file the cut is in.
    pub file: PathBuf,
    /// Its offset there.
    pub offset: u64,
    /// What recovery found.
    pub reason: String,
}

impl std::fmt::Display for LogCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "log cut at index {} ({} offset {}: {}){}",
            self.from_index,
            self.file.display(),
            self.offset,
            self.reason,
            if self.durable {
                format!("; entries through {} had been durable", self.held_through)
            } else {
                String::new()
            }
        )
    }
}

/// What recovery found.
pub struct Recovered {
    /// The log's segments, in order (empty for a new log).
    pub segments: Vec<Segment>,
    /// Header of the log's last batch, if any.
    pub last_header: Option<BatchHeader>,
    /// Number of batches recovered.
    pub batches: u64,
    /// First indexes of the configuration batches recovered, in order.
    pub configs: Vec<Index>,
    /// Bytes of frames recovered.
    pub bytes: u64,
    /// What was cut off the log, if anything.
    pub cut: Option<LogCut>,
    /// The directory held no entry, nor a segment past index 1 (a new
    /// log, or a lost one).
    pub empty: bool,
}

struct Found {
    path: PathBuf,
    file: Rc<dyn VfsFile>,
    header: SegmentHeader,
    len: u64,
}

fn corrupt(file: &Path, offset: u64, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        file: file.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// Lists the segment files of `dir` in index order, deleting temporary
/// files a crash left behind.
fn list_segments(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<(Index, PathBuf)>> {
    let mut segments = Vec::new();
    for name in vfs.read_dir(dir)? {
        let name = match name {
            Ok(name) => name,
            Err(lossy) => {
                tracing::warn!(dir = %dir.display(), name = %lossy, "ignoring a file with a non-UTF-8 name");
                continue;
            }
        };
        let name = name.as_str();
        let path = dir.join(name);
        if name.ends_with(".tmp") {
            // An interrupted segment creation, spare preparation or
            // hard-state creation: never part of the log.
            // Already gone is fine: a spare preparation of an earlier log
            // on this directory, dropped in this process a moment ago, may
            // still be writing its spare on the blocking pool.
            vfs.remove_file(&path)?;
        } else if let Some(first_index) = parse_segment_file_name(name) {
            segments.push((first_index, path));
        } else if name != HARD_STATE_FILE_NAME {
            tracing::warn!(file = %path.display(), "ignoring an unknown file in the log directory");
        }
    }
    segments.sort();
    Ok(segments)
}

async fn open_segment(
    vfs: &dyn Vfs,
    first_index: Index,
    path: PathBuf,
    flags: libc::c_int,
) -> Result<Found> {
    let file = vfs.open(&path, false, flags).await?;
    let len = file.size().await?;
    if len > SEGMENT_BYTES_LIMIT + FRAME_BYTES_MAX as u64 {
        return Err(corrupt(
            &path,
            0,
            format!("segment file of {len} bytes exceeds the size limit"),
        ));
    }
    if len < SEGMENT_HEADER_BYTES {
        return Err(corrupt(
            &path,
            0,
            format!("segment file of {len} bytes is shorter than its header"),
        ));
    }
    let block = file.read_at(0, SEGMENT_HEADER_BYTES as usize).await?;
    let header = SegmentHeader::parse(&block).map_err(|error| {
        let reason = match error {
            SegmentHeaderError::Truncated => "segment header truncated",
            SegmentHeaderError::Zero => "segment header is all zeros",
            SegmentHeaderError::Invalid(reason) => reason,
        };
        corrupt(&path, 0, reason)
    })?;
    if header.first_index != first_index {
        return Err(corrupt(
            &path,
            8,
            format!(
                "header says first index {}, file name says {first_index}",
                header.first_index
            ),
        ));
    }
    Ok(Found {
        path,
        file,
        header,
        len,
    })
}

/// Called with each cut before recovery makes it on disk (truncates the
/// damaged tail, moves later segments aside): the caller records durably
/// what the cut loses, so that a crash right after it cannot hide the
/// loss from the next start (runtime simulator, seed 11443).
pub type BeforeCut<'a> = &'a dyn Fn(&LogCut) -> Result<()>;

/// Recovers the log in `dir` (which must exist).
pub async fn recover(
    vfs: &dyn Vfs,
    dir: &Path,
    flags: libc::c_int,
    before_cut: BeforeCut<'_>,
) -> Result<Recovered> {
    let mut found = Vec::new();
    // A segment past the first whose header is damaged (both copies): the
    // log is cut where it starts, and it and every later segment go aside.
    let mut unreadable: Option<(Index, PathBuf, StorageError)> = None;
    let mut after_unreadable: Vec<(Index, PathBuf)> = Vec::new();
    for (first_index, path) in list_segments(vfs, dir)? {
        if unreadable.is_some() {
            after_unreadable.push((first_index, path));
            continue;
        }
        match open_segment(vfs, first_index, path.clone(), flags).await {
            Ok(segment) => found.push(segment),
            Err(error @ StorageError::Corrupt { .. }) if !found.is_empty() => {
                unreadable = Some((first_index, path, error));
            }
            Err(error) => return Err(error),
        }
    }
    if let Some(base) = found.iter().rposition(|f| f.header.base) {
        for stale in found.drain(..base) {
            tracing::warn!(
                file = %stale.path.display(),
                "deleting a segment older than the log's base (left by an interrupted reset)"
            );
            vfs.remove_file(&stale.path)?;
        }
    }
    let mut recovered = Recovered {
        segments: Vec::with_capacity(found.len()),
        last_header: None,
        batches: 0,
        configs: Vec::new(),
        bytes: 0,
        cut: None,
        empty: found.is_empty(),
    };
    if found.is_empty() {
        return Ok(recovered);
    }
    // Reading the next segment overlaps with scanning this one.
    let mut next_read = Some(spawn_read(vfs, &found[0], Vec::new()));
    let result = scan_all(vfs, &found, &mut recovered, &mut next_read, before_cut).await;
    if let Some(pending) = next_read.take() {
        // Let a read started for a segment after the failure finish rather
        // than cancel it mid-IO.
        let _ = pending.await;
    }
    if let Some((first_index, path, error)) = unreadable {
        result?;
        set_aside_unreadable(
            vfs,
            dir,
            &mut recovered,
            (first_index, path, error),
            after_unreadable,
            before_cut,
        )
        .await?;
    } else {
        result?;
    }
    recovered.empty = recovered.last_header.is_none()
        && recovered.cut.is_none()
        && recovered
            .segments
            .first()
            .is_none_or(|segment| segment.header.first_index == 1);
    Ok(recovered)
}

/// Cuts the log before a segment whose header cannot be read and moves it
/// and every later segment aside (`*.seg.damaged`). The segment existed,
/// and a segment's header is synced before its name appears, so its
/// entries had been durable: the cut says so. A cut the scan made earlier
/// stands (those segments were already past it).
async fn set_aside_unreadable(
    vfs: &dyn Vfs,
    dir: &Path,
    recovered: &mut Recovered,
    (first_index, path, error): (Index, PathBuf, StorageError),
    later: Vec<(Index, PathBuf)>,
    before_cut: BeforeCut<'_>,
) -> Result<()> {
    let from_index = recovered
        .segments
        .last()
        .map_or(first_index, |segment| segment.next_index);
    let mut held_through = first_index.saturating_sub(1).max(from_index - 1);
    let mut aside = vec![path.clone()];
    aside.extend(later.iter().map(|(_, path)| path.clone()));
    for (index, path) in std::iter::once((first_index, path.clone())).chain(later) {
        held_through = held_through.max(index.saturating_sub(1));
        if let Ok(file) = vfs.open(&path, false, 0).await
            && let Ok(len) = file.size().await
            && let Ok(bytes) = file.read_whole(len, Vec::new()).await
        {
            let start = (SEGMENT_HEADER_BYTES as usize).min(bytes.len());
            held_through =
                held_through.max(intact_last_index(&bytes, start, from_index).unwrap_or(0));
        }
    }
    let (offset, reason) = match &error {
        StorageError::Corrupt { offset, reason, .. } => (*offset, reason.clone()),
        other => (0, other.to_string()),
    };
    tracing::error!(
        file = %path.display(),
        %reason,
        from_index,
        held_through,
        "a segment header is damaged: cutting the log before it; the node repairs the rest from the cluster"
    );
    let cut = match &recovered.cut {
        // The scan cut the segment before: a later segment existed, so
        // what it cut had been durable.
        Some(cut) => LogCut {
            durable: true,
            held_through: cut.held_through.max(held_through),
            ..cut.clone()
        },
        None => LogCut {
            from_index,
            held_through,
            durable: true,
            file: path,
            offset,
            reason: format!("segment header unreadable: {reason}"),
        },
    };
    before_cut(&cut)?;
    for path in &aside {
        let to = path.with_extension("seg.damaged");
        tracing::warn!(file = %path.display(), aside = %to.display(), "moving a segment past the cut out of the log");
        vfs.rename(path, &to)?;
    }
    vfs.sync_dir(dir).await?;
    recovered.cut = Some(cut);
    Ok(())
}

/// Scans every segment in order into `recovered`. `next_read` holds the
/// read of the segment to scan next.
async fn scan_all(
    vfs: &dyn Vfs,
    found: &[Found],
    recovered: &mut Recovered,
    next_read: &mut Option<ReadAhead>,
    before_cut: BeforeCut<'_>,
) -> Result<()> {
    let count = found.len();
    let mut expected_index: Index = found[0].header.first_index;
    let mut prev_term: Term = found[0].header.prev_term;
    let mut spare_buffer: Option<Vec<u8>> = None;
    for position in 0..count {
        let bytes = next_read.take().expect("a read per segment").await?;
        if position + 1 < count {
            *next_read = Some(spawn_read(
                vfs,
                &found[position + 1],
                spare_buffer.take().unwrap_or_default(),
            ));
            // Let the read task submit its reads before this task scans.
            futures_lite::future::yield_now().await;
        }
        let segment = &found[position];
        if let Some(previous) = recovered.segments.last() {
            if segment.header.first_index != expected_index {
                let previous: &Segment = previous;
                return Err(corrupt(
                    &previous.path,
                    previous.end_offset,
                    format!(
                        "the log ends at index {} here but the next segment {} starts at index {}: \
                         a segment is missing or overlaps",
                        expected_index - 1,
                        segment.path.display(),
                        segment.header.first_index
                    ),
                ));
            }
            if segment.header.prev_term != prev_term {
                return Err(corrupt(
                    &segment.path,
                    16,
                    format!(
                        "header says previous term {}, the previous segment ends in term {prev_term}",
                        segment.header.prev_term
                    ),
                ));
            }
        }
        let scan = scan_segment(
            &bytes,
            &segment.header,
            ScanStart {
                first_index: expected_index,
                prev_term,
                is_last: position + 1 == count,
            },
        );
        let mut cut_here = false;
        match &scan.end {
            ScanEnd::Clean => {}
            ScanEnd::Corrupt { offset, reason } | ScanEnd::Torn { offset, reason } => {
                let durable = matches!(scan.end, ScanEnd::Corrupt { .. });
                let from_index = scan
                    .last_header
                    .map_or(expected_index, |last| last.last_index() + 1);
                // What intact frames past the cut (in this segment and the
                // later ones) show the log held.
                let mut held_through = intact_last_index(&bytes, *offset as usize, from_index)
                    .unwrap_or(from_index - 1);
                for later in &found[position + 1..] {
                    let later_bytes = later.file.read_whole(later.len, Vec::new()).await?;
                    let start = SEGMENT_HEADER_BYTES as usize;
                    held_through = held_through
                        .max(later.header.first_index.saturating_sub(1))
                        .max(intact_last_index(&later_bytes, start, from_index).unwrap_or(0));
                }
                let durable = durable || position + 1 < count;
                let cut = LogCut {
                    from_index,
                    held_through,
                    durable,
                    file: segment.path.clone(),
                    offset: *offset,
                    reason: reason.clone(),
                };
                if durable {
                    tracing::error!(
                        file = %segment.path.display(),
                        offset,
                        %reason,
                        from_index,
                        held_through,
                        "damage to durable log entries: cutting the log here; the node repairs the rest from the cluster"
                    );
                } else {
                    tracing::warn!(
                        file = %segment.path.display(),
                        offset,
                        %reason,
                        from_index,
                        "truncating a torn batch at the tail of the log"
                    );
                }
                before_cut(&cut)?;
                cut_torn_tail(&*segment.file, *offset, segment.len).await?;
                // Later segments no longer continue the log: keep them
                // aside for inspection, out of the log's way.
                for later in &found[position + 1..] {
                    let aside = later.path.with_extension("seg.damaged");
                    tracing::warn!(
                        file = %later.path.display(),
                        aside = %aside.display(),
                        "moving a segment past the cut out of the log"
                    );
                    vfs.rename(&later.path, &aside)?;
                }
                if position + 1 < count {
                    vfs.sync_dir(segment.path.parent().unwrap_or(Path::new(".")))
                        .await?;
                }
                recovered.cut = Some(cut);
                cut_here = true;
            }
        }
        let end = scan.end_offset;
        let tail = bytes[align_down(end) as usize..end as usize].to_vec();
        spare_buffer = Some(bytes);
        if let Some(last) = scan.last_header {
            expected_index = last.last_index() + 1;
            prev_term = last.term;
            recovered.last_header = Some(last);
        }
        recovered.batches += scan.batches.len() as u64;
        recovered.configs.extend_from_slice(&scan.configs);
        recovered.bytes += end - SEGMENT_HEADER_BYTES;
        recovered.segments.push(Segment {
            header: segment.header,
            path: segment.path.clone(),
            file: Some(segment.file.clone()),
            batches: scan.batches,
            next_index: expected_index,
            end_offset: end,
            flushed_offset: end,
            unsynced: false,
            tail: Some(tail),
        });
        if cut_here {
            // The later segments' reads were not started (or are awaited
            // by the caller); nothing after the cut is part of the log.
            break;
        }
    }
    Ok(())
}

/// The last index of the intact frames found in `bytes` from `from` on
/// whose first index is at least `min_index` (frames written past damage),
/// if any.
fn intact_last_index(bytes: &[u8], from: usize, min_index: Index) -> Option<Index> {
    use crate::frame::{HEADER_BYTES, MAGIC, frame_crc};
    let magic = MAGIC.to_le_bytes();
    let mut at = from;
    let mut last = None;
    while at + HEADER_BYTES <= bytes.len() {
        let Some(found) = bytes[at..].windows(4).position(|w| w == magic) else {
            break;
        };
        at += found;
        if let Ok(header) = BatchHeader::parse(&bytes[at..]) {
            let len = header.frame_len as usize;
            if len <= bytes.len() - at
                && frame_crc(&bytes[at..at + len]) == header.crc32
                && header.first_index >= min_index
            {
                last = Some(last.unwrap_or(0).max(header.last_index()));
                at += len;
                continue;
            }
        }
        at += 1;
    }
    last
}

fn spawn_read(vfs: &dyn Vfs, found: &Found, buffer: Vec<u8>) -> ReadAhead {
    vfs.read_ahead(found.file.clone(), found.len, buffer)
}

/// A segment read started ahead of its scan.
type ReadAhead = super::vfs::LocalFuture<'static, Result<Vec<u8>>>;

/// Zeroes `[offset, len)` of a torn segment and syncs it, so that no stale
/// byte past the cut can later be read as part of the log.
async fn cut_torn_tail(file: &dyn VfsFile, offset: u64, len: u64) -> Result<()> {
    let end = align_up(len.max(offset));
    if end > offset {
        file.deallocate(offset, end - offset).await?;
    }
    file.fsync()
}
