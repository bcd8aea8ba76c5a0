//! One segment of the disk log as the log keeps it in memory: its header,
//! its open file, where each of its batches lives and how much of it is on
//! disk.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::Result;
use crate::types::Index;

use super::io::{IO_ALIGN, align_down};
use super::scan::BatchLoc;
use super::segment_header::{SEGMENT_HEADER_BYTES, SegmentHeader, segment_file_name};
use super::spare::Spares;
use super::vfs::{Vfs, VfsFile};

/// A segment: a file holding consecutive batches.
pub struct Segment {
    /// The header written at the start of the file.
    pub header: SegmentHeader,
    /// The file's path.
    pub path: PathBuf,
    /// The open file; `None` until the first flush into this segment
    /// creates it.
    pub file: Option<Rc<dyn VfsFile>>,
    /// The batches, in order. Invariant: contiguous indexes from
    /// `header.first_index`, offsets increasing from `SEGMENT_HEADER_BYTES`
    /// without gaps, terms non-decreasing.
    pub batches: Vec<BatchLoc>,
    /// Index just past the last entry (`header.first_index` when empty).
    pub next_index: Index,
    /// Offset just past the last batch.
    pub end_offset: u64,
    /// Bytes `[0, flushed_offset)` are written to the file. Invariant:
    /// `SEGMENT_HEADER_BYTES <= flushed_offset <= end_offset`.
    pub flushed_offset: u64,
    /// Whether bytes were written since the last fdatasync.
    pub unsynced: bool,
    /// The bytes `[align_down(flushed_offset), flushed_offset)`, which an
    /// O_DIRECT write of the next bytes must rewrite; `None` when not known
    /// (read back from disk before the next write).
    pub tail: Option<Vec<u8>>,
}

impl Segment {
    /// An empty segment not yet on disk.
    pub fn new_in_memory(dir: &Path, header: SegmentHeader) -> Self {
        Self {
            path: dir.join(segment_file_name(header.first_index)),
            next_index: header.first_index,
            header,
            file: None,
            batches: Vec::new(),
            end_offset: SEGMENT_HEADER_BYTES,
            flushed_offset: SEGMENT_HEADER_BYTES,
            unsynced: false,
            tail: Some(Vec::new()),
        }
    }

    /// Index of the last entry (`header.first_index - 1` when empty).
    pub fn last_index(&self) -> Index {
        self.next_index - 1
    }

    /// Position of the batch holding `index`, which the segment must hold.
    pub fn position(&self, index: Index) -> usize {
        debug_assert!(index >= self.header.first_index && index < self.next_index);
        self.batches.partition_point(|b| b.first_index <= index) - 1
    }

    /// The open file. Only flushed batches are read from disk, and the
    /// first flush creates the file, so its absence is a bug.
    pub fn file(&self) -> &Rc<dyn VfsFile> {
        self.file
            .as_ref()
            .expect("a segment with flushed bytes has a file")
    }

    /// Checks the invariants (debug builds).
    pub fn check_invariants(&self) {
        debug_assert!(
            SEGMENT_HEADER_BYTES <= self.flushed_offset && self.flushed_offset <= self.end_offset
        );
        let mut index = self.header.first_index;
        let mut offset = SEGMENT_HEADER_BYTES;
        let mut term = self.header.prev_term;
        for (at, batch) in self.batches.iter().enumerate() {
            if at == 0 {
                debug_assert_eq!(batch.first_index, index);
            } else {
                debug_assert!(batch.first_index >= index);
            }
            debug_assert_eq!(u64::from(batch.offset), offset);
            debug_assert!(batch.term >= term);
            index = batch.first_index + 1;
            offset += u64::from(batch.len);
            term = batch.term;
        }
        if let Some(last) = self.batches.last() {
            debug_assert!(self.next_index > last.first_index);
        } else {
            debug_assert_eq!(self.next_index, self.header.first_index);
        }
        debug_assert_eq!(self.end_offset, offset);
        if let Some(tail) = &self.tail {
            debug_assert_eq!(
                tail.len() as u64,
                self.flushed_offset - align_down(self.flushed_offset)
            );
        }
    }
}

/// Creates the file of a segment durably: header written and synced, name
/// in place and the directory synced, so that a segment that exists after
/// a crash always has a valid header. Uses the prepared zero-filled spare
/// when one is ready, else a fallocate'd file. `flags` are extra `open(2)`
/// flags ([`DiskLogConfig::segment_open_flags`](super::DiskLogConfig)).
pub async fn create_segment_file(
    vfs: &dyn Vfs,
    dir: &Path,
    header: &SegmentHeader,
    spares: &Spares,
    segment_bytes: u64,
    flags: libc::c_int,
) -> Result<Rc<dyn VfsFile>> {
    let path = dir.join(segment_file_name(header.first_index));
    let block = header.encode();
    // A prepared spare that cannot be opened (removed by a preparation left
    // over from an earlier log on this directory in this process) falls
    // back to a fallocate'd file.
    let spare = match spares.take() {
        Some(spare) => match vfs.open(&spare, false, flags).await {
            Ok(file) => Some((file, spare)),
            Err(error) => {
                tracing::warn!(%error, "prepared spare segment unusable; using fallocate");
                None
            }
        },
        None => None,
    };
    let (file, from) = match spare {
        Some(ready) => ready,
        None => {
            let tmp = dir.join(format!("{}.tmp", segment_file_name(header.first_index)));
            let file = vfs.open(&tmp, true, flags).await?;
            file.pre_allocate(segment_bytes).await?;
            (file, tmp)
        }
    };
    file.write_at(0, &[&block]).await?;
    file.fdatasync().await?;
    vfs.rename(&from, &path)?;
    vfs.sync_dir(dir).await?;
    debug_assert_eq!(SEGMENT_HEADER_BYTES % IO_ALIGN, 0);
    Ok(file)
}
