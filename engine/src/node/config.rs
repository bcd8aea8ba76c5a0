//! A node's configuration: one TOML file (`ordo.toml`), validated at load
//! with errors that name the field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ordo_storage::NodeId;
use serde::{Deserialize, Serialize};

use crate::core::CoreConfig;

/// Offsets from `--base-port P` for the ports a node of an `ordo init`
/// cluster listens on: node `i`'s client address is `P + i - 1` (the address
/// the `ordo` commands take), its peer address `P + PEER_PORT_OFFSET + i - 1`
/// and its gossip address `P + GOSSIP_PORT_OFFSET + i - 1`. Clusters of up to
/// 100 voters fit.
pub const PEER_PORT_OFFSET: u16 = 100;
/// See [`PEER_PORT_OFFSET`].
pub const GOSSIP_PORT_OFFSET: u16 = 200;
/// See [`PEER_PORT_OFFSET`]: node `i`'s metrics endpoint.
pub const METRICS_PORT_OFFSET: u16 = 400;
/// Largest cluster `ordo init` lays out.
pub const VOTERS_MAX: usize = 100;

/// Addresses in `ordo.toml` are `HOST:PORT`, where HOST is an IP address or
/// a DNS name; names are resolved when the file is loaded (at node start).
mod address {
    use std::net::{SocketAddr, ToSocketAddrs};

    use serde::{Deserialize, Deserializer};

    /// Why an address in `ordo.toml` is not one.
    #[derive(Debug, thiserror::Error)]
    pub enum AddressError {
        /// No `:` separates a host and a port.
        #[error("{text:?} is not HOST:PORT")]
        NotHostPort {
            /// The text.
            text: String,
        },
        /// The port is not a port number.
        #[error("{text:?}: port {port:?} is not in [0, 65535]")]
        Port {
            /// The text.
            text: String,
            /// Its port part.
            port: String,
        },
        /// Nothing before the `:`.
        #[error("{text:?} names no host")]
        NoHost {
            /// The text.
            text: String,
        },
        /// The name did not resolve.
        #[error("cannot resolve {host:?}: {source}")]
        Resolve {
            /// The host name.
            host: String,
            /// The resolver's error.
            source: std::io::Error,
        },
        /// The name resolved to nothing.
        #[error("{host:?} resolves to no address")]
        NoAddress {
            /// The host name.
            host: String,
        },
    }

    /// `text` as a socket address, resolving a name (the first IPv4
    /// answer, else the first answer).
    pub fn resolve(text: &str) -> Result<SocketAddr, AddressError> {
        if let Ok(addr) = text.parse() {
            return Ok(addr);
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(AddressError::NotHostPort { text: text.into() });
        };
        if port.parse::<u16>().is_err() {
            return Err(AddressError::Port {
                text: text.into(),
                port: port.into(),
            });
        }
        if host.is_empty() {
            return Err(AddressError::NoHost { text: text.into() });
        }
        let answers: Vec<SocketAddr> = text
            .to_socket_addrs()
            .map_err(|source| AddressError::Resolve {
                host: host.into(),
                source,
            })?
            .collect();
        answers
            .iter()
            .find(|a| a.is_ipv4())
            .or(answers.first())
            .copied()
            .ok_or_else(|| AddressError::NoAddress { host: host.into() })
    }

    pub fn one<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(d)?;
        resolve(&text).map_err(serde::de::Error::custom)
    }

    pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => resolve(&text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// Where the node binds its listeners, when that differs from the
/// addresses the other voters, clients and gossip nodes reach it by (the
/// `client_addr`, `peer_addr` and `gossip_addr` keys): `0.0.0.0:7000` on a
/// machine behind NAT or with several interfaces. Unset: the advertised
/// address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// Bind address of the client listener.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "address::optional"
    )]
    pub client: Option<SocketAddr>,
    /// Bind address of the peer listener.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "address::optional"
    )]
    pub peer: Option<SocketAddr>,
    /// Bind address of the gossip endpoint.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "address::optional"
    )]
    pub gossip: Option<SocketAddr>,
}

