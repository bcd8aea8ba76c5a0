//! The commit statements a voter holds, with bounded memory: the most
//! recent `RECENT_MAX` in memory, every one in an append-only file, and for
//! the file a sparse index (one summary per `CHUNK_RECORDS` records) so an
//! old statement costs one chunk read. Records are fixed-size, so a chunk
//! is one `pread`.
//!
//! The file is a record file of the storage crate
//! ([`ordo_storage::records`]: one format, recovery rule, hole punching
//! and their tests), one record per encoded statement. Its writes are
//! buffered (`PENDING_BYTES_MAX`, `PENDING_AGE_MAX`) and never synced:
//! a statement lost in a crash is one the leader signs again (the
//! certificate repair), so the file is a cache of what the voters can
//! rebuild, not a source of truth. A buffered write of up to 64 KiB into
//! the page cache is the only blocking call it makes on the group's
//! executor.
//!
//! Memory: `RECENT_MAX` statements (~13 MiB) plus 24 bytes per
//! `CHUNK_RECORDS` statements ever stored (~0.7 MiB per hour at 2,000
//! commit advances per second).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ordo_storage::Index;
use ordo_storage::records::{self, RecordFileError};

use crate::token::{ClusterId, SignedStatement, Statement, Token};

/// Statements kept in memory (the newest by index).
pub const RECENT_MAX: usize = 65_536;
/// Records summarized by one index entry.
const CHUNK_RECORDS: u64 = 256;
/// Appends are buffered up to this many bytes (a `write` per statement
/// cost ~15 % of the engine-only CPU at C = 1)...
const PENDING_BYTES_MAX: usize = 64 << 10;
/// ...or this long, whichever comes first ([`CertStore::flush_stale`]).
const PENDING_AGE_MAX: std::time::Duration = std::time::Duration::from_millis(200);

/// An encoded statement for the wire or the file: a token with no path.
pub fn encode_statement(signed: &SignedStatement) -> Vec<u8> {
    Token {
        signed: *signed,
        path: Vec::new(),
    }
    .to_bytes()
}

/// The inverse of [`encode_statement`] (untrusted bytes).
pub fn decode_statement(bytes: &[u8]) -> Option<SignedStatement> {
    Token::from_bytes(bytes).ok().map(|token| token.signed)
}

/// Bytes of an encoded statement (every statement encodes to the same
/// length).
fn statement_len() -> usize {
    encode_statement(&SignedStatement {
        statement: Statement {
            cluster_id: ClusterId([0; 16]),
            term: 1,
            leader_id: 1,
            first_index: 1,
            last_index: 1,
            root: [0; 32],
        },
        signature: [0; 64],
    })
    .len()
}

/// Bytes of a statement's record in the file.
fn record_len() -> usize {
    records::record_bytes(statement_len())
}

/// Statements in memory a lookup looks through for one covering an index
/// before it reads the file: those starting between the covering one and
/// the index (a leader re-signs up to 4,096 entries in one statement, over
/// its predecessor's shorter ones).
const LOOKUP_SCAN_MAX: usize = 8_192;

/// Which indexes a chunk of records covers (records are appended in
/// arrival order, mostly but not strictly by index).
#[derive(Clone, Copy, Debug)]
struct ChunkSummary {
    first_index: Index,
    last_index: Index,
}

/// Why the certificates file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CertStoreError {
    /// Opening the file at start failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("open").
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Recovering the file's records failed (reading, or truncating a
    /// damaged tail).
    #[error(transparent)]
    Recover(RecordFileError),
    /// A write failed; the store keeps statements in memory only from now
    /// on (see `CertStore::flush`).
    #[error(
        "cannot write {}: {source}; the certificates file is not written again until the node restarts",
        path.display()
    )]
    Abandoned {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Freeing the compacted prefix (a punched hole) failed; the file
    /// keeps those bytes.
    #[error("cannot free compacted statements: {0}")]
    Free(RecordFileError),
}

