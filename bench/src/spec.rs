//! What one benchmark run does ([`RunSpec`]) and the command-line knobs
//! that expand into runs ([`Knobs`]): every knob takes a comma list, and
//! the runs are the cartesian product of the lists.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ordo_engine::core::CoreConfig;
use ordo_storage::FsyncMode;
use serde::Serialize;

/// Where the log lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// The segmented io_uring log in the data directory.
    Disk,
    /// An in-memory log whose syncs complete at once (no durability).
    Memory,
}

/// How the nodes (and the clients) talk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// Real TCP on loopback: peers on their peer ports, clients on the
    /// leader's client port.
    Tcp,
    /// In-process channels: all nodes and the proposers on one executor,
    /// proposals through the embedding handle, no sockets.
    Inproc,
}

/// Everything one run needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    /// Voters.
    pub nodes: usize,
    /// Closed-loop proposers: each keeps exactly one proposal in flight
    /// (0 in an open-loop run).
    pub concurrency: usize,
    /// Open loop: proposals offered per second, due at fixed intervals
    /// whatever the answers (`None`: closed loop).
    pub rate: Option<u64>,
    /// Bytes per proposal.
    pub payload_bytes: usize,
    /// Measured time, after the warm-up.
    pub duration: Duration,
    /// Time before measuring starts (proposals run, nothing is recorded).
    pub warmup: Duration,
    /// `always`, `group:<delay>` or `none`.
    pub fsync: String,
    /// The core's `batch_entries_max`.
    pub batch_entries_max: u32,
    /// The core's `batch_bytes_max`.
    pub batch_bytes_max: usize,
    /// The runtime's `batch_delay_us`.
    pub batch_delay_us: u64,
    /// The core's `commit_notify_delay_us`.
    pub commit_notify_delay_us: u64,
    /// The core's `inflight_messages_max` (AppendEntries in flight per
    /// follower).
    pub inflight_max: usize,
    /// The core's `inflight_bytes_max` (bytes of AppendEntries in flight per
    /// follower).
    pub inflight_bytes_max: usize,
    /// The core's `append_bytes_max` (most bytes in one AppendEntries).
    pub append_bytes_max: usize,
    /// The core's `uncommitted_bytes_max` (what a leader holds before it
    /// refuses proposals).
    pub uncommitted_bytes_max: usize,
    /// The runtime's `turn_events_max`.
    pub turn_events_max: usize,
    /// The storage's `write_through` (O_DSYNC writes; off: write +
    /// fdatasync).
    pub write_through: bool,
    /// Log kind.
    pub storage: StorageKind,
    /// Transport kind.
    pub transport: TransportKind,
    /// One `ordo node` process per node instead of threads of this one.
    pub procs: bool,
    /// Client connections the proposers share (TCP only).
    pub connections: usize,
    /// Executors per node (`runtime.shards`): the group's, plus client
    /// shards that accept connections and hand proposals over in batches.
    pub shards: usize,
    /// The leader signs every commit advance and answers carry tokens
    /// (off: the nodes have no keys, as in other Raft libraries'
    /// benchmarks).
    pub tokens: bool,
    /// Voters run their gossip endpoint (publish every committed message
    /// for gossip nodes), as `ordo init` configures them.
    pub gossip: bool,
    /// Connections are authenticated as `ordo init` configures them (off:
    /// `[auth]` all off, see docs/operations.md).
    pub auth: bool,
    /// Client connections are encrypted as `ordo init` configures them
    /// (off: `[tls] clients = false`, plain TCP).
    pub tls: bool,
    /// Voters serve their metrics endpoint as `ordo init` configures them
    /// (off: no `[metrics] listen`, and the group records no metrics).
    pub metrics: bool,
    /// Where the nodes' data directories go (a fresh temporary directory
    /// under it); `None`: the system's temporary directory.
    pub data_dir: Option<PathBuf>,
    /// Hand leadership to the next voter this often while measuring
    /// (TCP only); `None`: never.
    pub transfer_every: Option<Duration>,
    /// Change the membership this often while measuring (TCP only):
    /// alternately add a learner and remove it; `None`: never.
    pub change_every: Option<Duration>,
    /// `storage.retain_bytes` of every node (0: keep every entry).
    pub retain_bytes: u64,
}

