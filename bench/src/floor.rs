//! This machine's floor, measured in the same run as the cluster: what one
//! commit cannot beat. A commit on a 3-node cluster needs at least one
//! loopback round trip (leader to follower and back) and one fdatasync on
//! the follower (the leader's runs in parallel), so the commit floor is
//! `fsync p50 + round trip p50` when the log syncs, and the round trip alone
//! when it does not.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Samples per floor measurement: enough for a stable median, short enough
/// (~0.1–0.5 s for the fsync loop) to run before every benchmark.
const FLOOR_SAMPLES: usize = 1_000;
/// Bytes per floor write: one page, as the log's smallest append is.
const FLOOR_WRITE_BYTES: usize = 4096;
/// Samples of the paced write (each waits [`PACED_GAP`] first).
const PACED_SAMPLES: usize = 1_000;
/// The gap before each paced write: about a C = 1 commit's period, so the
/// write finds the CPUs idle as a follower's does at C = 1.
const PACED_GAP: Duration = Duration::from_micros(200);
/// Bytes per write of the write-rate floor: about a group-commit round of
/// 64 B proposals at C = 256 (10–11 KiB), rounded up to whole pages.
const RATE_WRITE_BYTES: usize = 16 << 10;
/// How long the write-rate floor writes.
const RATE_DURATION: Duration = Duration::from_millis(500);

/// The floor figures, in microseconds (medians).
#[derive(Clone, Copy, Debug, Default)]
pub struct Floor {
    /// 4 KiB write at the end of a preallocated file + fdatasync, p50.
    pub fsync_us: f64,
    /// 4 KiB O_DIRECT write to a file opened with O_DSYNC, p50: the other
    /// way to make a small append durable, the one the log uses
    /// (`write_through`). For information: the floor is defined with
    /// `fsync_us`. `None` where the filesystem refuses O_DIRECT (tmpfs).
    pub dsync_us: Option<f64>,
    /// The same write made [`PACED_GAP`] after the previous one completed
    /// instead of back to back, p50: what a follower's durable write costs
    /// at C = 1, where the CPUs idle between commits (for information; on
    /// a VM whose idle vCPUs halt it is well above `dsync_us`).
    pub dsync_paced_us: Option<f64>,
    /// 64 B ping-pong over loopback TCP with TCP_NODELAY, p50.
    pub rtt_us: f64,
    /// The same ping-pong's p99.
    pub rtt_p99_us: f64,
    /// Three threads, one per voter, each make a paced 4 KiB O_DSYNC write
    /// (O_DIRECT where the filesystem allows) to its own file at the same
    /// moment; the time until the second of the three completes (a
    /// majority durable), p50 and p99. `None` if the files could not be
    /// written.
    pub quorum_write: Option<(f64, f64)>,
    /// Three threads, one per voter, each write 16 KiB pages durably
    /// (O_DIRECT | O_DSYNC) to their own file back to back for half a
    /// second: the durable writes per second the device completes for three
    /// logs that share it, all threads together. The ceiling of a
    /// group-commit round rate; `None` if not measured.
    pub durable_writes_per_s: Option<f64>,
}

impl Floor {
    /// The floor a durable commit on a 3-voter cluster really has, p50: a
    /// majority's concurrent durable writes plus two loopback round trips
    /// (client to leader and back, leader to follower and back). `None`
    /// when the quorum write was not measured.
    pub fn quorum_us(&self) -> Option<f64> {
        self.quorum_write.map(|(p50, _)| p50 + 2.0 * self.rtt_us)
    }

    /// The same floor at p99: the quorum write's p99 plus two round trips
    /// at their p50 (a stricter floor than adding the round trips' p99).
    pub fn quorum_p99_us(&self) -> Option<f64> {
        self.quorum_write.map(|(_, p99)| p99 + 2.0 * self.rtt_us)
    }

    /// The commit floor for a run that syncs (`syncs`) or not.
    pub fn commit_us(&self, syncs: bool) -> f64 {
        if syncs {
            self.fsync_us + self.rtt_us
        } else {
            self.rtt_us
        }
    }
}

