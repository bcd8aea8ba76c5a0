//! Opening a log from arbitrary file contents, for the `log_open` fuzz
//! target and for property tests on stable Rust.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use glommio::LocalExecutor;

use crate::conformance::batch;
use crate::error::{Result, StorageError};
use crate::hard_state::HardState;
use crate::log_store::LogStore;
use crate::types::LogId;

use super::config::DiskLogConfig;
use super::hard_state_file::HARD_STATE_FILE_NAME;
use super::log::DiskLog;
use super::segment_header::{SegmentHeader, segment_file_name};

/// What a log opened from fuzz input held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzOutcome {
    /// Its last entry.
    pub last: LogId,
    /// Batches read back (every one CRC-checked and validated).
    pub batches_read: usize,
    /// Its hard state.
    pub hard_state: HardState,
    /// What opening it found (cut, lost hard state).
    pub recovery: super::RecoveryReport,
}

thread_local! {
    static EXECUTOR: OnceCell<LocalExecutor> = const { OnceCell::new() };
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// Writes `data` as a log directory and opens it as a [`DiskLog`]; if it
/// opens, reads every entry back, appends a batch, syncs and reopens.
///
/// The first byte picks the layout: bit 0 prefixes the rest with a valid
/// segment header (so the fuzzer reaches frame parsing without forging a
/// CRC), bit 1 splits the rest into two segments, bit 2 writes the rest as
/// the hard-state file instead. Returns only typed errors; panics are bugs.
pub fn fuzz_open(data: &[u8]) -> Result<FuzzOutcome> {
    let dir = std::env::temp_dir().join(format!(
        "ordo-fuzz-open-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|source| StorageError::Io {
        op: "create directory",
        path: dir.clone(),
        source,
    })?;
    let result = write_files(&dir, data).and_then(|()| {
        EXECUTOR.with(|cell| {
            let executor = cell.get_or_init(|| {
                super::executor_builder("ordo-fuzz-open")
                    .make()
                    .expect("a glommio executor (io_uring and locked memory available)")
            });
            executor.run(open_and_exercise(dir.clone()))
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn write_files(dir: &Path, data: &[u8]) -> Result<()> {
    let write = |path: PathBuf, bytes: &[u8]| {
        std::fs::write(&path, bytes).map_err(|source| StorageError::Io {
            op: "write",
            path,
            source,
        })
    };
    let (flags, body) = data.split_first().map_or((0, data), |(f, rest)| (*f, rest));
    if flags & 4 != 0 {
        return write(dir.join(HARD_STATE_FILE_NAME), body);
    }
    let with_header = |first_index: u64, bytes: &[u8]| {
        let mut file = Vec::new();
        if flags & 1 != 0 {
            file = SegmentHeader {
                first_index,
                prev_term: 0,
                base: first_index == 1,
                write_bytes_max: 4096,
            }
            .encode();
        }
        file.extend_from_slice(bytes);
        file
    };
    if flags & 2 != 0 {
        let (a, b) = body.split_at(body.len() / 2);
        write(dir.join(segment_file_name(1)), &with_header(1, a))?;
        // The second segment is named after whatever its header claims,
        // or index 2 when it has none.
        let second = with_header(2, b);
        let first_index = SegmentHeader::parse(&second).map_or(2, |h| h.first_index);
        write(dir.join(segment_file_name(first_index)), &second)
    } else {
        write(dir.join(segment_file_name(1)), &with_header(1, body))
    }
}

fn config() -> DiskLogConfig {
    DiskLogConfig {
        segment_bytes_max: 64 << 10,
        write_bytes_max: 4096,
        cache_bytes_max: 1 << 20,
        unflushed_bytes_max: 1 << 20,
        zero_fill_segments: false,
        ..DiskLogConfig::default()
    }
}

async fn open_and_exercise(dir: PathBuf) -> Result<FuzzOutcome> {
    let log = DiskLog::open(&dir, config()).await?;
    let state = log.state();
    let mut batches_read = 0;
    let mut next = state.first_index();
    while next <= state.last.index {
        let batches = log.read(next, 1 << 20).await?;
        for (i, batch) in batches.iter().enumerate() {
            assert!(
                i > 0 || batch.header().contains(next),
                "read({next}) began elsewhere"
            );
            assert!(
                i == 0 || batch.first_index() == next,
                "read({next}) returned a gap"
            );
            next = batch.last_index() + 1;
        }
        batches_read += batches.len();
    }
    let appended = batch(state.last.term.max(1), state.last.index + 1, 2);
    log.append(std::slice::from_ref(&appended)).await?;
    let durable = log.sync().await?;
    assert_eq!(durable, state.last.index + 2);
    let hard_state = log.hard_state();
    let recovery = log.recovery().clone();
    drop(log);
    let reopened = DiskLog::open(&dir, config()).await?;
    assert_eq!(
        reopened.state().last.index,
        state.last.index + 2,
        "a synced append was lost"
    );
    let tail = reopened.read(state.last.index + 1, usize::MAX).await?;
    assert_eq!(tail[0], appended);
    Ok(FuzzOutcome {
        last: state.last,
        batches_read,
        hard_state,
        recovery,
    })
}