impl RunSpec {
    /// A one-line description for progress and tables.
    pub fn label(&self) -> String {
        let core = CoreConfig::default();
        let runtime = ordo_engine::node::RuntimeConfig::default();
        let mut rare = String::new();
        // Knobs that rarely move are named only when they do.
        for (name, value, default) in [
            ("ib", self.inflight_bytes_max, core.inflight_bytes_max),
            ("ab", self.append_bytes_max, core.append_bytes_max),
            ("ub", self.uncommitted_bytes_max, core.uncommitted_bytes_max),
            ("te", self.turn_events_max, runtime.turn_events_max),
        ] {
            if value != default {
                rare += &format!("-{name}{value}");
            }
        }
        if !self.write_through {
            rare += "-nowt";
        }
        format!(
            "n{}-{}-p{}-{}-{}-{}-be{}-bb{}-bd{}-cn{}-if{}-s{}{rare}{}{}{}{}{}{}",
            self.nodes,
            self.load_name(),
            self.payload_bytes,
            self.transport_name(),
            self.storage_name(),
            self.fsync.replace(':', ""),
            self.batch_entries_max,
            self.batch_bytes_max,
            self.batch_delay_us,
            self.commit_notify_delay_us,
            self.inflight_max,
            self.shards,
            if self.procs { "-procs" } else { "" },
            if self.tokens { "" } else { "-notokens" },
            if self.auth { "" } else { "-noauth" },
            if self.tls { "" } else { "-notls" },
            if self.metrics { "" } else { "-nometrics" },
            if self.gossip { "" } else { "-nogossip" },
        )
    }

    /// `c64` (closed loop, 64 proposers) or `r50000` (open loop at 50,000
    /// proposals per second).
    pub fn load_name(&self) -> String {
        match self.rate {
            Some(rate) => format!("r{rate}"),
            None => format!("c{}", self.concurrency),
        }
    }

    /// `tcp` or `inproc`.
    pub fn transport_name(&self) -> &'static str {
        match self.transport {
            TransportKind::Tcp => "tcp",
            TransportKind::Inproc => "inproc",
        }
    }

    /// `disk` or `memory`.
    pub fn storage_name(&self) -> &'static str {
        match self.storage {
            StorageKind::Disk => "disk",
            StorageKind::Memory => "memory",
        }
    }

    /// Whether a commit pays for an fdatasync (what the floor includes).
    pub fn syncs(&self) -> bool {
        self.storage == StorageKind::Disk && self.fsync != "none"
    }

    fn check(&self) -> Result<(), String> {
        if let Some(every) = self.transfer_every {
            if every < Duration::from_millis(100) {
                return Err(format!(
                    "--transfer-every: {} ms is below 100 ms",
                    every.as_millis()
                ));
            }
            if self.transport != TransportKind::Tcp || self.nodes < 2 {
                return Err("--transfer-every needs --transport tcp and at least 2 nodes".into());
            }
        }
        if let Some(every) = self.change_every {
            if every < Duration::from_millis(100) {
                return Err(format!(
                    "--change-every: {} ms is below 100 ms",
                    every.as_millis()
                ));
            }
            if self.transport != TransportKind::Tcp {
                return Err("--change-every needs --transport tcp".into());
            }
        }
        if self.nodes == 0 || self.nodes > 9 {
            return Err(format!("--nodes: {} not in [1, 9]", self.nodes));
        }
        if let Some(rate) = self.rate {
            if rate == 0 || rate > 10_000_000 {
                return Err(format!("--rate: {rate} not in [1, 10000000] proposals/s"));
            }
            if self.transport != TransportKind::Tcp {
                return Err("--rate: the open loop drives TCP clients; use --transport tcp".into());
            }
        } else if self.concurrency == 0 || self.concurrency > 1 << 16 {
            return Err(format!(
                "--concurrency: {} not in [1, 65536]",
                self.concurrency
            ));
        }
        if self.payload_bytes > 1 << 20 {
            return Err(format!(
                "--payload: {} bytes is above a proposal's maximum of 1 MiB",
                self.payload_bytes
            ));
        }
        self.fsync
            .parse::<FsyncMode>()
            .map_err(|e| format!("--fsync: {e}"))?;
        if self.batch_entries_max == 0 {
            return Err("--batch-entries-max: must be at least 1".into());
        }
        if self.batch_bytes_max < 1024 {
            return Err("--batch-bytes-max: must be at least 1024".into());
        }
        if self.inflight_max == 0 {
            return Err("--inflight-max: must be at least 1".into());
        }
        if self.procs && self.transport == TransportKind::Inproc {
            return Err("--procs: separate processes talk TCP; use --transport tcp".into());
        }
        if self.shards == 0 || self.shards > 64 {
            return Err(format!("--shards: {} not in [1, 64]", self.shards));
        }
        if self.duration.is_zero() {
            return Err("--duration: must be above zero".into());
        }
        // What the flags above do not check, the nodes' own validation
        // does (e.g. --commit-notify-delay against the heartbeat interval).
        self.core_config()
            .validate()
            .map_err(|e| format!("the knobs give an invalid [raft] config: {e}"))
    }

    /// The Raft core's knobs for this run (defaults for the rest).
    pub fn core_config(&self) -> CoreConfig {
        CoreConfig {
            batch_entries_max: self.batch_entries_max,
            batch_bytes_max: self.batch_bytes_max,
            inflight_messages_max: self.inflight_max,
            inflight_bytes_max: self.inflight_bytes_max,
            append_bytes_max: self.append_bytes_max,
            uncommitted_bytes_max: self.uncommitted_bytes_max,
            commit_notify_delay_us: self.commit_notify_delay_us,
            ..CoreConfig::default()
        }
    }
}

