//! One run's result: the JSON line (`--json`), the human summary, and the
//! CSV row of a sweep.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::floor::Floor;
use crate::load::Tally;
use crate::spec::RunSpec;

/// Everything a run reports. The first fields are the `--json` contract;
/// the rest add the knobs and memory.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// Voters.
    pub nodes: usize,
    /// Closed-loop proposers (0 in an open-loop run).
    pub concurrency: usize,
    /// Open loop: proposals offered per second (`None`: closed loop).
    pub rate: Option<u64>,
    /// Bytes per proposal.
    pub payload_bytes: usize,
    /// fsync mode.
    pub fsync: String,
    /// `disk` or `memory`.
    pub storage: String,
    /// `tcp` or `inproc`.
    pub transport: String,
    /// Measured seconds.
    pub duration_s: f64,
    /// Proposals committed in the measured window.
    pub commits: u64,
    /// `commits / duration_s`.
    pub commits_per_s: f64,
    /// Commit latency at the client, microseconds.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// 4 KiB append + fdatasync p50 on the data directory's filesystem.
    pub floor_fsync_us: f64,
    /// Loopback TCP round trip p50.
    pub floor_rtt_us: f64,
    /// 4 KiB O_DIRECT write to an O_DSYNC file p50 (how the log makes
    /// appends durable; the floor uses `floor_fsync_us`).
    pub floor_dsync_us: Option<f64>,
    /// The same write 200 µs after the previous one instead of back to
    /// back, p50: a follower's durable write at C = 1 (information).
    pub floor_dsync_paced_us: Option<f64>,
    /// The commit floor: fsync + round trip when the run syncs, else the
    /// round trip.
    pub floor_commit_us: f64,
    /// `p50_us / floor_commit_us`.
    pub p50_over_floor: f64,
    /// Loopback TCP round trip p99.
    pub floor_rtt_p99_us: f64,
    /// The floor of a durable commit on 3 voters, p50: three threads each
    /// make a paced 4 KiB O_DSYNC write at once, the time until the second
    /// completes, plus 2 × the loopback round trip (`None`: not measured).
    pub floor_quorum_us: Option<f64>,
    /// The same at p99 (the writes' p99 plus 2 × the round trip's p50).
    pub floor_quorum_p99_us: Option<f64>,
    /// `p50_us / floor_quorum_us`.
    pub p50_over_floor_quorum: Option<f64>,
    /// `p99_us / floor_quorum_p99_us`.
    pub p99_over_floor_quorum: Option<f64>,
    /// CPU per commit, µs: user + system time of every process of the run
    /// (each node process with `--procs`, and the load) over the measured
    /// window, divided by commits.
    pub cpu_us_per_commit: Option<f64>,
    /// CPU cores busy on average over the measured window (same scope).
    pub cpu_cores_busy: Option<f64>,
    /// The durable writes per second the data directory's device completes
    /// for three logs that share it (the floor's three threads writing
    /// 16 KiB pages back to back): the ceiling on group-commit rounds of
    /// all nodes together when they share one disk.
    pub floor_durable_writes_per_s: Option<f64>,
    /// Data writes per second the data directory's block device completed
    /// over the measured window, its cache flushes not counted (every
    /// node's log rounds, and anything else on that device); `None` where
    /// the kernel does not count them.
    pub disk_writes_per_s: Option<f64>,
    /// `disk_writes_per_s / floor_durable_writes_per_s`: near or above 1,
    /// the run is bound by the device's durable write rate.
    pub disk_writes_over_floor: Option<f64>,
    /// Proposals that failed in the measured window.
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// One `ordo node` process per node.
    pub procs: bool,
    /// Commit tokens signed and returned.
    pub tokens: bool,
    /// Connections authenticated (`--auth`).
    pub auth: bool,
    /// Client connections encrypted (`--tls`).
    pub tls: bool,
    /// Whether voters recorded and served metrics.
    pub metrics: bool,
    /// Voters' gossip endpoints running.
    pub gossip: bool,
    /// Client connections (TCP).
    pub connections: usize,
    /// The core's `batch_entries_max`.
    pub batch_entries_max: u32,
    /// The core's `batch_bytes_max`.
    pub batch_bytes_max: usize,
    /// The runtime's `batch_delay_us`.
    pub batch_delay_us: u64,
    /// The core's `commit_notify_delay_us`.
    pub commit_notify_delay_us: u64,
    /// The core's `inflight_messages_max`.
    pub inflight_max: usize,
    /// Executors per node.
    pub shards: usize,
    /// Resident memory when measuring started, MiB: of the largest node
    /// process with `--procs`, else of this whole process (every node and
    /// the load generator).
    pub rss_start_mib: f64,
    /// Resident memory at the end, MiB (same scope).
    pub rss_end_mib: f64,
    /// Largest resident memory seen while measuring, MiB (same scope).
    pub rss_max_mib: f64,
    /// Resident memory at ten even points of the measured window, MiB
    /// (same scope): flat, or still growing?
    pub rss_trace_mib: Vec<f64>,
    /// Commits per second at ten even points of the measured window (each
    /// over a tenth of it): flat, or decaying?
    pub commits_trace_per_s: Vec<f64>,
    /// The run's label (file names of its plots).
    pub label: String,
    /// Leadership transfers made while measuring (`--transfer-every`).
    pub transfers: u64,
    /// Membership changes committed while measuring (`--change-every`).
    pub changes: u64,
}

