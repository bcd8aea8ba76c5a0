//! The header block at the start of every segment file, and segment names.
//!
//! ```text
//! offset size field
//!  0     4    magic            "ORDS"
//!  4     1    version          SEGMENT_FORMAT_VERSION
//!  5     1    flags            bit 0: BASE (the log starts here; older
//!                              segments are leftovers of a reset)
//!  6     2    reserved         zero
//!  8     8    first_index      index of the segment's first entry
//! 16     8    prev_term        term of the entry at first_index - 1
//! 24     8    write_bytes_max  the writer's unsynced window (see recovery)
//! 32     4    crc32            crc32fast over [0, 32)
//! 36   2012   reserved         zero
//! 2048 2048   a copy of [0, 2048)
//! 4096 ..     frames           batch frames back to back, then zeros
//! ```
//!
//! The header fills a whole 4 KiB block so that frames start aligned for
//! O_DIRECT and rewriting the tail block never touches the header. It is
//! written twice, in different sectors, so that damage to one sector does
//! not cost the segment: either valid copy is the header. (Segments
//! written before the copy existed hold zeros there; their first copy is
//! read as before.)

use crate::types::{Index, Term};

/// `"ORDS"` read as a little-endian `u32`.
pub const SEGMENT_MAGIC: u32 = u32::from_le_bytes(*b"ORDS");
/// The only segment format version this build reads and writes.
pub const SEGMENT_FORMAT_VERSION: u8 = 1;
/// Bytes before the first frame of a segment.
pub const SEGMENT_HEADER_BYTES: u64 = 4096;
/// Bytes of the header that carry fields; the rest of each copy is zero.
const SEGMENT_HEADER_USED_BYTES: usize = 36;
/// Offset of the header's second copy.
const SEGMENT_HEADER_COPY_OFFSET: usize = 2048;
const FLAG_BASE: u8 = 1;
/// File name suffix of segments.
pub const SEGMENT_SUFFIX: &str = ".seg";

/// A segment's header, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Index of the segment's first entry.
    pub first_index: Index,
    /// Term of the entry just before the segment (`0` before index 1).
    pub prev_term: Term,
    /// Whether the log starts at this segment (a fresh log or a reset).
    pub base: bool,
    /// Most bytes the writer had unsynced at once in this segment.
    pub write_bytes_max: u64,
}

/// Why a header block is not valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentHeaderError {
    /// Fewer bytes than the header block.
    Truncated,
    /// The block is all zeros: the file was created but its header never
    /// reached the disk.
    Zero,
    /// Magic, version, CRC or a field is wrong.
    Invalid(&'static str),
}