/// Measures both floors; the fsync one on `dir`'s filesystem.
pub fn measure(dir: &Path) -> Result<Floor, String> {
    let rtt = rtt_us()?;
    Ok(Floor {
        fsync_us: fsync_p50_us(dir)?,
        dsync_us: dsync_p50_us(dir, FLOOR_SAMPLES, None).ok(),
        dsync_paced_us: dsync_p50_us(dir, PACED_SAMPLES, Some(PACED_GAP)).ok(),
        rtt_us: rtt.value_at_quantile(0.5) as f64 / 1_000.0,
        rtt_p99_us: rtt.value_at_quantile(0.99) as f64 / 1_000.0,
        quorum_write: quorum_write_us(dir, 3, PACED_SAMPLES).ok(),
        durable_writes_per_s: durable_write_rate(dir, 3, RATE_DURATION).ok(),
    })
}

/// Creates `path` as `len` bytes of real zeros and syncs it, as the log's
/// segments are prepared, so that no durable write into it pays for
/// growing the file or converting unwritten extents. `Err` names the step.
fn zero_filled(path: &Path, len: usize) -> Result<(), (&'static str, std::io::Error)> {
    let file = std::fs::File::create(path).map_err(|e| ("cannot create", e))?;
    file.write_all_at(&vec![0u8; len], 0)
        .map_err(|e| ("cannot write", e))?;
    file.sync_all().map_err(|e| ("cannot sync", e))
}

/// `writers` threads write [`RATE_WRITE_BYTES`] pages durably, back to
/// back, each to its own preallocated file, for `duration`: completed
/// writes per second, all threads together.
fn durable_write_rate(dir: &Path, writers: usize, duration: Duration) -> Result<f64, String> {
    use std::os::unix::fs::OpenOptionsExt;
    /// Pages per file: the writes wrap around within it.
    const PAGES: usize = 256;
    let start = std::sync::Arc::new(std::sync::Barrier::new(writers));
    let threads: Vec<_> = (0..writers)
        .map(|writer| {
            let path = dir.join(format!("floor.rate.{writer}"));
            let start = start.clone();
            std::thread::spawn(move || -> Result<u64, String> {
                let fail = |what: &str, e: std::io::Error| {
                    format!("write-rate floor: {what} {}: {e}", path.display())
                };
                let prepared = (|| {
                    zero_filled(&path, PAGES * RATE_WRITE_BYTES)
                        .map_err(|(what, e)| fail(what, e))?;
                    std::fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
                        .open(&path)
                        .map_err(|e| fail("cannot open with O_DIRECT|O_DSYNC", e))
                })();
                // Every thread reaches the barrier, even after a failure.
                start.wait();
                let file = prepared?;
                let page = ordo_storage::AlignedBuf::filled(RATE_WRITE_BYTES, 0xA5);
                let until = Instant::now() + duration;
                let mut writes = 0u64;
                while Instant::now() < until {
                    let at = (writes as usize % PAGES) * RATE_WRITE_BYTES;
                    file.write_all_at(page.as_slice(), at as u64)
                        .map_err(|e| fail("cannot write", e))?;
                    writes += 1;
                }
                drop(file);
                // Best effort: the directory is the run's own temporary one.
                let _ = std::fs::remove_file(&path);
                Ok(writes)
            })
        })
        .collect();
    let mut writes = 0;
    for thread in threads {
        writes += thread
            .join()
            .map_err(|_| "write-rate floor: a writer thread panicked".to_string())??;
    }
    Ok(writes as f64 / duration.as_secs_f64())
}

/// Data writes completed so far by the block device that holds `dir`
/// (`/sys/dev/block/<major>:<minor>/stat`, the partition's own counter
/// where `dir` is on a partition), cache flushes not counted: the kernel
/// counts a flush request as a write too, and a device without FUA gets
/// one after every O_DSYNC write. `None` where the kernel does not say (a
/// filesystem without a block device, such as tmpfs).
pub fn device_writes(dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let stat = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/stat")).ok()?;
    // Fields: reads, reads merged, sectors read, ms reading, writes, ...;
    // the 16th counts flushes (kernels before 5.5 do not have it).
    let fields: Vec<u64> = stat
        .split_whitespace()
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    let writes = *fields.get(4)?;
    Some(writes.saturating_sub(fields.get(15).copied().unwrap_or(0)))
}

/// `voters` threads each write a 4 KiB page durably to their own
/// preallocated file (O_DIRECT | O_DSYNC, or O_DSYNC alone where the
/// filesystem refuses O_DIRECT), all released together by a barrier, then
/// pause [`PACED_GAP`] as a C = 1 commit's voters do. Per round: from the
/// earliest start to the completion of the majority's last write. Returns
/// (p50, p99) in microseconds.
fn quorum_write_us(dir: &Path, voters: usize, samples: usize) -> Result<(f64, f64), String> {
    let rounds = quorum_rounds(dir, voters, Rounds::Count(samples))?;
    let mut histogram = new_histogram();
    for (_, took) in rounds {
        record(&mut histogram, took);
    }
    let us = |q| histogram.value_at_quantile(q) as f64 / 1_000.0;
    Ok((us(0.5), us(0.99)))
}

