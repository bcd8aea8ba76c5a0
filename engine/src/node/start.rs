//! Starting and stopping a node: the group's executor, its storage, its
//! connections, and the handle the embedder keeps.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use ordo_net::transport::{ClientServer, ClientServerConfig, PeerTransport, TransportConfig};
use ordo_storage::disk::vfs::{GlommioVfs, Vfs};
use ordo_storage::snapshot::SnapshotStore;
use ordo_storage::{DiskLog, DiskLogConfig, FsyncMode, LogStore, MemLog};

use super::clock::Clock;
use super::config::NodeConfig;
use super::durability::DurabilityError;
use super::feed::FeedState;
use super::group::Group;
use super::inbox::{self, inbox};
use super::input::{External, InputSender};
use super::log_io::LogIo;
use super::peers::{InprocPeers, Peers};
use super::snapshots::{LoadSnapshotError, SnapshotIo};
use super::tokens::Certificates;
use super::{NodeHandle, StateMachine, restore};
use crate::core::{Raft, Status};

/// Why a node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] super::config::NodeConfigError),
    /// Something failed while starting (names what).
    #[error("node {id} could not start: {source}")]
    Start {
        /// The node.
        id: u64,
        /// What failed (boxed: the start's error is large, and a
        /// `Result` carries its error's size on every return).
        source: Box<StartError>,
    },
    /// The machine or another process stands in the way (io_uring,
    /// locked memory, the data directory or a port is taken).
    #[error(transparent)]
    Preflight(#[from] crate::preflight::PreflightError),
    /// The node stopped because of a failure after starting.
    #[error("node {id} failed: {source}")]
    Failed {
        /// The node.
        id: u64,
        /// What failed.
        source: RunError,
    },
}

impl NodeError {
    fn start(id: u64, source: StartError) -> Self {
        NodeError::Start {
            id,
            source: Box::new(source),
        }
    }
}

