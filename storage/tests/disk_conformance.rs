//! The storage conformance suite run against the disk log, under several
//! configurations: tiny segments (many rolls), zero-filled spares or
//! fallocate, and each fsync mode that claims durability.

use std::time::Duration;

use ordo_storage::conformance::{self, Harness};
use ordo_storage::disk::executor_builder;
use ordo_storage::{DiskLog, DiskLogConfig, FsyncMode};
use tempfile::TempDir;

struct DiskHarness {
    dir: TempDir,
    config: DiskLogConfig,
}

impl Harness for DiskHarness {
    type Store = DiskLog;

    async fn open(&mut self) -> DiskLog {
        DiskLog::open(self.dir.path(), self.config.clone())
            .await
            .expect("open")
    }

    async fn crash(&mut self, store: DiskLog) {
        // The process "dies": nothing more is written. What was written
        // stays (the OS has it); appends not yet flushed are lost.
        drop(store);
    }
}

fn small(fsync_mode: FsyncMode, zero_fill_segments: bool) -> DiskLogConfig {
    small_with(fsync_mode, zero_fill_segments, true)
}

fn small_with(
    fsync_mode: FsyncMode,
    zero_fill_segments: bool,
    write_through: bool,
) -> DiskLogConfig {
    DiskLogConfig {
        segment_bytes_max: 64 << 10,
        write_bytes_max: 8 << 10,
        cache_bytes_max: 64 << 10,
        unflushed_bytes_max: 16 << 10,
        fsync_mode,
        zero_fill_segments,
        write_through,
    }
}

fn run(config: DiskLogConfig) {
    executor_builder("disk-conformance")
        .make()
        .expect("executor")
        .run(conformance::run_all(|| DiskHarness {
            dir: TempDir::new().expect("tempdir"),
            config: config.clone(),
        }));
}

#[test]
fn conformance_default_config_with_1_mib_segments() {
    // Default knobs, except segments small enough that the many logs the
    // suite opens do not each zero-fill 64 MiB.
    run(DiskLogConfig {
        segment_bytes_max: 1 << 20,
        ..DiskLogConfig::default()
    });
}

#[test]
fn conformance_small_segments_zero_filled() {
    run(small(FsyncMode::Always, true));
}

#[test]
fn conformance_small_segments_zero_filled_fdatasync() {
    run(small_with(FsyncMode::Always, true, false));
}

#[test]
fn conformance_small_segments_fallocated_group_fsync() {
    run(small(FsyncMode::Group(Duration::from_micros(100)), false));
}