/// The knobs, as the command line gives them: each a comma list.
#[derive(Args, Clone, Debug)]
pub struct Knobs {
    /// Voters in the cluster.
    #[arg(long, value_delimiter = ',', default_value = "3")]
    pub nodes: Vec<usize>,
    /// Closed-loop proposers (a comma list sweeps: 1,16,64,256).
    #[arg(long, short = 'c', value_delimiter = ',', default_value = "64")]
    pub concurrency: Vec<usize>,
    /// Open loop instead: proposals offered per second, each due at a fixed
    /// time and its latency counted from then (free of coordinated
    /// omission). A comma list sweeps the offered load (`sweep --rate
    /// 20000,50000,100000,200000` draws latency against load up to
    /// saturation); `--concurrency` is then unused. TCP only; the
    /// proposals share `--connections` (default 4).
    #[arg(long, value_delimiter = ',', value_name = "PER_S")]
    pub rate: Vec<u64>,
    /// Payload bytes per proposal.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    pub payload: Vec<usize>,
    /// Measured time per run: seconds, or with a unit (`500ms`, `10s`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before measuring: seconds, or with a unit.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// fsync mode: `always`, `group:<delay>` (e.g. `group:200us`) or `none`
    /// (benchmarks only: nothing is durable).
    #[arg(long, value_delimiter = ',', default_value = "always")]
    pub fsync: Vec<String>,
    /// Most entries in one batch (the core's `batch_entries_max`).
    #[arg(long, value_delimiter = ',', default_values_t = vec![CoreConfig::default().batch_entries_max])]
    pub batch_entries_max: Vec<u32>,
    /// Most payload bytes in one batch (the core's `batch_bytes_max`).
    #[arg(long, value_delimiter = ',', default_values_t = vec![CoreConfig::default().batch_bytes_max])]
    pub batch_bytes_max: Vec<usize>,
    /// How long a leader with less than a full batch waits for more
    /// (`0`, `200us`, `1ms`; the runtime's `batch_delay_us`).
    #[arg(long, value_delimiter = ',', default_value = "0", value_parser = parse_micros)]
    pub batch_delay: Vec<u64>,
    /// How long a leader may wait before telling idle followers a new
    /// commit index, for an AppendEntries to carry it (`0`, `1ms`; the
    /// core's `commit_notify_delay_us`).
    #[arg(long, value_delimiter = ',', default_values_t = vec![CoreConfig::default().commit_notify_delay_us], value_parser = parse_micros)]
    pub commit_notify_delay: Vec<u64>,
    /// AppendEntries in flight per follower (the core's
    /// `inflight_messages_max`).
    #[arg(long, value_delimiter = ',', default_values_t = vec![CoreConfig::default().inflight_messages_max])]
    pub inflight_max: Vec<usize>,
    /// Bytes of AppendEntries in flight per follower (the core's
    /// `inflight_bytes_max`).
    #[arg(long, value_delimiter = ',', default_values_t = vec![CoreConfig::default().inflight_bytes_max])]
    pub inflight_bytes_max: Vec<usize>,
    /// Most bytes in one AppendEntries (the core's `append_bytes_max`).
    #[arg(long, value_delimiter = ',', default_values_t = vec![CoreConfig::default().append_bytes_max])]
    pub append_bytes_max: Vec<usize>,
    /// Bytes a leader holds uncommitted before it refuses proposals (the
    /// core's `uncommitted_bytes_max`).
    #[arg(long, value_delimiter = ',', default_values_t = vec![CoreConfig::default().uncommitted_bytes_max])]
    pub uncommitted_bytes_max: Vec<usize>,
    /// Most events one runtime turn takes (the runtime's
    /// `turn_events_max`).
    #[arg(long, value_delimiter = ',', default_values_t = vec![ordo_engine::node::RuntimeConfig::default().turn_events_max])]
    pub turn_events_max: Vec<usize>,
    /// `on`: the log writes with O_DSYNC, durable when the write completes
    /// (the storage's `write_through`, default); `off`: a write then an
    /// fdatasync. A comma list sweeps both.
    #[arg(long, value_delimiter = ',', default_value = "on", value_parser = parse_on_off)]
    pub write_through: Vec<bool>,
    /// Executors per node (`runtime.shards`: the group's shard plus client
    /// shards).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub shards: Vec<usize>,
    /// `disk` (the io_uring log) or `memory` (syncs complete at once).
    #[arg(long, value_delimiter = ',', default_value = "disk", value_parser = parse_storage)]
    pub storage: Vec<StorageKind>,
    /// `tcp` (loopback sockets) or `inproc` (one executor, no sockets).
    #[arg(long, value_delimiter = ',', default_value = "tcp", value_parser = parse_transport)]
    pub transport: Vec<TransportKind>,
    /// Run each node as an `ordo node` process (the `ordo` binary must be
    /// built next to ordo-bench, or named by ORDO_BIN).
    #[arg(long)]
    pub procs: bool,
    /// Client connections the proposers share over TCP (`0`: one per 16
    /// proposers, at most 8).
    #[arg(long, default_value_t = 0)]
    pub connections: usize,
    /// `on`: the leader signs each commit advance and every answer carries
    /// a token; `off`: no node keys (compare with Raft libraries that sign
    /// nothing).
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub tokens: bool,
    /// `on`: voters run their gossip endpoint as `ordo init` configures
    /// them; `off`: no gossip endpoint.
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub gossip: bool,
    /// `on`: peer, gossip and client connections are authenticated as
    /// `ordo init` configures them; `off`: `[auth]` all off (any process
    /// that knows the cluster id may connect; for measuring only).
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub auth: bool,
    /// `on`: client connections are encrypted with TLS as `ordo init`
    /// configures them (the load trusts the cluster CA); `off`: `[tls]
    /// clients = false`, plain TCP (for measuring only).
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub tls: bool,
    /// `on`: voters serve `/metrics` as `ordo init` configures them and
    /// record every metric (TCP runs); `off`: no metrics endpoint.
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub metrics: bool,
    /// Put the nodes' data under this directory (a fresh temporary
    /// directory inside it, removed afterwards). Default: the system's
    /// temporary directory, or /var/tmp or target/ordo-bench where that is
    /// tmpfs. The fsync floor is measured on its filesystem. A directory
    /// on tmpfs is refused for disk runs (O_DIRECT is off there).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Accept a --data-dir on tmpfs for disk runs (O_DIRECT is then off:
    /// the run measures memory, not a disk).
    #[arg(long)]
    pub allow_tmpfs: bool,
    /// Hand leadership to the next voter every this many milliseconds
    /// while measuring (`ordo transfer`'s request; TCP only): the latency
    /// a transfer costs, against the same run without.
    #[arg(long, value_name = "MS")]
    pub transfer_every: Option<u64>,
    /// Change the membership every this many milliseconds while
    /// measuring (TCP only): alternately add a learner (`ordo member add
    /// --learner`, for a node that is never started) and remove it. Each
    /// change is a configuration entry committed under load: the latency
    /// a change costs, against the same run without.
    #[arg(long, value_name = "MS")]
    pub change_every: Option<u64>,
    /// Each node's `storage.retain_bytes`: its log directory stays under
    /// this many bytes (at least 5 segments of 64 MiB); 0 keeps every
    /// entry. With `--duration 10m --procs`, the resident memory trace
    /// shows whether a node's memory stays flat under sustained load.
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    pub retain_bytes: u64,
}