/// What failed while a node started. Each names the config field, file,
/// address or snapshot involved; the operator's remedy follows from the
/// variant: fix the config ([`StartError::Raft`], [`StartError::Fsync`],
/// [`StartError::Auth`]), free an address ([`StartError::PeerListen`],
/// [`StartError::ClientListen`], [`StartError::Metrics`]), or look at
/// the data directory ([`StartError::Storage`],
/// [`StartError::Durability`], ...).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The metrics endpoint (`[metrics] listen`) could not start.
    #[error("metrics.listen: {0}")]
    Metrics(#[source] std::io::Error),
    /// A credential or TLS certificate the config asks for does not load.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// An executor thread could not be started.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// Which ("the group executor", "client shard 2").
        what: String,
        /// Why (glommio's error, as an IO error).
        source: std::io::Error,
    },
    /// The group's executor ended abnormally (a panic) before it reported.
    #[error("the group executor failed: {0}")]
    Executor(#[source] std::io::Error),
    /// The group's executor ended before it reported, without an error.
    #[error("stopped before it started")]
    StoppedEarly,
    /// The data directory could not be created.
    #[error("cannot create data_dir {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The disk probe that decides how reads poll failed.
    #[error("cannot probe the disk under {}: {source}", path.display())]
    DiskProbe {
        /// The data directory.
        path: PathBuf,
        /// Why.
        source: ordo_storage::StorageError,
    },
    /// `storage.fsync` names no fsync mode.
    #[error("invalid config field storage.fsync: {0}")]
    Fsync(#[source] ordo_storage::disk::FsyncModeParseError),
    /// A `[raft]` knob is out of its domain.
    #[error("invalid config field raft.{}: {}", .0.field, .0.reason)]
    Raft(#[source] crate::core::ConfigError),
    /// The snapshots or the log could not be opened.
    #[error(transparent)]
    Storage(#[from] OpenStorageError),
    /// The records of what this node may have acknowledged could not be
    /// read or written.
    #[error(transparent)]
    Durability(#[from] super::durability::DurabilityError),
    /// The latest snapshot's configuration links do not decode.
    #[error("snapshot {last:?}: {source}")]
    SnapshotLinks {
        /// The snapshot's last entry.
        last: ordo_storage::LogId,
        /// Why.
        source: super::chain_store::SnapshotLinksError,
    },
    /// The state machine refused the latest snapshot.
    #[error("the state machine refused snapshot {last:?}: {source}")]
    Restore {
        /// The snapshot's last entry.
        last: ordo_storage::LogId,
        /// The state machine's error.
        source: super::RestoreError,
    },
    /// The log could not be read back.
    #[error("cannot read the log: {0}")]
    ReadLog(#[source] ordo_storage::StorageError),
    /// The peer transport could not listen.
    #[error("cannot listen for peers on {addr}: {source}")]
    PeerListen {
        /// The peer address.
        addr: std::net::SocketAddr,
        /// Why.
        source: ordo_net::transport::TransportError,
    },
    /// A `[[peers]]` entry the transport refuses.
    #[error("invalid peer {id}: {source}")]
    Peer {
        /// The peer's id.
        id: u64,
        /// Why.
        source: ordo_net::transport::TransportError,
    },
    /// The client server could not listen.
    #[error("cannot listen for clients on {addr}: {source}")]
    ClientListen {
        /// The client address.
        addr: std::net::SocketAddr,
        /// Why.
        source: ordo_net::transport::TransportError,
    },
    /// The node key, the cluster keys or the certificates do not load.
    #[error(transparent)]
    Certificates(#[from] super::tokens::CertificatesError),
    /// The gossip endpoint the config names could not start.
    #[error(transparent)]
    Gossip(#[from] super::gossip_bridge::GossipEndpointError),
}

/// Why a started node stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Its log failed; a node whose log failed takes no further part.
    #[error(transparent)]
    Log(#[from] super::group::LogFailed),
    /// Its executor ended abnormally (a panic).
    #[error("the group executor failed: {0}")]
    Executor(#[source] std::io::Error),
}

/// What a node's storage could not open with.
#[derive(Debug, thiserror::Error)]
pub enum OpenStorageError {
    /// The data directory could not be created (on the simulator's disk;
    /// a real start reports [`StartError::DataDir`]).
    #[error("cannot create data_dir {}: {source}", dir.display())]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: ordo_storage::StorageError,
    },
    /// The snapshot store does not open, or its latest snapshot does not
    /// read back (and there is no log to set aside with it).
    #[error("cannot open snapshots in {}: {source}", dir.display())]
    Snapshots {
        /// The snapshot directory.
        dir: PathBuf,
        /// Why.
        source: super::snapshots::LoadSnapshotError,
    },
    /// Damaged storage could not be moved aside.
    #[error("cannot move the damaged {} aside to {}: {source}", from.display(), to.display())]
    SetAside {
        /// What was to be moved.
        from: PathBuf,
        /// Where to.
        to: PathBuf,
        /// Why.
        source: ordo_storage::StorageError,
    },
    /// The log does not open (and is not damaged in a way that setting it
    /// aside repairs).
    #[error("cannot open the log in {}: {source}", dir.display())]
    Log {
        /// The log directory.
        dir: PathBuf,
        /// Why.
        source: ordo_storage::StorageError,
    },
    /// A loss could not be recorded before storage changed.
    #[error(transparent)]
    Record(#[from] super::durability::DurabilityError),
}

// Errors cross from the group's executor thread to the starter's, and an
// embedder may send them on (`anyhow`, another thread).
const _: fn() = || {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<NodeError>();
};

/// How to start a node beyond its configuration (benchmarks and tests).
#[derive(Default)]
pub struct StartOptions {
    /// Talk to the other voters over these in-process channels instead of
    /// TCP.
    pub inproc: Option<InprocPeers>,
    /// Do not listen for clients (in-process use through the handle only).
    pub no_client_server: bool,
    /// Export the node's values here. [`Node::start_with`] makes one when
    /// the config has `[metrics] listen` (and serves it there).
    pub metrics: Option<crate::metrics::NodeMetrics>,
}

/// A running node. Dropping it does not stop it; call
/// [`Node::shutdown`].
pub struct Node {
    handle: NodeHandle,
    join: Option<glommio::ExecutorJoinHandle<Result<(), super::group::LogFailed>>>,
    /// Client shards (`runtime.shards - 1` executors).
    shards: Vec<glommio::ExecutorJoinHandle<Result<(), super::shards::ShardListenError>>>,
    id: u64,
    /// This process's hold on the data directory, released on drop.
    _dir_lock: Option<crate::preflight::DirLock>,
    /// The `/metrics`, `/health` and `/status` endpoint.
    _metrics_server: Option<crate::metrics::MetricsServer>,
}

/// Checks the machine, locks the data directory and checks that every
/// port the config names is free, before any executor starts. A node in a
/// simulation or with in-process peers skips the machine and the ports.
fn preflight(
    config: &NodeConfig,
    options: &StartOptions,
) -> Result<Option<crate::preflight::DirLock>, NodeError> {
    use crate::preflight::{DirLock, check_machine, check_port};
    check_machine(config.runtime.shards, config.runtime.io_memory_bytes)?;
    let lock = DirLock::acquire(&config.data_dir)?;
    if options.inproc.is_none() {
        check_port("peers", config.listen.peer_or(config.peer_addr))?;
    }
    if !options.no_client_server {
        check_port("clients", config.listen.client_or(config.client_addr))?;
    }
    if let Some(gossip) = config.gossip_addr {
        check_port("gossip", config.listen.gossip_or(gossip))?;
    }
    if let Some(metrics) = config.metrics.listen {
        check_port("metrics", metrics)?;
    }
    Ok(Some(lock))
}

impl Node {
    /// Starts a voter from `config`; `state_machine` builds the embedder's
    /// state machine on the group's shard. Returns once the node listens.
    pub fn start<F>(config: NodeConfig, state_machine: F) -> Result<Node, NodeError>
    where
        F: FnOnce() -> Box<dyn StateMachine> + Send + 'static,
    {
        Self::start_with(config, state_machine, StartOptions::default())
    }

    /// [`Node::start`] with options.
    pub fn start_with<F>(
        config: NodeConfig,
        state_machine: F,
        options: StartOptions,
    ) -> Result<Node, NodeError>
    where
        F: FnOnce() -> Box<dyn StateMachine> + Send + 'static,
    {
        config.validate()?;
        let mut options = options;
        let dir_lock = preflight(&config, &options)?;
        let id = config.id;
        let (external_tx, external_rx) = inbox(config.runtime.input_queue_max);
        let metrics_server = match config.metrics.listen {
            Some(addr) => {
                let metrics = options.metrics.get_or_insert_with(Default::default).clone();
                let handle = NodeHandle {
                    id,
                    external: external_tx.clone(),
                };
                let handler = super::health::handler(metrics, handle, &config);
                let server = crate::metrics::MetricsServer::start(addr, handler)
                    .map_err(|e| NodeError::start(id, StartError::Metrics(e)))?;
                Some(server)
            }
            None => None,
        };
        let (started_tx, started_rx) = std::sync::mpsc::channel::<Result<(), StartError>>();
        let start_error = |source| NodeError::start(id, source);
        let shard_count = config.runtime.shards;
        let (shard_reply_txs, shard_reply_rxs): (Vec<_>, Vec<_>) =
            (1..shard_count).map(|_| async_channel::unbounded()).unzip();
        // Client shards check clients with the same secret as the group's
        // own client server (a file read here, before any thread starts).
        let shard_client_auth = if shard_count > 1 {
            config
                .auth
                .client_server_credential(config.keys_file.as_deref())
                .map_err(|e| start_error(e.into()))?
        } else {
            ordo_net::auth::Credential::none()
        };
        let shard_client_tls = if shard_count > 1 {
            config
                .tls
                .server_config(&config.data_dir)
                .map_err(|e| start_error(e.into()))?
        } else {
            None
        };
        let shard_setup = (
            config.cluster_id,
            config.listen.client_or(config.client_addr),
            config.runtime.pin_cpus,
            config.runtime.io_memory_bytes,
            config.runtime.turn_events_max,
        );
        let placement = if config.runtime.pin_cpus {
            glommio::Placement::Fixed(0)
        } else {
            glommio::Placement::Unbound
        };
        let builder = glommio::LocalExecutorBuilder::new(placement)
            .name(&format!("ordo-{id}-group"))
            .io_memory(config.runtime.io_memory_bytes);
        let join = builder
            .spawn(move || async move {
                let started = Started::channel(started_tx);
                run(
                    config,
                    state_machine,
                    options,
                    external_rx,
                    started,
                    shard_reply_txs,
                )
                .await
            })
            .map_err(|e| {
                start_error(StartError::Spawn {
                    what: "the group executor".into(),
                    source: e.into(),
                })
            })?;
        match started_rx.recv() {
            Ok(Ok(())) => {
                let (cluster_id, client_addr, pin, io_memory, turn_max) = shard_setup;
                let mut shards = Vec::new();
                for (k, replies) in shard_reply_rxs.into_iter().enumerate() {
                    let placement = if pin {
                        glommio::Placement::Fixed(k + 1)
                    } else {
                        glommio::Placement::Unbound
                    };
                    let link = super::shards::ShardLink {
                        replies,
                        external: external_tx.clone(),
                    };
                    let client_auth = shard_client_auth.clone();
                    let client_tls = shard_client_tls.clone();
                    let shard = glommio::LocalExecutorBuilder::new(placement)
                        .name(&format!("ordo-{id}-client{}", k + 1))
                        .io_memory(io_memory)
                        .spawn(move || async move {
                            let mut server = ClientServerConfig::new(cluster_id, id, client_addr);
                            server.auth = client_auth;
                            server.tls = client_tls;
                            super::shards::run_client_shard(k, server, link, turn_max).await
                        })
                        .map_err(|e| {
                            start_error(StartError::Spawn {
                                what: format!("client shard {}", k + 1),
                                source: e.into(),
                            })
                        })?;
                    shards.push(shard);
                }
                Ok(Node {
                    handle: NodeHandle {
                        id,
                        external: external_tx,
                    },
                    join: Some(join),
                    shards,
                    id,
                    _dir_lock: dir_lock,
                    _metrics_server: metrics_server,
                })
            }
            Ok(Err(source)) => {
                // The thread has already reported why it failed; its join result adds nothing.
                let _ = join.join();
                Err(start_error(source))
            }
            Err(_) => {
                // The thread ended without a report: it failed before it
                // could start (a log failure cannot come before the
                // report), or panicked.
                let source = match join.join() {
                    Ok(Ok(())) | Ok(Err(_)) => StartError::StoppedEarly,
                    Err(e) => StartError::Executor(e.into()),
                };
                Err(start_error(source))
            }
        }
    }

    /// A handle for proposing, reading and subscribing.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Stops the node cleanly (a leader first hands leadership over) and
    /// waits for it.
    pub fn shutdown(self) -> Result<(), NodeError> {
        self.handle.request_shutdown();
        self.wait()
    }

    /// Waits until the node stops (after a shutdown request or a failure).
    pub fn wait(mut self) -> Result<(), NodeError> {
        let id = self.id;
        let group = self.join.take().map(|j| j.join());
        for shard in self.shards.drain(..) {
            if let Ok(Err(error)) = shard.join() {
                tracing::warn!(id, %error, "client shard failed");
            }
        }
        match group {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(failed))) => Err(NodeError::Failed {
                id,
                source: failed.into(),
            }),
            Some(Err(e)) => Err(NodeError::Failed {
                id,
                source: RunError::Executor(e.into()),
            }),
        }
    }
}

/// Reports once whether the node started (listening) or why not.
type StartReport = Box<dyn FnOnce(Result<(), StartError>)>;

struct Started(std::cell::RefCell<Option<StartReport>>);

impl Started {
    fn channel(sender: std::sync::mpsc::Sender<Result<(), StartError>>) -> Self {
        Self::callback(move |result| {
            // The starter stopped waiting (it gave up); nothing to tell.
            let _ = sender.send(result);
        })
    }

    fn callback(report: impl FnOnce(Result<(), StartError>) + 'static) -> Self {
        Self(std::cell::RefCell::new(Some(Box::new(report))))
    }

    fn report(&self, result: Result<(), StartError>) {
        if let Some(report) = self.0.borrow_mut().take() {
            report(result);
        }
    }
}

/// A node running on an executor shared with other work (several nodes
/// in one thread: the engine-only benchmark, tests).
pub struct LocalNode {
    handle: NodeHandle,
    task: glommio::task::JoinHandle<Result<(), super::group::LogFailed>>,
    id: u64,
}

impl LocalNode {
    /// Starts a voter on the current glommio executor; returns once it
    /// listens (or why it could not start).
    pub async fn start<F>(
        config: NodeConfig,
        state_machine: F,
        options: StartOptions,
    ) -> Result<LocalNode, NodeError>
    where
        F: FnOnce() -> Box<dyn StateMachine> + 'static,
    {
        config.validate()?;
        let id = config.id;
        let (external_tx, external_rx) = inbox(config.runtime.input_queue_max);
        let (started_tx, started_rx) = async_channel::bounded(1);
        let started = Started::callback(move |result| {
            // Bounded(1) and sent once; fails only if the starter is gone.
            let _ = started_tx.try_send(result);
        });
        let task = glommio::spawn_local(async move {
            run(
                config,
                state_machine,
                options,
                external_rx,
                started,
                Vec::new(),
            )
            .await
        })
        .detach();
        match started_rx.recv().await {
            Ok(Ok(())) => Ok(LocalNode {
                handle: NodeHandle {
                    id,
                    external: external_tx,
                },
                task,
                id,
            }),
            Ok(Err(source)) => Err(NodeError::start(id, source)),
            Err(_) => Err(NodeError::start(id, StartError::StoppedEarly)),
        }
    }

    /// A handle for proposing, reading and subscribing.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Stops the node cleanly and waits for it.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        self.handle.request_shutdown();
        match self.task.await {
            Some(Ok(())) | None => Ok(()),
            Some(Err(failed)) => Err(NodeError::Failed {
                id: self.id,
                source: failed.into(),
            }),
        }
    }
}

/// Why the node's task ended: a start that failed (before `started`
/// reported success) or a log that failed after.
enum Ended {
    Start(StartError),
    Failed(super::group::LogFailed),
}

impl From<StartError> for Ended {
    fn from(error: StartError) -> Self {
        Ended::Start(error)
    }
}

/// Runs the node; a start error goes to the starter through `started`
/// (which returns it from `Node::start`), so the task itself returns only
/// a failure after the start.
async fn run<F>(
    config: NodeConfig,
    state_machine: F,
    options: StartOptions,
    external: inbox::Receiver<External>,
    started: Started,
    shard_replies: Vec<async_channel::Sender<Vec<super::shards::ShardReply>>>,
) -> Result<(), super::group::LogFailed>
where
    F: FnOnce() -> Box<dyn StateMachine>,
{
    let started = Rc::new(started);
    let result = run_node(
        config,
        state_machine,
        options,
        external,
        started.clone(),
        shard_replies,
    )
    .await;
    match result {
        Ok(()) => Ok(()),
        Err(Ended::Start(error)) => {
            started.report(Err(error));
            Ok(())
        }
        Err(Ended::Failed(failed)) => Err(failed),
    }
}

async fn run_node<F>(
    config: NodeConfig,
    state_machine: F,
    options: StartOptions,
    external: inbox::Receiver<External>,
    started: Rc<Started>,
    shard_replies: Vec<async_channel::Sender<Vec<super::shards::ShardReply>>>,
) -> Result<(), Ended>
where
    F: FnOnce() -> Box<dyn StateMachine>,
{
    let config = Rc::new(config);
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    // glommio decides per thread, from the first file it opens, whether
    // reads may poll; make that first file a non-empty one (docs/storage.md).
    ordo_storage::disk::prime_iopoll_probe(&config.data_dir)
        .await
        .map_err(|source| StartError::DiskProbe {
            path: config.data_dir.clone(),
            source,
        })?;
    let log_config = match config.storage.kind.as_str() {
        "memory" => None,
        _ => Some(disk_log_config(&config)?),
    };
    let vfs: Rc<dyn Vfs> = Rc::new(GlommioVfs);
    let Storage {
        snapshot_store,
        latest,
        log: disk_log,
    } = open_storage(
        &vfs,
        &config.data_dir,
        log_config,
        &DataDirRecorder(&config.data_dir),
    )
    .await
    .map_err(StartError::from)?;
    // Before anything takes part: did the disk lose what this node may
    // have acknowledged? (Recorded durably until repaired.)
    let loss = match &disk_log {
        Some(log) => {
            super::durability::detect_loss(&config.data_dir, log.recovery(), log.state().last.index)
                .map_err(StartError::from)?
        }
        None => None,
    };
    let mut machine = state_machine();
    let (snapshot_meta, snapshot_links) = match latest {
        Some((meta, data)) => {
            let links = restore_snapshot(&mut *machine, &meta, data)?;
            (Some(meta), links)
        }
        None => (None, Vec::new()),
    };
    let parts = Parts {
        config,
        machine,
        snapshot_meta,
        snapshot_links,
        snapshot_store,
        options,
        external,
        started,
        shard_replies,
        loss,
    };
    // A disk log was opened unless `storage.kind` is "memory".
    match disk_log {
        Some(log) => drive(log, parts).await,
        None => drive(MemLog::new(), parts).await,
    }
}

struct Parts {
    config: Rc<NodeConfig>,
    machine: Box<dyn StateMachine>,
    snapshot_meta: Option<ordo_net::SnapshotMeta>,
    /// The configuration links the snapshot carried.
    snapshot_links: Vec<crate::token::ConfigLink>,
    snapshot_store: SnapshotStore,
    options: StartOptions,
    external: inbox::Receiver<External>,
    started: Rc<Started>,
    shard_replies: Vec<async_channel::Sender<Vec<super::shards::ShardReply>>>,
    loss: Option<crate::core::Loss>,
}

/// Restores the state machine from the latest snapshot's data; returns
/// the configuration links the snapshot carried.
pub(crate) fn restore_snapshot(
    machine: &mut dyn StateMachine,
    meta: &ordo_net::SnapshotMeta,
    data: bytes::Bytes,
) -> Result<Vec<crate::token::ConfigLink>, StartError> {
    let last = meta.last;
    let (links, data) = super::chain_store::unwrap_snapshot(data)
        .map_err(|source| StartError::SnapshotLinks { last, source })?;
    machine
        .restore(&data)
        .map_err(|source| StartError::Restore { last, source })?;
    Ok(links)
}

async fn drive<S: LogStore + 'static>(store: S, parts: Parts) -> Result<(), Ended> {
    let Parts {
        config,
        machine,
        snapshot_meta,
        snapshot_links,
        snapshot_store,
        options,
        external,
        started,
        shard_replies,
        loss,
    } = parts;
    let store = Rc::new(store);
    let mut state = restore::raft_state(&*store, snapshot_meta)
        .await
        .map_err(StartError::ReadLog)?;
    let durable_storage = config.storage.kind != "memory";
    state.loss = loss;
    let resume = Resume::of(&state);
    let applied = resume.applied;
    let mut core_config = config.raft.clone();
    if config.storage.retain_log {
        core_config.snapshot_entries_threshold = u64::MAX;
        // Retention takes snapshots when the log's disk nears its bound
        // (`Group::retain`), and keeps one interval of entries behind.
        core_config.compact_to_previous_snapshot = config.storage.retain_bytes > 0;
    }
    let raft = Raft::new(
        config.id,
        &config.voters(),
        core_config,
        state,
        super::env::random_u64(),
        Clock::new().now(),
    )
    .map_err(StartError::Raft)?;
    let local = InputSender::default();
    let log = LogIo::start(store, local.clone());
    let peers = match options.inproc {
        Some(inproc) => Peers::Inproc(inproc),
        None => {
            let listen = config.listen.peer_or(config.peer_addr);
            let mut transport_config = TransportConfig::new(config.cluster_id, config.id, listen);
            let keys = config
                .auth
                .peer_keys(&config.data_dir, config.keys_file.as_deref())
                .map_err(StartError::from)?;
            if let Some(keys) = &keys {
                transport_config.auth = ordo_net::auth::Credential::new(keys.clone());
            }
            let (transport, inbox) = PeerTransport::start(transport_config).map_err(|source| {
                StartError::PeerListen {
                    addr: listen,
                    source,
                }
            })?;
            for peer in &config.peers {
                transport
                    .add_peer(peer.id, peer.peer_addr)
                    .map_err(|source| StartError::Peer {
                        id: peer.id,
                        source,
                    })?;
            }
            Peers::Tcp {
                transport,
                inbox,
                keys,
            }
        }
    };
    let peers = Rc::new(peers);
    let (server, clients) = if options.no_client_server {
        (None, None)
    } else {
        let listen = config.listen.client_or(config.client_addr);
        let mut server_config = ClientServerConfig::new(config.cluster_id, config.id, listen);
        server_config.auth = config
            .auth
            .client_server_credential(config.keys_file.as_deref())
            .map_err(StartError::from)?;
        server_config.tls = config
            .tls
            .server_config(&config.data_dir)
            .map_err(StartError::from)?;
        let (server, inbox) =
            ClientServer::start(server_config).map_err(|source| StartError::ClientListen {
                addr: listen,
                source,
            })?;
        (Some(server), Some(inbox))
    };
    let certificates = Rc::new(Certificates::open(&config).map_err(StartError::from)?);
    let feed = resume.start(&certificates, snapshot_links);
    let snapshots = Rc::new(SnapshotIo::new(
        snapshot_store,
        peers.clone(),
        local.clone(),
    ));
    let status = Rc::new(std::cell::Cell::new(initial_status(
        config.id, applied, false,
    )));
    let (status_for_watermark, feed_for_watermark) = (status.clone(), feed.clone());
    tracing::info!(
        id = config.id,
        client_addr = %config.client_addr,
        peer_addr = %config.peer_addr,
        "node started"
    );
    let gossip = super::gossip_bridge::GossipBridge::start(
        &config,
        log.store().clone(),
        feed.clone(),
        certificates.clone(),
        options.metrics.as_ref().map(|m| m.gossip.clone()),
    )
    .map_err(StartError::from)?;
    started.report(Ok(()));
    let group = Group::new(
        raft,
        config.clone(),
        log,
        local,
        peers.clone(),
        clients,
        external,
        machine,
        feed,
        certificates,
        snapshots,
        status,
        shard_replies,
    )
    .with_gossip(gossip)
    .with_metrics(options.metrics.clone());
    let watermark = durable_storage.then(|| {
        glommio::spawn_local(save_acked_watermark(
            config.data_dir.clone(),
            status_for_watermark.clone(),
            feed_for_watermark.clone(),
        ))
    });
    let free_space = durable_storage.then(|| {
        glommio::spawn_local(watch_free_space(
            config.data_dir.clone(),
            super::durability::free_bytes_low(config.storage.segment_bytes),
            options.metrics.clone(),
            feed_for_watermark.clone(),
        ))
    });
    let result = group.run().await;
    if let Some(task) = free_space {
        task.await;
    }
    if let Some(task) = watermark {
        // It saw the feed close; its last save covers the final durable
        // index.
        task.await;
    }
    if let Some(server) = server {
        server.shutdown().await;
    }
    if let Ok(peers) = Rc::try_unwrap(peers) {
        peers.shutdown().await;
    }
    tracing::info!(id = config.id, "node stopped");
    result.map_err(Ended::Failed)
}

/// Where a started node's applies resume, from the state read back from
/// its snapshot and log: the applied index and message id, and the
/// configuration the applies start from (the snapshot's; the key
/// schedule takes the later ones as they apply again).
pub(crate) struct Resume {
    /// The last index applied (the snapshot's).
    pub applied: ordo_storage::Index,
    applied_id: ordo_storage::MessageId,
    schedule_index: ordo_storage::Index,
    schedule_membership: crate::core::Membership,
}

impl Resume {
    /// Where the applies of `state` resume.
    pub(crate) fn of(state: &crate::core::RaftState) -> Self {
        Self {
            applied: state.log.applied,
            applied_id: state.snapshot.last_id,
            schedule_index: state.snapshot.last.index,
            schedule_membership: super::group::snapshot_membership(&state.snapshot),
        }
    }

    /// Hands `certificates` the links the snapshot carried and the key
    /// schedule's start; returns the feed, at the applied position.
    pub(crate) fn start(
        self,
        certificates: &Certificates,
        snapshot_links: Vec<crate::token::ConfigLink>,
    ) -> Rc<FeedState> {
        certificates.adopt_links(snapshot_links);
        certificates.start_schedule(self.schedule_index, &self.schedule_membership);
        let feed = Rc::new(FeedState::default());
        feed.applied_index.set(self.applied);
        feed.applied_id.set(self.applied_id);
        feed
    }
}

/// Saves the acknowledgement watermark (`durability.rs`) while the durable
/// index moves, every `ACKED_SAVE_INTERVAL`, on the blocking pool (off
/// the shard's commit path); a last time when the node stops.
async fn save_acked_watermark(
    data_dir: PathBuf,
    status: Rc<std::cell::Cell<Status>>,
    feed: Rc<FeedState>,
) {
    let mut saved = super::durability::load_acked(&data_dir)
        .unwrap_or(0)
        .min(status.get().durable_index);
    let mut file = match super::durability::AckedFile::open(&data_dir) {
        Ok(file) => Some(file),
        Err(error) => {
            // Then torn tails read as unacknowledged: say so loudly.
            tracing::error!(%error, "cannot keep the acknowledgement watermark");
            None
        }
    };
    loop {
        let closed = feed.closed.get();
        let durable = status.get().durable_index;
        if durable != saved
            && let Some(mut open) = file.take()
        {
            let (result, back) = glommio::executor()
                .spawn_blocking(move || {
                    let result = open.save(durable);
                    (result, open)
                })
                .await;
            file = Some(back);
            match result {
                Ok(()) => saved = durable,
                Err(error) => tracing::warn!(%error, "cannot save the acknowledgement watermark"),
            }
        }
        if closed {
            return;
        }
        feed.pause_unless_closing(super::durability::ACKED_SAVE_INTERVAL)
            .await;
    }
}

/// How often the data directory's free space is sampled.
const FREE_SPACE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Samples the data directory's free space every [`FREE_SPACE_INTERVAL`]
/// (statvfs, on the blocking pool) into `ordo_data_dir_free_bytes`, and
/// warns once when it falls below `low` and once when it is back above:
/// a full disk stops the node, so the operator hears of it first. Ends
/// when the node's feed closes.
async fn watch_free_space(
    data_dir: PathBuf,
    low: u64,
    metrics: Option<crate::metrics::NodeMetrics>,
    feed: Rc<FeedState>,
) {
    use super::durability::FreeSpace;
    let mut state = FreeSpace::Fine;
    while !feed.closed.get() {
        let dir = data_dir.clone();
        let free = glommio::executor()
            .spawn_blocking(move || super::durability::free_bytes(&dir))
            .await;
        match free {
            Ok(free) => {
                if let Some(metrics) = &metrics {
                    metrics
                        .data_dir_free_bytes
                        .set(i64::try_from(free).unwrap_or(i64::MAX));
                }
                state = state.next(free, low);
                match state {
                    FreeSpace::FellLow => tracing::warn!(
                        dir = %data_dir.display(),
                        free_bytes = free,
                        low_bytes = low,
                        "the data directory's filesystem is nearly full: the node stops when its log cannot write \
                         (free space, or bound the log with storage.retain_bytes)"
                    ),
                    FreeSpace::Recovered => tracing::info!(
                        dir = %data_dir.display(),
                        free_bytes = free,
                        "the data directory's filesystem has room again"
                    ),
                    FreeSpace::Fine | FreeSpace::StillLow => {}
                }
            }
            Err(error) => {
                tracing::debug!(%error, dir = %data_dir.display(), "cannot read the data directory's free space")
            }
        }
        feed.pause_unless_closing(FREE_SPACE_INTERVAL).await;
    }
}

/// The status a node publishes before its first turn.
pub(crate) fn initial_status(id: u64, applied: u64, repairing: bool) -> Status {
    Status {
        id,
        role: crate::core::Role::Follower,
        term: 0,
        leader: 0,
        commit_index: 0,
        last_index: 0,
        durable_index: 0,
        applied_index: applied,
        repairing,
    }
}

/// What a node starts from, read from its data directory.
pub(crate) struct Storage {
    /// The snapshot store.
    pub snapshot_store: SnapshotStore,
    /// Its latest snapshot, read back and checked.
    pub latest: Option<(ordo_net::SnapshotMeta, bytes::Bytes)>,
    /// The durable log (`None`: the in-memory log).
    pub log: Option<DiskLog>,
}

/// Where a start records, durably and before it changes storage, a loss
/// it is about to make permanent (`data/repair`): the next start repairs
/// even if this one crashes before its own loss assessment.
pub(crate) trait LossRecorder {
    /// Damaged storage is about to be moved aside, for `reason`.
    fn setting_aside(&self, reason: &str) -> Result<(), DurabilityError>;
    /// A log is about to be created where there is none (no hard state
    /// file): a lost disk if this node ran here before.
    fn creating_log(&self) -> Result<(), DurabilityError>;
    /// Recovery is about to cut the log (`cut`): a loss if it cuts durable
    /// bytes or entries under the acknowledgement watermark.
    fn cutting(&self, cut: &ordo_storage::LogCut) -> Result<(), DurabilityError>;
}

/// A real node's records, in its data directory.
struct DataDirRecorder<'a>(&'a Path);

impl LossRecorder for DataDirRecorder<'_> {
    fn setting_aside(&self, reason: &str) -> Result<(), DurabilityError> {
        super::durability::record_set_aside(self.0, reason)
    }

    fn creating_log(&self) -> Result<(), DurabilityError> {
        super::durability::record_if_wiped(self.0)
    }

    fn cutting(&self, cut: &ordo_storage::LogCut) -> Result<(), DurabilityError> {
        super::durability::record_cut(self.0, cut)
    }
}

/// Opens the snapshots in `data_dir/snapshots` and, given `log_config`,
/// the durable log in `data_dir/log`, on `vfs` (the simulator passes its
/// disk).
///
/// Damage that recovery cannot cut around is set aside, kept for
/// inspection, and the node starts empty: [`detect_loss`] then sees a lost
/// disk, and the node repairs from the cluster before it votes or counts
/// toward a commit, as after a wiped disk. No operator step. That is:
/// - a damaged latest snapshot (a header, a data CRC, contents that do not
///   decode): the state machine cannot start from it, and the log may be
///   compacted past what it covered, so the snapshots and the log go to
///   `snapshots.damaged[.N]` and `log.damaged[.N]`;
/// - a log recovery refuses (the first segment's header is unreadable, a
///   segment is missing from the middle): the log goes to
///   `log.damaged[.N]`.
///
/// Before anything is set aside, `record_loss` is called with why and
/// must record the loss durably (`data/repair`): a crash between moving
/// the log aside and the start's own loss assessment would otherwise leave
/// a fresh, valid-looking log and no trace of what it replaced (runtime
/// simulator, seed 3526 with misdirected writes: the node then led
/// without the entries it had acknowledged).
///
/// [`detect_loss`]: super::durability::detect_loss
pub(crate) async fn open_storage(
    vfs: &Rc<dyn Vfs>,
    data_dir: &Path,
    log_config: Option<DiskLogConfig>,
    recorder: &dyn LossRecorder,
) -> Result<Storage, OpenStorageError> {
    let snapshot_dir = data_dir.join("snapshots");
    let (snapshot_store, latest) = match open_snapshots(vfs, &snapshot_dir).await {
        Ok(opened) => opened,
        Err(damage) if log_config.is_some() => {
            recorder.setting_aside(&format!(
                "the latest snapshot is damaged ({damage}); it and the log were set aside"
            ))?;
            let snapshots_aside = set_aside(vfs, data_dir, "snapshots").await?;
            let log_aside = set_aside(vfs, data_dir, "log").await?;
            tracing::error!(
                %damage,
                snapshots = %snapshots_aside.display(),
                log = %log_aside.display(),
                "the latest snapshot is damaged: setting it and the log aside; \
                 this node repairs from the cluster before it takes part"
            );
            open_snapshots(vfs, &snapshot_dir).await.map_err(|source| {
                OpenStorageError::Snapshots {
                    dir: snapshot_dir.clone(),
                    source,
                }
            })?
        }
        Err(damage) => {
            return Err(OpenStorageError::Snapshots {
                dir: snapshot_dir,
                source: damage,
            });
        }
    };
    let log = match log_config {
        Some(log_config) => Some(open_disk_log(vfs, data_dir, log_config, recorder).await?),
        None => None,
    };
    Ok(Storage {
        snapshot_store,
        latest,
        log,
    })
}

/// Opens the snapshot store in `dir` and reads its latest snapshot. Any
/// failure to read that snapshot back (a damaged header, a data CRC that
/// does not match, contents that do not decode) is returned as damage.
async fn open_snapshots(
    vfs: &Rc<dyn Vfs>,
    dir: &Path,
) -> Result<
    (
        SnapshotStore,
        Option<(ordo_net::SnapshotMeta, bytes::Bytes)>,
    ),
    LoadSnapshotError,
> {
    let store = SnapshotStore::open_on(vfs.clone(), dir).await?;
    let latest = SnapshotIo::load_latest(&store).await?;
    match &latest {
        Some((meta, _)) => {
            tracing::info!(dir = %dir.display(), last = ?meta.last, "opened the latest snapshot")
        }
        None => tracing::info!(dir = %dir.display(), "no snapshot yet"),
    }
    Ok((store, latest))
}

/// Moves `data_dir/name` aside to `data_dir/name.damaged[.N]` (kept for
/// inspection) durably; returns where. Nothing to move is fine.
async fn set_aside(
    vfs: &Rc<dyn Vfs>,
    data_dir: &Path,
    name: &str,
) -> Result<PathBuf, OpenStorageError> {
    let from = data_dir.join(name);
    let aside = (0..)
        .map(|n| match n {
            0 => data_dir.join(format!("{name}.damaged")),
            n => data_dir.join(format!("{name}.damaged.{n}")),
        })
        .find(|path| !vfs.exists(path))
        .expect("an unused name");
    if !vfs.exists(&from) {
        return Ok(aside);
    }
    let moved = match vfs.rename(&from, &aside) {
        Ok(()) => vfs.sync_dir(data_dir).await,
        Err(error) => Err(error),
    };
    match moved {
        Ok(()) => Ok(aside),
        Err(source) => Err(OpenStorageError::SetAside {
            from,
            to: aside,
            source,
        }),
    }
}

/// The durable log's knobs from the node's `[storage]` section.
fn disk_log_config(config: &NodeConfig) -> Result<DiskLogConfig, StartError> {
    let fsync_mode: FsyncMode = config.storage.fsync.parse().map_err(StartError::Fsync)?;
    Ok(DiskLogConfig {
        segment_bytes_max: config.storage.segment_bytes,
        fsync_mode,
        write_through: config.storage.write_through,
        ..DiskLogConfig::default()
    })
}

/// The durable log in `data_dir/log`; one recovery refuses is set aside
/// ([`open_storage`]).
async fn open_disk_log(
    vfs: &Rc<dyn Vfs>,
    data_dir: &Path,
    log_config: DiskLogConfig,
    recorder: &dyn LossRecorder,
) -> Result<DiskLog, OpenStorageError> {
    let dir = data_dir.join("log");
    if !vfs.exists(&dir.join(ordo_storage::disk::HARD_STATE_FILE_NAME)) {
        recorder.creating_log()?;
    }
    // The log's hook takes a `StorageError`; the record's own error
    // reaches the log's error as text.
    let before_cut = |cut: &ordo_storage::LogCut| {
        recorder
            .cutting(cut)
            .map_err(|error| ordo_storage::StorageError::Closed(error.to_string()))
    };
    match DiskLog::open_with(vfs.clone(), &dir, log_config.clone(), &before_cut).await {
        Ok(log) => return Ok(log),
        Err(ordo_storage::StorageError::Corrupt {
            file,
            offset,
            reason,
        }) => {
            recorder.setting_aside(&format!(
                "the log was damaged beyond what recovery can cut ({}: offset {offset}: {reason}); it was set aside",
                file.display()
            ))?;
            let aside = set_aside(vfs, data_dir, "log").await?;
            tracing::error!(
                file = %file.display(),
                offset,
                %reason,
                aside = %aside.display(),
                "the log is damaged beyond what recovery can cut: moved it aside; \
                 this node repairs from the cluster before it takes part"
            );
        }
        Err(source) => return Err(OpenStorageError::Log { dir, source }),
    }
    recorder.creating_log()?;
    match DiskLog::open_with(vfs.clone(), &dir, log_config, &before_cut).await {
        Ok(log) => Ok(log),
        Err(source) => Err(OpenStorageError::Log { dir, source }),
    }
}
