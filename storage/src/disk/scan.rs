//! Recovery's pure core: walks the frames of one segment held in memory,
//! CRC-checks each and decides where the valid log in it ends and why.
//!
//! A segment's valid prefix is a run of frames that continue the log:
//! first index exactly one past the previous entry, term not below the
//! previous term, CRC intact. What follows it is one of:
//! - nothing but zeros (or the end of the file): a clean end;
//! - anything else in the *last* segment, when no intact frame continuing
//!   the log lies more than the writer's unsynced window past it: a torn
//!   tail, left by a crash during the last write; recovery cuts it off;
//! - anything else: corruption of bytes that were synced, an error naming
//!   the file and offset.
//!
//! Why the window: the writer never has more than `write_bytes_max` bytes
//! written and not yet fdatasynced (config.rs), so a crash can damage only
//! frames within that window of each other. An intact frame that continues
//! the log further than that beyond a bad one was written after a completed
//! fdatasync that covered the bad one: those bytes were durable, so they are
//! corrupt, not torn. Stale frames from before a truncation do not continue
//! the log (their index or term does not fit), so they read as torn bytes.

use crate::frame::{BatchHeader, HEADER_BYTES, MAGIC, frame_crc};
use crate::types::{Index, Term};

use super::segment_header::{SEGMENT_HEADER_BYTES, SegmentHeader};

/// Where one batch lives in its segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLoc {
    /// Index of the batch's first entry.
    pub first_index: Index,
    /// Term of its entries.
    pub term: Term,
    /// Byte offset of the frame in the segment file.
    pub offset: u32,
    /// Frame length in bytes.
    pub len: u32,
}

/// How the valid frames of a segment end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Zeros or the end of the file follow the last valid frame.
    Clean,
    /// A torn write at the tail of the last segment: cut at `offset`.
    Torn {
        /// Where the valid log ends.
        offset: u64,
        /// What was found there.
        reason: String,
    },
    /// Bytes that were durable fail validation.
    Corrupt {
        /// Offset of the first bad byte range.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
}

/// The result of scanning one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    /// The valid frames, in order.
    pub batches: Vec<BatchLoc>,
    /// First indexes of the valid configuration frames, in order.
    pub configs: Vec<Index>,
    /// Header of the last valid frame, if any.
    pub last_header: Option<BatchHeader>,
    /// Offset just past the last valid frame.
    pub end_offset: u64,
    /// How the valid frames end.
    pub end: ScanEnd,
}

/// What the scan must find at the start of the segment.
#[derive(Clone, Copy, Debug)]
pub struct ScanStart {
    /// Index the first frame must start at.
    pub first_index: Index,
    /// Term the first frame's term must not be below.
    pub prev_term: Term,
    /// Whether this is the last segment of the log (only it may be torn).
    pub is_last: bool,
}

/// Scans `file`, the whole contents of a segment whose header is `header`.
pub fn scan_segment(file: &[u8], header: &SegmentHeader, start: ScanStart) -> SegmentScan {
    let mut batches = Vec::new();
    let mut configs = Vec::new();
    let mut last_header = None;
    let mut offset = SEGMENT_HEADER_BYTES as usize;
    let mut expected_index = start.first_index;
    let mut prev_term = start.prev_term;
    let end = loop {
        if offset >= file.len() {
            break ScanEnd::Clean;
        }
        // Only a zero frame header makes the (costly) check of the rest worthwhile.
        let head = &file[offset..(offset + HEADER_BYTES).min(file.len())];
        if head.iter().all(|&b| b == 0) && file[offset..].iter().all(|&b| b == 0) {
            break ScanEnd::Clean;
        }
        match check_frame(file, offset, expected_index, prev_term) {
            Ok(frame) => {
                if frame.kind == crate::frame::BatchKind::Config {
                    configs.push(frame.first_index);
                }
                batches.push(BatchLoc {
                    first_index: frame.first_index,
                    term: frame.term,
                    offset: offset as u32,
                    len: frame.frame_len,
                });
                offset += frame.frame_len as usize;
                expected_index = frame.last_index() + 1;
                prev_term = frame.term;
                last_header = Some(frame);
            }
            Err(bad) => {
                break classify_bad_bytes(
                    file,
                    offset,
                    bad,
                    header,
                    start.is_last,
                    expected_index,
                    prev_term,
                );
            }
        }
    };
    SegmentScan {
        batches,
        configs,
        last_header,
        end_offset: offset as u64,
        end,
    }
}