impl Knobs {
    /// `--data-dir`, checked for disk runs: refused on tmpfs unless
    /// `--allow-tmpfs`; without it, a default place that is not tmpfs
    /// (with a warning when the system's temporary directory was).
    fn data_dir_checked(&self) -> Result<Option<PathBuf>, String> {
        if !self.storage.contains(&StorageKind::Disk) {
            return Ok(self.data_dir.clone());
        }
        let candidates = crate::data_dir::default_candidates();
        let chosen =
            crate::data_dir::choose(self.data_dir.as_deref(), self.allow_tmpfs, &candidates)
                .map_err(|e| e.to_string())?;
        if let Some(warning) = chosen.warning {
            eprintln!("ordo-bench: {warning}");
        }
        Ok(Some(chosen.dir))
    }

    /// Every combination of the lists, concurrency (or rate) varying
    /// fastest.
    pub fn expand(&self) -> Result<Vec<RunSpec>, String> {
        let data_dir = self.data_dir_checked()?;
        let core = CoreConfig::default();
        let base = RunSpec {
            nodes: 3,
            concurrency: 1,
            rate: None,
            payload_bytes: 64,
            duration: self.duration,
            warmup: self.warmup,
            fsync: "always".into(),
            batch_entries_max: core.batch_entries_max,
            batch_bytes_max: core.batch_bytes_max,
            batch_delay_us: 0,
            commit_notify_delay_us: core.commit_notify_delay_us,
            inflight_max: core.inflight_messages_max,
            inflight_bytes_max: core.inflight_bytes_max,
            append_bytes_max: core.append_bytes_max,
            uncommitted_bytes_max: core.uncommitted_bytes_max,
            turn_events_max: ordo_engine::node::RuntimeConfig::default().turn_events_max,
            write_through: true,
            storage: StorageKind::Disk,
            transport: TransportKind::Tcp,
            procs: self.procs,
            connections: 1,
            shards: 1,
            tokens: self.tokens,
            gossip: self.gossip,
            auth: self.auth,
            tls: self.tls,
            metrics: self.metrics,
            data_dir,
            transfer_every: self.transfer_every.map(Duration::from_millis),
            change_every: self.change_every.map(Duration::from_millis),
            retain_bytes: self.retain_bytes,
        };
        // The first list varies slowest.
        let mut specs = vec![base];
        times(&mut specs, &self.nodes, |s, &v| s.nodes = v);
        times(&mut specs, &self.transport, |s, &v| s.transport = v);
        times(&mut specs, &self.storage, |s, &v| s.storage = v);
        times(&mut specs, &self.fsync, |s, v| s.fsync = v.clone());
        times(&mut specs, &self.write_through, |s, &v| s.write_through = v);
        times(&mut specs, &self.payload, |s, &v| s.payload_bytes = v);
        times(&mut specs, &self.batch_entries_max, |s, &v| {
            s.batch_entries_max = v
        });
        times(&mut specs, &self.batch_bytes_max, |s, &v| {
            s.batch_bytes_max = v
        });
        times(&mut specs, &self.batch_delay, |s, &v| s.batch_delay_us = v);
        times(&mut specs, &self.commit_notify_delay, |s, &v| {
            s.commit_notify_delay_us = v
        });
        times(&mut specs, &self.inflight_max, |s, &v| s.inflight_max = v);
        times(&mut specs, &self.inflight_bytes_max, |s, &v| {
            s.inflight_bytes_max = v
        });
        times(&mut specs, &self.append_bytes_max, |s, &v| {
            s.append_bytes_max = v
        });
        times(&mut specs, &self.uncommitted_bytes_max, |s, &v| {
            s.uncommitted_bytes_max = v
        });
        times(&mut specs, &self.turn_events_max, |s, &v| {
            s.turn_events_max = v
        });
        times(&mut specs, &self.shards, |s, &v| s.shards = v);
        times(&mut specs, &self.loads(), |s, &(concurrency, rate)| {
            s.concurrency = concurrency;
            s.rate = rate;
            s.connections = match rate {
                Some(_) if self.connections == 0 => 4,
                Some(_) => self.connections,
                None => connections_for(self.connections, concurrency),
            };
        });
        for spec in &specs {
            spec.check()?;
        }
        Ok(specs)
    }