/// The statements of one voter. Lives on the group's shard.
pub struct CertStore {
    recent: BTreeMap<Index, SignedStatement>,
    /// `(first, last)` of every statement in `recent`, for lookups by the
    /// index a statement must cover.
    by_first: std::collections::BTreeSet<(Index, Index)>,
    file: Option<File>,
    /// The file's path (empty without a file), for errors.
    path: PathBuf,
    record_len: usize,
    records: u64,
    /// One per full chunk, plus the chunk being filled (last), from chunk
    /// number `chunks_dropped` on.
    chunks: std::collections::VecDeque<ChunkSummary>,
    /// Chunks before these were compacted away (their file range freed).
    chunks_dropped: u64,
    /// The file's bytes before this offset were freed (a hole).
    punched: u64,
    /// Encoded records not yet written to the file (the newest; they are
    /// also in `recent`, which holds far more than a buffer's worth).
    pending: Vec<u8>,
    /// When the oldest pending record was buffered.
    pending_since: Option<std::time::Instant>,
    /// Memory keeps every statement, not only the newest [`RECENT_MAX`]
    /// (the simulator's store: a file that never loses a record, which a
    /// crash empties).
    keep_all: bool,
}

impl CertStore {
    /// A store without a file (nothing survives; nothing old is kept).
    pub fn in_memory() -> Self {
        Self {
            recent: BTreeMap::new(),
            by_first: std::collections::BTreeSet::new(),
            file: None,
            path: PathBuf::new(),
            record_len: record_len(),
            records: 0,
            chunks: std::collections::VecDeque::new(),
            chunks_dropped: 0,
            punched: 0,
            pending: Vec::new(),
            pending_since: None,
            keep_all: false,
        }
    }

    /// A store without a file that keeps every statement in memory (the
    /// simulator: a restart starts it empty, as a lost file would).
    pub fn in_memory_complete() -> Self {
        let mut store = Self::in_memory();
        store.keep_all = true;
        store
    }

