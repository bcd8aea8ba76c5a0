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

use glommio::io::DmaFile;

use crate::error::{Result, StorageError};
use crate::frame::{BatchHeader, FRAME_BYTES_MAX};
use crate::types::{Index, Term};

use super::config::SEGMENT_BYTES_LIMIT;
use super::hard_state_file::HARD_STATE_FILE_NAME;
use super::io::{align_down, align_up, glommio_error, open_dma_with, read_whole, std_error};
use super::scan::{ScanEnd, ScanStart, scan_segment};
use super::segment::Segment;
use super::segment_header::{
    SEGMENT_HEADER_BYTES, SegmentHeader, SegmentHeaderError, parse_segment_file_name,
};

/// What recovery found.
pub struct Recovered {
    /// The log's segments, in order (empty for a new log).
    pub segments: Vec<Segment>,
    /// Header of the log's last batch, if any.
    pub last_header: Option<BatchHeader>,
    /// Number of batches recovered.
    pub batches: u64,
    /// Bytes of frames recovered.
    pub bytes: u64,
}

struct Found {
    path: PathBuf,
    file: Rc<DmaFile>,
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
fn list_segments(dir: &Path) -> Result<Vec<(Index, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(std_error("read directory", dir))? {
        let entry = entry.map_err(std_error("read directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::warn!(dir = %dir.display(), name = ?name, "ignoring a file with a non-UTF-8 name");
            continue;
        };
        if name.ends_with(".tmp") {
            // An interrupted segment creation, spare preparation or
            // hard-state creation: never part of the log.
            // Already gone is fine: a spare preparation of an earlier log
            // on this directory, dropped in this process a moment ago, may
            // still be writing its spare on the blocking pool.
            match std::fs::remove_file(entry.path()) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(std_error("remove", &entry.path())(error));
                }
                _ => {}
            }
        } else if let Some(first_index) = parse_segment_file_name(name) {
            segments.push((first_index, entry.path()));
        } else if name != HARD_STATE_FILE_NAME {
            tracing::warn!(file = %entry.path().display(), "ignoring an unknown file in the log directory");
        }
    }
    segments.sort();
    Ok(segments)
}

async fn open_segment(first_index: Index, path: PathBuf, flags: libc::c_int) -> Result<Found> {
    let file = Rc::new(open_dma_with(&path, false, flags).await?);
    let len = file
        .file_size()
        .await
        .map_err(glommio_error("stat", &path))?;
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
    let block = file
        .read_at_aligned(0, SEGMENT_HEADER_BYTES as usize)
        .await
        .map_err(glommio_error("read", &path))?;
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

/// Recovers the log in `dir` (which must exist).
pub async fn recover(dir: &Path, flags: libc::c_int) -> Result<Recovered> {
    let mut found = Vec::new();
    for (first_index, path) in list_segments(dir)? {
        found.push(open_segment(first_index, path, flags).await?);
    }
    if let Some(base) = found.iter().rposition(|f| f.header.base) {
        for stale in found.drain(..base) {
            tracing::warn!(
                file = %stale.path.display(),
                "deleting a segment older than the log's base (left by an interrupted reset)"
            );
            std::fs::remove_file(&stale.path).map_err(std_error("remove", &stale.path))?;
        }
    }
    let mut recovered = Recovered {
        segments: Vec::with_capacity(found.len()),
        last_header: None,
        batches: 0,
        bytes: 0,
    };
    if found.is_empty() {
        return Ok(recovered);
    }
    // Reading the next segment overlaps with scanning this one.
    let mut next_read = Some(spawn_read(&found[0], Vec::new()));
    let result = scan_all(&found, &mut recovered, &mut next_read).await;
    if let Some(pending) = next_read.take() {
        // Let a read started for a segment after the failure finish rather
        // than cancel it mid-IO.
        let _ = pending.await;
    }
    result.map(|()| recovered)
}

/// Scans every segment in order into `recovered`. `next_read` holds the
/// read of the segment to scan next.
async fn scan_all(
    found: &[Found],
    recovered: &mut Recovered,
    next_read: &mut Option<glommio::Task<Result<Vec<u8>>>>,
) -> Result<()> {
    let count = found.len();
    let mut expected_index: Index = found[0].header.first_index;
    let mut prev_term: Term = found[0].header.prev_term;
    let mut spare_buffer: Option<Vec<u8>> = None;
    for position in 0..count {
        let bytes = next_read.take().expect("a read per segment").await?;
        if position + 1 < count {
            *next_read = Some(spawn_read(
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
        match &scan.end {
            ScanEnd::Clean => {}
            ScanEnd::Corrupt { offset, reason } => {
                return Err(corrupt(&segment.path, *offset, reason.clone()));
            }
            ScanEnd::Torn { offset, reason } => {
                tracing::warn!(
                    file = %segment.path.display(),
                    offset,
                    %reason,
                    "truncating a torn batch at the tail of the log"
                );
                cut_torn_tail(&segment.file, &segment.path, *offset, segment.len).await?;
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
    }
    Ok(())
}

fn spawn_read(found: &Found, buffer: Vec<u8>) -> glommio::Task<Result<Vec<u8>>> {
    let file = found.file.clone();
    let path = found.path.clone();
    let len = found.len;
    glommio::spawn_local(async move { read_whole(&file, &path, len, buffer).await })
}

/// Zeroes `[offset, len)` of a torn segment and syncs it, so that no stale
/// byte past the cut can later be read as part of the log.
async fn cut_torn_tail(file: &DmaFile, path: &Path, offset: u64, len: u64) -> Result<()> {
    let end = align_up(len.max(offset));
    if end > offset {
        file.deallocate(offset, end - offset)
            .await
            .map_err(glommio_error("punch hole", path))?;
    }
    super::io::fsync_file(file, path)
}
