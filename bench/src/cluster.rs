//! The cluster under test: laid out by `ordo init` in a fresh temporary
//! directory (keys, configs), with the run's knobs written into every
//! node's config, then started as threads of this process or as `ordo node`
//! processes.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ordo_engine::node::{
    GOSSIP_PORT_OFFSET, Node, NodeConfig, NullStateMachine, PEER_PORT_OFFSET, StartOptions,
};

use crate::spec::{RunSpec, StorageKind};

/// A laid-out cluster: its directory (removed on drop) and each node's
/// config, with the run's knobs.
pub struct Layout {
    /// The cluster's directory.
    pub dir: tempfile::TempDir,
    /// Node `i`'s config is `configs[i - 1]`.
    pub configs: Vec<NodeConfig>,
    /// Where each config was written.
    pub config_paths: Vec<PathBuf>,
    /// What the load's clients present and trust.
    pub access: ClientAccess,
}

/// What a load's clients present (the client secret `ordo init` wrote, or
/// none with `--auth off`) and trust (the cluster CA, or plain TCP with
/// `--tls off`).
#[derive(Clone, Debug, Default)]
pub struct ClientAccess {
    /// Proves the client secret.
    pub credential: ordo_net::auth::Credential,
    /// TLS to the nodes' client ports.
    pub tls: Option<ordo_net::tls::TlsClientConfig>,
}

impl ClientAccess {
    /// A client connection's configuration with this access.
    pub fn config(&self, cluster_id: u64) -> ordo_net::transport::ClientConfig {
        let mut config = ordo_net::transport::ClientConfig::new(cluster_id);
        config.auth = self.credential.clone();
        config.tls = self.tls.clone();
        config
    }
}

impl Layout {
    /// Lays out `spec.nodes` voters under `spec.data_dir` (or the system's
    /// temporary directory) on free loopback ports.
    pub fn new(spec: &RunSpec) -> Result<Self, String> {
        let parent = spec.data_dir.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&parent)
            .map_err(|e| format!("--data-dir {}: {e}", parent.display()))?;
        // glommio opens a relative directory with EBADF: every path the
        // nodes get is absolute.
        let parent = std::path::absolute(&parent)
            .map_err(|e| format!("--data-dir {}: {e}", parent.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("ordo-bench-")
            .tempdir_in(&parent)
            .map_err(|e| format!("--data-dir {}: {e}", parent.display()))?;
        let base_port = free_base_port(spec.nodes)?;
        ordo_engine::cli::init(spec.nodes, dir.path(), base_port).map_err(|e| e.to_string())?;
        let mut configs = Vec::new();
        let mut config_paths = Vec::new();
        for id in 1..=spec.nodes {
            let path = dir.path().join(format!("node{id}")).join("ordo.toml");
            let mut config = NodeConfig::load(&path).map_err(|e| e.to_string())?;
            apply_knobs(spec, &mut config);
            if !spec.metrics {
                config.metrics.listen = None;
            }
            if !spec.tls {
                config.tls.clients = false;
            }
            if !spec.auth {
                config.auth = ordo_engine::auth::AuthConfig::off();
            } else if !spec.tokens {
                // Peers authenticate with the node key, which `--tokens
                // off` removes; gossip and clients keep their secrets.
                config.auth.peers = false;
            }
            if !spec.tokens {
                // A node without a key signs nothing (docs/tokens.md).
                let key = ordo_engine::token::NodeKey::path_in(&config.data_dir);
                std::fs::remove_file(&key)
                    .map_err(|e| format!("cannot remove {}: {e}", key.display()))?;
            }
            config.validate().map_err(|e| e.to_string())?;
            std::fs::write(&path, config.to_toml())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            configs.push(config);
            config_paths.push(path);
        }
        let credential = if spec.auth {
            ordo_engine::auth::client_credential(Some(
                &dir.path().join(ordo_engine::auth::CLIENT_SECRET_FILE),
            ))
            .map_err(|e| e.to_string())?
        } else {
            ordo_net::auth::Credential::none()
        };
        let tls = if spec.tls {
            let ca = dir.path().join(ordo_engine::auth::CA_CERT_FILE);
            let cluster_id = configs.first().map_or(0, |c| c.cluster_id);
            Some(
                ordo_net::tls::TlsClientConfig::from_file(&ca, cluster_id)
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        Ok(Self {
            dir,
            configs,
            config_paths,
            access: ClientAccess { credential, tls },
        })
    }

    /// The nodes' client addresses, by id.
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        self.configs.iter().map(|c| c.client_addr).collect()
    }

    /// The cluster id every connection presents.
    pub fn cluster_id(&self) -> u64 {
        self.configs[0].cluster_id
    }
}

/// The run's knobs in a node's config; everything else stays at the
/// defaults `ordo init` writes.
fn apply_knobs(spec: &RunSpec, config: &mut NodeConfig) {
    config.storage.fsync = spec.fsync.clone();
    config.storage.kind = spec.storage_name().into();
    // An in-memory log must compact, or a fast run fills the machine's
    // memory; the disk log keeps every entry as `ordo node` does.
    config.storage.retain_log = spec.storage == StorageKind::Disk;
    config.storage.retain_bytes = spec.retain_bytes;
    config.raft = spec.core_config();
    config.runtime.batch_delay_us = spec.batch_delay_us;
    config.runtime.turn_events_max = spec.turn_events_max;
    config.storage.write_through = spec.write_through;
    config.runtime.shards = spec.shards;
    if !spec.gossip {
        config.gossip_addr = None;
    }
}

/// A base port whose client, peer and gossip ports for `nodes` voters are
/// all free on 127.0.0.1 now.
fn free_base_port(nodes: usize) -> Result<u16, String> {
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    for _ in 0..200 {
        // xorshift: a different candidate each attempt.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let base = 20_000 + (state % 12_000) as u16;
        let ports = (0..nodes as u16).flat_map(|i| {
            [
                base + i,
                base + PEER_PORT_OFFSET + i,
                base + GOSSIP_PORT_OFFSET + i,
                base + ordo_engine::node::METRICS_PORT_OFFSET + i,
            ]
        });
        let listeners: Result<Vec<_>, _> = ports
            .map(|port| TcpListener::bind(("127.0.0.1", port)))
            .collect();
        if listeners.is_ok() {
            return Ok(base);
        }
    }
    Err("no free range of loopback ports found for the cluster".into())
}

/// A running cluster outside the load generator's executor.
pub enum Running {
    /// Each node on its own executor thread of this process.
    Threads(Vec<Node>),
    /// Each node an `ordo node` process.
    Procs(Vec<Child>),
}

impl Running {
    /// Starts every node of `layout` as threads of this process.
    pub fn threads(layout: &Layout) -> Result<Self, String> {
        let mut nodes = Vec::new();
        for config in &layout.configs {
            let node = Node::start_with(
                config.clone(),
                || Box::new(NullStateMachine),
                StartOptions::default(),
            )
            .map_err(|e| e.to_string())?;
            nodes.push(node);
        }
        Ok(Self::Threads(nodes))
    }

    /// Starts every node of `layout` as an `ordo node` process, logging to
    /// `node<i>.log` in the cluster's directory.
    pub fn procs(layout: &Layout) -> Result<Self, String> {
        let binary = ordo_binary()?;
        let mut children = Vec::new();
        for (i, path) in layout.config_paths.iter().enumerate() {
            let log_path = layout.dir.path().join(format!("node{}.log", i + 1));
            let log = std::fs::File::create(&log_path)
                .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
            let child = Command::new(&binary)
                .args(["node", "--config"])
                .arg(path)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
            children.push(child);
        }
        Ok(Self::Procs(children))
    }

    /// The node processes' ids (empty for threads).
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Running::Threads(_) => Vec::new(),
            Running::Procs(children) => children.iter().map(Child::id).collect(),
        }
    }

