//! Criterion benchmarks for ordo-storage's disk log, each against a raw
//! baseline measured in the same run on the same filesystem:
//!
//! - `append_sync_latency`: one appender, append + sync of a one-entry
//!   batch, against two raw loops of the same bytes written with O_DIRECT
//!   into a zero-filled file (the fastest raw layout, see docs/storage.md):
//!   write + fdatasync, and a write to a file opened with O_DSYNC. Before
//!   it, the three loops run interleaved append by append
//!   (`ORDO_BENCH_INTERLEAVED` iterations, default 3000) and the
//!   distributions and ratios are printed: on a shared disk that is the
//!   fair comparison;
//! - `durable_appends`: 1, 16 and 256 concurrent appenders, each appending
//!   a batch of 64 B entries (`ORDO_BENCH_ENTRIES_PER_BATCH`, default 16)
//!   and waiting for its sync, in a loop; prints appends per sync.
//!   `ORDO_BENCH_WRITE_THROUGH=0` makes the log write + fdatasync instead
//!   of writing through;
//! - `recovery`: opening a 1 GiB log against reading its files with
//!   O_DIRECT at queue depth (sequential read bandwidth).
//!
//! The data directory is `ORDO_BENCH_DIR` (default: the temp dir), which
//! must be on the disk under test. `cargo bench -p ordo-bench --bench
//! storage`; docs/benchmarks.md records results.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_lite::StreamExt;
use glommio::io::{DmaFile, MergedBufferLimit, OpenOptions, ReadAmplificationLimit};
use ordo_storage::disk::executor_builder;
use ordo_storage::frame::{BatchKind, BatchMeta, EntryOut};
use ordo_storage::{Batch, DiskLog, DiskLogConfig, FsyncMode, LogStore};

const ENTRY_BYTES: usize = 64;

fn bench_dir(name: &str) -> tempfile::TempDir {
    let base = std::env::var("ORDO_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    tempfile::Builder::new()
        .prefix(name)
        .tempdir_in(base)
        .expect("bench dir")
}

/// A user batch of `count` 64 B entries starting at `first_index`.
fn batch(first_index: u64, count: u32) -> Batch {
    let payload = [0x5Au8; ENTRY_BYTES];
    let entries = (0..count)
        .map(|i| EntryOut {
            client_id: 7,
            seq: first_index + u64::from(i),
            payload: &payload,
        })
        .collect();
    Batch::encode(
        BatchMeta {
            kind: BatchKind::Entries,
            term: 1,
            first_index,
            first_id: first_index,
            first_ts: first_index,
        },
        entries,
    )
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    executor_builder("ordo-bench-storage")
        .make()
        .expect("executor")
        .run(future)
}

/// How a raw appender makes a write durable.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RawSync {
    /// write, then fdatasync: two io_uring operations.
    Fdatasync,
    /// The file opened with O_DSYNC: each write is durable when it
    /// completes, one io_uring operation.
    DsyncWrite,
}

/// A raw O_DIRECT append loop made durable by `sync`: the tail block is
/// rewritten with the new bytes, like the log does, into a zero-filled
/// file.
struct RawAppender {
    sync: RawSync,
    file: DmaFile,
    path: PathBuf,
    frame: Vec<u8>,
    tail: Vec<u8>,
    offset: u64,
}

impl RawAppender {
    async fn new(dir: &Path, frame_bytes: usize, appends: u64, sync: RawSync) -> Self {
        // The raw file starts empty: see `prime_iopoll_probe`.
        ordo_storage::disk::prime_iopoll_probe(dir)
            .await
            .expect("prime");
        let path = dir.join(match sync {
            RawSync::Fdatasync => "raw-fdatasync.dat",
            RawSync::DsyncWrite => "raw-dsync.dat",
        });
        let file_bytes = (frame_bytes as u64 * appends + (1 << 20)).next_multiple_of(1 << 20);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .custom_flags(match sync {
                RawSync::Fdatasync => 0,
                RawSync::DsyncWrite => libc::O_DSYNC,
            })
            .dma_open(&path)
            .await
            .expect("open raw");
        let mut at = 0;
        while at < file_bytes {
            let mut zeros = file.alloc_dma_buffer(1 << 20);
            zeros.as_bytes_mut().fill(0);
            file.write_at(zeros, at).await.expect("zero fill");
            at += 1 << 20;
        }
        file.fdatasync().await.expect("fdatasync");
        Self {
            sync,
            file,
            path,
            frame: vec![0xA5u8; frame_bytes],
            tail: Vec::new(),
            offset: 0,
        }
    }