/// Resident memory samples and CPU use over the measured window.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// CPU cores busy on average between the first and the last sample of
    /// the window: user + system seconds of every process of the run (node
    /// processes with `--procs`, and the load) per second of wall time.
    pub cpu_cores: Option<f64>,
    /// Data writes per second completed by the data directory's block
    /// device between the same samples (cache flushes not counted).
    pub disk_writes_per_s: Option<f64>,
    /// Every sample, in order.
    pub samples_mib: Vec<f64>,
    /// `(seconds into the window, answers so far, resident MiB)` at each
    /// sample: throughput and memory over time.
    pub timeline: Vec<(f64, u64, f64)>,
    /// First sample.
    pub start_mib: f64,
    /// Last sample.
    pub end_mib: f64,
    /// Largest sample.
    pub max_mib: f64,
}

impl RunResult {
    /// Builds the result of `spec` from what the proposers saw.
    pub fn new(spec: &RunSpec, floor: Floor, tally: &Tally, memory: Memory) -> Self {
        let h = &tally.histogram;
        let us = |nanos: u64| round1(nanos as f64 / 1_000.0);
        let duration_s = spec.duration.as_secs_f64();
        let floor_commit_us = floor.commit_us(spec.syncs());
        let p50_us = us(h.value_at_quantile(0.5));
        Self {
            nodes: spec.nodes,
            concurrency: spec.concurrency,
            rate: spec.rate,
            payload_bytes: spec.payload_bytes,
            fsync: spec.fsync.clone(),
            storage: spec.storage_name().into(),
            transport: spec.transport_name().into(),
            duration_s,
            commits: tally.commits,
            commits_per_s: round1(tally.commits as f64 / duration_s),
            p50_us,
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: round1(h.mean() / 1_000.0),
            floor_fsync_us: round1(floor.fsync_us),
            floor_rtt_us: round1(floor.rtt_us),
            floor_dsync_us: floor.dsync_us.map(round1),
            floor_dsync_paced_us: floor.dsync_paced_us.map(round1),
            floor_commit_us: round1(floor_commit_us),
            p50_over_floor: if floor_commit_us > 0.0 {
                (p50_us / floor_commit_us * 100.0).round() / 100.0
            } else {
                0.0
            },
            floor_rtt_p99_us: round1(floor.rtt_p99_us),
            floor_quorum_us: floor.quorum_us().map(round1),
            floor_quorum_p99_us: floor.quorum_p99_us().map(round1),
            p50_over_floor_quorum: floor
                .quorum_us()
                .filter(|&floor| floor > 0.0)
                .map(|floor| ratio(p50_us, floor)),
            p99_over_floor_quorum: floor
                .quorum_p99_us()
                .filter(|&floor| floor > 0.0)
                .map(|floor| ratio(us(h.value_at_quantile(0.99)), floor)),
            cpu_us_per_commit: memory
                .cpu_cores
                .filter(|_| tally.commits > 0)
                .map(|cores| round1(cores * 1e6 * duration_s / tally.commits as f64)),
            cpu_cores_busy: memory.cpu_cores.map(|cores| ratio(cores, 1.0)),
            floor_durable_writes_per_s: floor.durable_writes_per_s.map(f64::round),
            disk_writes_per_s: memory.disk_writes_per_s.map(f64::round),
            disk_writes_over_floor: memory
                .disk_writes_per_s
                .zip(floor.durable_writes_per_s)
                .filter(|&(_, ceiling)| ceiling > 0.0)
                .map(|(rate, ceiling)| ratio(rate, ceiling)),
            errors: tally.errors,
            first_error: tally.first_error.clone(),
            procs: spec.procs,
            tokens: spec.tokens,
            auth: spec.auth,
            tls: spec.tls,
            metrics: spec.metrics,
            gossip: spec.gossip,
            connections: spec.connections,
            batch_entries_max: spec.batch_entries_max,
            batch_bytes_max: spec.batch_bytes_max,
            batch_delay_us: spec.batch_delay_us,
            commit_notify_delay_us: spec.commit_notify_delay_us,
            inflight_max: spec.inflight_max,
            shards: spec.shards,
            rss_start_mib: round1(memory.start_mib),
            rss_end_mib: round1(memory.end_mib),
            rss_max_mib: round1(memory.max_mib),
            rss_trace_mib: trace(&memory.samples_mib, 10),
            commits_trace_per_s: rates(&memory.timeline, 10)
                .into_iter()
                .map(|(_, rate)| round1(rate))
                .collect(),
            label: spec.label(),
            transfers: 0,
            changes: 0,
        }
    }