    /// Fails if a node process has exited (it logged why).
    pub fn check_alive(&mut self, dir: &Path) -> Result<(), String> {
        if let Running::Procs(children) = self {
            for (i, child) in children.iter_mut().enumerate() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "node {} exited ({status}); see {}",
                        i + 1,
                        dir.join(format!("node{}.log", i + 1)).display()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Stops every node cleanly (SIGTERM for processes, then SIGKILL after
    /// ten seconds).
    pub fn stop(self) -> Result<(), String> {
        match self {
            Running::Threads(nodes) => {
                for node in nodes {
                    node.shutdown().map_err(|e| e.to_string())?;
                }
            }
            Running::Procs(mut children) => {
                for child in &children {
                    // A pid this process spawned and has not reaped yet. A
                    // failure means it already exited, which the wait
                    // below sees.
                    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                for child in &mut children {
                    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    if matches!(child.try_wait(), Ok(None)) {
                        let _ = child.kill();
                    }
                    let _ = child.wait();
                }
            }
        }
        Ok(())
    }
}

/// The `ordo` binary: `ORDO_BIN`, or next to this executable.
fn ordo_binary() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("ORDO_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find ordo-bench itself: {e}"))?;
    let dir = exe.parent().ok_or("ordo-bench has no directory")?;
    // Test and bench binaries live one level down, in `deps/`.
    for candidate in [dir.join("ordo"), dir.join("../ordo")] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "--procs needs the ordo binary next to ordo-bench ({}): build it with \
         `cargo build --release -p ordo-engine --bin ordo`, or set ORDO_BIN",
        dir.display()
    ))
}

/// CPU time a process has used, user + system, in seconds (`None` if it
/// is gone). `None` for `pid` is this process. Resolution: one clock tick
/// (10 ms), so callers measure over seconds.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".into(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14 and stime 15 (proc(5)).
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split_whitespace();
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100) as f64;
    Some((utime + stime) / ticks)
}

/// Resident memory of a process in MiB (`None` if it is gone).
pub fn rss_mib(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".into(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
