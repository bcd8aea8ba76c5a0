//! What a node exports to Prometheus, and the HTTP endpoint that serves it
//! (`[metrics] listen`, `ordo gossip --metrics`): `GET /metrics` (the
//! OpenMetrics text format, which Prometheus scrapes; every name starts
//! with `ordo_`), `GET /health` and `GET /status` (JSON).
//!
//! Values live in atomics: the group's shard writes them as it works (a
//! few stores per turn, counters set from the totals the log, the
//! transport and the gossip core keep anyway), and the endpoint's thread
//! reads them when scraped. docs/operations.md ("Monitoring") lists every
//! metric; docs/grafana-dashboard.json plots them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::thread::JoinHandle;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Label pairs of a family member (`peer="2"`, `reason="checksum"`).
pub type Labels = Vec<(String, String)>;

/// A counter whose total the writer sets (the totals exist already in the
/// log's, the transport's and the gossip core's statistics).
#[derive(Clone, Debug, Default)]
pub struct Total(Arc<AtomicU64>);

impl Total {
    /// Sets the total (it only grows).
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The total now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl TypedMetric for Total {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Total {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Level(Arc<AtomicI64>);

impl Level {
    /// Sets it.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The value now.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl TypedMetric for Level {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for Level {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// A histogram with fixed bucket bounds that takes many equal samples in
/// one call (`observe_n`): a turn answers a run of proposals that arrived
/// together, with one latency, in one update.
#[derive(Clone, Debug)]
pub struct Spread {
    inner: Arc<SpreadInner>,
}

#[derive(Debug)]
struct SpreadInner {
    /// Upper bounds, in the unit samples are given in.
    bounds: Vec<u64>,
    /// Samples `<=` each bound (not cumulative), then the `+Inf` bucket.
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
    /// Exported values are samples times this (µs to seconds: 1e-6).
    scale: f64,
}

impl Spread {
    /// Buckets at `bounds` (ascending), exported times `scale`.
    pub fn new(bounds: Vec<u64>, scale: f64) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(SpreadInner {
                bounds,
                counts,
                sum: AtomicU64::new(0),
                scale,
            }),
        }
    }

    /// Latency buckets from 25 µs to 10 s, in µs, exported in seconds.
    pub fn latency() -> Self {
        let bounds = [
            25, 50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000,
            20_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 10_000_000,
        ];
        Self::new(bounds.to_vec(), 1e-6)
    }

    /// Size buckets in powers of two up to 65,536.
    pub fn sizes() -> Self {
        Self::new((0..=16).map(|k| 1u64 << k).collect(), 1.0)
    }

    /// Records `n` samples of `value`.
    pub fn observe_n(&self, value: u64, n: u64) {
        let inner = &self.inner;
        let slot = inner.bounds.partition_point(|&b| b < value);
        inner.counts[slot].fetch_add(n, Ordering::Relaxed);
        inner
            .sum
            .fetch_add(value.saturating_mul(n), Ordering::Relaxed);
    }

    /// Records one sample.
    pub fn observe(&self, value: u64) {
        self.observe_n(value, 1);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for Spread {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Spread {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &self.inner;
        // The encoder takes each bucket's own count and accumulates.
        let mut count = 0u64;
        let mut buckets = Vec::with_capacity(inner.counts.len());
        for (i, slot) in inner.counts.iter().enumerate() {
            let n = slot.load(Ordering::Relaxed);
            count += n;
            let bound = match inner.bounds.get(i) {
                Some(&b) => b as f64 * inner.scale,
                None => f64::INFINITY,
            };
            buckets.push((bound, n));
        }
        let sum = inner.sum.load(Ordering::Relaxed) as f64 * inner.scale;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Every metric of a voter. Cheap to clone (handles to shared atomics).
#[derive(Clone)]
pub struct NodeMetrics {
    registry: Arc<Registry>,
    /// `ordo_role{role}`: 1 for the role the node has, 0 for the others.
    pub role: Family<Labels, Level>,
    /// `ordo_term`.
    pub term: Level,
    /// `ordo_leader`: the leader's id, 0 if none is known.
    pub leader: Level,
    /// `ordo_commit_index`.
    pub commit_index: Level,
    /// `ordo_durable_index`.
    pub durable_index: Level,
    /// `ordo_applied_index`.
    pub applied_index: Level,
    /// `ordo_last_index`.
    pub last_index: Level,
    /// `ordo_proposals`: proposals this node took from clients and the
    /// embedding API.
    pub proposals: Total,
    /// `ordo_commits`: entries this node saw committed.
    pub commits: Total,
    /// `ordo_commit_latency_seconds`: per proposal answered by this node,
    /// from the turn that took it to the turn that answered it.
    pub commit_latency: Spread,
    /// `ordo_batch_entries`: entries per batch the leader appended.
    pub batch_entries: Spread,
    /// `ordo_log_appends`, `ordo_log_durable_writes` (group commits),
    /// `ordo_log_entries`, `ordo_log_bytes_written`, `ordo_log_fdatasyncs`.
    pub log_appends: Total,
    /// See [`NodeMetrics::log_appends`].
    pub log_durable_writes: Total,
    /// See [`NodeMetrics::log_appends`].
    pub log_entries: Total,
    /// See [`NodeMetrics::log_appends`].
    pub log_bytes_written: Total,
    /// See [`NodeMetrics::log_appends`].
    pub log_fdatasyncs: Total,
    /// `ordo_appends_per_durable_write`: appends per group commit since
    /// start, times 1000 (a gauge of the ratio, in thousandths).
    pub appends_per_durable_write_milli: Level,
    /// `ordo_data_dir_free_bytes`: bytes the node may still write on its
    /// data directory's filesystem, sampled every second (a full disk stops
    /// the node: its log can take no more writes).
    pub data_dir_free_bytes: Level,
    /// `ordo_durable_write_latency_seconds`: each group commit's write and
    /// sync, as the log writer waited for it.
    pub durable_write_latency: Spread,
    /// `ordo_follower_inflight_messages{peer}` (leader only).
    pub follower_inflight_messages: Family<Labels, Level>,
    /// `ordo_follower_inflight_bytes{peer}` (leader only).
    pub follower_inflight_bytes: Family<Labels, Level>,
    /// `ordo_follower_lag_entries{peer}`: the leader's last index less the
    /// follower's match index (leader only).
    pub follower_lag: Family<Labels, Level>,
    /// `ordo_peer_sent_bytes{peer}`.
    pub peer_sent_bytes: Family<Labels, Total>,
    /// `ordo_peer_received_bytes{peer}`.
    pub peer_received_bytes: Family<Labels, Total>,
    /// `ordo_peer_connected{peer}`: 1 while the link is up.
    pub peer_connected: Family<Labels, Level>,
    /// `ordo_elections`: campaigns this node started (pre-votes included).
    pub elections: Total,
    /// `ordo_leader_changes`: times the leader this node knows changed.
    pub leader_changes: Total,
    /// `ordo_frame_errors{reason}`: connections closed for a bad frame.
    pub frame_errors: Family<Labels, Total>,
    /// `ordo_handshake_errors{reason}`: connections refused in the
    /// handshake.
    pub handshake_errors: Family<Labels, Total>,
    /// The voter's gossip endpoint, if it runs one.
    pub gossip: GossipMetrics,
}

/// A gossip core's metrics (`ordo_gossip_*`), for gossip nodes and a
/// voter's gossip endpoint.
#[derive(Clone, Default)]
pub struct GossipMetrics {
    /// `ordo_gossip_published`: messages a voter's endpoint published.
    pub published: Total,
    /// `ordo_gossip_delivered`: messages delivered in order.
    pub delivered: Total,
    /// `ordo_gossip_payload_received`: full messages received.
    pub payload_received: Total,
    /// `ordo_gossip_duplicates`: ... that were already delivered.
    pub duplicates: Total,
    /// `ordo_gossip_rejected`: messages that failed verification.
    pub rejected: Total,
    /// `ordo_gossip_repairs{kind}`: grafts, prunes, pulls and pulls from
    /// voters sent.
    pub repairs: Family<Labels, Total>,
    /// `ordo_gossip_redundancy`: received payloads per delivered message,
    /// in thousandths (1000: no duplicate).
    pub redundancy_milli: Level,
    /// `ordo_gossip_delivered_id`: the last message id delivered in order.
    pub delivered_id: Level,
}

impl GossipMetrics {
    fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("gossip");
        r.register(
            "published",
            "Messages published by a voter's endpoint",
            self.published.clone(),
        );
        r.register(
            "delivered",
            "Messages delivered in order",
            self.delivered.clone(),
        );
        r.register(
            "payload_received",
            "Full messages received (pushes and pull replies)",
            self.payload_received.clone(),
        );
        r.register(
            "duplicates",
            "Received messages already delivered",
            self.duplicates.clone(),
        );
        r.register(
            "rejected",
            "Messages whose verification failed",
            self.rejected.clone(),
        );
        r.register(
            "repairs",
            "Repair messages sent, by kind (graft, prune, pull, voter_pull)",
            self.repairs.clone(),
        );
        r.register(
            "redundancy_milli",
            "Received payloads per delivered message, in thousandths",
            self.redundancy_milli.clone(),
        );
        r.register(
            "delivered_id",
            "Last message id delivered in order",
            self.delivered_id.clone(),
        );
    }

    /// Sets every value from a gossip core's statistics.
    pub fn update(&self, stats: &crate::gossip::GossipStats, delivered_id: u64) {
        self.published.set(stats.published);
        self.delivered.set(stats.delivered);
        self.payload_received.set(stats.payload_received);
        self.duplicates.set(stats.duplicates);
        self.rejected.set(stats.rejected);
        for (kind, value) in [
            ("graft", stats.grafts_sent),
            ("prune", stats.prunes_sent),
            ("pull", stats.pulls_sent),
            ("voter_pull", stats.voter_pulls_sent),
        ] {
            self.repairs.get_or_create(&label("kind", kind)).set(value);
        }
        if let Some(ratio) = stats
            .payload_received
            .saturating_mul(1000)
            .checked_div(stats.delivered)
        {
            self.redundancy_milli.set(ratio as i64);
        }
        self.delivered_id.set(delivered_id as i64);
    }

    /// A registry of these alone (a gossip node).
    pub fn registry(&self) -> Arc<Registry> {
        let mut registry = Registry::with_prefix("ordo");
        self.register(&mut registry);
        Arc::new(registry)
    }
}

/// One label pair.
pub fn label(key: &str, value: impl ToString) -> Labels {
    vec![(key.to_string(), value.to_string())]
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeMetrics {
    /// Fresh metrics, registered under the `ordo_` prefix.
    pub fn new() -> Self {
        let mut metrics = NodeMetrics {
            registry: Arc::new(Registry::default()),
            role: Family::default(),
            term: Level::default(),
            leader: Level::default(),
            commit_index: Level::default(),
            durable_index: Level::default(),
            applied_index: Level::default(),
            last_index: Level::default(),
            proposals: Total::default(),
            commits: Total::default(),
            commit_latency: Spread::latency(),
            batch_entries: Spread::sizes(),
            log_appends: Total::default(),
            log_durable_writes: Total::default(),
            log_entries: Total::default(),
            log_bytes_written: Total::default(),
            log_fdatasyncs: Total::default(),
            appends_per_durable_write_milli: Level::default(),
            data_dir_free_bytes: Level::default(),
            durable_write_latency: Spread::latency(),
            follower_inflight_messages: Family::default(),
            follower_inflight_bytes: Family::default(),
            follower_lag: Family::default(),
            peer_sent_bytes: Family::default(),
            peer_received_bytes: Family::default(),
            peer_connected: Family::default(),
            elections: Total::default(),
            leader_changes: Total::default(),
            frame_errors: Family::default(),
            handshake_errors: Family::default(),
            gossip: GossipMetrics::default(),
        };
        let mut r = Registry::with_prefix("ordo");
        let m = &metrics;
        r.register(
            "role",
            "1 for the node's role (follower, pre_candidate, candidate, leader, learner)",
            m.role.clone(),
        );
        r.register("term", "Current term", m.term.clone());
        r.register(
            "leader",
            "Id of the leader this node knows, 0 if none",
            m.leader.clone(),
        );
        r.register(
            "commit_index",
            "Highest index known committed",
            m.commit_index.clone(),
        );
        r.register(
            "durable_index",
            "Highest index durable in the local log",
            m.durable_index.clone(),
        );
        r.register(
            "applied_index",
            "Highest index applied to the state machine",
            m.applied_index.clone(),
        );
        r.register(
            "last_index",
            "Last index in the local log",
            m.last_index.clone(),
        );
        r.register(
            "proposals",
            "Proposals taken from clients and the embedding API",
            m.proposals.clone(),
        );
        r.register("commits", "Entries seen committed", m.commits.clone());
        r.register(
            "commit_latency_seconds",
            "Per proposal answered here: from the turn that took it to the turn that answered it",
            m.commit_latency.clone(),
        );
        r.register(
            "batch_entries",
            "Entries per batch the leader appended",
            m.batch_entries.clone(),
        );
        r.register(
            "log_appends",
            "Batches of appends written to the log",
            m.log_appends.clone(),
        );
        r.register(
            "log_durable_writes",
            "Group commits that reached the disk",
            m.log_durable_writes.clone(),
        );
        r.register(
            "log_entries",
            "Entries appended to the log",
            m.log_entries.clone(),
        );
        r.register(
            "log_bytes_written",
            "Bytes written to log segments, padding included",
            m.log_bytes_written.clone(),
        );
        r.register(
            "log_fdatasyncs",
            "fdatasync calls on log segments",
            m.log_fdatasyncs.clone(),
        );
        r.register(
            "data_dir_free_bytes",
            "Bytes the node may still write on its data directory's filesystem",
            m.data_dir_free_bytes.clone(),
        );
        r.register(
            "appends_per_durable_write_milli",
            "Appends per group commit since start, in thousandths",
            m.appends_per_durable_write_milli.clone(),
        );
        r.register(
            "durable_write_latency_seconds",
            "Each group commit's write and sync as the log writer waited for it",
            m.durable_write_latency.clone(),
        );
        r.register(
            "follower_inflight_messages",
            "AppendEntries in flight to each follower (leader only)",
            m.follower_inflight_messages.clone(),
        );
        r.register(
            "follower_inflight_bytes",
            "Batch bytes in flight to each follower (leader only)",
            m.follower_inflight_bytes.clone(),
        );
        r.register(
            "follower_lag_entries",
            "Leader's last index less each follower's match index (leader only)",
            m.follower_lag.clone(),
        );
        r.register(
            "peer_sent_bytes",
            "Bytes sent to each voter",
            m.peer_sent_bytes.clone(),
        );
        r.register(
            "peer_received_bytes",
            "Bytes received from each voter",
            m.peer_received_bytes.clone(),
        );
        r.register(
            "peer_connected",
            "1 while the link to a voter is up",
            m.peer_connected.clone(),
        );
        r.register(
            "elections",
            "Campaigns this node started, pre-votes included",
            m.elections.clone(),
        );
        r.register(
            "leader_changes",
            "Times the leader this node knows changed",
            m.leader_changes.clone(),
        );
        r.register(
            "frame_errors",
            "Connections closed for a bad frame, by reason",
            m.frame_errors.clone(),
        );
        r.register(
            "handshake_errors",
            "Connections refused in the handshake, by reason",
            m.handshake_errors.clone(),
        );
        m.gossip.register(&mut r);
        metrics.registry = Arc::new(r);
        metrics
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}

/// `registry` in the OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail; an encoder error would be a bug in
    // a metric's encode, and the partial text is still served.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

/// An HTTP answer.
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

impl Answer {
    /// 200 with a JSON body.
    pub fn json(status: u16, body: String) -> Self {
        Answer {
            status,
            content_type: "application/json",
            body,
        }
    }
}

/// What the endpoint answers for a path (`/metrics`, `/health`, ...).
pub type Handler = Arc<dyn Fn(&str) -> Answer + Send + Sync>;

/// The HTTP endpoint: one thread, one request at a time (a scrape every
/// few seconds). Stops when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

/// The content type of the OpenMetrics text format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl MetricsServer {
    /// Listens on `addr` and answers with `handler` on a thread of its own.
    pub fn start(addr: std::net::SocketAddr, handler: Handler) -> std::io::Result<Self> {
        let server = tiny_http::Server::http(addr).map_err(|e| {
            std::io::Error::other(format!("cannot listen for metrics on {addr}: {e}"))
        })?;
        let server = Arc::new(server);
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("ordo-metrics".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    let answer = match request.method() {
                        tiny_http::Method::Get | tiny_http::Method::Head => {
                            let path = request.url().split('?').next().unwrap_or("/").to_string();
                            handler(&path)
                        }
                        _ => Answer {
                            status: 405,
                            content_type: "text/plain",
                            body: "only GET\n".into(),
                        },
                    };
                    let header = tiny_http::Header::from_bytes("Content-Type", answer.content_type)
                        .expect("a static header is valid");
                    let response = tiny_http::Response::from_string(answer.body)
                        .with_status_code(answer.status)
                        .with_header(header);
                    if let Err(error) = request.respond(response) {
                        tracing::debug!(%error, "metrics answer not delivered");
                    }
                }
            })?;
        Ok(MetricsServer {
            server,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.server_addr().to_ip()
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            // The thread only answers requests; a panic there is reported
            // by the runtime already.
            let _ = thread.join();
        }
    }
}

/// The answer for paths the endpoint does not serve.
pub fn not_found(path: &str) -> Answer {
    Answer {
        status: 404,
        content_type: "text/plain",
        body: format!("no {path}: try /metrics, /health or /status\n"),
    }
}

/// Parses an exposition into `name{labels}` → value (tests and tools).
pub fn parse_exposition(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_starts_with_ordo_and_histograms_count_weighted_samples() {
        let metrics = NodeMetrics::new();
        metrics.proposals.add(3);
        metrics.commit_latency.observe_n(400, 10);
        metrics.commit_latency.observe(30_000_000);
        metrics.role.get_or_create(&label("role", "leader")).set(1);
        let text = metrics.render();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("ordo_"), "{line}");
        }
        let values = parse_exposition(&text);
        assert_eq!(values["ordo_proposals_total"], 3.0);
        assert_eq!(values["ordo_commit_latency_seconds_count"], 11.0);
        assert_eq!(
            values["ordo_commit_latency_seconds_bucket{le=\"0.0005\"}"],
            10.0
        );
        assert_eq!(
            values["ordo_commit_latency_seconds_bucket{le=\"+Inf\"}"],
            11.0
        );
        assert_eq!(values["ordo_role{role=\"leader\"}"], 1.0);
    }

    #[test]
    fn the_dashboard_plots_only_metrics_that_exist() {
        let metrics = NodeMetrics::new();
        metrics
            .peer_sent_bytes
            .get_or_create(&label("peer", 2))
            .set(0);
        metrics
            .gossip
            .update(&crate::gossip::GossipStats::default(), 0);
        metrics
            .frame_errors
            .get_or_create(&label("reason", "bad_crc"))
            .set(0);
        metrics
            .handshake_errors
            .get_or_create(&label("reason", "dial_rule"))
            .set(0);
        metrics.follower_lag.get_or_create(&label("peer", 2)).set(0);
        metrics
            .follower_inflight_messages
            .get_or_create(&label("peer", 2))
            .set(0);
        metrics
            .follower_inflight_bytes
            .get_or_create(&label("peer", 2))
            .set(0);
        metrics
            .peer_received_bytes
            .get_or_create(&label("peer", 2))
            .set(0);
        metrics.role.get_or_create(&label("role", "leader")).set(0);
        let text = metrics.render();
        let dashboard = include_str!("../../docs/grafana-dashboard.json");
        let mut names: Vec<&str> = dashboard
            .match_indices("ordo_")
            .map(|(at, _)| {
                let rest = &dashboard[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .filter(|name| *name != "ordo_")
            .collect();
        names.sort_unstable();
        names.dedup();
        assert!(names.len() >= 15, "{names:?}");
        for name in names {
            assert!(
                text.lines()
                    .any(|l| !l.starts_with('#') && l.starts_with(name)),
                "the dashboard plots {name}, which /metrics does not serve"
            );
        }
    }
}
