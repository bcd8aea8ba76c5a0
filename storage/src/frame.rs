//! The batch frame: one format on disk and on the wire.
//!
//! A batch is a run of consecutive log entries created by one leader in one
//! term. The leader encodes it once; followers receive the same bytes in
//! AppendEntries and write them to their log unchanged; recovery and readers
//! validate the same bytes. Nothing re-encodes a batch on the hot path.
//!
//! ```text
//! offset size field
//!  0     4    magic        "ORDB" (0x4244_524f little-endian)
//!  4     1    version      FORMAT_VERSION
//!  5     1    kind         0 = user entries, 1 = no-op, 2 = configuration
//!  6     2    reserved     zero
//!  8     4    frame_len    total bytes, header included
//! 12     4    crc32        crc32fast over bytes [0,12) ++ [16, frame_len)
//! 16     8    term         every entry of the batch has this term
//! 24     8    first_index  index of the first entry
//! 32     4    count        number of entries, >= 1
//! 36     4    reserved     zero
//! 40     8    first_id     id of the first entry (user batches); for
//!                          internal batches the next id, which they do not take
//! 48     8    first_ts     ts of the first entry; entry i has first_ts + i
//! 56     8    reserved     zero
//! 64     ..   body         rkyv archive of `Body { entries: [Entry] }`
//! ```
//!
//! Index, id and ts of every entry derive from the header and the entry's
//! position, so the body stores only what the proposer gave: its session
//! `(client_id, seq)` and its payload. Why `first_ts + i`: the leader stamps a
//! whole batch at once with `ts0 = max(now, previous ts + 1)`, and the entries
//! after it must still strictly increase.

use bytes::Bytes;
use rkyv::rancor;
use rkyv::with::InlineAsBox;

use crate::types::{ClientId, Index, LogId, MessageId, Seq, Term, TimestampUs};

/// `"ORDB"` read as a little-endian `u32`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"ORDB");
/// The only frame format version this build reads and writes.
pub const FORMAT_VERSION: u8 = 1;
/// Size of the fixed header that precedes the rkyv body.
pub const HEADER_BYTES: usize = 64;
/// Hard ceiling on one batch frame. Knobs (`batch_bytes_max`,
/// `frame_bytes_max`) must stay below it; config load checks that.
pub const FRAME_BYTES_MAX: usize = 64 << 20;
/// Hard ceiling on entries in one batch.
pub const BATCH_ENTRIES_MAX: u32 = 1 << 20;

/// What the entries of a batch are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BatchKind {
    /// User messages: each takes the next message id.
    Entries = 0,
    /// The no-op a new leader appends to commit entries of earlier terms
    /// (Raft §5.4.2, §8). Exactly one entry; takes no id.
    Noop = 1,
    /// A cluster configuration. Exactly one entry; takes no id. Its payload
    /// is interpreted by the core.
    Config = 2,
}

impl BatchKind {
    fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Entries),
            1 => Some(Self::Noop),
            2 => Some(Self::Config),
            _ => None,
        }
    }
}

/// Why bytes are not a valid batch frame. Every variant names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the header or than `frame_len` says.
    #[error("truncated batch frame: have {have} bytes, need {need}")]
    Truncated {
        /// Bytes available.
        have: usize,
        /// Bytes the header (or the header's `frame_len`) requires.
        need: usize,
    },
    /// The first four bytes are not `ORDB`.
    #[error("bad batch magic {found:#010x}")]
    BadMagic {
        /// What was found instead.
        found: u32,
    },
    /// A format version this build does not read.
    #[error("unsupported batch format version {found}")]
    BadVersion {
        /// What was found instead.
        found: u8,
    },
    /// A header field out of its domain.
    #[error("invalid batch header field {field}: {value}")]
    BadField {
        /// The field's name as in the format table.
        field: &'static str,
        /// The offending value.
        value: u64,
    },
    /// The CRC32 does not match the bytes.
    #[error("batch crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// The rkyv body failed validation or disagrees with the header.
    #[error("invalid batch body: {0}")]
    BadBody(String),
}

/// The fixed header of a batch frame, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// What the entries are.
    pub kind: BatchKind,
    /// Total frame bytes, header included.
    pub frame_len: u32,
    /// CRC32 as stored.
    pub crc32: u32,
    /// Term of every entry in the batch.
    pub term: Term,
    /// Index of the first entry.
    pub first_index: Index,
    /// Number of entries (>= 1).
    pub count: u32,
    /// Id of the first entry for user batches; the next id otherwise.
    pub first_id: MessageId,
    /// Timestamp of the first entry.
    pub first_ts: TimestampUs,
}