    /// The loads to run, varying fastest: `(concurrency, None)` for each
    /// closed-loop concurrency, or `(0, Some(rate))` for each open-loop
    /// rate when `--rate` is given.
    fn loads(&self) -> Vec<(usize, Option<u64>)> {
        if self.rate.is_empty() {
            self.concurrency.iter().map(|&c| (c, None)).collect()
        } else {
            self.rate.iter().map(|&r| (0, Some(r))).collect()
        }
    }

    /// The knobs given more than one value (what a sweep varies), by flag
    /// name, concurrency excluded.
    pub fn swept(&self) -> Vec<&'static str> {
        let lists = [
            ("nodes", self.nodes.len()),
            ("payload", self.payload.len()),
            ("fsync", self.fsync.len()),
            ("batch-entries-max", self.batch_entries_max.len()),
            ("batch-bytes-max", self.batch_bytes_max.len()),
            ("batch-delay", self.batch_delay.len()),
            ("commit-notify-delay", self.commit_notify_delay.len()),
            ("inflight-max", self.inflight_max.len()),
            ("inflight-bytes-max", self.inflight_bytes_max.len()),
            ("append-bytes-max", self.append_bytes_max.len()),
            ("uncommitted-bytes-max", self.uncommitted_bytes_max.len()),
            ("turn-events-max", self.turn_events_max.len()),
            ("write-through", self.write_through.len()),
            ("shards", self.shards.len()),
            ("storage", self.storage.len()),
            ("transport", self.transport.len()),
        ];
        lists
            .into_iter()
            .filter(|&(_, n)| n > 1)
            .map(|(name, _)| name)
            .collect()
    }
}