/// How many rounds [`quorum_rounds`] makes.
#[derive(Clone, Copy, Debug)]
pub enum Rounds {
    /// This many.
    Count(usize),
    /// As many as fit in this long.
    For(Duration),
}

/// The quorum write's rounds (see [`quorum_write_us`]): for each, when it
/// started (from the first round's start) and how long the majority took.
pub fn quorum_rounds(
    dir: &Path,
    voters: usize,
    rounds: Rounds,
) -> Result<Vec<(Duration, Duration)>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    /// Pages per file: the writes wrap around within it.
    const PAGES: usize = 1_000;
    let majority = voters / 2 + 1;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(voters));
    // Set by voter 0 between two barriers, so every voter sees it at the
    // same round and none waits at a barrier the others left.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let origin = Instant::now();
    let mut threads = Vec::new();
    for voter in 0..voters {
        let path = dir.join(format!("floor.quorum.{voter}"));
        let (barrier, stop) = (barrier.clone(), stop.clone());
        threads.push(std::thread::spawn(
            move || -> Result<Vec<(Instant, Instant)>, String> {
                let fail = |what: &str, e: std::io::Error| {
                    format!("quorum floor: {what} {}: {e}", path.display())
                };
                let prepared = zero_filled(&path, PAGES * FLOOR_WRITE_BYTES)
                    .map_err(|(what, e)| fail(what, e));
                let open = |flags| {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(flags)
                        .open(&path)
                };
                let opened = prepared.and_then(|()| {
                    open(libc::O_DIRECT | libc::O_DSYNC)
                        .or_else(|_| open(libc::O_DSYNC))
                        .map_err(|e| fail("cannot open", e))
                });
                let page = ordo_storage::AlignedBuf::filled(FLOOR_WRITE_BYTES, 0xA5);
                // Every thread reaches every barrier, even after a failure, so
                // that none waits forever for the others.
                let mut times = Vec::new();
                let mut failed = opened.as_ref().err().cloned();
                for i in 0.. {
                    barrier.wait();
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let start = Instant::now();
                    if let (Ok(file), None) = (&opened, &failed)
                        && let Err(e) = file
                            .write_all_at(page.as_slice(), ((i % PAGES) * FLOOR_WRITE_BYTES) as u64)
                    {
                        failed = Some(fail("cannot write", e));
                    }
                    times.push((start, Instant::now()));
                    std::thread::sleep(PACED_GAP);
                    if voter == 0 {
                        let done = match rounds {
                            Rounds::Count(count) => i + 1 >= count,
                            Rounds::For(duration) => origin.elapsed() >= duration,
                        };
                        stop.store(done, Ordering::Relaxed);
                    }
                }
                drop(opened);
                // Best effort: the directory is the run's own temporary one.
                let _ = std::fs::remove_file(&path);
                match failed {
                    Some(error) => Err(error),
                    None => Ok(times),
                }
            },
        ));
    }
    let mut per_voter = Vec::new();
    for thread in threads {
        per_voter.push(
            thread
                .join()
                .map_err(|_| "quorum floor: a writer thread panicked".to_string())??,
        );
    }
    let count = per_voter.iter().map(Vec::len).min().unwrap_or(0);
    let first = per_voter
        .iter()
        .filter_map(|times| times.first().map(|t| t.0))
        .min();
    Ok((0..count)
        .map(|round| {
            let start = per_voter
                .iter()
                .map(|times| times[round].0)
                .min()
                .expect("voters");
            let mut ends: Vec<Instant> = per_voter.iter().map(|times| times[round].1).collect();
            ends.sort();
            (
                start.saturating_duration_since(first.unwrap_or(start)),
                ends[majority - 1] - start,
            )
        })
        .collect())
}

