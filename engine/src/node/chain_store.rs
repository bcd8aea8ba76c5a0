//! The configurations a node applied and the configuration links it holds
//! (`token::ConfigLink`: a committed configuration entry with its token),
//! so that both survive the compaction of the entries themselves:
//!
//! - the configurations rebuild, at a start, whose key may sign which
//!   statement (`token::KeySchedule`): the log alone may no longer hold
//!   the configuration in force before its first entry;
//! - the links are the chain from `cluster.keys` to the voters in force
//!   that `ordo chain` serves.
//!
//! File `data_dir/chain`: a record file of the storage crate
//! ([`ordo_storage::records`]: `len u32 LE ‖ crc32 u32 LE ‖ body`, its
//! recovery rule and tests), the body a kind byte (1: a link's bytes follow; 2: a configuration,
//! `index u64 LE` then its encoding), appended and synced as they come
//! (a configuration change, a rare event). A torn or damaged tail is cut
//! at the last good record and reported: a lost configuration record is
//! applied again from the log, a lost link forms again while the log
//! holds its entry (the group does not compact past a configuration entry
//! without its link).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use ordo_storage::Index;
use ordo_storage::records::{self, RecordFileError};

use crate::token::{CHAIN_CONFIGS_MAX, ConfigLink, LINK_BYTES_MAX};

/// The chain file's name in the data directory.
pub const CHAIN_FILE: &str = "chain";
/// Body kind: a configuration link.
const KIND_LINK: u8 = 1;
/// Body kind: a configuration the node applied (or took from a snapshot).
const KIND_CONFIG: u8 = 2;
/// Configurations kept at most (as many as links).
const CONFIGS_MAX: usize = CHAIN_CONFIGS_MAX;

/// Why the chain file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ChainStoreError {
    /// Reading, writing or syncing the file failed.
    #[error("chain file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Recovering the file's records failed (reading, or cutting a
    /// damaged tail).
    #[error("chain file: {0}")]
    Recover(#[from] RecordFileError),
}

/// The links of one node, by index. Lives on the group's shard.
pub struct ChainStore {
    links: BTreeMap<Index, ConfigLink>,
    /// Configurations applied, by the index they are in force from
    /// (encoded `core::Membership`).
    configs: BTreeMap<Index, Bytes>,
    /// The file and its path; `None` in memory (the simulator).
    file: Option<(File, PathBuf)>,
}

impl ChainStore {
    /// Opens (or creates) the chain file at `path` and reads every whole,
    /// undamaged record; a damaged tail is cut off.
    pub fn open(path: &Path) -> Result<Self, ChainStoreError> {
        let io = |source| ChainStoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let mut links = BTreeMap::new();
        let mut configs = BTreeMap::new();
        let recovered = records::recover(&file, path, 0, LINK_BYTES_MAX, |_, body| {
            match body.split_first() {
                Some((&KIND_LINK, link)) => {
                    let link = ConfigLink::from_bytes(link)
                        .map_err(|error| format!("a link that does not decode: {error}"))?;
                    links.insert(link.index, link);
                }
                Some((&KIND_CONFIG, config)) if config.len() >= 8 => {
                    let (index, encoded) = config.split_at(8);
                    let index = Index::from_le_bytes(index.try_into().expect("8 bytes"));
                    configs.insert(index, Bytes::copy_from_slice(encoded));
                }
                _ => return Err("a record of no known kind".into()),
            }
            Ok(())
        })?;
        if let Some((offset, damage)) = &recovered.truncated {
            tracing::warn!(
                path = %path.display(),
                kept = links.len(),
                offset,
                %damage,
                "chain file: damaged or torn tail cut off; its links form again from the log"
            );
        }
        Ok(Self {
            links,
            configs,
            file: Some((file, path.to_path_buf())),
        })
    }

    /// A store in memory only, holding `links` (the simulator carries them
    /// across a restart, as the file survives one).
    pub fn in_memory(links: Vec<ConfigLink>, configs: Vec<(Index, Bytes)>) -> Self {
        Self {
            links: links.into_iter().map(|link| (link.index, link)).collect(),
            configs: configs.into_iter().collect(),
            file: None,
        }
    }

    /// The configurations recorded, by index.
    pub fn configs(&self) -> impl Iterator<Item = (Index, &Bytes)> {
        self.configs.iter().map(|(&index, bytes)| (index, bytes))
    }