    /// The `--json` line.
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a result always serializes")
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} nodes ({}{}, {} log, fsync {}{}), {}, {} B payloads, {:.1} s measured\n",
            self.nodes,
            self.transport,
            if self.procs { ", one process each" } else { "" },
            self.storage,
            self.fsync,
            match (self.tokens, self.gossip) {
                (true, true) => "",
                (false, true) => ", no tokens",
                (true, false) => ", no gossip endpoint",
                (false, false) => ", no tokens, no gossip endpoint",
            },
            match self.rate {
                Some(rate) => format!("open loop at {rate} proposals/s offered"),
                None => format!("C = {}", self.concurrency),
            },
            self.payload_bytes,
            self.duration_s,
        );
        text += &format!(
            "  commits      {} ({:.0}/s), errors {}\n",
            self.commits, self.commits_per_s, self.errors
        );
        text += &format!(
            "  latency µs   p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (mean {:.1})\n",
            self.p50_us, self.p90_us, self.p99_us, self.p999_us, self.max_us, self.mean_us
        );
        text += &format!(
            "  floor µs     fdatasync 4 KiB {:.1}, loopback round trip {:.1}; commit floor {:.1}; p50 = {:.2} × floor \
             (O_DSYNC 4 KiB write {}, paced 200 µs apart {})\n",
            self.floor_fsync_us,
            self.floor_rtt_us,
            self.floor_commit_us,
            self.p50_over_floor,
            self.floor_dsync_us
                .map_or("n/a".to_string(), |us| format!("{us:.1}")),
            self.floor_dsync_paced_us
                .map_or("n/a".to_string(), |us| format!("{us:.1}"))
        );
        if let (Some(floor), Some(floor_p99)) = (self.floor_quorum_us, self.floor_quorum_p99_us) {
            text += &format!(
                "  quorum floor µs  p50 {floor:.1}, p99 {floor_p99:.1} (a majority's concurrent paced O_DSYNC writes + 2 round trips); \
                 p50 = {:.2} × floor, p99 = {:.2} × p99 floor\n",
                self.p50_over_floor_quorum.unwrap_or_default(),
                self.p99_over_floor_quorum.unwrap_or_default(),
            );
        }
        if let (Some(per_commit), Some(cores)) = (self.cpu_us_per_commit, self.cpu_cores_busy) {
            text += &format!(
                "  cpu          {per_commit:.2} µs per commit, {cores:.2} cores busy ({})\n",
                if self.procs {
                    "every node process and the load"
                } else {
                    "this process: every node and the load"
                },
            );
        }
        if let (Some(rate), Some(ceiling)) =
            (self.disk_writes_per_s, self.floor_durable_writes_per_s)
        {
            text += &format!(
                "  disk         {rate:.0} writes/s, {:.2} × the device's durable write rate for three logs ({ceiling:.0}/s)\n",
                self.disk_writes_over_floor.unwrap_or_default(),
            );
        }
        text += &format!(
            "  memory MiB   {:.0} at start, {:.0} at end, {:.0} max ({}); over the run: {:?}\n",
            self.rss_start_mib,
            self.rss_end_mib,
            self.rss_max_mib,
            if self.procs {
                "largest node process"
            } else {
                "this process: every node and the load"
            },
            self.rss_trace_mib
        );
        if let Some(error) = &self.first_error {
            text += &format!("  first error  {error}\n");
        }
        text
    }

    /// The CSV columns, in the order of [`RunResult::csv_record`].
    pub const CSV_COLUMNS: [&'static str; 34] = [
        "label",
        "nodes",
        "concurrency",
        "rate",
        "payload_bytes",
        "fsync",
        "storage",
        "transport",
        "procs",
        "tokens",
        "gossip",
        "batch_entries_max",
        "batch_bytes_max",
        "batch_delay_us",
        "commit_notify_delay_us",
        "inflight_max",
        "shards",
        "duration_s",
        "commits",
        "commits_per_s",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
        "floor_fsync_us",
        "floor_rtt_us",
        "floor_commit_us",
        "p50_over_floor",
        "floor_quorum_us",
        "floor_quorum_p99_us",
        "cpu_us_per_commit",
        "errors",
        "rss_max_mib",
    ];

    /// One CSV record: the fields named by [`RunResult::CSV_COLUMNS`].
    pub fn csv_record(&self) -> [String; 34] {
        [
            self.label.to_string(),
            self.nodes.to_string(),
            self.concurrency.to_string(),
            optional(self.rate.map(|rate| rate as f64)),
            self.payload_bytes.to_string(),
            self.fsync.to_string(),
            self.storage.to_string(),
            self.transport.to_string(),
            self.procs.to_string(),
            self.tokens.to_string(),
            self.gossip.to_string(),
            self.batch_entries_max.to_string(),
            self.batch_bytes_max.to_string(),
            self.batch_delay_us.to_string(),
            self.commit_notify_delay_us.to_string(),
            self.inflight_max.to_string(),
            self.shards.to_string(),
            self.duration_s.to_string(),
            self.commits.to_string(),
            self.commits_per_s.to_string(),
            self.p50_us.to_string(),
            self.p90_us.to_string(),
            self.p99_us.to_string(),
            self.p999_us.to_string(),
            self.max_us.to_string(),
            self.floor_fsync_us.to_string(),
            self.floor_rtt_us.to_string(),
            self.floor_commit_us.to_string(),
            self.p50_over_floor.to_string(),
            optional(self.floor_quorum_us),
            optional(self.floor_quorum_p99_us),
            optional(self.cpu_us_per_commit),
            self.errors.to_string(),
            self.rss_max_mib.to_string(),
        ]
    }
}

