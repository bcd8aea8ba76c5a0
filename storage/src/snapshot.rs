//! Snapshot files: written in chunks, fsynced, installed atomically, read
//! back in chunks for InstallSnapshot (Raft §7).
//!
//! A snapshot is written to a `.tmp` file, then its header (which carries
//! the CRC of the data) is written at offset 0, the file is fdatasynced,
//! renamed to its final name and the directory is synced: a crash leaves
//! either the previous snapshot or the new one, never a partial one under a
//! final name. Only the latest snapshot is kept.
//!
//! ```text
//! snapshot-<index:020>-<term:020>.snap
//!  0  magic "ORDN" | 4 version | 8 last index u64 | 16 last term u64 |
//! 24  data bytes u64 | 32 data crc32 | 36 header crc32 over [0, 36) |
//! 40  zeros to 64 | 64.. data
//! ```

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::disk::vfs::{GlommioVfs, Vfs, VfsFile};
use crate::error::{Result, StorageError};
use crate::types::{Index, LogId};

const MAGIC: u32 = u32::from_le_bytes(*b"ORDN");
const VERSION: u8 = 1;
/// Bytes before the snapshot data.
pub const SNAPSHOT_HEADER_BYTES: u64 = 64;
/// Writes are coalesced into buffers of this size.
const WRITE_BUFFER_BYTES: usize = 1 << 20;
const SUFFIX: &str = ".snap";

/// What a snapshot covers and how to check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last log entry the snapshot includes.
    pub last: LogId,
    /// Bytes of snapshot data.
    pub data_bytes: u64,
    /// crc32fast of the data.
    pub data_crc32: u32,
}

impl SnapshotMeta {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; SNAPSHOT_HEADER_BYTES as usize];
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4] = VERSION;
        out[8..16].copy_from_slice(&self.last.index.to_le_bytes());
        out[16..24].copy_from_slice(&self.last.term.to_le_bytes());
        out[24..32].copy_from_slice(&self.data_bytes.to_le_bytes());
        out[32..36].copy_from_slice(&self.data_crc32.to_le_bytes());
        let crc = crc32fast::hash(&out[0..36]);
        out[36..40].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < SNAPSHOT_HEADER_BYTES as usize {
            return None;
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let valid = u32_at(0) == MAGIC
            && bytes[4] == VERSION
            && u32_at(36) == crc32fast::hash(&bytes[0..36])
            && bytes[40..SNAPSHOT_HEADER_BYTES as usize]
                .iter()
                .all(|&b| b == 0);
        valid.then(|| Self {
            last: LogId::new(u64_at(16), u64_at(8)),
            data_bytes: u64_at(24),
            data_crc32: u32_at(32),
        })
    }
}

fn file_name(last: LogId) -> String {
    format!("snapshot-{:020}-{:020}{SUFFIX}", last.index, last.term)
}