impl BatchHeader {
    /// Parses and checks the header at the start of `bytes` (magic, version,
    /// field domains, length bounds). It does not check the CRC or the body:
    /// recovery uses it to find where the next frame starts.
    pub fn parse(bytes: &[u8]) -> Result<Self, FrameError> {
        if bytes.len() < HEADER_BYTES {
            return Err(FrameError::Truncated {
                have: bytes.len(),
                need: HEADER_BYTES,
            });
        }
        let magic = le_u32(bytes, 0);
        if magic != MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        if bytes[4] != FORMAT_VERSION {
            return Err(FrameError::BadVersion { found: bytes[4] });
        }
        let kind = BatchKind::from_u8(bytes[5]).ok_or(FrameError::BadField {
            field: "kind",
            value: u64::from(bytes[5]),
        })?;
        let frame_len = le_u32(bytes, 8);
        if (frame_len as usize) < HEADER_BYTES || frame_len as usize > FRAME_BYTES_MAX {
            return Err(FrameError::BadField {
                field: "frame_len",
                value: u64::from(frame_len),
            });
        }
        let header = Self {
            kind,
            frame_len,
            crc32: le_u32(bytes, 12),
            term: le_u64(bytes, 16),
            first_index: le_u64(bytes, 24),
            count: le_u32(bytes, 32),
            first_id: le_u64(bytes, 40),
            first_ts: le_u64(bytes, 48),
        };
        header.check_fields()?;
        Ok(header)
    }

    fn check_fields(&self) -> Result<(), FrameError> {
        let bad = |field, value| Err(FrameError::BadField { field, value });
        if self.term == 0 {
            return bad("term", 0);
        }
        if self.first_index == 0 {
            return bad("first_index", 0);
        }
        if self.count == 0 || self.count > BATCH_ENTRIES_MAX {
            return bad("count", u64::from(self.count));
        }
        if self.kind != BatchKind::Entries && self.count != 1 {
            return bad("count", u64::from(self.count));
        }
        if self.first_id == 0 {
            return bad("first_id", 0);
        }
        let span = u64::from(self.count);
        if self.first_index.checked_add(span).is_none()
            || self.first_id.checked_add(span).is_none()
            || self.first_ts.checked_add(span).is_none()
        {
            return bad("count", span);
        }
        Ok(())
    }

    /// Index of the last entry.
    pub fn last_index(&self) -> Index {
        self.first_index + u64::from(self.count) - 1
    }

    /// Position of the last entry.
    pub fn last_log_id(&self) -> LogId {
        LogId::new(self.term, self.last_index())
    }

    /// Timestamp of the last entry.
    pub fn last_ts(&self) -> TimestampUs {
        self.first_ts + u64::from(self.count) - 1
    }

    /// The id the entry after this batch takes.
    pub fn next_id(&self) -> MessageId {
        match self.kind {
            BatchKind::Entries => self.first_id + u64::from(self.count),
            BatchKind::Noop | BatchKind::Config => self.first_id,
        }
    }

    /// Id of the last user message at or before this batch's end
    /// (`next_id() - 1`); `0` if there is none yet.
    pub fn last_id(&self) -> MessageId {
        self.next_id() - 1
    }

    /// Number of ids (user messages) in the batch.
    pub fn id_count(&self) -> u64 {
        match self.kind {
            BatchKind::Entries => u64::from(self.count),
            BatchKind::Noop | BatchKind::Config => 0,
        }
    }

    /// Whether `index` lies within the batch.
    pub fn contains(&self, index: Index) -> bool {
        index >= self.first_index && index <= self.last_index()
    }

    fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4] = FORMAT_VERSION;
        out[5] = self.kind as u8;
        out[6..8].fill(0);
        out[8..12].copy_from_slice(&self.frame_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.crc32.to_le_bytes());
        out[16..24].copy_from_slice(&self.term.to_le_bytes());
        out[24..32].copy_from_slice(&self.first_index.to_le_bytes());
        out[32..36].copy_from_slice(&self.count.to_le_bytes());
        out[36..40].fill(0);
        out[40..48].copy_from_slice(&self.first_id.to_le_bytes());
        out[48..56].copy_from_slice(&self.first_ts.to_le_bytes());
        out[56..64].fill(0);
    }
}