    async fn append_sync(&mut self) {
        self.tail.extend_from_slice(&self.frame);
        let len = self.tail.len().next_multiple_of(4096);
        let mut buffer = self.file.alloc_dma_buffer(len);
        buffer.as_bytes_mut()[..self.tail.len()].copy_from_slice(&self.tail);
        buffer.as_bytes_mut()[self.tail.len()..].fill(0);
        self.file
            .write_at(buffer, self.offset)
            .await
            .expect("write");
        if self.sync == RawSync::Fdatasync {
            self.file.fdatasync().await.expect("fdatasync");
        }
        let whole = self.tail.len() / 4096 * 4096;
        self.offset += whole as u64;
        self.tail.drain(..whole);
    }

    async fn close(self) {
        self.file.close().await.expect("close");
        let _ = std::fs::remove_file(&self.path);
    }
}

fn summary(name: &str, samples: &mut [Duration]) -> f64 {
    samples.sort();
    let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64;
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    eprintln!(
        "{name}: mean {:.1} us, p50 {:.1} us, p90 {:.1} us, p99 {:.1} us",
        mean * 1e6,
        at(0.5),
        at(0.9),
        at(0.99)
    );
    mean
}

/// Raw and log appends alternated one by one in one loop, so that both
/// see the same disk and the same background load; prints both
/// distributions and the ratio of means.
fn interleaved_latency() {
    let iterations: u64 = std::env::var("ORDO_BENCH_INTERLEAVED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let dir = bench_dir("ordo-interleaved");
    run(async {
        let frame_bytes = batch(1, 1).len_bytes();
        let mut raw =
            RawAppender::new(dir.path(), frame_bytes, iterations, RawSync::Fdatasync).await;
        let mut dsync =
            RawAppender::new(dir.path(), frame_bytes, iterations, RawSync::DsyncWrite).await;
        let log = DiskLog::open(dir.path().join("log"), DiskLogConfig::default())
            .await
            .expect("open");
        glommio::timer::sleep(Duration::from_secs(2)).await;
        let (mut raw_samples, mut dsync_samples, mut log_samples) =
            (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..iterations {
            let start = Instant::now();
            raw.append_sync().await;
            raw_samples.push(start.elapsed());
            let start = Instant::now();
            dsync.append_sync().await;
            dsync_samples.push(start.elapsed());
            let start = Instant::now();
            let next = batch(log.state().last.index + 1, 1);
            log.append(&[next]).await.expect("append");
            log.sync().await.expect("sync");
            log_samples.push(start.elapsed());
        }
        let raw_mean = summary(
            "interleaved raw O_DIRECT write + fdatasync",
            &mut raw_samples,
        );
        let dsync_mean = summary("interleaved raw O_DIRECT|O_DSYNC write", &mut dsync_samples);
        let log_mean = summary("interleaved disk log append + sync", &mut log_samples);
        eprintln!(
            "interleaved ratio of means (log / raw write + fdatasync): {:.3}; \
             (log / fastest raw): {:.3}",
            log_mean / raw_mean,
            log_mean / raw_mean.min(dsync_mean)
        );
        raw.close().await;
        dsync.close().await;
    });
}

fn append_sync_latency(c: &mut Criterion) {
    interleaved_latency();
    let mut group = c.benchmark_group("append_sync_latency");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(8));
    let frame_bytes = batch(1, 1).len_bytes();
    // One executor, file and log for all samples: opening per sample would
    // measure the zero-filling of fresh segments competing with the syncs.
    let executor = executor_builder("ordo-bench-latency")
        .make()
        .expect("executor");
    let dir = bench_dir("ordo-latency");
    for (name, sync) in [
        ("raw_odirect_write_fdatasync", RawSync::Fdatasync),
        ("raw_odirect_dsync_write", RawSync::DsyncWrite),
    ] {
        let mut raw = executor.run(RawAppender::new(dir.path(), frame_bytes, 1 << 18, sync));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                executor.run(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        raw.append_sync().await;
                    }
                    start.elapsed()
                })
            })
        });
        executor.run(raw.close());
    }
    let log = executor.run(async {
        let log = DiskLog::open(dir.path().join("log"), DiskLogConfig::default())
            .await
            .expect("open");
        glommio::timer::sleep(Duration::from_secs(2)).await;
        log
    });
    group.bench_function("disk_log_append_sync", |b| {
        b.iter_custom(|iters| {
            executor.run(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let next = batch(log.state().last.index + 1, 1);
                    log.append(&[next]).await.expect("append");
                    log.sync().await.expect("sync");
                }
                start.elapsed()
            })
        })
    });
    drop(log);
    group.finish();
}

