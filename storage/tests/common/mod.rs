//! Helpers shared by the disk log's integration tests.
#![allow(dead_code)] // each test binary uses a subset

use std::path::{Path, PathBuf};

use ordo_storage::conformance::{batch, flatten};
use ordo_storage::disk::executor_builder;
use ordo_storage::frame::BatchHeader;
use ordo_storage::{Batch, DiskLog, DiskLogConfig, LogStore};

/// Small segments and window so that a few hundred batches span several
/// segments and the unsynced window is small.
pub fn small_config() -> DiskLogConfig {
    DiskLogConfig {
        segment_bytes_max: 64 << 10,
        write_bytes_max: 8 << 10,
        cache_bytes_max: 16 << 10,
        unflushed_bytes_max: 16 << 10,
        zero_fill_segments: false,
        ..DiskLogConfig::default()
    }
}

/// Runs `future` on a fresh glommio executor.
pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    executor_builder("ordo-storage-test")
        .make()
        .expect("executor")
        .run(future)
}

/// Segment files of `dir`, in index order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// `(offset, header)` of each frame in a segment file.
pub fn frames(path: &Path) -> Vec<(u64, BatchHeader)> {
    let bytes = std::fs::read(path).expect("read segment");
    let mut out = Vec::new();
    let mut at = 4096usize;
    while let Ok(header) = BatchHeader::parse(&bytes[at..]) {
        out.push((at as u64, header));
        at += header.frame_len as usize;
    }
    out
}

/// Flips one bit of the byte at `offset` of `path`.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[offset as usize] ^= 0x20;
    std::fs::write(path, bytes).expect("write");
}

/// Appends `count` batches of `entries` entries in `term` and syncs.
pub async fn fill(log: &DiskLog, term: u64, count: usize, entries: u32) -> Vec<Batch> {
    let mut written = Vec::new();
    for _ in 0..count {
        let next = batch(term, log.state().last.index + 1, entries);
        log.append(std::slice::from_ref(&next))
            .await
            .expect("append");
        written.push(next);
    }
    log.sync().await.expect("sync");
    written
}

/// Every entry of the log, read batch run by batch run.
pub async fn read_all(log: &DiskLog) -> Vec<ordo_storage::conformance::EntryKey> {
    let state = log.state();
    let mut out = Vec::new();
    let mut next = state.first_index();
    while next <= state.last.index {
        let batches = log.read(next, 64 << 10).await.expect("read");
        for entry in flatten(&batches) {
            if entry.0 >= next {
                out.push(entry);
            }
        }
        next = batches.last().expect("non-empty").last_index() + 1;
    }
    out
}

/// Whether an entry holds what `conformance::batch` puts at its index and
/// term: the payload starts with its index, the session is the term.
pub fn entry_is_genuine(entry: &ordo_storage::conformance::EntryKey) -> bool {
    let (index, term, _id, _ts, client_id, seq, payload) = entry;
    payload.len() >= 8
        && payload[..8] == index.to_le_bytes()
        && payload[8..].iter().all(|&b| b == *term as u8)
        && payload.len() == 8 + (*index % 7) as usize
        && client_id == term
        && seq == index
}