/// Why the bytes at an offset are not a frame that continues the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadFrame {
    /// The frame header does not parse.
    #[error(transparent)]
    Header(#[from] crate::frame::FrameError),
    /// The header's length runs past the end of the file.
    #[error("batch frame of {len} bytes runs past the end of the file")]
    PastEnd {
        /// The frame length the header claims.
        len: usize,
    },
    /// The frame's bytes do not match its CRC.
    #[error("batch crc mismatch")]
    Crc,
    /// The frame would end past the largest segment offset.
    #[error("batch frame beyond the segment size limit")]
    BeyondSegmentLimit,
    /// The frame does not start at the next index.
    #[error("batch starts at index {first_index}, expected {expected_index}")]
    WrongIndex {
        /// Where the frame starts.
        first_index: Index,
        /// The index after the previous frame's last.
        expected_index: Index,
    },
    /// The frame's term is below the previous frame's.
    #[error("batch term {term} below previous term {prev_term}")]
    TermBackwards {
        /// The frame's term.
        term: Term,
        /// The previous frame's term.
        prev_term: Term,
    },
}

/// The frame at `offset` if it is intact and continues the log.
fn check_frame(
    file: &[u8],
    offset: usize,
    expected_index: Index,
    prev_term: Term,
) -> Result<BatchHeader, BadFrame> {
    let rest = &file[offset..];
    let header = BatchHeader::parse(rest)?;
    let len = header.frame_len as usize;
    if len > rest.len() {
        return Err(BadFrame::PastEnd { len });
    }
    if frame_crc(&rest[..len]) != header.crc32 {
        return Err(BadFrame::Crc);
    }
    if offset + len > u32::MAX as usize {
        return Err(BadFrame::BeyondSegmentLimit);
    }
    if header.first_index != expected_index {
        return Err(BadFrame::WrongIndex {
            first_index: header.first_index,
            expected_index,
        });
    }
    if header.term < prev_term {
        return Err(BadFrame::TermBackwards {
            term: header.term,
            prev_term,
        });
    }
    Ok(header)
}

/// Decides whether bad bytes at `offset` are a torn tail or corruption.
fn classify_bad_bytes(
    file: &[u8],
    offset: usize,
    bad: BadFrame,
    header: &SegmentHeader,
    is_last: bool,
    expected_index: Index,
    prev_term: Term,
) -> ScanEnd {
    let reason = bad.to_string();
    if !is_last {
        return ScanEnd::Corrupt {
            offset: offset as u64,
            reason: format!("{reason} (not the last segment, so not a torn write)"),
        };
    }
    let window = header.write_bytes_max;
    if let Some((later, len)) =
        continuing_frame_beyond(file, offset, window, expected_index, prev_term)
    {
        return ScanEnd::Corrupt {
            offset: offset as u64,
            reason: format!(
                "{reason}; an intact batch of {len} bytes continuing the log follows at offset {later}, \
                 beyond the {window}-byte unsynced window, so these bytes were durable"
            ),
        };
    }
    ScanEnd::Torn {
        offset: offset as u64,
        reason,
    }
}