fn parse_file_name(name: &str) -> Option<LogId> {
    let rest = name.strip_prefix("snapshot-")?.strip_suffix(SUFFIX)?;
    let (index, term) = rest.split_once('-')?;
    if index.len() != 20 || term.len() != 20 {
        return None;
    }
    Some(LogId::new(term.parse().ok()?, index.parse().ok()?))
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        file: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// The snapshot directory of one node. Lives on one shard.
pub struct SnapshotStore {
    vfs: Rc<dyn Vfs>,
    dir: PathBuf,
    latest: Option<(SnapshotMeta, PathBuf)>,
}

impl SnapshotStore {
    /// Opens (creating) `dir`: deletes unfinished `.tmp` files and finds the
    /// latest installed snapshot. A snapshot whose header or size is wrong
    /// is corruption: the error names it.
    pub async fn open(dir: impl AsRef<Path>) -> Result<SnapshotStore> {
        Self::open_on(Rc::new(GlommioVfs), dir).await
    }

    /// [`SnapshotStore::open`] over the file system `vfs` (the simulator's
    /// disk).
    pub async fn open_on(vfs: Rc<dyn Vfs>, dir: impl AsRef<Path>) -> Result<SnapshotStore> {
        let dir = dir.as_ref().to_path_buf();
        vfs.create_dir_all(&dir)?;
        let mut found: Vec<(LogId, PathBuf)> = Vec::new();
        for name in vfs.read_dir(&dir)? {
            let name = name.unwrap_or_else(|name| name.to_string());
            let path = dir.join(&name);
            if name.ends_with(".tmp") {
                vfs.remove_file(&path)?;
            } else if let Some(last) = parse_file_name(&name) {
                found.push((last, path));
            }
        }
        found.sort();
        let latest = match found.pop() {
            Some((last, path)) => {
                let meta = read_meta(&*vfs, &path).await?;
                if meta.last != last {
                    return Err(corrupt(
                        &path,
                        8,
                        format!("header says {:?}, name says {last:?}", meta.last),
                    ));
                }
                Some((meta, path))
            }
            None => None,
        };
        // Older snapshots are leftovers of a crash during cleanup.
        for (_, path) in found {
            vfs.remove_file(&path)?;
        }
        Ok(SnapshotStore { vfs, dir, latest })
    }

    /// The latest installed snapshot.
    pub fn latest(&self) -> Option<SnapshotMeta> {
        self.latest.as_ref().map(|(meta, _)| *meta)
    }

    /// Starts writing a snapshot that covers the log up to `last`.
    pub async fn create(&self, last: LogId) -> Result<SnapshotWriter> {
        let path = self.dir.join(format!("{}.tmp", file_name(last)));
        // A fresh file, never a truncated one.
        self.vfs.remove_file(&path)?;
        let file = self.vfs.open_buffered(&path, true).await?;
        Ok(SnapshotWriter {
            file,
            path,
            last,
            offset: SNAPSHOT_HEADER_BYTES,
            buffer: Vec::with_capacity(WRITE_BUFFER_BYTES),
            hasher: crc32fast::Hasher::new(),
        })
    }

    /// Installs a finished snapshot: header, fdatasync, rename, directory
    /// sync; then deletes the previous one. Durable on return.
    ///
    /// A snapshot that covers less than the installed one is discarded
    /// with [`StorageError::SnapshotSuperseded`]: installed, it would
    /// replace (and delete) a newer snapshot whose log prefix may already
    /// be gone (runtime simulator, seed 711: a snapshot taken locally at 80
    /// finished after one received at 82, whose log reset was durable).
    /// One at the same index replaces it (the same state, taken again
    /// because the installed file was found damaged).
    pub async fn install(&mut self, mut writer: SnapshotWriter) -> Result<SnapshotMeta> {
        if let Some((latest, _)) = &self.latest
            && latest.last.index > writer.last.index
        {
            let error = StorageError::SnapshotSuperseded {
                snapshot: writer.last.index,
                latest: latest.last.index,
            };
            let path = writer.path.clone();
            drop(writer);
            self.vfs.remove_file(&path)?;
            return Err(error);
        }
        writer.flush().await?;
        let meta = SnapshotMeta {
            last: writer.last,
            data_bytes: writer.offset - SNAPSHOT_HEADER_BYTES,
            data_crc32: writer.hasher.clone().finalize(),
        };
        let path = writer.path.clone();
        writer.file.write_bytes_at(0, &meta.encode()).await?;
        writer.file.fdatasync().await?;
        drop(writer);
        let target = self.dir.join(file_name(meta.last));
        self.vfs.rename(&path, &target)?;
        self.vfs.sync_dir(&self.dir).await?;
        if let Some((_, old)) = self.latest.take().filter(|(_, old)| *old != target) {
            self.vfs.remove_file(&old)?;
        }
        self.latest = Some((meta, target));
        Ok(meta)
    }

    /// Opens the latest snapshot for reading in chunks; `None` if there is
    /// none.
    pub async fn reader(&self) -> Result<Option<SnapshotReader>> {
        let Some((meta, path)) = &self.latest else {
            return Ok(None);
        };
        let file = self.vfs.open_buffered(path, false).await?;
        Ok(Some(SnapshotReader {
            file,
            path: path.clone(),
            meta: *meta,
            offset: 0,
            hasher: crc32fast::Hasher::new(),
        }))
    }
}

async fn read_meta(vfs: &dyn Vfs, path: &Path) -> Result<SnapshotMeta> {
    let file = vfs.open_buffered(path, false).await?;
    let len = file.size().await?;
    let header = file.read_at(0, SNAPSHOT_HEADER_BYTES as usize).await?;
    let meta =
        SnapshotMeta::parse(&header).ok_or_else(|| corrupt(path, 0, "invalid snapshot header"))?;
    if meta.data_bytes.checked_add(SNAPSHOT_HEADER_BYTES) != Some(len) {
        return Err(corrupt(
            path,
            len.min(SNAPSHOT_HEADER_BYTES),
            format!(
                "snapshot file is {len} bytes, header says {} of data",
                meta.data_bytes
            ),
        ));
    }
    Ok(meta)
}

/// A snapshot being written. Dropping it without [`SnapshotStore::install`]
/// abandons it (its `.tmp` file is deleted at the next open).
pub struct SnapshotWriter {
    file: Rc<dyn VfsFile>,
    path: PathBuf,
    last: LogId,
    /// File offset of the next byte.
    offset: u64,
    buffer: Vec<u8>,
    hasher: crc32fast::Hasher,
}

impl SnapshotWriter {
    /// Appends a chunk of snapshot data (chunks may be any size; writes are
    /// coalesced).
    pub async fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        self.hasher.update(chunk);
        self.buffer.extend_from_slice(chunk);
        if self.buffer.len() >= WRITE_BUFFER_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Bytes of data written so far.
    pub fn data_bytes(&self) -> u64 {
        self.offset - SNAPSHOT_HEADER_BYTES + self.buffer.len() as u64
    }

    async fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let buffer = std::mem::replace(&mut self.buffer, Vec::with_capacity(WRITE_BUFFER_BYTES));
        self.file.write_bytes_at(self.offset, &buffer).await?;
        self.offset += buffer.len() as u64;
        Ok(())
    }
}