    /// Records the configuration in force from `index` (already applied
    /// or installed by the caller) and syncs it. One already held is left.
    pub fn insert_config(&mut self, index: Index, encoded: Bytes) -> Result<(), ChainStoreError> {
        if self.configs.contains_key(&index) || self.configs.len() >= CONFIGS_MAX {
            return Ok(());
        }
        self.append(&config_body(index, &encoded))?;
        self.configs.insert(index, encoded);
        Ok(())
    }

    fn append(&mut self, body: &[u8]) -> Result<(), ChainStoreError> {
        if let Some((file, path)) = &mut self.file {
            let io = |source| ChainStoreError::Io {
                path: path.clone(),
                source,
            };
            let mut record = Vec::with_capacity(records::record_bytes(body.len()));
            records::encode_record(&mut record, &[body]);
            file.write_all(&record).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        Ok(())
    }

    /// Whether the link of the configuration entry at `index` is held.
    pub fn contains(&self, index: Index) -> bool {
        self.links.contains_key(&index)
    }

    /// Every link held, by index.
    pub fn links(&self) -> impl Iterator<Item = &ConfigLink> {
        self.links.values()
    }

    /// Adds a link (already checked by the caller) and syncs it to the
    /// file. A link already held is left as it is.
    pub fn insert(&mut self, link: ConfigLink) -> Result<(), ChainStoreError> {
        if self.links.contains_key(&link.index) || self.links.len() >= CHAIN_CONFIGS_MAX {
            return Ok(());
        }
        self.append(&link_body(&link))?;
        self.links.insert(link.index, link);
        Ok(())
    }
}

/// Marks snapshot data that carries the sender's configuration links in
/// front of the state machine's bytes ([`wrap_snapshot`]).
const SNAPSHOT_LINKS_MAGIC: &[u8] = b"ordo-snapshot-links-v1\0";

/// A snapshot's data as stored and streamed: the node's configuration
/// links, then the state machine's bytes. A node that installs it (a
/// learner behind the compacted log) gets the chain back to `cluster.keys`
/// with the state, so the chain survives even once every member that saw
/// the early changes is gone.
pub fn wrap_snapshot(links: &[ConfigLink], data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(SNAPSHOT_LINKS_MAGIC.len() + 4 + data.len());
    out.extend_from_slice(SNAPSHOT_LINKS_MAGIC);
    out.extend_from_slice(&(links.len() as u32).to_le_bytes());
    for link in links {
        let bytes = link.to_bytes();
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(data);
    Bytes::from(out)
}

/// Why snapshot data's configuration links cannot be read (untrusted
/// bytes: from a peer, or from a damaged disk).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotLinksError {
    /// The data ends inside the links' count or a link's length.
    #[error("snapshot links: truncated")]
    Truncated,
    /// The data ends inside a link.
    #[error("snapshot links: truncated link")]
    TruncatedLink,
    /// More links than any chain holds.
    #[error("snapshot links: {count} links, at most {max}")]
    TooMany {
        /// The count the data claims.
        count: usize,
        /// The bound ([`crate::token::CHAIN_CONFIGS_MAX`]).
        max: usize,
    },
    /// A link that does not decode.
    #[error("snapshot links: {0}")]
    Link(#[source] crate::token::ChainError),
}

/// The links and the state machine's bytes of snapshot data (untrusted:
/// it may come from a peer). Data written before snapshots carried links
/// is all state machine bytes.
pub fn unwrap_snapshot(data: Bytes) -> Result<(Vec<ConfigLink>, Bytes), SnapshotLinksError> {
    if !data.starts_with(SNAPSHOT_LINKS_MAGIC) {
        return Ok((Vec::new(), data));
    }
    let u32_at = |at: usize| -> Result<usize, SnapshotLinksError> {
        let bytes: [u8; 4] = data
            .get(at..at + 4)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(SnapshotLinksError::Truncated)?;
        Ok(u32::from_le_bytes(bytes) as usize)
    };
    let mut at = SNAPSHOT_LINKS_MAGIC.len();
    let count = u32_at(at)?;
    at += 4;
    if count > CHAIN_CONFIGS_MAX {
        return Err(SnapshotLinksError::TooMany {
            count,
            max: CHAIN_CONFIGS_MAX,
        });
    }
    let mut links = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u32_at(at)?;
        at += 4;
        let bytes = data
            .get(at..at.saturating_add(len))
            .ok_or(SnapshotLinksError::TruncatedLink)?;
        links.push(ConfigLink::from_bytes(bytes).map_err(SnapshotLinksError::Link)?);
        at += len;
    }
    Ok((links, data.slice(at..)))
}

fn link_body(link: &ConfigLink) -> Vec<u8> {
    let mut body = vec![KIND_LINK];
    body.extend_from_slice(&link.to_bytes());
    body
}

fn config_body(index: Index, encoded: &[u8]) -> Vec<u8> {
    let mut body = vec![KIND_CONFIG];
    body.extend_from_slice(&index.to_le_bytes());
    body.extend_from_slice(encoded);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_record(body: &[u8]) -> Vec<u8> {
        let mut record = Vec::new();
        records::encode_record(&mut record, &[body]);
        record
    }

    /// A structurally valid link (its token proves nothing: the store
    /// does not check links, its callers do).
    fn link(index: Index) -> ConfigLink {
        let statement = crate::node::cert_store::test_statement(index, index);
        ConfigLink {
            index,
            term: 1,
            id: 0,
            ts: 5,
            payload: crate::core::Membership::of_voters(&[1, 2, 3]).encode(),
            token: crate::token::Token::from_bytes(&crate::node::cert_store::encode_statement(
                &statement,
            ))
            .unwrap(),
        }
    }

    #[test]
    fn links_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHAIN_FILE);
        let mut store = ChainStore::open(&path).unwrap();
        assert!(store.links().next().is_none());
        store.insert(link(10)).unwrap();
        store
            .insert_config(10, crate::core::Membership::of_voters(&[1, 2]).encode())
            .unwrap();
        store.insert(link(20)).unwrap();
        store.insert(link(10)).unwrap();
        drop(store);
        let good = std::fs::metadata(&path).unwrap().len();
        // A torn third record.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&encode_record(&link_body(&link(30)))[..40])
            .unwrap();
        drop(file);
        let store = ChainStore::open(&path).unwrap();
        assert_eq!(
            store.links().map(|l| l.index).collect::<Vec<_>>(),
            vec![10, 20]
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
        assert_eq!(
            store.configs().map(|(i, _)| i).collect::<Vec<_>>(),
            vec![10]
        );
    }