/// The CRC32 of a frame: all bytes except the CRC field itself.
pub fn frame_crc(frame: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&frame[0..12]);
    hasher.update(&frame[16..]);
    hasher.finalize()
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// One entry as written into a batch body.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub struct EntryOut<'a> {
    /// The proposer's session; `0` for none.
    pub client_id: ClientId,
    /// The proposal's sequence number within its session.
    pub seq: Seq,
    /// The message bytes.
    #[rkyv(with = InlineAsBox)]
    pub payload: &'a [u8],
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct BodyOut<'a> {
    entries: Vec<EntryOut<'a>>,
}

type ArchivedBody = ArchivedBodyOut<'static>;
/// An entry of a validated batch, read in place.
pub type ArchivedEntry = ArchivedEntryOut<'static>;

/// What the leader fixes for a batch before encoding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    /// What the entries are.
    pub kind: BatchKind,
    /// The leader's term.
    pub term: Term,
    /// Index of the first entry.
    pub first_index: Index,
    /// Id of the first entry (or next id, for internal batches).
    pub first_id: MessageId,
    /// Timestamp of the first entry.
    pub first_ts: TimestampUs,
}

/// A validated batch frame, shared by reference count.
///
/// Invariant: `bytes` is a complete frame whose header equals `header`, whose
/// CRC matched and whose body passed rkyv validation with exactly
/// `header.count` entries. Every constructor establishes it; `bytes` is
/// immutable afterwards, so readers may access the body without re-checking.
#[derive(Clone, PartialEq, Eq)]
pub struct Batch {
    header: BatchHeader,
    bytes: Bytes,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("kind", &self.header.kind)
            .field("term", &self.header.term)
            .field("first_index", &self.header.first_index)
            .field("count", &self.header.count)
            .field("first_id", &self.header.first_id)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Batch {
    /// Encodes entries into a new frame. `entries` must not be empty;
    /// internal kinds take exactly one entry.
    ///
    /// # Panics
    /// On an empty batch, on more than one entry for an internal kind, or on
    /// a frame above [`FRAME_BYTES_MAX`]: callers bound batches by
    /// `batch_entries_max` and `batch_bytes_max` first, so these are bugs.
    pub fn encode(meta: BatchMeta, entries: Vec<EntryOut<'_>>) -> Batch {
        let count = u32::try_from(entries.len()).expect("batch count fits u32");
        assert!(
            (1..=BATCH_ENTRIES_MAX).contains(&count),
            "batch of {count} entries"
        );
        assert!(meta.kind == BatchKind::Entries || count == 1);
        let payload_bytes: usize = entries.iter().map(|e| e.payload.len() + 24).sum();
        let mut buf: Vec<u8> = Vec::with_capacity(HEADER_BYTES + payload_bytes + 16);
        buf.resize(HEADER_BYTES, 0);
        let body = BodyOut { entries };
        let mut buf = rkyv::api::high::to_bytes_in::<_, rancor::Error>(&body, buf)
            .expect("serializing into a Vec cannot fail");
        let frame_len = u32::try_from(buf.len()).expect("frame fits u32");
        assert!(buf.len() <= FRAME_BYTES_MAX, "frame of {} bytes", buf.len());
        let mut header = BatchHeader {
            kind: meta.kind,
            frame_len,
            crc32: 0,
            term: meta.term,
            first_index: meta.first_index,
            count,
            first_id: meta.first_id,
            first_ts: meta.first_ts,
        };
        header.write(&mut buf[..HEADER_BYTES]);
        header.crc32 = frame_crc(&buf);
        buf[12..16].copy_from_slice(&header.crc32.to_le_bytes());
        debug_assert!(header.check_fields().is_ok(), "{header:?}");
        Batch {
            header,
            bytes: Bytes::from(buf),
        }
    }

    /// Validates untrusted bytes as one complete frame: header, length, CRC
    /// and body. `bytes` must hold exactly one frame.
    pub fn decode(bytes: Bytes) -> Result<Batch, FrameError> {
        let header = BatchHeader::parse(&bytes)?;
        if bytes.len() != header.frame_len as usize {
            return Err(FrameError::Truncated {
                have: bytes.len(),
                need: header.frame_len as usize,
            });
        }
        let computed = frame_crc(&bytes);
        if computed != header.crc32 {
            return Err(FrameError::BadCrc {
                stored: header.crc32,
                computed,
            });
        }
        let body = rkyv::access::<ArchivedBody, rancor::Error>(&bytes[HEADER_BYTES..])
            .map_err(|e| FrameError::BadBody(e.to_string()))?;
        if body.entries.len() != header.count as usize {
            return Err(FrameError::BadBody(format!(
                "{} entries in body, header says {}",
                body.entries.len(),
                header.count
            )));
        }
        Ok(Batch { header, bytes })
    }

    /// Splits the first frame off the front of `bytes` and validates it;
    /// returns it and the bytes after it.
    pub fn decode_prefix(bytes: &Bytes) -> Result<(Batch, Bytes), FrameError> {
        let header = BatchHeader::parse(bytes)?;
        let len = header.frame_len as usize;
        if bytes.len() < len {
            return Err(FrameError::Truncated {
                have: bytes.len(),
                need: len,
            });
        }
        let batch = Batch::decode(bytes.slice(..len))?;
        Ok((batch, bytes.slice(len..)))
    }

    /// The parsed header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The frame's bytes, as written to disk and wire.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Frame size in bytes.
    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// What the entries are.
    pub fn kind(&self) -> BatchKind {
        self.header.kind
    }

    /// Term of every entry.
    pub fn term(&self) -> Term {
        self.header.term
    }

    /// Index of the first entry.
    pub fn first_index(&self) -> Index {
        self.header.first_index
    }

    /// Index of the last entry.
    pub fn last_index(&self) -> Index {
        self.header.last_index()
    }

    /// Number of entries.
    pub fn count(&self) -> u32 {
        self.header.count
    }

    #[allow(unsafe_code)]
    fn body(&self) -> &ArchivedBody {
        // SAFETY: the type invariant: `bytes[HEADER_BYTES..]` passed
        // `rkyv::access` validation for `ArchivedBody` when this batch was
        // built, and `Bytes` is immutable. The archive is `unaligned`, so
        // any offset is fine.
        unsafe { rkyv::access_unchecked::<ArchivedBody>(&self.bytes[HEADER_BYTES..]) }
    }

    /// The archived entries, in order, read in place.
    pub fn archived_entries(&self) -> &[ArchivedEntry] {
        self.body().entries.as_slice()
    }

    /// The entry at `index`, which must lie within the batch.
    pub fn entry(&self, index: Index) -> EntryView<'_> {
        assert!(
            self.header.contains(index),
            "index {index} outside {:?}",
            self
        );
        let offset = (index - self.header.first_index) as usize;
        self.view(offset, &self.archived_entries()[offset])
    }