/// Reads an installed snapshot in chunks.
pub struct SnapshotReader {
    file: Rc<dyn VfsFile>,
    path: PathBuf,
    meta: SnapshotMeta,
    /// Data offset of the next sequential chunk.
    offset: u64,
    hasher: crc32fast::Hasher,
}

impl SnapshotReader {
    /// What the snapshot covers.
    pub fn meta(&self) -> SnapshotMeta {
        self.meta
    }

    /// The next chunk of at most `bytes_max` bytes (> 0), `None` after the
    /// last. The last chunk is returned only if the whole data matched its
    /// CRC; otherwise the error names the file.
    pub async fn next_chunk(&mut self, bytes_max: usize) -> Result<Option<Bytes>> {
        if self.offset == self.meta.data_bytes {
            return Ok(None);
        }
        let chunk = self.chunk_at(self.offset, bytes_max).await?;
        self.hasher.update(&chunk);
        self.offset += chunk.len() as u64;
        if self.offset == self.meta.data_bytes
            && self.hasher.clone().finalize() != self.meta.data_crc32
        {
            return Err(corrupt(
                &self.path,
                SNAPSHOT_HEADER_BYTES,
                "snapshot data crc mismatch",
            ));
        }
        Ok(Some(chunk))
    }

    /// The chunk of at most `bytes_max` bytes at data offset `offset` (for
    /// resending one InstallSnapshot chunk). Not CRC-checked on its own:
    /// [`SnapshotReader::verify`] checks the whole.
    pub async fn chunk_at(&self, offset: u64, bytes_max: usize) -> Result<Bytes> {
        if offset > self.meta.data_bytes || bytes_max == 0 {
            return Err(StorageError::OutOfRange {
                index: offset as Index,
                first_index: 0,
                last_index: self.meta.data_bytes,
            });
        }
        let len = (self.meta.data_bytes - offset).min(bytes_max as u64) as usize;
        let read = self
            .file
            .read_at(SNAPSHOT_HEADER_BYTES + offset, len)
            .await?;
        if read.len() != len {
            return Err(corrupt(
                &self.path,
                SNAPSHOT_HEADER_BYTES + offset,
                "snapshot file shorter than its header says",
            ));
        }
        Ok(Bytes::from(read))
    }

    /// Reads the whole data and checks its CRC.
    pub async fn verify(&self) -> Result<()> {
        let mut hasher = crc32fast::Hasher::new();
        let mut offset = 0;
        while offset < self.meta.data_bytes {
            let chunk = self.chunk_at(offset, WRITE_BUFFER_BYTES).await?;
            hasher.update(&chunk);
            offset += chunk.len() as u64;
        }
        if hasher.finalize() != self.meta.data_crc32 {
            return Err(corrupt(
                &self.path,
                SNAPSHOT_HEADER_BYTES,
                "snapshot data crc mismatch",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_headers_round_trip() {
        let last = LogId::new(3, 1234);
        assert_eq!(parse_file_name(&file_name(last)), Some(last));
        assert_eq!(parse_file_name("snapshot-1-2.snap"), None);
        let meta = SnapshotMeta {
            last,
            data_bytes: 99,
            data_crc32: 0xdead_beef,
        };
        let header = meta.encode();
        assert_eq!(SnapshotMeta::parse(&header), Some(meta));
        for at in 0..40 {
            let mut bad = header.clone();
            bad[at] ^= 1;
            assert_eq!(SnapshotMeta::parse(&bad), None, "flip at {at}");
        }
    }
}