impl ListenConfig {
    /// Where the client listener binds, given the advertised address.
    pub fn client_or(&self, advertised: SocketAddr) -> SocketAddr {
        self.client.unwrap_or(advertised)
    }

    /// Where the peer listener binds.
    pub fn peer_or(&self, advertised: SocketAddr) -> SocketAddr {
        self.peer.unwrap_or(advertised)
    }

    /// Where the gossip endpoint binds.
    pub fn gossip_or(&self, advertised: SocketAddr) -> SocketAddr {
        self.gossip.unwrap_or(advertised)
    }
}

/// The metrics endpoint (`[metrics]`): `GET /metrics` (Prometheus text),
/// `/health` and `/status` over HTTP (docs/operations.md, "Monitoring").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where the endpoint listens; unset: no endpoint runs.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "address::optional"
    )]
    pub listen: Option<SocketAddr>,
}

/// One voter of the cluster as the other voters see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The voter's id.
    pub id: NodeId,
    /// Where it listens for voters.
    #[serde(deserialize_with = "address::one")]
    pub peer_addr: SocketAddr,
    /// Where it listens for clients.
    #[serde(deserialize_with = "address::one")]
    pub client_addr: SocketAddr,
}

/// How the node uses the machine's cores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Executors (one per core). The Raft group lives on shard 0; every
    /// shard accepts client connections and hands proposals to shard 0.
    pub shards: usize,
    /// Pin shard `k` to CPU `k` (off by default: several nodes may share a
    /// machine).
    pub pin_cpus: bool,
    /// io_uring buffer memory per executor. glommio locks it in memory; the
    /// default fits the 8 MiB locked-memory limit of an unprivileged user.
    pub io_memory_bytes: usize,
    /// Most events one runtime turn takes before the core ends the turn.
    pub turn_events_max: usize,
    /// Most inputs waiting for the group shard (bounded channel).
    pub input_queue_max: usize,
    /// A leader holding fewer queued proposals than a full batch waits up
    /// to this long for more before it appends them (`0`: never waits; the
    /// proposals of one turn form the batch). Trades latency for larger
    /// batches; see docs/tuning.md.
    pub batch_delay_us: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            shards: 1,
            pin_cpus: false,
            io_memory_bytes: 512 << 10,
            turn_events_max: 4096,
            input_queue_max: 65_536,
            batch_delay_us: 0,
        }
    }
}

/// The log's knobs (the `[storage]` table).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `always`, `group:<delay>` (e.g. `group:200us`) or `none` (benchmarks
    /// only: acknowledged writes may be lost).
    pub fsync: String,
    /// `disk` (the segmented io_uring log) or `memory` (benchmarks and tests:
    /// nothing survives a restart).
    pub kind: String,
    /// Bytes per log segment.
    pub segment_bytes: u64,
    /// Keep every entry (no snapshots, no compaction): `ordo log --from 1`
    /// works forever. Embedders with a state machine turn it off.
    pub retain_log: bool,
    /// With `retain_log`: bound the log's disk (its directory, segments
    /// and the prepared spare included) to this many bytes by dropping
    /// the oldest entries (`0`: keep every entry). At least 5
    /// `segment_bytes`. The node keeps the entries since its snapshot
    /// before last (docs/operations.md, "Retention").
    pub retain_bytes: u64,
    /// Segment files are opened with `O_DSYNC`, so a group-commit round is
    /// one write that is durable when it completes (default). `false`:
    /// a write followed by an fdatasync (docs/storage.md). Either way an
    /// acknowledged entry is on disk.
    pub write_through: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            fsync: "always".into(),
            kind: "disk".into(),
            segment_bytes: 64 << 20,
            retain_log: true,
            retain_bytes: 0,
            write_through: true,
        }
    }
}