    fn view<'a>(&'a self, offset: usize, entry: &'a ArchivedEntry) -> EntryView<'a> {
        let offset = offset as u64;
        let id = match self.header.kind {
            BatchKind::Entries => self.header.first_id + offset,
            BatchKind::Noop | BatchKind::Config => 0,
        };
        EntryView {
            kind: self.header.kind,
            index: self.header.first_index + offset,
            term: self.header.term,
            id,
            ts: self.header.first_ts + offset,
            client_id: entry.client_id.to_native(),
            seq: entry.seq.to_native(),
            payload: entry.payload.get(),
        }
    }

    /// Every entry with its derived index, id and ts.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = EntryView<'_>> + '_ {
        self.archived_entries()
            .iter()
            .enumerate()
            .map(move |(offset, entry)| self.view(offset, entry))
    }

    /// The entries `[from, to]` (inclusive, both within the batch) as a batch
    /// of their own. Returns a clone when the range is the whole batch;
    /// otherwise re-encodes, which copies payloads. Only conflict repair and
    /// probes that land inside a batch need this.
    pub fn slice(&self, from: Index, to: Index) -> Batch {
        assert!(
            from <= to && self.header.contains(from) && self.header.contains(to),
            "slice [{from}, {to}] outside {self:?}"
        );
        if from == self.first_index() && to == self.last_index() {
            return self.clone();
        }
        let skip = from - self.header.first_index;
        let entries = self
            .entries()
            .skip(skip as usize)
            .take((to - from + 1) as usize)
            .map(|e| EntryOut {
                client_id: e.client_id,
                seq: e.seq,
                payload: e.payload,
            })
            .collect();
        let first_id = match self.header.kind {
            BatchKind::Entries => self.header.first_id + skip,
            BatchKind::Noop | BatchKind::Config => self.header.first_id,
        };
        Batch::encode(
            BatchMeta {
                kind: self.header.kind,
                term: self.header.term,
                first_index: from,
                first_id,
                first_ts: self.header.first_ts + skip,
            },
            entries,
        )
    }
}