    #[test]
    fn snapshots_carry_links_and_old_snapshots_still_read() {
        let wrapped = wrap_snapshot(&[link(10), link(20)], b"state");
        let (links, data) = unwrap_snapshot(wrapped.clone()).unwrap();
        assert_eq!(links, vec![link(10), link(20)]);
        assert_eq!(&data[..], b"state");
        let (links, data) = unwrap_snapshot(Bytes::from_static(b"old state")).unwrap();
        assert!(links.is_empty());
        assert_eq!(&data[..], b"old state");
        for len in SNAPSHOT_LINKS_MAGIC.len()..wrapped.len() - 5 {
            assert!(
                unwrap_snapshot(wrapped.slice(..len)).is_err(),
                "prefix {len}"
            );
        }
    }

    #[test]
    fn a_flipped_byte_ends_the_good_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHAIN_FILE);
        let mut bytes = encode_record(&link_body(&link(10)));
        let second = encode_record(&link_body(&link(20)));
        let at = bytes.len() + 20;
        bytes.extend_from_slice(&second);
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let store = ChainStore::open(&path).unwrap();
        assert_eq!(store.links().map(|l| l.index).collect::<Vec<_>>(), vec![10]);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            (bytes.len() - second.len()) as u64
        );
        // Random bytes never panic (the record rule itself is fuzzed in
        // storage); a record of an unknown kind ends the good prefix too.
        for seed in 0..50u64 {
            let noise: Vec<u8> = (0..(seed * 7 % 300))
                .map(|i| (seed.wrapping_mul(31).wrapping_add(i * 17) % 251) as u8)
                .collect();
            std::fs::write(&path, &noise).unwrap();
            ChainStore::open(&path).unwrap();
        }
        std::fs::write(&path, encode_record(&[9, 9, 9])).unwrap();
        let store = ChainStore::open(&path).unwrap();
        assert_eq!(store.links().count(), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
