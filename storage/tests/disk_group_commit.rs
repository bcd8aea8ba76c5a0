//! Group commit: concurrent appenders share write-through writes or
//! fdatasyncs, every `sync`
//! covers the appends issued before it, and the counters say so.

mod common;

use std::rc::Rc;
use std::time::Duration;

use common::{block_on, small_config};
use ordo_storage::conformance::batch;
use ordo_storage::{DiskLog, DiskLogConfig, FsyncMode, LogStore};
use tempfile::TempDir;

/// `appenders` tasks each append `rounds` one-entry batches, syncing after
/// each; returns the log's stats. Segment files are write-through (the
/// default).
fn run(mode: FsyncMode, appenders: u64, rounds: u64) -> ordo_storage::DiskLogStats {
    run_with(mode, true, appenders, rounds)
}

fn run_with(
    mode: FsyncMode,
    write_through: bool,
    appenders: u64,
    rounds: u64,
) -> ordo_storage::DiskLogStats {
    let dir = TempDir::new().unwrap();
    block_on(async move {
        let config = DiskLogConfig {
            fsync_mode: mode,
            write_through,
            ..small_config()
        };
        let log = Rc::new(DiskLog::open(dir.path(), config).await.unwrap());
        let mut tasks = Vec::new();
        for _ in 0..appenders {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                for _ in 0..rounds {
                    let next = batch(1, log.state().last.index + 1, 1);
                    let index = next.last_index();
                    log.append(&[next]).await.unwrap();
                    let durable = log.sync().await.unwrap();
                    assert!(
                        durable >= index,
                        "sync returned {durable} before covering {index}"
                    );
                    assert!(log.state().durable_index >= index);
                }
            }));
        }
        for task in tasks {
            task.await;
        }
        assert_eq!(log.state().last.index, appenders * rounds);
        assert_eq!(log.state().durable_index, appenders * rounds);
        log.stats()
    })
}

fn check_shared(stats: &ordo_storage::DiskLogStats) {
    assert_eq!(stats.appends, 640);
    assert_eq!(stats.entries, 640);
    assert_eq!(stats.sync_calls, 640);
    assert!(stats.syncs < 640 / 4, "{stats:?}");
    assert!(stats.appends_per_sync() > 4.0, "{stats:?}");
}

#[test]
fn concurrent_appenders_share_syncs_written_through() {
    let stats = run_with(FsyncMode::Always, true, 32, 20);
    check_shared(&stats);
    // Every round's write was durable on completion: no fdatasync.
    assert!(stats.durable_writes >= stats.syncs, "{stats:?}");
    assert_eq!(stats.fdatasyncs, 0, "{stats:?}");
}

#[test]
fn concurrent_appenders_share_fdatasyncs() {
    let stats = run_with(FsyncMode::Always, false, 32, 20);
    check_shared(&stats);
    assert!(stats.fdatasyncs >= stats.syncs, "{stats:?}");
    assert_eq!(stats.durable_writes, 0, "{stats:?}");
}

#[test]
fn a_single_appender_syncs_every_append() {
    let stats = run(FsyncMode::Always, 1, 30);
    assert_eq!(stats.syncs, 30);
    assert_eq!(stats.appends_per_sync(), 1.0);
}

#[test]
fn group_delay_gathers_more_appends_per_sync() {
    let stats = run(FsyncMode::Group(Duration::from_millis(2)), 16, 10);
    assert!(stats.appends_per_sync() > 4.0, "{stats:?}");
}

#[test]
fn mode_none_never_fdatasyncs_but_reports_progress() {
    let stats = run(FsyncMode::None, 4, 10);
    assert_eq!(stats.fdatasyncs, 0);
    assert_eq!(stats.durable_writes, 0, "write-through is off in mode none");
    assert!(stats.syncs > 0);
}

#[test]
fn appends_past_the_unflushed_bound_write_without_an_explicit_sync() {
    let dir = TempDir::new().unwrap();
    block_on(async move {
        let config = small_config();
        let log = DiskLog::open(dir.path(), config.clone()).await.unwrap();
        let mut appended = 0u64;
        while appended < 2 * config.unflushed_bytes_max {
            let next = batch(1, log.state().last.index + 1, 8);
            appended += next.len_bytes() as u64;
            log.append(&[next]).await.unwrap();
        }
        assert!(log.stats().syncs >= 1);
        assert!(log.state().durable_index > 0);
    });
}