/// What `ordo-bench disk` prints: the quorum write's rounds by percentile,
/// and every round that took at least `stall` (when it started, how long),
/// the worst first, at most `shown`.
pub fn render_rounds(rounds: &[(Duration, Duration)], stall: Duration, shown: usize) -> String {
    let mut histogram = new_histogram();
    for &(_, took) in rounds {
        record(&mut histogram, took);
    }
    let us = |q| histogram.value_at_quantile(q) as f64 / 1_000.0;
    let mut text = format!(
        "quorum write ({} rounds: three paced 4 KiB O_DSYNC writes at once, until the second completes)\n  \
         µs  p50 {:.1}  p99 {:.1}  p99.9 {:.1}  p99.99 {:.1}  max {:.1}\n",
        rounds.len(),
        us(0.5),
        us(0.99),
        us(0.999),
        us(0.9999),
        histogram.max() as f64 / 1_000.0,
    );
    let mut stalls: Vec<_> = rounds.iter().filter(|(_, took)| *took >= stall).collect();
    stalls.sort_by_key(|&&(_, took)| std::cmp::Reverse(took));
    text += &format!(
        "  rounds of {} ms or more: {}{}\n",
        stall.as_millis(),
        stalls.len(),
        if stalls.is_empty() {
            ""
        } else {
            " (at s into the run: ms)"
        }
    );
    for (at, took) in stalls.iter().take(shown) {
        text += &format!(
            "    {:8.3} s: {:.1} ms\n",
            at.as_secs_f64(),
            took.as_secs_f64() * 1e3
        );
    }
    text
}

/// Measures the device the way `ordo-bench disk` reports it: the quorum
/// write for `duration`, then the durable write rate for three logs.
pub fn disk_report(dir: &Path, duration: Duration) -> Result<String, String> {
    let rounds = quorum_rounds(dir, 3, Rounds::For(duration))?;
    let mut text = render_rounds(&rounds, Duration::from_millis(20), 10);
    match durable_write_rate(dir, 3, RATE_DURATION) {
        Ok(rate) => {
            text += &format!(
                "durable write rate for three logs (16 KiB O_DIRECT|O_DSYNC writes back to back): {rate:.0}/s\n"
            )
        }
        Err(error) => text += &format!("durable write rate: not measured ({error})\n"),
    }
    Ok(text)
}

/// Appends 4 KiB pages to a preallocated, synced file, each followed by an
/// fdatasync: the cost of making one small append durable.
fn fsync_p50_us(dir: &Path) -> Result<f64, String> {
    let path = dir.join("floor.fsync");
    let fail =
        |what: &str, e: std::io::Error| format!("fsync floor: {what} {}: {e}", path.display());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| fail("cannot create", e))?;
    // Preallocate with real zeros and sync once, as the log's segments are,
    // so no fdatasync below pays for growing the file's metadata.
    let total = FLOOR_SAMPLES * FLOOR_WRITE_BYTES;
    file.write_all_at(&vec![0u8; total], 0)
        .map_err(|e| fail("cannot write", e))?;
    file.sync_all().map_err(|e| fail("cannot sync", e))?;
    let page = vec![0xA5u8; FLOOR_WRITE_BYTES];
    let mut histogram = new_histogram();
    for i in 0..FLOOR_SAMPLES {
        let start = Instant::now();
        file.write_all_at(&page, (i * FLOOR_WRITE_BYTES) as u64)
            .map_err(|e| fail("cannot write", e))?;
        file.sync_data().map_err(|e| fail("cannot fdatasync", e))?;
        record(&mut histogram, start.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(histogram.value_at_quantile(0.5) as f64 / 1_000.0)
}

/// Appends `samples` 4 KiB pages with O_DIRECT to a preallocated, synced
/// file opened with O_DSYNC (each write is durable when it returns), back
/// to back or each after a sleep of `gap`.
fn dsync_p50_us(dir: &Path, samples: usize, gap: Option<Duration>) -> Result<f64, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("floor.dsync");
    let fail =
        |what: &str, e: std::io::Error| format!("dsync floor: {what} {}: {e}", path.display());
    zero_filled(&path, samples * FLOOR_WRITE_BYTES).map_err(|(what, e)| fail(what, e))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(&path)
        .map_err(|e| fail("cannot open with O_DIRECT|O_DSYNC", e))?;
    let page = ordo_storage::AlignedBuf::filled(FLOOR_WRITE_BYTES, 0xA5);
    let mut histogram = new_histogram();
    for i in 0..samples {
        if let Some(gap) = gap {
            std::thread::sleep(gap);
        }
        let start = Instant::now();
        file.write_all_at(page.as_slice(), (i * FLOOR_WRITE_BYTES) as u64)
            .map_err(|e| fail("cannot write", e))?;
        record(&mut histogram, start.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(histogram.value_at_quantile(0.5) as f64 / 1_000.0)
}

/// A 64 B ping-pong between two threads over loopback TCP: the histogram
/// of round trips, in nanoseconds.
fn rtt_us() -> Result<Histogram<u64>, String> {
    let fail = |e: std::io::Error| format!("loopback floor: {e}");
    let listener = TcpListener::bind("127.0.0.1:0").map_err(fail)?;
    let addr = listener.local_addr().map_err(fail)?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut buffer = [0u8; 64];
        for _ in 0..FLOOR_SAMPLES + 100 {
            stream.read_exact(&mut buffer)?;
            stream.write_all(&buffer)?;
        }
        Ok(())
    });
    let mut stream = TcpStream::connect(addr).map_err(fail)?;
    stream.set_nodelay(true).map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(fail)?;
    let mut buffer = [7u8; 64];
    let mut histogram = new_histogram();
    // The first round trips warm the connection and the scheduler.
    for i in 0..FLOOR_SAMPLES + 100 {
        let start = Instant::now();
        stream.write_all(&buffer).map_err(fail)?;
        stream.read_exact(&mut buffer).map_err(fail)?;
        if i >= 100 {
            record(&mut histogram, start.elapsed());
        }
    }
    echo.join()
        .map_err(|_| "loopback floor: echo thread panicked".to_string())?
        .map_err(fail)?;
    Ok(histogram)
}