/// An optional figure in a CSV cell: empty when absent.
fn optional(value: Option<f64>) -> String {
    value.map_or(String::new(), |value| value.to_string())
}

/// A run's result with its full latency distribution (for plots).
pub struct RunOutcome {
    /// The figures.
    pub result: RunResult,
    /// `(seconds into the window, answers so far, resident MiB)` samples
    /// (for plots over time).
    pub timeline: Vec<(f64, u64, f64)>,
    /// Commit latency in nanoseconds.
    pub histogram: Histogram<u64>,
}

/// Answers per second over `buckets` even spans of a timeline of
/// `(seconds, answers so far, _)` samples: `(span's end, rate)`.
pub fn rates(timeline: &[(f64, u64, f64)], buckets: usize) -> Vec<(f64, f64)> {
    let (Some(first), Some(last)) = (timeline.first(), timeline.last()) else {
        return Vec::new();
    };
    let span = (last.0 - first.0) / buckets as f64;
    if span <= 0.0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut from = *first;
    for k in 1..=buckets {
        let until = first.0 + span * k as f64;
        let Some(to) = timeline.iter().rev().find(|s| s.0 <= until + 1e-9) else {
            continue;
        };
        if to.0 > from.0 {
            out.push((to.0, (to.1 - from.1) as f64 / (to.0 - from.0)));
            from = *to;
        }
    }
    out
}

/// `points` samples spread evenly over `samples` (the last included).
fn trace(samples: &[f64], points: usize) -> Vec<f64> {
    if samples.len() <= points {
        return samples.iter().copied().map(round1).collect();
    }
    (1..=points)
        .map(|k| round1(samples[k * samples.len() / points - 1]))
        .collect()
}

/// `value / over`, to two decimals.
fn ratio(value: f64, over: f64) -> f64 {
    (value / over * 100.0).round() / 100.0
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_over_even_spans() {
        let timeline: Vec<(f64, u64, f64)> = (0..=20)
            .map(|k| (k as f64 * 0.5, k as u64 * 500, 100.0))
            .collect();
        let rates = rates(&timeline, 5);
        assert_eq!(rates.len(), 5);
        for (_, rate) in rates {
            assert!((rate - 1_000.0).abs() < 1e-6, "{rate}");
        }
        assert!(super::rates(&timeline[..1], 5).is_empty());
    }
}