/// The value of a swept knob in `spec`, as text.
pub fn knob_value(spec: &RunSpec, knob: &str) -> String {
    match knob {
        "nodes" => spec.nodes.to_string(),
        "payload" => spec.payload_bytes.to_string(),
        "fsync" => spec.fsync.clone(),
        "batch-entries-max" => spec.batch_entries_max.to_string(),
        "batch-bytes-max" => spec.batch_bytes_max.to_string(),
        "batch-delay" => format!("{}us", spec.batch_delay_us),
        "commit-notify-delay" => format!("{}us", spec.commit_notify_delay_us),
        "inflight-max" => spec.inflight_max.to_string(),
        "inflight-bytes-max" => spec.inflight_bytes_max.to_string(),
        "append-bytes-max" => spec.append_bytes_max.to_string(),
        "uncommitted-bytes-max" => spec.uncommitted_bytes_max.to_string(),
        "turn-events-max" => spec.turn_events_max.to_string(),
        "write-through" => if spec.write_through { "on" } else { "off" }.into(),
        "shards" => spec.shards.to_string(),
        "storage" => spec.storage_name().into(),
        "transport" => spec.transport_name().into(),
        _ => String::new(),
    }
}

/// Multiplies `specs` by `values`: each spec once per value, set by `set`,
/// the new list varying fastest.
fn times<T>(specs: &mut Vec<RunSpec>, values: &[T], set: impl Fn(&mut RunSpec, &T)) {
    *specs = specs
        .iter()
        .flat_map(|spec| {
            values.iter().map(|value| {
                let mut spec = spec.clone();
                set(&mut spec, value);
                spec
            })
        })
        .collect();
}

/// Client connections for `concurrency` proposers: `requested`, or one per
/// 16 proposers up to 8 (enough to keep the leader's client port busy
/// without one connection's ordering coupling every proposer).
pub fn connections_for(requested: usize, concurrency: usize) -> usize {
    if requested > 0 {
        requested.min(concurrency)
    } else {
        concurrency.div_ceil(16).clamp(1, 8)
    }
}

/// `--duration`, `--warmup`: `10` (bare numbers are seconds), `10s`,
/// `500ms`, `250us`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_micros_with(text, 1_000_000.0).map(Duration::from_micros)
}