/// One entry of a batch with everything derived from the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryView<'a> {
    /// What the entry is.
    pub kind: BatchKind,
    /// Log index.
    pub index: Index,
    /// Term it was created in.
    pub term: Term,
    /// Message id; `0` for internal entries.
    pub id: MessageId,
    /// Timestamp.
    pub ts: TimestampUs,
    /// Proposer's session, `0` for none.
    pub client_id: ClientId,
    /// Sequence number within the session.
    pub seq: Seq,
    /// The message bytes.
    pub payload: &'a [u8],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first_index: Index) -> BatchMeta {
        BatchMeta {
            kind: BatchKind::Entries,
            term: 3,
            first_index,
            first_id: 10,
            first_ts: 1_000,
        }
    }

    fn sample() -> Batch {
        let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; i as usize]).collect();
        let entries = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| EntryOut {
                client_id: 7,
                seq: i as u64,
                payload: p,
            })
            .collect();
        Batch::encode(meta(20), entries)
    }

    #[test]
    fn round_trip_derives_index_id_ts() {
        let batch = sample();
        let again = Batch::decode(batch.bytes().clone()).unwrap();
        assert_eq!(again.header(), batch.header());
        let views: Vec<_> = again.entries().collect();
        assert_eq!(views.len(), 5);
        for (i, view) in views.iter().enumerate() {
            let i = i as u64;
            assert_eq!(view.index, 20 + i);
            assert_eq!(view.id, 10 + i);
            assert_eq!(view.ts, 1_000 + i);
            assert_eq!(view.term, 3);
            assert_eq!(view.seq, i);
            assert_eq!(view.payload, vec![i as u8; i as usize].as_slice());
        }
        assert_eq!(again.header().next_id(), 15);
        assert_eq!(again.header().last_ts(), 1_004);
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let batch = sample();
        for at in 0..batch.len_bytes() {
            let mut bytes = batch.bytes().to_vec();
            bytes[at] ^= 0x40;
            assert!(Batch::decode(Bytes::from(bytes)).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn truncated_and_extended_frames_are_rejected() {
        let batch = sample();
        for len in 0..batch.len_bytes() {
            assert!(Batch::decode(batch.bytes().slice(..len)).is_err());
        }
        let mut longer = batch.bytes().to_vec();
        longer.push(0);
        assert!(matches!(
            Batch::decode(Bytes::from(longer)),
            Err(FrameError::Truncated { .. })
        ));
    }

    #[test]
    fn slice_keeps_derived_fields() {
        let batch = sample();
        let part = batch.slice(22, 23);
        assert_eq!(part.first_index(), 22);
        assert_eq!(part.count(), 2);
        let views: Vec<_> = part.entries().collect();
        assert_eq!(views[0].id, 12);
        assert_eq!(views[0].ts, 1_002);
        assert_eq!(views[1].payload, &[3, 3, 3]);
        assert_eq!(Batch::decode(part.bytes().clone()).unwrap(), part);
    }

    #[test]
    fn decode_prefix_walks_concatenated_frames() {
        let a = sample();
        let b = Batch::encode(
            BatchMeta {
                kind: BatchKind::Noop,
                term: 4,
                first_index: 25,
                first_id: 15,
                first_ts: 2_000,
            },
            vec![EntryOut {
                client_id: 0,
                seq: 0,
                payload: &[],
            }],
        );
        let mut joined = a.bytes().to_vec();
        joined.extend_from_slice(b.bytes());
        let joined = Bytes::from(joined);
        let (first, rest) = Batch::decode_prefix(&joined).unwrap();
        let (second, rest) = Batch::decode_prefix(&rest).unwrap();
        assert_eq!(first, a);
        assert_eq!(second, b);
        assert!(rest.is_empty());
        assert_eq!(second.header().last_id(), 14);
        assert_eq!(second.entry(25).id, 0);
    }
}