/// Everything one voter needs to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This voter's id (1-based, unique in the cluster).
    pub id: NodeId,
    /// The cluster's id: every connection checks it, so nodes of two
    /// clusters never talk.
    pub cluster_id: u64,
    /// Where the log, hard state, snapshots, keys and certificates live.
    pub data_dir: PathBuf,
    /// Where clients connect (the `ordo` commands' ADDR).
    #[serde(deserialize_with = "address::one")]
    pub client_addr: SocketAddr,
    /// Where the other voters connect.
    #[serde(deserialize_with = "address::one")]
    pub peer_addr: SocketAddr,
    /// Where gossip nodes may use this voter as a seed.
    #[serde(default, deserialize_with = "address::optional")]
    pub gossip_addr: Option<SocketAddr>,
    /// The cluster's public keys file (`cluster.keys`).
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    /// The other voters of the bootstrap configuration.
    pub peers: Vec<PeerConfig>,
    /// Written by `ordo init --add`: the node starts outside the cluster
    /// and waits for `ordo member add` (it never votes or campaigns before).
    /// Once added, its log holds the configuration and this is ignored.
    #[serde(default)]
    pub join: bool,
    /// Cores and executors.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// The log.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Bind addresses, when they differ from the advertised ones.
    #[serde(default)]
    pub listen: ListenConfig,
    /// The metrics endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The Raft core's knobs.
    #[serde(default)]
    pub raft: CoreConfig,
    /// Which connections are authenticated (`crate::auth`).
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    /// Whether client connections are encrypted, and with which
    /// certificate (`crate::auth::TlsConfig`).
    #[serde(default)]
    pub tls: crate::auth::TlsConfig,
}

