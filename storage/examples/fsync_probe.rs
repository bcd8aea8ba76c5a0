//! Measures append + fdatasync latency on this filesystem for the write
//! strategies the disk log could use, so that `docs/storage.md` can record
//! why the log writes the way it does.
//!
//! ```text
//! cargo run --release -p ordo-storage --example fsync_probe -- [dir] [iterations]
//! ```
//!
//! For each combination of write path (O_DIRECT with aligned buffers, or
//! buffered writes) and preallocation (none: the file grows; fallocate'd:
//! unwritten extents; zero-filled: blocks written with zeros and synced
//! beforehand, as a recycled segment would be), it appends `append_bytes`
//! per iteration and fdatasyncs, and prints the latency distribution.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use glommio::io::OpenOptions;
use glommio::{LocalExecutorBuilder, Placement};

const FILE_BYTES: u64 = 64 << 20;
const ALIGN: u64 = 4096;

#[derive(Clone, Copy, Debug)]
enum Prealloc {
    None,
    Fallocate,
    ZeroFilled,
}

#[derive(Clone, Copy, Debug)]
enum WritePath {
    Direct,
    Buffered,
}

async fn prepare(path: &Path, prealloc: Prealloc) {
    let _ = std::fs::remove_file(path);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .dma_open(path)
        .await
        .expect("create");
    match prealloc {
        Prealloc::None => {}
        Prealloc::Fallocate => file
            .pre_allocate(FILE_BYTES, false)
            .await
            .expect("fallocate"),
        Prealloc::ZeroFilled => {
            let chunk = 1 << 20;
            let mut at = 0;
            while at < FILE_BYTES {
                let mut buf = file.alloc_dma_buffer(chunk);
                buf.as_bytes_mut().fill(0);
                file.write_at(buf, at).await.expect("zero fill");
                at += chunk as u64;
            }
        }
    }
    file.fdatasync().await.expect("fdatasync");
    file.close().await.expect("close");
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at].as_secs_f64() * 1e6
}

async fn run(
    dir: &Path,
    path: WritePath,
    prealloc: Prealloc,
    append_bytes: usize,
    iterations: usize,
) {
    let file_path = dir.join("probe.seg");
    prepare(&file_path, prealloc).await;
    let mut samples = Vec::with_capacity(iterations);
    match path {
        WritePath::Direct => {
            let file = OpenOptions::new()
                .write(true)
                .read(true)
                .dma_open(&file_path)
                .await
                .expect("open");
            let mut offset = 0u64;
            // The partial last block is kept in memory and rewritten, as the
            // log does with O_DIRECT.
            let mut tail: Vec<u8> = Vec::new();
            for _ in 0..iterations {
                let start = Instant::now();
                tail.extend(std::iter::repeat_n(0xA5u8, append_bytes));
                let write_len = (tail.len() as u64).div_ceil(ALIGN) * ALIGN;
                let mut buf = file.alloc_dma_buffer(write_len as usize);
                buf.as_bytes_mut()[..tail.len()].copy_from_slice(&tail);
                buf.as_bytes_mut()[tail.len()..].fill(0);
                file.write_at(buf, offset).await.expect("write");
                file.fdatasync().await.expect("fdatasync");
                samples.push(start.elapsed());
                let whole = tail.len() as u64 / ALIGN * ALIGN;
                offset += whole;
                tail.drain(..whole as usize);
            }
            file.close().await.expect("close");
        }
        WritePath::Buffered => {
            let file = OpenOptions::new()
                .write(true)
                .read(true)
                .buffered_open(&file_path)
                .await
                .expect("open");
            let mut offset = 0u64;
            for _ in 0..iterations {
                let start = Instant::now();
                file.write_at(vec![0xA5u8; append_bytes], offset)
                    .await
                    .expect("write");
                file.fdatasync().await.expect("fdatasync");
                samples.push(start.elapsed());
                offset += append_bytes as u64;
            }
            file.close().await.expect("close");
        }
    }
    samples.sort();
    let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64 * 1e6;
    println!(
        "{:<9} {:<11} {:>7} B  mean {:>7.1} us  p50 {:>7.1}  p90 {:>7.1}  p99 {:>7.1}",
        format!("{path:?}"),
        format!("{prealloc:?}"),
        append_bytes,
        mean,
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 0.99)
    );
    let _ = std::fs::remove_file(&file_path);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let iterations: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(4 << 20)
        .make()
        .expect("executor")
        .run(async move {
            for append_bytes in [256usize, 16 << 10, 256 << 10] {
                for path in [WritePath::Direct, WritePath::Buffered] {
                    for prealloc in [Prealloc::None, Prealloc::Fallocate, Prealloc::ZeroFilled] {
                        let iterations = if append_bytes >= 256 << 10 {
                            iterations / 8
                        } else {
                            iterations
                        };
                        run(&dir, path, prealloc, append_bytes, iterations).await;
                    }
                }
            }
        });
}