/// The first intact frame after `bad` that continues the log (index at or
/// past `expected_index`, term at or above `prev_term`) and ends more than
/// `window` bytes past `bad`, as `(offset, len)`.
fn continuing_frame_beyond(
    file: &[u8],
    bad: usize,
    window: u64,
    expected_index: Index,
    prev_term: Term,
) -> Option<(usize, usize)> {
    let magic = MAGIC.to_le_bytes();
    let mut at = bad + 1;
    while at + HEADER_BYTES <= file.len() {
        let found = file[at..].windows(4).position(|w| w == magic)?;
        at += found;
        if let Ok(header) = BatchHeader::parse(&file[at..]) {
            let len = header.frame_len as usize;
            let intact = len <= file.len() - at && frame_crc(&file[at..at + len]) == header.crc32;
            if intact && header.first_index >= expected_index && header.term >= prev_term {
                if (at + len - bad) as u64 > window {
                    return Some((at, len));
                }
                at += len;
                continue;
            }
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::batches;

    fn segment(window: u64, counts: &[u32]) -> (SegmentHeader, Vec<u8>, Vec<u64>) {
        let header = SegmentHeader {
            first_index: 1,
            prev_term: 0,
            base: true,
            write_bytes_max: window,
        };
        let mut file = header.encode();
        let mut offsets = Vec::new();
        for batch in batches(1, 1, counts) {
            offsets.push(file.len() as u64);
            file.extend_from_slice(batch.bytes());
        }
        file.extend(std::iter::repeat_n(0, 8192));
        (header, file, offsets)
    }

    fn start(is_last: bool) -> ScanStart {
        ScanStart {
            first_index: 1,
            prev_term: 0,
            is_last,
        }
    }

    #[test]
    fn clean_segment_yields_every_batch() {
        let (header, file, offsets) = segment(4096, &[3, 1, 4]);
        let scan = scan_segment(&file, &header, start(true));
        assert_eq!(scan.end, ScanEnd::Clean);
        assert_eq!(scan.batches.len(), 3);
        assert_eq!(scan.batches[2].offset as u64, offsets[2]);
        assert_eq!(scan.last_header.unwrap().last_index(), 8);
    }

    #[test]
    fn damage_in_the_last_frame_is_a_torn_tail() {
        let (header, mut file, offsets) = segment(4096, &[3, 1, 4]);
        file[offsets[2] as usize + 70] ^= 1;
        let scan = scan_segment(&file, &header, start(true));
        assert!(matches!(scan.end, ScanEnd::Torn { offset, .. } if offset == offsets[2]));
        assert_eq!(scan.batches.len(), 2);
        let not_last = scan_segment(&file, &header, start(false));
        assert!(matches!(not_last.end, ScanEnd::Corrupt { offset, .. } if offset == offsets[2]));
    }

    #[test]
    fn damage_followed_by_intact_frames_beyond_the_window_is_corruption() {
        let counts = vec![20u32; 40];
        let (header, mut file, offsets) = segment(4096, &counts);
        file[offsets[1] as usize + 100] ^= 0x10;
        let scan = scan_segment(&file, &header, start(true));
        assert!(
            matches!(scan.end, ScanEnd::Corrupt { offset, .. } if offset == offsets[1]),
            "{:?}",
            scan.end
        );
        // With a window larger than the rest of the segment the same damage
        // could be a torn write.
        let (wide, mut file, offsets) = segment(1 << 20, &counts);
        file[offsets[1] as usize + 100] ^= 0x10;
        assert!(matches!(
            scan_segment(&file, &wide, start(true)).end,
            ScanEnd::Torn { .. }
        ));
    }

    #[test]
    fn stale_frames_after_the_end_do_not_continue_the_log() {
        let (header, mut file, offsets) = segment(4096, &[2, 2]);
        // A frame for index 2 again (as after a truncation) follows the log.
        let stale = batches(1, 2, &[1]).remove(0);
        let at = file.len() - 8192;
        file.truncate(at);
        file.extend_from_slice(stale.bytes());
        let scan = scan_segment(&file, &header, start(true));
        assert!(matches!(scan.end, ScanEnd::Torn { offset, .. } if offset == at as u64));
        assert_eq!(scan.batches.len(), 2);
        assert_eq!(offsets.len(), 2);
    }

    #[test]
    fn a_truncated_frame_is_torn() {
        let (header, file, offsets) = segment(4096, &[3, 3]);
        let cut = &file[..offsets[1] as usize + 30];
        let scan = scan_segment(cut, &header, start(true));
        assert!(matches!(scan.end, ScanEnd::Torn { offset, .. } if offset == offsets[1]));
    }
}