impl SegmentHeader {
    /// The header block, `SEGMENT_HEADER_BYTES` long.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; SEGMENT_HEADER_BYTES as usize];
        out[0..4].copy_from_slice(&SEGMENT_MAGIC.to_le_bytes());
        out[4] = SEGMENT_FORMAT_VERSION;
        out[5] = if self.base { FLAG_BASE } else { 0 };
        out[8..16].copy_from_slice(&self.first_index.to_le_bytes());
        out[16..24].copy_from_slice(&self.prev_term.to_le_bytes());
        out[24..32].copy_from_slice(&self.write_bytes_max.to_le_bytes());
        let crc = crc32fast::hash(&out[0..32]);
        out[32..36].copy_from_slice(&crc.to_le_bytes());
        out.copy_within(0..SEGMENT_HEADER_COPY_OFFSET, SEGMENT_HEADER_COPY_OFFSET);
        out
    }

    /// Parses and checks the header at the start of `bytes`: its first
    /// copy, else its second; the first copy's error when neither is valid.
    pub fn parse(bytes: &[u8]) -> Result<Self, SegmentHeaderError> {
        if bytes.len() < SEGMENT_HEADER_BYTES as usize {
            return Err(SegmentHeaderError::Truncated);
        }
        let block = &bytes[..SEGMENT_HEADER_BYTES as usize];
        if block.iter().all(|&b| b == 0) {
            return Err(SegmentHeaderError::Zero);
        }
        Self::parse_copy(&block[..SEGMENT_HEADER_COPY_OFFSET]).or_else(|error| {
            Self::parse_copy(&block[SEGMENT_HEADER_COPY_OFFSET..]).map_err(|_| error)
        })
    }

    fn parse_copy(block: &[u8]) -> Result<Self, SegmentHeaderError> {
        let u32_at = |at: usize| u32::from_le_bytes(block[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(block[at..at + 8].try_into().expect("8 bytes"));
        if u32_at(0) != SEGMENT_MAGIC {
            return Err(SegmentHeaderError::Invalid("bad segment magic"));
        }
        if block[4] != SEGMENT_FORMAT_VERSION {
            return Err(SegmentHeaderError::Invalid(
                "unsupported segment format version",
            ));
        }
        if u32_at(32) != crc32fast::hash(&block[0..32]) {
            return Err(SegmentHeaderError::Invalid("segment header crc mismatch"));
        }
        if block[5] & !FLAG_BASE != 0 || block[6..8] != [0, 0] {
            return Err(SegmentHeaderError::Invalid("unknown segment header flags"));
        }
        if block[SEGMENT_HEADER_USED_BYTES..].iter().any(|&b| b != 0) {
            return Err(SegmentHeaderError::Invalid(
                "nonzero reserved segment header bytes",
            ));
        }
        let header = Self {
            first_index: u64_at(8),
            prev_term: u64_at(16),
            base: block[5] & FLAG_BASE != 0,
            write_bytes_max: u64_at(24),
        };
        if header.first_index == 0 || header.first_index == u64::MAX {
            return Err(SegmentHeaderError::Invalid(
                "segment first_index out of range",
            ));
        }
        if header.write_bytes_max == 0 {
            return Err(SegmentHeaderError::Invalid(
                "segment write_bytes_max is zero",
            ));
        }
        Ok(header)
    }
}

/// The file name of the segment whose first entry is `first_index`:
/// zero-padded so that names sort like indexes.
pub fn segment_file_name(first_index: Index) -> String {
    format!("{first_index:020}{SEGMENT_SUFFIX}")
}

/// The first index a segment file name stands for; `None` for other names.
pub fn parse_segment_file_name(name: &str) -> Option<Index> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let header = SegmentHeader {
            first_index: 42,
            prev_term: 7,
            base: true,
            write_bytes_max: 1 << 20,
        };
        let block = header.encode();
        assert_eq!(SegmentHeader::parse(&block), Ok(header));
        for at in [0usize, 4, 5, 8, 16, 24, 32, 100, 2047] {
            // Either copy alone still gives the header...
            let mut bad = block.clone();
            bad[at] ^= 1;
            assert_eq!(SegmentHeader::parse(&bad), Ok(header), "{at}");
            let mut bad = block.clone();
            bad[2048 + at] ^= 1;
            assert_eq!(SegmentHeader::parse(&bad), Ok(header), "{at}");
            // ...and damage to both is refused.
            let mut bad = block.clone();
            bad[at] ^= 1;
            bad[2048 + at] ^= 1;
            assert!(
                matches!(
                    SegmentHeader::parse(&bad),
                    Err(SegmentHeaderError::Invalid(_))
                ),
                "{at}"
            );
        }
        // A segment written before the copy existed.
        let mut old = block.clone();
        old[2048..].fill(0);
        assert_eq!(SegmentHeader::parse(&old), Ok(header));
        assert_eq!(
            SegmentHeader::parse(&block[..100]),
            Err(SegmentHeaderError::Truncated)
        );
        assert_eq!(
            SegmentHeader::parse(&vec![0; 4096]),
            Err(SegmentHeaderError::Zero)
        );
    }

    #[test]
    fn names_sort_like_indexes() {
        assert_eq!(segment_file_name(12), "00000000000000000012.seg");
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX - 1)),
            Some(u64::MAX - 1)
        );
        assert_eq!(parse_segment_file_name("12.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000001x.seg"), None);
        assert_eq!(parse_segment_file_name("99999999999999999999.seg"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }
}