/// A configuration problem, naming the field (or the file).
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a node configuration.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A field's value is out of its domain.
    #[error("invalid config field {field}: {reason}")]
    Field {
        /// The field, as a TOML path (`raft.heartbeat_interval_ms`).
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn field(field: &str, reason: impl Into<String>) -> NodeConfigError {
    NodeConfigError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

impl NodeConfig {
    /// Reads and validates `path`. A relative `data_dir` or `keys_file` is
    /// taken relative to the file's directory, and made absolute: the
    /// disk log's directory must not depend on the working directory
    /// (a relative one failed to open under glommio with EBADF).
    pub fn load(path: &Path) -> Result<Self, NodeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| NodeConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: NodeConfig = toml::from_str(&text).map_err(|e| NodeConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let parent = path.parent().unwrap_or(Path::new("."));
        let base = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
        let base = base.as_path();
        if config.data_dir.is_relative() {
            config.data_dir = base.join(&config.data_dir);
        }
        if let Some(keys) = &config.keys_file
            && keys.is_relative()
        {
            config.keys_file = Some(base.join(keys));
        }
        config.auth.make_absolute(base);
        config.tls.make_absolute(base);
        config.validate()?;
        Ok(config)
    }

    /// The TOML text of this configuration, every key written.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a node config serializes")
    }

    /// The TOML text `ordo init` writes: a header naming the ordo version
    /// that wrote it, and only the keys whose values differ from the
    /// defaults, so that a later version's better defaults reach the node.
    pub fn to_toml_minimal(&self) -> String {
        // Through JSON values: TOML values hold no u64 above i64::MAX,
        // and a cluster id may be one (the text form takes it).
        let mut value = serde_json::to_value(self).expect("a node config serializes");
        let defaults = serde_json::to_value(Self {
            runtime: RuntimeConfig::default(),
            storage: StorageConfig::default(),
            raft: CoreConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            tls: crate::auth::TlsConfig::default(),
            ..self.clone()
        })
        .expect("a node config serializes");
        if let (Some(table), Some(defaults)) = (value.as_object_mut(), defaults.as_object()) {
            for section in ["runtime", "storage", "raft", "auth", "tls"] {
                let Some(serde_json::Value::Object(keys)) = table.get_mut(section) else {
                    continue;
                };
                if let Some(serde_json::Value::Object(default_keys)) = defaults.get(section) {
                    keys.retain(|key, v| default_keys.get(key) != Some(v));
                }
                if keys.is_empty() {
                    table.remove(section);
                }
            }
            for section in ["listen", "metrics"] {
                if matches!(table.get(section), Some(serde_json::Value::Object(t)) if t.is_empty())
                {
                    table.remove(section);
                }
            }
        }
        format!(
            "# Written by ordo {} (`ordo init`). Keys left out take their defaults:\n\
             # docs/configuration.md lists every key. `ordo node --config FILE --check`\n\
             # checks an edited file.\n\n{}",
            env!("CARGO_PKG_VERSION"),
            toml::to_string_pretty(&value).expect("a TOML table serializes")
        )
    }

    /// Checks every field and the relations between them.
    pub fn validate(&self) -> Result<(), NodeConfigError> {
        if self.id == 0 {
            return Err(field("id", "must be at least 1"));
        }
        let mut ids: Vec<NodeId> = self.peers.iter().map(|p| p.id).collect();
        ids.push(self.id);
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(field(
                "peers",
                format!("voter ids must be unique, got {ids:?}"),
            ));
        }
        if ids.contains(&0) {
            return Err(field("peers.id", "must be at least 1"));
        }
        if ids.len() > VOTERS_MAX {
            return Err(field("peers", format!("at most {VOTERS_MAX} voters")));
        }
        if self.client_addr == self.peer_addr {
            return Err(field("peer_addr", "must differ from client_addr"));
        }
        let advertised = [
            ("client_addr", Some(self.client_addr)),
            ("peer_addr", Some(self.peer_addr)),
            ("gossip_addr", self.gossip_addr),
        ];
        for (key, addr) in advertised {
            if let Some(addr) = addr
                && addr.ip().is_unspecified()
            {
                return Err(field(
                    key,
                    format!(
                        "{addr} is not an address others can reach: set listen.{} to bind to all interfaces",
                        key.trim_end_matches("_addr")
                    ),
                ));
            }
        }
        if self.runtime.shards == 0 || self.runtime.shards > 256 {
            return Err(field(
                "runtime.shards",
                format!("{} not in [1, 256]", self.runtime.shards),
            ));
        }
        if self.runtime.io_memory_bytes < 64 << 10 {
            return Err(field("runtime.io_memory_bytes", "must be at least 65536"));
        }
        if self.runtime.turn_events_max == 0 {
            return Err(field("runtime.turn_events_max", "must be at least 1"));
        }
        if self.runtime.batch_delay_us > 100_000 {
            return Err(field("runtime.batch_delay_us", "at most 100000 (100 ms)"));
        }
        if self.runtime.input_queue_max < 16 {
            return Err(field("runtime.input_queue_max", "must be at least 16"));
        }
        self.storage
            .fsync
            .parse::<ordo_storage::FsyncMode>()
            .map_err(|e| field("storage.fsync", e.to_string()))?;
        match self.storage.kind.as_str() {
            "disk" | "memory" => {}
            other => {
                return Err(field(
                    "storage.kind",
                    format!("{other:?} is not `disk` or `memory`"),
                ));
            }
        }
        if self.storage.retain_bytes != 0
            && self.storage.retain_bytes < 5 * self.storage.segment_bytes
        {
            return Err(field(
                "storage.retain_bytes",
                format!(
                    "{} is below 5 segments of storage.segment_bytes ({}): 0 keeps every entry",
                    self.storage.retain_bytes, self.storage.segment_bytes
                ),
            ));
        }
        if self.storage.segment_bytes < 1 << 20 {
            return Err(field("storage.segment_bytes", "must be at least 1 MiB"));
        }
        self.raft
            .validate()
            .map_err(|e| field(&format!("raft.{}", e.field), e.reason))?;
        Ok(())
    }

    /// Every voter's id, this node's included, sorted.
    pub fn voters(&self) -> Vec<NodeId> {
        if self.join {
            return Vec::new();
        }
        let mut voters: Vec<NodeId> = self.peers.iter().map(|p| p.id).collect();
        voters.push(self.id);
        voters.sort_unstable();
        voters
    }

    /// The client address of voter `id`, if known.
    pub fn peer_addr_of(&self, id: NodeId) -> Option<SocketAddr> {
        if id == self.id {
            return Some(self.peer_addr);
        }
        self.peers.iter().find(|p| p.id == id).map(|p| p.peer_addr)
    }

    /// Where voter `id` of the bootstrap configuration listens for clients.
    pub fn client_addr_of(&self, id: NodeId) -> Option<SocketAddr> {
        if id == self.id {
            return Some(self.client_addr);
        }
        self.peers
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.client_addr)
    }

    /// The configurations `ordo init --nodes n --base-port base` writes,
    /// with data directories `dir/node<i>` (relative to each config file,
    /// which lives in that directory): every node on 127.0.0.1, node `i`'s
    /// ports at `base + offset + i - 1`.
    pub fn cluster(
        n: usize,
        base_port: u16,
        cluster_id: u64,
    ) -> Result<Vec<NodeConfig>, NodeConfigError> {
        let loopback = vec![std::net::IpAddr::from([127, 0, 0, 1]); n];
        Self::layout(&loopback, base_port, cluster_id, true)
    }

    /// The configurations `ordo init --hosts h1,h2,.. --base-port base`
    /// writes: node `i` on `hosts[i - 1]`, every node on the same ports
    /// (`base`, `base + 100`, `base + 200`, `base + 400`).
    pub fn cluster_on_hosts(
        hosts: &[std::net::IpAddr],
        base_port: u16,
        cluster_id: u64,
    ) -> Result<Vec<NodeConfig>, NodeConfigError> {
        Self::layout(hosts, base_port, cluster_id, false)
    }

    fn layout(
        hosts: &[std::net::IpAddr],
        base_port: u16,
        cluster_id: u64,
        one_host: bool,
    ) -> Result<Vec<NodeConfig>, NodeConfigError> {
        let n = hosts.len();
        if n == 0 || n > VOTERS_MAX {
            return Err(field("nodes", format!("{n} not in [1, {VOTERS_MAX}]")));
        }
        let spread = if one_host { n as u32 } else { 1 };
        let top = u32::from(base_port) + u32::from(METRICS_PORT_OFFSET) + spread - 1;
        if base_port < 1024 || top > u32::from(u16::MAX) {
            return Err(field(
                "base-port",
                format!("{base_port}: ports {base_port}..={top} must lie in [1024, 65535]"),
            ));
        }
        let addr = |i: u64, offset: u16| {
            let step = if one_host { i as u32 - 1 } else { 0 };
            let port = u32::from(base_port) + u32::from(offset) + step;
            SocketAddr::new(hosts[i as usize - 1], port as u16)
        };
        let all: Vec<PeerConfig> = (1..=n as u64)
            .map(|i| PeerConfig {
                id: i,
                peer_addr: addr(i, PEER_PORT_OFFSET),
                client_addr: addr(i, 0),
            })
            .collect();
        Ok(all
            .iter()
            .map(|me| NodeConfig {
                id: me.id,
                cluster_id,
                data_dir: PathBuf::from("data"),
                client_addr: me.client_addr,
                peer_addr: me.peer_addr,
                gossip_addr: Some(addr(me.id, GOSSIP_PORT_OFFSET)),
                keys_file: Some(PathBuf::from("../cluster.keys")),
                peers: all.iter().filter(|p| p.id != me.id).cloned().collect(),
                join: false,
                runtime: RuntimeConfig::default(),
                storage: StorageConfig::default(),
                listen: ListenConfig::default(),
                metrics: MetricsConfig {
                    listen: Some(addr(me.id, METRICS_PORT_OFFSET)),
                },
                raft: CoreConfig::default(),
                auth: crate::auth::AuthConfig::default(),
                tls: crate::auth::TlsConfig::default(),
            })
            .collect())
    }

    /// The configuration `ordo init --add id --base-port base` writes: node
    /// `id` on the same port layout as [`NodeConfig::cluster`], outside the
    /// cluster until `ordo member add` adds it.
    pub fn joining(id: NodeId, base_port: u16, cluster_id: u64) -> Result<Self, NodeConfigError> {
        if id == 0 || id > VOTERS_MAX as u64 {
            return Err(field("id", format!("{id} not in [1, {VOTERS_MAX}]")));
        }
        let mut config = Self::cluster(id as usize, base_port, cluster_id)?
            .pop()
            .expect("node id is the last of the layout");
        config.peers.clear();
        config.join = true;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_layout_round_trips_through_toml() {
        let configs = NodeConfig::cluster(3, 7000, 42).unwrap();
        assert_eq!(configs[1].client_addr.port(), 7001);
        assert_eq!(configs[1].peer_addr.port(), 7101);
        assert_eq!(configs[2].peers.len(), 2);
        for config in &configs {
            config.validate().unwrap();
            let again: NodeConfig = toml::from_str(&config.to_toml()).unwrap();
            assert_eq!(&again, config);
        }
    }

    #[test]
    fn addresses_take_dns_names_and_bind_apart_from_what_they_advertise() {
        let text = NodeConfig::cluster(1, 7000, 1).unwrap()[0]
            .to_toml()
            .replace("127.0.0.1:7000", "localhost:7000")
            .replace("[listen]\n", "[listen]\nclient = \"0.0.0.0:7000\"\n");
        let config: NodeConfig = toml::from_str(&text).unwrap();
        assert_eq!(config.client_addr, SocketAddr::from(([127, 0, 0, 1], 7000)));
        assert_eq!(
            config.listen.client_or(config.client_addr),
            SocketAddr::from(([0, 0, 0, 0], 7000))
        );
        assert_eq!(config.listen.peer_or(config.peer_addr), config.peer_addr);
        let bad = text.replace("localhost:7000", "no-such-host.invalid:7000");
        let error = toml::from_str::<NodeConfig>(&bad).unwrap_err().to_string();
        assert!(
            error.contains("no-such-host.invalid") && error.contains("client_addr"),
            "{error}"
        );
        let mut unreachable = config.clone();
        unreachable.client_addr = SocketAddr::from(([0, 0, 0, 0], 7000));
        let error = unreachable.validate().unwrap_err().to_string();
        assert!(
            error.contains("client_addr") && error.contains("listen.client"),
            "{error}"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let mut config = NodeConfig::cluster(3, 7000, 1).unwrap().remove(0);
        config.raft.heartbeat_interval_ms = 0;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("raft.heartbeat_interval_ms"), "{error}");
        config.raft.heartbeat_interval_ms = 50;
        config.storage.fsync = "sometimes".into();
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("storage.fsync")
        );
        let text = NodeConfig::cluster(1, 7000, 1).unwrap()[0]
            .to_toml()
            .replace("id = 1", "id = \"one\"");
        let error = toml::from_str::<NodeConfig>(&text).unwrap_err().to_string();
        assert!(error.contains("id"), "{error}");
        let text = format!(
            "{}\nbogus = 3\n",
            NodeConfig::cluster(1, 7000, 1).unwrap()[0].to_toml()
        );
        assert!(toml::from_str::<NodeConfig>(&text).is_err());
        assert!(NodeConfig::cluster(3, 65_500, 1).is_err());
    }
}
