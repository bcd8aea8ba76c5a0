//! The gossip node's store of delivered messages, keyed by their dense id.
//!
//! With a data directory, messages are appended to `delivered.log`, one
//! record each, and made durable by `fdatasync` before the watermark they
//! cover counts as persisted: the store *is* the watermark (its last
//! durable record), so the two can never disagree. A restarted node starts
//! from the last record that survived; a message delivered again after a
//! crash (its record was not durable) is taken once, since ids are dense
//! and the store only ever takes `last + 1`.
//!
//! ```text
//! record: len u32 LE (bytes after this field) | crc32 u32 LE (of the rest)
//!         | id u64 | index u64 | term u64 | ts u64 | payload_len u32
//!         | token_len u32 | payload | token
//! ```
//!
//! Recovery reads records in order and stops at the first that is short,
//! fails its CRC or does not carry the next id; the file is truncated
//! there (a torn tail after a crash). Unlike the voters' log, dropping a
//! damaged record loses nothing: the messages are committed in the voters'
//! logs and are pulled again from peers or voters.
//!
//! Readers (`ordo log`) are served from a bounded in-memory window of
//! recent messages, and older ones from the file (durable records only).
//! Without a data directory, the window is all there is: a reader asking
//! for an id that left it gets `Compacted`.
//!
//! Memory: the window (`recent_messages_max`, `recent_bytes_max`), the
//! bytes waiting for their `fdatasync`, and 8 bytes per stored message for
//! the offset index. Lives on the gossip shard.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use ordo_storage::MessageId;

use crate::gossip::GossipMessage;

/// The delivered messages' file in the data directory.
pub const DELIVERED_FILE: &str = "delivered.log";
/// Where the file's retained part starts: `first_id offset`, written (and
/// synced, then renamed into place) before the part before it is freed.
pub const START_FILE: &str = "delivered.start";
/// Bytes of a record before its payload.
const RECORD_HEADER_BYTES: usize = 4 + 4 + 8 * 4 + 4 + 4;

/// Bounds of the in-memory window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most recent messages kept in memory.
    pub recent_messages_max: usize,
    /// ... and at most this many bytes of them.
    pub recent_bytes_max: usize,
    /// Largest record accepted on recovery (a bigger length is damage).
    pub record_bytes_max: usize,
    /// Bound the file's live bytes (`ordo gossip --retain-bytes`; `0`:
    /// keep every message): past it, the oldest durable half is dropped
    /// (its blocks freed, a hole) and readers asking for it are told the
    /// first id held.
    pub retain_bytes: u64,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            recent_messages_max: 65_536,
            recent_bytes_max: 128 << 20,
            record_bytes_max: (1 << 20) + 8192,
            retain_bytes: 0,
        }
    }
}

/// Why the store could not open or write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed (names the file).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Messages ids before this one are no longer held.
    #[error("message ids before {first_id} are not held by this gossip node")]
    Compacted {
        /// The first id held.
        first_id: MessageId,
    },
}

struct Disk {
    path: PathBuf,
    file: Arc<File>,
    /// The first id the file holds (retention dropped those before).
    first_id: MessageId,
    /// Offset of the record of id `first_id + i`.
    offsets: VecDeque<u64>,
    /// The file's bytes before this offset were freed (a hole).
    punched: u64,
    /// Bytes of the file that are durable.
    durable_len: u64,
    /// Bytes the file will have once everything appended is written.
    end: u64,
    /// Encoded records not yet handed to a write.
    pending: Vec<u8>,
    /// The last id in `pending` or earlier.
    pending_last: MessageId,
}

/// Delivered messages by id. Invariant: `recent` holds ids
/// `recent_first .. recent_first + recent.len()`, the last being
/// `last_id`; on disk, every id below `recent_first` is durable.
pub struct DeliveredStore {
    disk: Option<Disk>,
    limits: StoreLimits,
    recent: VecDeque<GossipMessage>,
    recent_bytes: usize,
    recent_first: MessageId,
    last_id: MessageId,
    durable_id: MessageId,
    /// A write and `fdatasync` in flight.
    syncing: bool,
}