/// A histogram of nanoseconds from 1 ns to 10 minutes at 3 significant
/// digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

/// Records `elapsed` in nanoseconds, clamped to the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let nanos = (elapsed.as_nanos() as u64).clamp(1, histogram.high());
    histogram.saturating_record(nanos);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_are_measured() {
        let dir = tempfile::tempdir().unwrap();
        let floor = measure(dir.path()).unwrap();
        assert!(floor.fsync_us > 0.0 && floor.rtt_us > 0.0, "{floor:?}");
        assert!(floor.commit_us(true) > floor.commit_us(false));
        for us in [floor.dsync_us, floor.dsync_paced_us].into_iter().flatten() {
            assert!(us > 0.0, "{floor:?}");
        }
        assert!(!dir.path().join("floor.dsync").exists());
        assert!(!dir.path().join("floor.fsync").exists());
        let (p50, p99) = floor.quorum_write.expect("the quorum write is measured");
        assert!(p50 > 0.0 && p99 >= p50, "{floor:?}");
        assert!(floor.quorum_us().unwrap() > p50 + floor.rtt_us, "{floor:?}");
        assert!(floor.rtt_p99_us >= floor.rtt_us, "{floor:?}");
        assert!(!dir.path().join("floor.quorum.0").exists());
        // O_DIRECT is refused on tmpfs: then the rate is not measured.
        if let Some(rate) = floor.durable_writes_per_s {
            assert!(rate > 0.0, "{floor:?}");
        }
        assert!(!dir.path().join("floor.rate.0").exists());
    }

    #[test]
    fn quorum_rounds_run_for_a_duration_and_stalls_are_listed_worst_first() {
        let dir = tempfile::tempdir().unwrap();
        let rounds = quorum_rounds(dir.path(), 3, Rounds::For(Duration::from_millis(50))).unwrap();
        assert!(!rounds.is_empty());
        assert!(
            rounds.windows(2).all(|w| w[0].0 <= w[1].0),
            "in start order"
        );
        let ms = Duration::from_millis;
        let text = render_rounds(
            &[
                (ms(0), ms(1)),
                (ms(5), ms(30)),
                (ms(9), ms(2)),
                (ms(12), ms(80)),
            ],
            ms(20),
            10,
        );
        assert!(text.contains("4 rounds"), "{text}");
        assert!(text.contains("rounds of 20 ms or more: 2"), "{text}");
        let worst = text.find("80.0 ms").expect("the worst stall");
        let next = text.find("30.0 ms").expect("the other stall");
        assert!(worst < next, "worst first: {text}");
        assert!(!text.contains(" 2.0 ms"), "{text}");
    }

    #[test]
    fn device_writes_count_the_writes_of_the_directorys_device() {
        let dir = tempfile::tempdir().unwrap();
        // tmpfs has no block device: nothing to count.
        let Some(before) = device_writes(dir.path()) else {
            return;
        };
        let file = std::fs::File::create(dir.path().join("w")).unwrap();
        file.write_all_at(&[1u8; 4096], 0).unwrap();
        file.sync_all().unwrap();
        assert!(device_writes(dir.path()).unwrap() > before);
    }
}