/// A duration with an optional unit, in microseconds; a bare number is in
/// `bare_unit_us`. Units are humantime's (`us`, `µs`, `ms`, `s`, `min`,
/// fractions such as `1.5ms`).
fn parse_micros_with(text: &str, bare_unit_us: f64) -> Result<u64, String> {
    let text = text.trim();
    let micros = match text.parse::<f64>() {
        Ok(number) => number * bare_unit_us,
        Err(_) => {
            humantime::parse_duration(text)
                .map_err(|e| format!("{text:?} is not a duration (e.g. 10s, 500ms, 200us): {e}"))?
                .as_secs_f64()
                * 1e6
        }
    };
    if !(0.0..=3.6e9).contains(&micros) {
        return Err(format!("{text:?} is out of range (at most an hour)"));
    }
    Ok(micros as u64)
}

/// `--batch-delay`: bare numbers are microseconds.
pub fn parse_micros(text: &str) -> Result<u64, String> {
    parse_micros_with(text, 1.0)
}

fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("{text:?}: expected on or off")),
    }
}

fn parse_storage(text: &str) -> Result<StorageKind, String> {
    match text {
        "disk" => Ok(StorageKind::Disk),
        "memory" => Ok(StorageKind::Memory),
        _ => Err(format!("{text:?}: expected disk or memory")),
    }
}

fn parse_transport(text: &str) -> Result<TransportKind, String> {
    match text {
        "tcp" => Ok(TransportKind::Tcp),
        "inproc" => Ok(TransportKind::Inproc),
        _ => Err(format!("{text:?}: expected tcp or inproc")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_micros("200us"), Ok(200));
        assert_eq!(parse_micros("200"), Ok(200));
        assert_eq!(parse_micros("1.5ms"), Ok(1500));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_micros("200µs"), Ok(200));
        assert!(parse_micros("5h").unwrap_err().contains("out of range"));
        assert!(parse_micros("5y").unwrap_err().contains("out of range"));
        assert!(
            parse_micros("5x")
                .unwrap_err()
                .contains("unknown time unit")
        );
        assert!(parse_micros("fast").unwrap_err().contains("\"fast\""));
        assert!(parse_micros("-1").is_err());
    }

    #[test]
    fn connections_grow_with_proposers() {
        assert_eq!(connections_for(0, 1), 1);
        assert_eq!(connections_for(0, 64), 4);
        assert_eq!(connections_for(0, 1024), 8);
        assert_eq!(connections_for(3, 2), 2);
    }

    fn knobs(args: &[&str]) -> Knobs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            knobs: Knobs,
        }
        let mut argv = vec!["ordo-bench", "--storage", "memory"];
        argv.extend_from_slice(args);
        <Cli as clap::Parser>::parse_from(argv).knobs
    }

    #[test]
    fn every_combination_runs_with_the_load_varying_fastest() {
        let specs = knobs(&[
            "--concurrency",
            "1,64",
            "--fsync",
            "always,group:200us",
            "--write-through",
            "on,off",
            "--inflight-bytes-max",
            "1048576",
        ])
        .expand()
        .unwrap();
        assert_eq!(specs.len(), 8);
        let order: Vec<(String, bool, usize)> = specs
            .iter()
            .map(|s| (s.fsync.clone(), s.write_through, s.concurrency))
            .collect();
        assert_eq!(order[0], ("always".into(), true, 1));
        assert_eq!(order[1], ("always".into(), true, 64));
        assert_eq!(order[2], ("always".into(), false, 1));
        assert_eq!(order[7], ("group:200us".into(), false, 64));
        assert!(
            specs
                .iter()
                .all(|s| s.core_config().inflight_bytes_max == 1 << 20)
        );
        assert!(specs[2].label().contains("-nowt"));
        assert_eq!(
            specs
                .iter()
                .map(RunSpec::label)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            8
        );
    }

    #[test]
    fn a_rate_list_replaces_the_proposers_and_needs_tcp() {
        let specs = knobs(&["--rate", "1000,5000"]).expand().unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].rate, Some(5000));
        assert_eq!(specs[1].connections, 4);
        assert!(specs[1].label().contains("-r5000-"));
        let error = knobs(&["--rate", "1000", "--transport", "inproc"])
            .expand()
            .unwrap_err();
        assert!(error.contains("--rate"), "{error}");
        let error = knobs(&["--rate", "0"]).expand().unwrap_err();
        assert!(error.contains("--rate: 0"), "{error}");
    }
}