    /// Opens (or creates) the file at `path` and loads it. Returns the store
    /// and every `(first, last)` range it holds, for the caller's coverage
    /// frontier.
    pub fn open(path: &Path) -> Result<(Self, Vec<(Index, Index)>), CertStoreError> {
        let io = |op| {
            move |source| CertStoreError::Io {
                op,
                path: path.to_path_buf(),
                source,
            }
        };
        let mut store = Self::in_memory();
        let mut ranges = Vec::new();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io("open"))?;
        let len = file.metadata().map_err(io("stat"))?.len();
        // Records in a freed prefix (a hole left by `compact`) are counted,
        // not read: offsets stay those of the whole file.
        let data = records::first_data_offset(&file).map_err(io("seek in"))?;
        let record_len = store.record_len as u64;
        let skipped = data.div_ceil(record_len).min(len / record_len);
        store.records = skipped;
        store.chunks_dropped = skipped / CHUNK_RECORDS;
        store.punched = data.min(skipped * record_len);
        let body_len = statement_len();
        let recovered = records::recover(&file, path, skipped * record_len, body_len, |_, body| {
            if body.len() != body_len {
                return Err(format!(
                    "a record of {} bytes, not a statement's {body_len}",
                    body.len()
                ));
            }
            let signed = decode_statement(body)
                .ok_or_else(|| "a record that is not a statement".to_string())?;
            ranges.push((signed.statement.first_index, signed.statement.last_index));
            store.note(&signed);
            Ok(())
        })
        .map_err(CertStoreError::Recover)?;
        if let Some((offset, damage)) = &recovered.truncated {
            tracing::warn!(path = %path.display(), offset, %damage, kept = store.records, "dropped a damaged tail of the certificates file (the leader signs what it held again)");
        }
        store.file = Some(file);
        store.path = path.to_path_buf();
        Ok((store, ranges))
    }

    /// Records a statement in memory and in the chunk index.
    fn note(&mut self, signed: &SignedStatement) {
        let (first, last) = (signed.statement.first_index, signed.statement.last_index);
        if self.records.is_multiple_of(CHUNK_RECORDS) || self.chunks.is_empty() {
            self.chunks.push_back(ChunkSummary {
                first_index: first,
                last_index: last,
            });
        } else if let Some(chunk) = self.chunks.back_mut() {
            chunk.first_index = chunk.first_index.min(first);
            chunk.last_index = chunk.last_index.max(last);
        }
        self.records += 1;
        // Of two statements ending at the same index, keep the one that
        // covers more: replacing [196, 200] by [198, 200] left 196..=197
        // uncovered behind the gap search's frontier (seed 22599).
        if self
            .recent
            .get(&last)
            .is_some_and(|kept| kept.statement.first_index <= first)
        {
            return;
        }
        if let Some(replaced) = self.recent.insert(last, *signed) {
            self.by_first
                .remove(&(replaced.statement.first_index, last));
        }
        self.by_first.insert((first, last));
        while !self.keep_all && self.recent.len() > RECENT_MAX {
            if let Some((last, evicted)) = self.recent.pop_first() {
                self.by_first.remove(&(evicted.statement.first_index, last));
            }
        }
    }

    /// Stores a statement (appended to the file without fsync, through a
    /// buffer of at most [`PENDING_BYTES_MAX`], written at the latest on
    /// the first [`CertStore::flush_stale`] after [`PENDING_AGE_MAX`]:
    /// losing it only means this node cannot serve tokens for those
    /// entries until the leader signs the gap again).
    pub fn insert(&mut self, signed: SignedStatement) -> Result<(), CertStoreError> {
        self.note(&signed);
        if self.file.is_none() {
            return Ok(());
        }
        if self.pending.is_empty() {
            self.pending_since = Some(std::time::Instant::now());
        }
        records::encode_record(&mut self.pending, &[&encode_statement(&signed)]);
        if self.pending.len() >= PENDING_BYTES_MAX {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered records if the oldest has waited
    /// [`PENDING_AGE_MAX`] by `now` (the runtime calls this every turn,
    /// with the turn's time: a clock read per turn was ~2 % of the
    /// engine-only thread).
    pub fn flush_stale(&mut self, now: std::time::Instant) -> Result<(), CertStoreError> {
        match self.pending_since {
            Some(since) if now.saturating_duration_since(since) >= PENDING_AGE_MAX => self.flush(),
            _ => Ok(()),
        }
    }

    /// Writes the buffered records to the file. A failed write abandons
    /// the file for the rest of the run: part of the buffer may be in it,
    /// so later records would no longer sit at the offsets the chunk index
    /// computes. Statements then live in memory only (the newest
    /// [`RECENT_MAX`]); the next start drops the torn tail and appends
    /// aligned again.
    pub fn flush(&mut self) -> Result<(), CertStoreError> {
        self.pending_since = None;
        let written = match self.file.as_mut() {
            Some(file) if !self.pending.is_empty() => file.write_all(&self.pending),
            _ => Ok(()),
        };
        // Keep the buffer's capacity: it refills at once under load.
        self.pending.clear();
        written.map_err(|source| {
            self.file = None;
            CertStoreError::Abandoned {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// The statements in memory, by last index.
    pub fn recent(&self) -> &BTreeMap<Index, SignedStatement> {
        &self.recent
    }

    /// A statement covering `index`: from memory, else from the file.
    pub fn lookup(&self, index: Index) -> Option<SignedStatement> {
        self.lookup_from(index, 0)
    }

    /// A statement covering `index` that starts at or after `floor` (a
    /// token can be cut only from a statement whose every entry the log
    /// still holds).
    pub fn lookup_from(&self, index: Index, floor: Index) -> Option<SignedStatement> {
        let usable = |signed: &SignedStatement| {
            (floor..=index).contains(&signed.statement.first_index)
                && index <= signed.statement.last_index
        };
        // Statements overlap (a leader re-signs what its predecessor may
        // have signed): the latest-starting one at or before `index` may
        // end before it while an earlier-starting one covers it (runtime
        // simulator, seed 3585: a scan by last index missed a re-signed
        // 4,096-entry statement behind 64 shorter ones).
        if floor <= index
            && let Some(&(_, last)) = self
                .by_first
                .range((floor, 0)..=(index, Index::MAX))
                .rev()
                .take(LOOKUP_SCAN_MAX)
                .find(|&&(_, last)| last >= index)
        {
            return self.recent.get(&last).copied();
        }
        let file = self.file.as_ref()?;
        for (k, chunk) in self.chunks.iter().enumerate() {
            if chunk.first_index > index || chunk.last_index < index {
                continue;
            }
            let k = self.chunks_dropped as usize + k;
            let records = CHUNK_RECORDS.min(self.records - k as u64 * CHUNK_RECORDS) as usize;
            let mut bytes = vec![0u8; records * self.record_len];
            let offset = k as u64 * CHUNK_RECORDS * self.record_len as u64;
            // The chunk's tail may still be buffered: read the written part
            // and take the rest from the buffer.
            let written = self.records * self.record_len as u64 - self.pending.len() as u64;
            let in_file = written.saturating_sub(offset).min(bytes.len() as u64) as usize;
            if file.read_exact_at(&mut bytes[..in_file], offset).is_err() {
                continue;
            }
            if in_file < bytes.len() {
                let from = (offset + in_file as u64 - written) as usize;
                let rest = bytes.len() - in_file;
                let Some(buffered) = self.pending.get(from..from + rest) else {
                    continue;
                };
                bytes[in_file..].copy_from_slice(buffered);
            }
            let found = records::records(&bytes, statement_len())
                .map_while(Result::ok)
                .filter_map(decode_statement)
                .find(|s| usable(s));
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// The log was compacted through `upto` (retention): statements that
    /// end there or before are of no use any more. Memory forgets them,
    /// and the file frees (punches a hole over) its whole written chunks
    /// that hold only such statements, so that its disk stays bounded
    /// while offsets stay those of the whole file. Returns the bytes
    /// freed.
    pub fn compact(&mut self, upto: Index) -> Result<u64, CertStoreError> {
        while let Some((&last, _)) = self.recent.first_key_value() {
            if last > upto {
                break;
            }
            if let Some((last, gone)) = self.recent.pop_first() {
                self.by_first.remove(&(gone.statement.first_index, last));
            }
        }
        let written = self.records * self.record_len as u64 - self.pending.len() as u64;
        let chunk_bytes = CHUNK_RECORDS * self.record_len as u64;
        let mut drop = 0;
        while drop + 1 < self.chunks.len()
            && self.chunks[drop].last_index <= upto
            && (self.chunks_dropped + drop as u64 + 1) * chunk_bytes <= written
        {
            drop += 1;
        }
        if drop == 0 {
            return Ok(0);
        }
        self.chunks.drain(..drop);
        self.chunks_dropped += drop as u64;
        let Some(file) = &self.file else {
            return Ok(0);
        };
        // Whole filesystem blocks only: the block that holds the first
        // live record keeps its bytes.
        let end = records::punch_prefix(
            file,
            &self.path,
            self.punched,
            self.chunks_dropped * chunk_bytes,
        )
        .map_err(CertStoreError::Free)?;
        let freed = end.saturating_sub(self.punched);
        self.punched = self.punched.max(end);
        Ok(freed)
    }

    /// Statements covering `[from, to]` in index order, at most `max`,
    /// none starting before `floor`.
    pub fn range(&self, from: Index, to: Index, floor: Index, max: usize) -> Vec<SignedStatement> {
        let mut out = Vec::new();
        let mut next = from;
        while next <= to && out.len() < max {
            let Some(signed) = self.lookup_from(next, floor) else {
                break;
            };
            next = signed.statement.last_index + 1;
            out.push(signed);
        }
        out
    }
}

impl Drop for CertStore {
    fn drop(&mut self) {
        if let Err(error) = self.flush() {
            tracing::warn!(%error, "cannot write the last commit statements");
        }
    }
}

/// A statement over `[first, last]` with a made-up root and signature
/// (tests of what stores and finds statements).
#[cfg(test)]
pub(crate) fn test_statement(first: Index, last: Index) -> SignedStatement {
    SignedStatement {
        statement: Statement {
            cluster_id: ClusterId([1; 16]),
            term: 1,
            leader_id: 1,
            first_index: first,
            last_index: last,
            root: [first as u8; 32],
        },
        signature: [0; 64],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(first: Index, last: Index) -> SignedStatement {
        test_statement(first, last)
    }

    #[test]
    fn a_lookup_finds_a_statement_that_a_shorter_later_one_overlaps() {
        // A new leader re-signed [5, 20] after its predecessor's [18, 19]
        // arrived: the first statement ending at or after 6 starts at 18.
        let mut store = CertStore::in_memory();
        store.insert(statement(1, 4)).unwrap();
        store.insert(statement(18, 19)).unwrap();
        store.insert(statement(5, 20)).unwrap();
        for (index, first) in [(3, 1), (6, 5), (18, 18), (20, 5)] {
            assert_eq!(store.lookup(index).unwrap().statement.first_index, first);
        }
        assert!(store.lookup(21).is_none());
    }

    /// Retention: compacting frees the file's dead prefix (a hole: the
    /// disk shrinks, offsets stay), lookups still find the live
    /// statements from the file, and a reopen skips the hole.
    #[test]
    fn compaction_frees_the_dead_prefix_and_a_reopen_skips_it() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certificates");
        let (mut store, _) = CertStore::open(&path).unwrap();
        let count = 40 * CHUNK_RECORDS;
        for index in 1..=count {
            store.insert(statement(index, index)).unwrap();
        }
        store.flush().unwrap();
        let allocated = |path: &Path| std::fs::metadata(path).unwrap().blocks() * 512;
        let before = allocated(&path);
        let len = std::fs::metadata(&path).unwrap().len();
        let upto = 30 * CHUNK_RECORDS + 7;
        let freed = store.compact(upto).unwrap();
        assert!(freed > 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len, "offsets stay");
        assert!(
            allocated(&path) < before / 2,
            "{} of {before} bytes still allocated",
            allocated(&path)
        );
        // Live statements older than memory's window still come from the
        // file; dropped ones are gone.
        assert!(
            store.lookup(upto).is_none()
                || store.lookup(upto).unwrap().statement.last_index == upto
        );
        assert_eq!(
            store.lookup(count - 5).unwrap().statement.first_index,
            count - 5
        );
        assert!(store.lookup(10).is_none());
        drop(store);
        let (store, ranges) = CertStore::open(&path).unwrap();
        assert!(ranges.iter().all(|&(first, _)| first > 29 * CHUNK_RECORDS));
        assert_eq!(ranges.last(), Some(&(count, count)));
        assert_eq!(
            store.lookup(count - 100).unwrap().statement.last_index,
            count - 100
        );
        // Appends continue at the old offsets.
        drop(store);
        let (mut store, _) = CertStore::open(&path).unwrap();
        store.insert(statement(count + 1, count + 1)).unwrap();
        store.flush().unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            len + store.record_len as u64
        );
    }

    /// Runtime simulator, seed 3585: a leader re-signed [100, 4195] over
    /// its predecessor's one-entry statements for 101..=300; a lookup for
    /// 100 that scanned statements by last index gave up after 64.
    #[test]
    fn a_long_statement_behind_many_short_ones_is_found() {
        let mut store = CertStore::in_memory();
        for index in 101..=300 {
            store.insert(statement(index, index)).unwrap();
        }
        store.insert(statement(100, 4195)).unwrap();
        assert_eq!(store.lookup(100).unwrap().statement.first_index, 100);
        assert_eq!(store.lookup(250).unwrap().statement.first_index, 250);
        assert_eq!(store.lookup(301).unwrap().statement.first_index, 100);
        assert!(store.lookup_from(100, 101).is_none());
        assert!(store.lookup(4196).is_none());
    }

    /// Runtime simulator, seed 22599: a narrower statement ending at the
    /// same index replaced a wider one, and 196..=197 lost their cover.
    #[test]
    fn a_narrower_statement_ending_at_the_same_index_keeps_the_wider_one() {
        let mut store = CertStore::in_memory();
        store.insert(statement(196, 200)).unwrap();
        store.insert(statement(198, 200)).unwrap();
        assert_eq!(store.lookup(196).unwrap().statement.first_index, 196);
        assert_eq!(store.lookup(199).unwrap().statement.first_index, 196);
        // A wider one still replaces a narrower one.
        store.insert(statement(190, 200)).unwrap();
        assert_eq!(store.lookup(191).unwrap().statement.first_index, 190);
        assert_eq!(store.recent().len(), 1);
    }

    #[test]
    fn a_failed_write_abandons_the_file_and_keeps_serving_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certificates");
        let (mut store, _) = CertStore::open(&path).unwrap();
        store.insert(statement(1, 2)).unwrap();
        store.flush().unwrap();
        store.insert(statement(3, 4)).unwrap();
        // A handle that cannot write stands in for a full or failing disk.
        store.file = Some(std::fs::File::open(&path).unwrap());
        let error = store.flush().unwrap_err();
        assert!(matches!(error, CertStoreError::Abandoned { .. }), "{error}");
        let error = error.to_string();
        assert!(error.contains("not written again"), "{error}");
        assert!(error.contains("certificates"), "{error}");
        assert!(store.file.is_none());
        store.insert(statement(5, 6)).unwrap();
        for (index, first) in [(2, 1), (4, 3), (6, 5)] {
            assert_eq!(store.lookup(index).unwrap().statement.first_index, first);
        }
        assert!(store.lookup(7).is_none());
        drop(store);
        // What reached the file loads again.
        let (_, ranges) = CertStore::open(&path).unwrap();
        assert_eq!(ranges, vec![(1, 2)]);
    }

    #[test]
    fn appends_are_buffered_until_full_stale_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certificates");
        let (mut store, _) = CertStore::open(&path).unwrap();
        store.insert(statement(1, 2)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "buffered");
        assert_eq!(store.lookup(2).unwrap().statement.first_index, 1);
        store.flush_stale(std::time::Instant::now()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "not stale yet");
        store
            .flush_stale(std::time::Instant::now() + PENDING_AGE_MAX)
            .unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), record_len() as u64);
        store.insert(statement(3, 4)).unwrap();
        drop(store);
        let (store, ranges) = CertStore::open(&path).unwrap();
        assert_eq!(ranges, vec![(1, 2), (3, 4)]);
        assert_eq!(store.lookup(4).unwrap().statement.first_index, 3);
    }

    #[test]
    fn old_statements_come_back_from_the_file_and_memory_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certificates");
        let (mut store, ranges) = CertStore::open(&path).unwrap();
        assert!(ranges.is_empty());
        let count = RECENT_MAX as u64 + 1_000;
        for k in 0..count {
            store.insert(statement(2 * k + 1, 2 * k + 2)).unwrap();
        }
        assert_eq!(store.recent().len(), RECENT_MAX);
        // The oldest are only in the file.
        assert_eq!(store.lookup(1).unwrap().statement.first_index, 1);
        assert_eq!(store.lookup(600).unwrap().statement.last_index, 600);
        assert_eq!(
            store.lookup(2 * count).unwrap().statement.first_index,
            2 * count - 1
        );
        assert!(store.lookup(2 * count + 1).is_none());
        assert_eq!(store.range(5, 12, 0, 10).len(), 4);
        // Every statement can be found, whether in memory, the file or the
        // write buffer; the buffer stays bounded.
        assert!(store.pending.len() < PENDING_BYTES_MAX);
        for k in (0..count).step_by(97) {
            let found = store.lookup(2 * k + 1).unwrap().statement;
            assert_eq!(
                (found.first_index, found.last_index),
                (2 * k + 1, 2 * k + 2)
            );
        }
        drop(store);
        // Reopening finds everything; a torn tail is dropped.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap();
        let (store, ranges) = CertStore::open(&path).unwrap();
        assert_eq!(ranges.len() as u64, count);
        assert_eq!(store.lookup(3).unwrap().statement.first_index, 3);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len() % record_len() as u64,
            0
        );
    }

    /// A flipped byte in the file (a failing disk) ends recovery at that
    /// record: the statements before it come back, the rest is cut off for
    /// the leader to sign again, and appends continue aligned. A file of
    /// the format before records had a header reads as damage at once.
    #[test]
    fn a_corrupt_record_ends_recovery_there_and_appends_stay_aligned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certificates");
        let (mut store, _) = CertStore::open(&path).unwrap();
        for k in 0..10 {
            store.insert(statement(2 * k + 1, 2 * k + 2)).unwrap();
        }
        drop(store);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[6 * record_len() + 20] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (mut store, ranges) = CertStore::open(&path).unwrap();
        assert_eq!(
            ranges,
            (0..6).map(|k| (2 * k + 1, 2 * k + 2)).collect::<Vec<_>>()
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            6 * record_len() as u64
        );
        store.insert(statement(13, 14)).unwrap();
        drop(store);
        let (_, ranges) = CertStore::open(&path).unwrap();
        assert_eq!(ranges.last(), Some(&(13, 14)));
        assert_eq!(ranges.len(), 7);
        // Statements without record headers.
        let old: Vec<u8> = (0..4)
            .flat_map(|k| encode_statement(&statement(k + 1, k + 1)))
            .collect();
        std::fs::write(&path, &old).unwrap();
        let (store, ranges) = CertStore::open(&path).unwrap();
        assert!(ranges.is_empty());
        assert!(store.lookup(1).is_none());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