fn durable_appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_appends");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    let entries_per_batch: u32 = std::env::var("ORDO_BENCH_ENTRIES_PER_BATCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    // `ORDO_BENCH_WRITE_THROUGH=0`: write + fdatasync instead of O_DSYNC
    // writes.
    let write_through = std::env::var("ORDO_BENCH_WRITE_THROUGH").map_or(true, |v| v != "0");
    let executor = executor_builder("ordo-bench-throughput")
        .make()
        .expect("executor");
    for appenders in [1u64, 16, 256] {
        let dir = bench_dir("ordo-tput");
        let config = DiskLogConfig {
            write_through,
            ..DiskLogConfig::default()
        };
        let log = executor.run(async {
            let log = DiskLog::open(dir.path(), config).await.expect("open");
            glommio::timer::sleep(Duration::from_secs(2)).await;
            Rc::new(log)
        });
        group.throughput(Throughput::Elements(
            appenders * u64::from(entries_per_batch),
        ));
        group.bench_with_input(
            BenchmarkId::from_parameter(appenders),
            &appenders,
            |b, &appenders| {
                b.iter_custom(|iters| {
                    executor.run(async {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..appenders)
                            .map(|_| {
                                let log = log.clone();
                                glommio::spawn_local(async move {
                                    for _ in 0..iters {
                                        let next =
                                            batch(log.state().last.index + 1, entries_per_batch);
                                        log.append(&[next]).await.expect("append");
                                        log.sync().await.expect("sync");
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await;
                        }
                        start.elapsed()
                    })
                })
            },
        );
        let stats = log.stats();
        eprintln!(
            "durable_appends/{appenders}: {} appends of {entries_per_batch} x {ENTRY_BYTES} B entries, \
             {} syncs ({} O_DSYNC writes, {} fdatasyncs), {:.1} appends per sync, {:.1} entries per sync",
            stats.appends,
            stats.syncs,
            stats.durable_writes,
            stats.fdatasyncs,
            stats.appends_per_sync(),
            stats.entries_per_sync()
        );
        drop(log);
    }
    group.finish();
}

/// Builds a log of about `bytes` in 64 MiB segments.
async fn build_log(dir: &Path, bytes: u64) -> u64 {
    let config = DiskLogConfig {
        fsync_mode: FsyncMode::None,
        zero_fill_segments: false,
        ..DiskLogConfig::default()
    };
    let log = DiskLog::open(dir, config).await.expect("open");
    let mut written = 0;
    while written < bytes {
        let next = batch(log.state().last.index + 1, 256);
        written += next.len_bytes() as u64;
        log.append(&[next]).await.expect("append");
    }
    log.sync().await.expect("sync")
}

async fn raw_read_all(dir: &Path) -> u64 {
    let mut total = 0;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    paths.sort();
    for path in paths {
        let file = Rc::new(DmaFile::open(&path).await.expect("open"));
        let len = file.file_size().await.expect("size");
        let chunks = (0..len)
            .step_by(1 << 20)
            .map(|pos| (pos, (len - pos).min(1 << 20) as usize));
        let mut reads = file.read_many(
            futures_lite::stream::iter(chunks),
            MergedBufferLimit::NoMerging,
            ReadAmplificationLimit::NoAmplification,
        );
        while let Some(read) = reads.next().await {
            let (_, bytes) = read.expect("read");
            total += bytes.len() as u64;
        }
    }
    total
}

fn recovery(c: &mut Criterion) {
    let log_bytes: u64 = std::env::var("ORDO_BENCH_RECOVERY_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 30);
    let dir = bench_dir("ordo-recovery");
    let last_index = run(build_log(dir.path(), log_bytes));
    let file_bytes = run(raw_read_all(dir.path()));
    let mut group = c.benchmark_group("recovery");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Bytes(file_bytes));
    group.bench_function("raw_sequential_read", |b| {
        b.iter_custom(|iters| {
            run(async {
                let start = Instant::now();
                for _ in 0..iters {
                    assert_eq!(raw_read_all(dir.path()).await, file_bytes);
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("disk_log_open", |b| {
        b.iter_custom(|iters| {
            run(async {
                let config = DiskLogConfig {
                    zero_fill_segments: false,
                    ..DiskLogConfig::default()
                };
                let start = Instant::now();
                for _ in 0..iters {
                    let log = DiskLog::open(dir.path(), config.clone())
                        .await
                        .expect("open");
                    assert_eq!(log.state().last.index, last_index);
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, append_sync_latency, durable_appends, recovery);
criterion_main!(benches);