impl std::fmt::Debug for DeliveredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveredStore")
            .field("last_id", &self.last_id)
            .field("durable_id", &self.durable_id)
            .field("recent_first", &self.recent_first)
            .finish()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn encode_record(out: &mut Vec<u8>, m: &GossipMessage) {
    let body_len = RECORD_HEADER_BYTES - 8 + m.payload.len() + m.token.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let body_at = out.len();
    for field in [m.id, m.index, m.term, m.ts] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(&(m.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&(m.token.len() as u32).to_le_bytes());
    out.extend_from_slice(&m.payload);
    out.extend_from_slice(&m.token);
    let crc = crc32fast::hash(&out[body_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Decodes a record body (after its length and CRC), checking its lengths.
fn decode_body(body: Bytes) -> Option<GossipMessage> {
    if body.len() < RECORD_HEADER_BYTES - 8 {
        return None;
    }
    let payload_len = u32_at(&body, 32) as usize;
    let token_len = u32_at(&body, 36) as usize;
    let start = RECORD_HEADER_BYTES - 8;
    if start.checked_add(payload_len)?.checked_add(token_len)? != body.len() {
        return None;
    }
    Some(GossipMessage {
        id: u64_at(&body, 0),
        index: u64_at(&body, 8),
        term: u64_at(&body, 16),
        ts: u64_at(&body, 24),
        payload: body.slice(start..start + payload_len),
        token: body.slice(start + payload_len..),
    })
}

impl DeliveredStore {
    /// A store in memory only: a restart starts from nothing.
    pub fn in_memory(limits: StoreLimits) -> Self {
        Self {
            disk: None,
            limits,
            recent: VecDeque::new(),
            recent_bytes: 0,
            recent_first: 1,
            last_id: 0,
            durable_id: 0,
            syncing: false,
        }
    }

    /// Opens (or creates) `dir/delivered.log`, recovering every intact
    /// record and truncating a damaged tail. Blocking file IO: called once
    /// at start.
    pub fn open(dir: &Path, limits: StoreLimits) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(DELIVERED_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        let file_len = file.metadata().map_err(io(&path))?.len();
        let (first_id, start) = read_start(dir)?;
        let start = start.min(file_len);
        let mut reader = BufReader::with_capacity(1 << 20, &file);
        std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(start)).map_err(io(&path))?;
        let mut offsets = VecDeque::new();
        let mut recent: VecDeque<GossipMessage> = VecDeque::new();
        let mut recent_bytes = 0;
        let mut at = start;
        let mut reason = None;
        loop {
            let mut head = [0u8; 8];
            match reader.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    if at < file_len {
                        reason = Some("a torn record header".to_string());
                    }
                    break;
                }
                Err(e) => return Err(io(&path)(e)),
            }
            let body_len = u32_at(&head, 0) as usize;
            if body_len > limits.record_bytes_max {
                reason = Some(format!("a record length of {body_len} bytes"));
                break;
            }
            let mut body = vec![0; body_len];
            match reader.read_exact(&mut body) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    reason = Some("a torn record".to_string());
                    break;
                }
                Err(e) => return Err(io(&path)(e)),
            }
            if crc32fast::hash(&body) != u32_at(&head, 4) {
                reason = Some("a record failing its CRC".to_string());
                break;
            }
            let expected = first_id + offsets.len() as u64;
            let Some(message) = decode_body(Bytes::from(body)) else {
                reason = Some("a malformed record".to_string());
                break;
            };
            if message.id != expected {
                reason = Some(format!("id {} where {expected} was due", message.id));
                break;
            }
            offsets.push_back(at);
            at += 8 + body_len as u64;
            recent_bytes += message.size_bytes();
            recent.push_back(message);
            while recent.len() > limits.recent_messages_max
                || (recent.len() > 1 && recent_bytes > limits.recent_bytes_max)
            {
                if let Some(old) = recent.pop_front() {
                    recent_bytes -= old.size_bytes();
                }
            }
        }
        drop(reader);
        if let Some(reason) = reason {
            tracing::warn!(file = %path.display(), offset = at, %reason, "truncating the delivered store's damaged tail (those messages will be pulled again)");
            file.set_len(at).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        let last_id = first_id + offsets.len() as u64 - 1;
        let recent_first = last_id + 1 - recent.len() as u64;
        Ok(Self {
            disk: Some(Disk {
                path,
                file: Arc::new(file),
                first_id,
                offsets,
                punched: start / PUNCH_ALIGN * PUNCH_ALIGN,
                durable_len: at,
                end: at,
                pending: Vec::new(),
                pending_last: last_id,
            }),
            limits,
            recent,
            recent_bytes,
            recent_first,
            last_id,
            durable_id: last_id,
            syncing: false,
        })
    }

    /// The last id stored (delivered).
    pub fn last_id(&self) -> MessageId {
        self.last_id
    }

    /// The last id that is durable (every id up to it is on disk). For a
    /// store in memory, the last id.
    pub fn durable_id(&self) -> MessageId {
        if self.disk.is_some() {
            self.durable_id
        } else {
            self.last_id
        }
    }

    /// The first id a reader can get.
    pub fn first_id(&self) -> MessageId {
        match &self.disk {
            Some(disk) => disk.first_id,
            None => self.recent_first,
        }
    }

    /// Takes delivered messages. Only `last + 1` is taken each time: an id
    /// at or below the last one is a redelivery after a crash and is
    /// skipped; one beyond it would be a gap, which the core never hands
    /// over (skipped too, with a warning, rather than stored out of place).
    pub fn append(&mut self, messages: Vec<GossipMessage>) {
        for message in messages {
            if message.id <= self.last_id {
                continue;
            }
            if message.id != self.last_id + 1 {
                tracing::warn!(
                    id = message.id,
                    last = self.last_id,
                    "delivery beyond the store's end skipped"
                );
                continue;
            }
            self.last_id = message.id;
            if let Some(disk) = &mut self.disk {
                disk.offsets.push_back(disk.end + disk.pending.len() as u64);
                encode_record(&mut disk.pending, &message);
                disk.pending_last = message.id;
            }
            self.recent_bytes += message.size_bytes();
            self.recent.push_back(message);
            self.trim();
        }
    }

    /// Evicts from the window what it may lose: on disk, only durable ids.
    fn trim(&mut self) {
        let floor = match self.disk {
            Some(_) => self.durable_id,
            None => self.last_id,
        };
        while (self.recent.len() > self.limits.recent_messages_max
            || (self.recent.len() > 1 && self.recent_bytes > self.limits.recent_bytes_max))
            && self.recent_first <= floor
        {
            let Some(old) = self.recent.pop_front() else {
                break;
            };
            self.recent_bytes -= old.size_bytes();
            self.recent_first += 1;
        }
    }

    /// The next write to make durable, if one is due and none is in
    /// flight: the file, the bytes, their offset and the last id they
    /// hold. Run it with [`SyncJob::run`] (blocking) and report with
    /// [`DeliveredStore::synced`].
    pub fn take_sync(&mut self) -> Option<SyncJob> {
        if self.syncing {
            return None;
        }
        let disk = self.disk.as_mut()?;
        if disk.pending.is_empty() {
            return None;
        }
        let bytes = std::mem::take(&mut disk.pending);
        let offset = disk.end;
        disk.end += bytes.len() as u64;
        self.syncing = true;
        Some(SyncJob {
            file: disk.file.clone(),
            path: disk.path.clone(),
            bytes,
            offset,
            last_id: disk.pending_last,
        })
    }

    /// A [`SyncJob`] finished: on success its ids are durable.
    pub fn synced(&mut self, job: SyncDone) -> Result<(), StoreError> {
        self.syncing = false;
        job.result?;
        if let Some(disk) = &mut self.disk {
            disk.durable_len = disk.durable_len.max(job.end);
        }
        self.durable_id = self.durable_id.max(job.last_id);
        self.trim();
        self.retain()
    }

    /// `retain_bytes`: once the file's live part exceeds it, drops the
    /// oldest durable records until half of it remains: records where the
    /// new start is (`delivered.start`, synced and renamed into place
    /// first, so that a crash finds either start), then frees the blocks
    /// before it (a hole: offsets stay those of the whole file). Blocking
    /// file IO, once per half a bound of messages.
    fn retain(&mut self) -> Result<(), StoreError> {
        let bound = self.limits.retain_bytes;
        let Some(disk) = &mut self.disk else {
            return Ok(());
        };
        let Some(&start) = disk.offsets.front() else {
            return Ok(());
        };
        if bound == 0 || disk.durable_len - start <= bound {
            return Ok(());
        }
        // The first durable id whose record starts within the newest half.
        let keep_from = disk.durable_len - bound / 2;
        let durable = (self.durable_id + 1 - disk.first_id) as usize;
        let skip = disk
            .offsets
            .iter()
            .take(durable)
            .position(|&offset| offset >= keep_from)
            .unwrap_or(durable.saturating_sub(1));
        if skip == 0 {
            return Ok(());
        }
        let first_id = disk.first_id + skip as u64;
        let offset = disk.offsets[skip];
        let dir = disk.path.parent().unwrap_or(Path::new("."));
        write_start(dir, first_id, offset)?;
        disk.offsets.drain(..skip);
        disk.first_id = first_id;
        let end = offset / PUNCH_ALIGN * PUNCH_ALIGN;
        if end > disk.punched {
            use std::os::fd::AsRawFd;
            nix::fcntl::fallocate(
                disk.file.as_raw_fd(),
                nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                    | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                disk.punched as i64,
                (end - disk.punched) as i64,
            )
            .map_err(|e| StoreError::Io {
                path: disk.path.clone(),
                source: std::io::Error::from(e),
            })?;
            disk.punched = end;
        }
        // The window in memory keeps nothing the file no longer does.
        while self.recent_first < first_id {
            let Some(old) = self.recent.pop_front() else {
                break;
            };
            self.recent_bytes -= old.size_bytes();
            self.recent_first += 1;
        }
        self.recent_first = self.recent_first.max(first_id);
        Ok(())
    }

    /// Messages from `from` on, at most `messages_max` of them (and about
    /// `bytes_max` bytes, at least one). Empty when `from` is beyond the
    /// last id. Older ids come from the file (blocking reads of durable
    /// records).
    pub fn read(
        &self,
        from: MessageId,
        messages_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<GossipMessage>, StoreError> {
        let from = from.max(1);
        if from < self.first_id() {
            return Err(StoreError::Compacted {
                first_id: self.first_id(),
            });
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut id = from;
        let full = |out: &Vec<GossipMessage>, bytes: usize| {
            out.len() >= messages_max || (!out.is_empty() && bytes >= bytes_max)
        };
        if let Some(disk) = &self.disk {
            while id < self.recent_first && id <= self.last_id && !full(&out, bytes) {
                let message = read_record(disk, id, self.limits.record_bytes_max)?;
                bytes += message.size_bytes();
                out.push(message);
                id += 1;
            }
        }
        while id <= self.last_id && !full(&out, bytes) {
            let Some(message) = self.recent.get((id - self.recent_first) as usize) else {
                break;
            };
            bytes += message.size_bytes();
            out.push(message.clone());
            id += 1;
        }
        Ok(out)
    }
}

fn read_record(disk: &Disk, id: MessageId, record_max: usize) -> Result<GossipMessage, StoreError> {
    let corrupt = |what: &str| StoreError::Io {
        path: disk.path.clone(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("record of id {id}: {what}"),
        ),
    };
    let offset = *id
        .checked_sub(disk.first_id)
        .and_then(|i| disk.offsets.get(i as usize))
        .ok_or_else(|| corrupt("not indexed"))?;
    if offset >= disk.durable_len {
        return Err(corrupt("not durable yet"));
    }
    let mut head = [0u8; 8];
    disk.file
        .read_exact_at(&mut head, offset)
        .map_err(io(&disk.path))?;
    let body_len = u32_at(&head, 0) as usize;
    if body_len > record_max {
        return Err(corrupt("length out of bounds"));
    }
    let mut body = vec![0; body_len];
    disk.file
        .read_exact_at(&mut body, offset + 8)
        .map_err(io(&disk.path))?;
    if crc32fast::hash(&body) != u32_at(&head, 4) {
        return Err(corrupt("CRC mismatch"));
    }
    let message = decode_body(Bytes::from(body)).ok_or_else(|| corrupt("malformed"))?;
    if message.id != id {
        return Err(corrupt("wrong id"));
    }
    Ok(message)
}

/// Holes are punched in whole blocks of this many bytes.
const PUNCH_ALIGN: u64 = 4096;

/// The retained part's start, `(first id, offset)`: `(1, 0)` without a
/// start file. A start file that does not parse is damage: an error that
/// names it (deleting it makes the node pull what it lacks again).
fn read_start(dir: &Path) -> Result<(MessageId, u64), StoreError> {
    let path = dir.join(START_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((1, 0)),
        Err(e) => return Err(io(&path)(e)),
    };
    let mut words = text.split_whitespace().map(str::parse::<u64>);
    match (words.next(), words.next(), words.next()) {
        (Some(Ok(first_id)), Some(Ok(offset)), None) if first_id >= 1 => Ok((first_id, offset)),
        _ => Err(io(&path)(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("expected \"<first id> <offset>\", found {:?}", text.trim()),
        ))),
    }
}

/// Replaces the start file durably (temporary file, sync, rename, sync of
/// the directory).
fn write_start(dir: &Path, first_id: MessageId, offset: u64) -> Result<(), StoreError> {
    let path = dir.join(START_FILE);
    let temporary = dir.join(format!("{START_FILE}.tmp"));
    let mut file = File::create(&temporary).map_err(io(&temporary))?;
    std::io::Write::write_all(&mut file, format!("{first_id} {offset}\n").as_bytes())
        .map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    std::fs::rename(&temporary, &path).map_err(io(&path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// A write of appended records and its `fdatasync`, to run off the
/// executor (it blocks).
pub struct SyncJob {
    file: Arc<File>,
    path: PathBuf,
    bytes: Vec<u8>,
    offset: u64,
    last_id: MessageId,
}

/// What a [`SyncJob`] did.
pub struct SyncDone {
    result: Result<(), StoreError>,
    end: u64,
    last_id: MessageId,
}

impl SyncJob {
    /// Writes and syncs (blocking).
    pub fn run(self) -> SyncDone {
        let end = self.offset + self.bytes.len() as u64;
        let result = self
            .file
            .write_all_at(&self.bytes, self.offset)
            .and_then(|()| self.file.sync_data())
            .map_err(io(&self.path));
        SyncDone {
            result,
            end,
            last_id: self.last_id,
        }
    }
}

/// The generation of a gossip node with a data directory: a counter in
/// `dir/generation`, incremented (durably) at every start, so SWIM tells a
/// restarted node from its earlier self.
pub fn next_generation(dir: &Path) -> Result<u32, StoreError> {
    let path = dir.join("generation");
    let previous = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u32>().unwrap_or(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(io(&path)(e)),
    };
    let next = previous.wrapping_add(1).max(1);
    let temp = dir.join("generation.tmp");
    std::fs::write(&temp, format!("{next}\n")).map_err(io(&temp))?;
    File::open(&temp)
        .and_then(|f| f.sync_all())
        .map_err(io(&temp))?;
    std::fs::rename(&temp, &path).map_err(io(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u64) -> GossipMessage {
        GossipMessage {
            id,
            index: id + 1,
            term: 1,
            ts: 1000 + id,
            payload: Bytes::from(format!("payload-{id}")),
            token: Bytes::from(vec![id as u8; 20]),
        }
    }

    fn sync(store: &mut DeliveredStore) {
        if let Some(job) = store.take_sync() {
            store.synced(job.run()).unwrap();
        }
    }

    /// `retain_bytes`: the file's live part stays under the bound, the
    /// freed part is a hole, readers are told the first id held, and a
    /// reopen starts there.
    #[test]
    fn retention_bounds_the_file_and_a_reopen_starts_where_it_left() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let limits = StoreLimits {
            recent_messages_max: 16,
            retain_bytes: 256 << 10,
            ..StoreLimits::default()
        };
        let big = |id: u64| GossipMessage {
            payload: Bytes::from(vec![b'p'; 1000]),
            ..message(id)
        };
        let mut store = DeliveredStore::open(dir.path(), limits).unwrap();
        for batch in 0..100u64 {
            store.append((batch * 20 + 1..=batch * 20 + 20).map(big).collect());
            sync(&mut store);
        }
        assert_eq!(store.last_id(), 2000);
        let first = store.first_id();
        assert!(first > 1000, "first id held {first}");
        let path = dir.path().join(DELIVERED_FILE);
        let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(
            allocated <= (256 << 10) + (64 << 10),
            "{allocated} bytes allocated"
        );
        assert!(matches!(
            store.read(1, 10, usize::MAX),
            Err(StoreError::Compacted { first_id }) if first_id == first
        ));
        assert_eq!(store.read(first, 1, usize::MAX).unwrap(), vec![big(first)]);
        drop(store);
        let mut store = DeliveredStore::open(dir.path(), limits).unwrap();
        assert_eq!((store.first_id(), store.last_id()), (first, 2000));
        assert_eq!(store.read(first, 3, usize::MAX).unwrap()[2], big(first + 2));
        store.append(vec![big(2001)]);
        sync(&mut store);
        assert_eq!(store.read(2001, 1, usize::MAX).unwrap(), vec![big(2001)]);
        // A damaged start file is an error that names it.
        std::fs::write(dir.path().join(START_FILE), "garbage").unwrap();
        let error = DeliveredStore::open(dir.path(), limits).unwrap_err();
        assert!(error.to_string().contains(START_FILE), "{error}");
    }

    #[test]
    fn takes_only_the_next_id_and_reads_back() {
        let mut store = DeliveredStore::in_memory(StoreLimits::default());
        store.append(vec![
            message(1),
            message(2),
            message(2),
            message(4),
            message(3),
        ]);
        assert_eq!(store.last_id(), 3);
        let read = store.read(2, 10, usize::MAX).unwrap();
        assert_eq!(read, vec![message(2), message(3)]);
        assert!(store.read(4, 10, usize::MAX).unwrap().is_empty());
    }

    #[test]
    fn memory_window_is_bounded_and_says_compacted() {
        let limits = StoreLimits {
            recent_messages_max: 3,
            ..StoreLimits::default()
        };
        let mut store = DeliveredStore::in_memory(limits);
        store.append((1..=10).map(message).collect());
        assert_eq!(store.first_id(), 8);
        assert!(matches!(
            store.read(1, 10, usize::MAX),
            Err(StoreError::Compacted { first_id: 8 })
        ));
    }

    #[test]
    fn disk_store_survives_reopen_and_truncates_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let limits = StoreLimits {
            recent_messages_max: 2,
            ..StoreLimits::default()
        };
        let mut store = DeliveredStore::open(dir.path(), limits).unwrap();
        store.append((1..=5).map(message).collect());
        // Not durable yet: the window keeps all of them.
        assert_eq!(store.read(1, 10, usize::MAX).unwrap().len(), 5);
        sync(&mut store);
        assert_eq!(store.durable_id(), 5);
        // Old ones now come from the file.
        assert_eq!(
            store.read(1, 10, usize::MAX).unwrap(),
            (1..=5).map(message).collect::<Vec<_>>()
        );
        store.append(vec![message(6)]);
        drop(store);
        // 6 was never synced: it is gone; a torn half record is cut.
        let path = dir.path().join(DELIVERED_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let mut extra = Vec::new();
        encode_record(&mut extra, &message(6));
        bytes.extend_from_slice(&extra[..extra.len() / 2]);
        std::fs::write(&path, &bytes).unwrap();
        let mut store = DeliveredStore::open(dir.path(), limits).unwrap();
        assert_eq!(store.last_id(), 5);
        store.append(vec![message(5), message(6)]);
        sync(&mut store);
        drop(store);
        let store = DeliveredStore::open(dir.path(), limits).unwrap();
        assert_eq!(
            store.read(1, 100, usize::MAX).unwrap(),
            (1..=6).map(message).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_corrupt_record_ends_recovery_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DeliveredStore::open(dir.path(), StoreLimits::default()).unwrap();
        store.append((1..=3).map(message).collect());
        sync(&mut store);
        drop(store);
        let path = dir.path().join(DELIVERED_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        bytes[len - 3] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let store = DeliveredStore::open(dir.path(), StoreLimits::default()).unwrap();
        assert_eq!(store.last_id(), 2);
    }

    #[test]
    fn generations_grow() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_generation(dir.path()).unwrap(), 1);
        assert_eq!(next_generation(dir.path()).unwrap(), 2);
    }
}
