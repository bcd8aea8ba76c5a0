//! A gossip node's runtime: one glommio executor running the gossip core
//! over the gossip transport, storing what it delivers, and serving
//! clients (`ordo log`, `ordo status`) on the same address.
//!
//! One turn: wait for a gossip frame, a client request, a finished store
//! sync, a stop request or the core's next deadline; take what is ready
//! (bounded); end the core's turn; execute its commands: sends go to the
//! transport, deliveries to the store (and wake the log streams), and a
//! watermark to persist starts the store's write and `fdatasync` off the
//! executor (one at a time; later ones gather behind it: group commit).

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use ordo_net::transport::{
    ClientCall, ClientConn, ClientInbox, ClientServerConfig, GossipTransport, GossipTransportConfig,
};
use ordo_net::{
    ClientError, ClientRequest, ClientResponse, CommittedMessage, ErrorResponse, LeaderHint,
    LogResponse, NodeRole, NodeStatus, StatusResponse,
};
use ordo_storage::MessageId;

use super::store::{DeliveredStore, StoreError, StoreLimits, SyncDone, next_generation};
use crate::gossip::TokenVerifier;
use crate::gossip::{
    Command, Event, GossipConfig, GossipMessage, GossipNode, GossipStart, GossipStats, PeerKind,
};
use crate::node::GossipStartError;
use crate::node::gossip_driver::{Driver, TURN_EVENTS_MAX, wall_clock_us};
use crate::node::notify::Notify;
use crate::node::wake::{self, Woken};
use crate::token::Verifier;

/// Messages per `log_response` frame of a log stream.
const LOG_CHUNK_MESSAGES_MAX: usize = 256;
/// ... and about this many bytes.
const LOG_CHUNK_BYTES_MAX: usize = 1 << 20;
/// How often a running node logs its counters.
const STATS_INTERVAL: Duration = Duration::from_secs(10);

/// Everything a gossip node needs to run.
#[derive(Clone, Debug)]
pub struct GossipNodeConfig {
    /// Where it listens for gossip peers and clients; also the address
    /// peers know it by (a concrete IP).
    pub listen_addr: SocketAddr,
    /// The address peers know it by, when `listen_addr` is not it (a
    /// wildcard bind, NAT).
    pub advertise: Option<SocketAddr>,
    /// Where to serve `/metrics`, `/health` and `/status` over HTTP.
    pub metrics: Option<SocketAddr>,
    /// Members to join through (voters' gossip addresses serve).
    pub seeds: Vec<SocketAddr>,
    /// The cluster's public keys (`cluster.keys`).
    pub keys_file: PathBuf,
    /// Where delivered messages are kept across restarts; `None`: in
    /// memory only (a bounded window of recent messages).
    pub data_dir: Option<PathBuf>,
    /// The gossip core's knobs.
    pub gossip: GossipConfig,
    /// The delivered store's in-memory window.
    pub store: StoreLimits,
    /// io_uring buffer memory of the executor (glommio locks it).
    pub io_memory_bytes: usize,
    /// Append `id wall_us` per delivered message to this file
    /// (measurements; `ORDO_GOSSIP_TIMINGS` in the `ordo` binary).
    pub timings_file: Option<PathBuf>,
    /// Which connections are authenticated: `gossip` with the cluster's
    /// gossip secret, `clients` with the client secret (`peers` does not
    /// apply: a gossip node has no node key). By default both, with the
    /// secrets beside `keys_file`.
    pub auth: crate::auth::AuthConfig,
}

impl GossipNodeConfig {
    /// A configuration with the default knobs.
    pub fn new(listen_addr: SocketAddr, seeds: Vec<SocketAddr>, keys_file: PathBuf) -> Self {
        Self {
            listen_addr,
            advertise: None,
            metrics: None,
            seeds,
            keys_file,
            data_dir: None,
            gossip: GossipConfig::default(),
            store: StoreLimits::default(),
            io_memory_bytes: 512 << 10,
            timings_file: None,
            auth: crate::auth::AuthConfig::default(),
        }
    }
}

/// What a gossip node's metrics endpoint reads: its metrics, and its
/// status with the members it knows, refreshed by the loop.
#[derive(Clone, Default)]
struct Probe {
    metrics: crate::metrics::GossipMetrics,
    status: std::sync::Arc<std::sync::Mutex<Option<(NodeStatus, usize)>>>,
}

impl Probe {
    fn handler(&self) -> crate::metrics::Handler {
        let registry = self.metrics.registry();
        let status = self.status.clone();
        std::sync::Arc::new(move |path: &str| {
            use crate::metrics::{Answer, OPENMETRICS};
            let snapshot = status.lock().map(|s| s.clone()).unwrap_or(None);
            match (path, snapshot) {
                ("/metrics", _) => Answer {
                    status: 200,
                    content_type: OPENMETRICS,
                    body: crate::metrics::render(&registry),
                },
                ("/status" | "/health", None) => Answer::json(
                    503,
                    serde_json::json!({"healthy": false, "reason": "starting"}).to_string(),
                ),
                ("/status", Some((status, _))) => {
                    Answer::json(200, crate::status::status_line(&status))
                }
                ("/health", Some((status, members))) => {
                    let healthy = members > 0;
                    let reason = if healthy {
                        format!(
                            "{members} gossip members known; delivered up to {}",
                            status.last_index
                        )
                    } else {
                        "no gossip member or voter reachable: nothing is delivered".to_string()
                    };
                    let value = crate::status::status_json(&status);
                    Answer::json(
                        if healthy { 200 } else { 503 },
                        serde_json::json!({"healthy": healthy, "reason": reason, "status": value})
                            .to_string(),
                    )
                }
                (other, _) => crate::metrics::not_found(other),
            }
        })
    }
}

/// Why a gossip node could not start, or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum GossipNodeError {
    /// The machine or another process stands in the way (io_uring, locked
    /// memory, the data directory or a port is taken).
    #[error(transparent)]
    Preflight(#[from] crate::preflight::PreflightError),
    /// The metrics endpoint could not start (the error names the address).
    #[error(transparent)]
    Metrics(std::io::Error),
    /// The executor thread could not be started.
    #[error("cannot start the gossip executor: {0}")]
    Spawn(#[source] std::io::Error),
    /// The executor ended abnormally (a panic).
    #[error("the gossip executor failed: {0}")]
    Executor(#[source] std::io::Error),
    /// The executor ended before it reported, without an error.
    #[error("the gossip node stopped before it started")]
    StoppedEarly,
    /// The keys, a secret, a knob, the listener or the timings file.
    #[error(transparent)]
    Start(#[from] GossipStartError),
    /// The delivered store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The transport came up without the client server it was asked for.
    #[error("the gossip transport started without its client server")]
    NoClientServer,
    /// Delivered messages could not be made durable; the node stops
    /// rather than acknowledge a watermark it does not hold.
    #[error("cannot persist delivered messages: {0}")]
    Persist(#[source] StoreError),
}

/// A running gossip node (its executor thread).
pub struct GossipNodeProcess {
    stop: async_channel::Sender<()>,
    join: Option<glommio::ExecutorJoinHandle<Result<(), GossipNodeError>>>,
    listen_addr: SocketAddr,
    /// This process's hold on the data directory.
    _dir_lock: Option<crate::preflight::DirLock>,
    /// The metrics endpoint.
    _metrics_server: Option<crate::metrics::MetricsServer>,
}

impl GossipNodeProcess {
    /// Starts a gossip node; returns once it listens.
    pub fn start(config: GossipNodeConfig) -> Result<Self, GossipNodeError> {
        config.gossip.validate().map_err(GossipStartError::Knob)?;
        crate::preflight::check_machine(1, config.io_memory_bytes)?;
        let dir_lock = match &config.data_dir {
            Some(dir) => Some(crate::preflight::DirLock::acquire(dir)?),
            None => None,
        };
        crate::preflight::check_port("gossip", config.listen_addr)?;
        if let Some(metrics) = config.metrics {
            crate::preflight::check_port("metrics", metrics)?;
        }
        let listen_addr = config.advertise.unwrap_or(config.listen_addr);
        let probe = Probe::default();
        let metrics_server = match config.metrics {
            Some(addr) => Some(
                crate::metrics::MetricsServer::start(addr, probe.handler())
                    .map_err(GossipNodeError::Metrics)?,
            ),
            None => None,
        };
        let (stop_tx, stop_rx) = async_channel::bounded(1);
        let (started_tx, started_rx) = std::sync::mpsc::channel::<Result<(), GossipNodeError>>();
        let join = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name("ordo-gossip")
            .io_memory(config.io_memory_bytes)
            .spawn(move || async move {
                let started = started_tx.clone();
                match run(config, stop_rx, started_tx, probe).await {
                    Ok(()) => Ok(()),
                    // Before the start was reported: the starter returns
                    // the error (if it stopped waiting, nobody asks).
                    Err(Ended::Start(error)) => {
                        let _ = started.send(Err(error));
                        Ok(())
                    }
                    Err(Ended::Failed(error)) => Err(error),
                }
            })
            .map_err(|e| GossipNodeError::Spawn(e.into()))?;
        match started_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                stop: stop_tx,
                join: Some(join),
                listen_addr,
                _dir_lock: dir_lock,
                _metrics_server: metrics_server,
            }),
            Ok(Err(error)) => {
                // The thread has already reported why it failed; its join result adds nothing.
                let _ = join.join();
                Err(error)
            }
            Err(_) => match join.join() {
                Ok(Err(error)) => Err(error),
                Ok(Ok(())) => Err(GossipNodeError::StoppedEarly),
                Err(e) => Err(GossipNodeError::Executor(e.into())),
            },
        }
    }

    /// The address it listens on.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// A sender whose message (or drop) asks the node to stop.
    pub fn stopper(&self) -> async_channel::Sender<()> {
        self.stop.clone()
    }

    /// Waits until the node stops.
    pub fn wait(mut self) -> Result<(), GossipNodeError> {
        match self.join.take().map(|j| j.join()) {
            Some(Ok(result)) => result,
            Some(Err(e)) => Err(GossipNodeError::Executor(e.into())),
            None => Ok(()),
        }
    }
}

/// What log streams and status share with the loop.
struct Shared {
    store: RefCell<DeliveredStore>,
    /// Moves on every delivery and at shutdown.
    delivered: Notify,
    closed: Cell<bool>,
    /// The highest id known to exist, for `ordo status`.
    known_max: Cell<MessageId>,
}

/// The cluster's 64-bit transport id, from the keys file's cluster id
/// (the same derivation `ordo init` used for the voters' configs).
fn transport_id(verifier: &Verifier) -> u64 {
    verifier.keys().cluster_id().transport_id()
}

/// Why the gossip node's task ended: a start that failed (before it
/// reported success) or a failure after.
enum Ended {
    Start(GossipNodeError),
    Failed(GossipNodeError),
}

impl From<GossipNodeError> for Ended {
    fn from(error: GossipNodeError) -> Self {
        Ended::Start(error)
    }
}

impl From<GossipStartError> for Ended {
    fn from(error: GossipStartError) -> Self {
        Ended::Start(error.into())
    }
}

impl From<StoreError> for Ended {
    fn from(error: StoreError) -> Self {
        Ended::Start(error.into())
    }
}

async fn run(
    config: GossipNodeConfig,
    stop: async_channel::Receiver<()>,
    started: std::sync::mpsc::Sender<Result<(), GossipNodeError>>,
    probe: Probe,
) -> Result<(), Ended> {
    let verifier = Verifier::load(&config.keys_file).map_err(GossipStartError::Keys)?;
    // Every message the core accepts must fit a record the store takes
    // back on recovery.
    let mut store_limits = config.store;
    store_limits.record_bytes_max = store_limits
        .record_bytes_max
        .max(config.gossip.message_bytes_max + 64);
    let cluster_id = transport_id(&verifier);
    let (store, generation) = match &config.data_dir {
        Some(dir) => {
            let store = DeliveredStore::open(dir, store_limits)?;
            let generation = next_generation(dir)?;
            (store, generation)
        }
        None => {
            let seconds = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1);
            (
                DeliveredStore::in_memory(store_limits),
                (seconds as u32).max(1),
            )
        }
    };
    let delivered = store.last_id();
    let mut transport_config = GossipTransportConfig::new(cluster_id, 0, config.listen_addr);
    transport_config.advertise_addr = config.advertise;
    transport_config.limits.frame_bytes_max = transport_config
        .limits
        .frame_bytes_max
        .max(config.gossip.pull_reply_bytes_max + (1 << 20));
    transport_config.limits.bulk_queue_bytes_max = transport_config
        .limits
        .bulk_queue_bytes_max
        .max(transport_config.limits.frame_bytes_max);
    transport_config.inbox_bytes_max = transport_config
        .inbox_bytes_max
        .max(transport_config.limits.frame_bytes_max);
    transport_config.auth = config
        .auth
        .gossip_credential(Some(&config.keys_file))
        .map_err(GossipStartError::Auth)?;
    let mut client_config = ClientServerConfig::new(cluster_id, 0, config.listen_addr);
    client_config.auth = config
        .auth
        .client_server_credential(Some(&config.keys_file))
        .map_err(GossipStartError::Auth)?;
    let started_transport =
        GossipTransport::start(transport_config, Some(client_config)).map_err(|source| {
            GossipStartError::Listen {
                addr: config.listen_addr,
                source,
            }
        })?;
    let (server, clients) = started_transport
        .clients
        .ok_or(GossipNodeError::NoClientServer)?;
    let listen_addr = started_transport.transport.local_addr();
    let start = GossipStart {
        addr: listen_addr,
        kind: PeerKind::Gossip,
        generation,
        delivered,
        seeds: config
            .seeds
            .iter()
            .copied()
            .filter(|s| *s != listen_addr)
            .collect(),
        rng_seed: crate::node::env::random_u64(),
    };
    let core = GossipNode::new(start, config.gossip.clone(), TokenVerifier::new(verifier))
        .map_err(GossipStartError::Knob)?;
    let driver = Driver::new(core, started_transport.transport, started_transport.inbox);
    let shared = Rc::new(Shared {
        store: RefCell::new(store),
        delivered: Notify::default(),
        closed: Cell::new(false),
        known_max: Cell::new(delivered),
    });
    let timings = match &config.timings_file {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| GossipStartError::Timings {
                    path: path.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    tracing::info!(%listen_addr, delivered, generation, seeds = ?config.seeds, data_dir = ?config.data_dir, "gossip node started");
    // The starter stopped waiting (it gave up); the node runs on.
    let _ = started.send(Ok(()));
    let mut runtime = Runtime {
        driver,
        shared: shared.clone(),
        clients,
        stop,
        syncs: async_channel::bounded(1),
        timings: timings.map(std::io::BufWriter::new),
        stopping: false,
        probe,
        probe_next: std::time::Instant::now(),
    };
    let result = runtime.run().await;
    shared.closed.set(true);
    shared.delivered.notify();
    let stats = runtime.driver.core().stats().clone();
    log_stats(&stats, &shared.store.borrow());
    if let Some(mut timings) = runtime.timings.take() {
        // Timing lines are a measurement aid; a failed flush loses lines, never messages.
        let _ = timings.flush();
    }
    server.shutdown().await;
    runtime.driver.shutdown().await;
    tracing::info!(%listen_addr, "gossip node stopped");
    result.map_err(Ended::Failed)
}

fn log_stats(stats: &GossipStats, store: &DeliveredStore) {
    tracing::info!(
        delivered = stats.delivered,
        payload_received = stats.payload_received,
        duplicates = stats.duplicates,
        rejected = stats.rejected,
        grafts = stats.grafts_sent,
        pulls = stats.pulls_sent,
        voter_pulls = stats.voter_pulls_sent,
        hops_max = stats.hops_max,
        last_id = store.last_id(),
        durable_id = store.durable_id(),
        "gossip stats"
    );
}

/// An input the gossip node's loop takes from one of its sources.
enum Input {
    Gossip(ordo_net::transport::GossipEvent),
    Client(ClientCall),
    Synced(SyncDone),
    Stop,
}

struct Runtime {
    driver: Driver<TokenVerifier>,
    shared: Rc<Shared>,
    clients: ClientInbox,
    stop: async_channel::Receiver<()>,
    syncs: (
        async_channel::Sender<SyncDone>,
        async_channel::Receiver<SyncDone>,
    ),
    timings: Option<std::io::BufWriter<std::fs::File>>,
    stopping: bool,
    probe: Probe,
    probe_next: std::time::Instant,
}

impl Runtime {
    /// Refreshes what the metrics endpoint reads, every 100 ms.
    fn refresh_probe(&mut self) {
        let now = std::time::Instant::now();
        if now < self.probe_next {
            return;
        }
        self.probe_next = now + Duration::from_millis(100);
        let core = self.driver.core();
        let delivered = self.shared.store.borrow().last_id();
        self.probe.metrics.update(core.stats(), delivered);
        let snapshot = (self.status(), core.members().len());
        if let Ok(mut status) = self.probe.status.lock() {
            *status = Some(snapshot);
        }
    }

    async fn run(&mut self) -> Result<(), GossipNodeError> {
        let mut next_stats = std::time::Instant::now() + STATS_INTERVAL;
        loop {
            match self.wait().await {
                Woken::Nothing => {}
                Woken::Input(Input::Gossip(event)) => self.driver.transport_event(event),
                Woken::Input(Input::Client(call)) => self.client_call(call),
                Woken::Input(Input::Synced(done)) => self.synced(done)?,
                Woken::Input(Input::Stop) => self.stopping = true,
            }
            let mut taken = self.driver.drain_transport(TURN_EVENTS_MAX);
            while taken < TURN_EVENTS_MAX {
                let Some(call) = self.clients.try_recv() else {
                    break;
                };
                self.client_call(call);
                taken += 1;
            }
            if let Ok(done) = self.syncs.1.try_recv() {
                self.synced(done)?;
            }
            for command in self.driver.end_turn() {
                self.execute(command);
            }
            self.shared.known_max.set(self.driver.core().known_max());
            self.start_sync();
            self.refresh_probe();
            if std::time::Instant::now() >= next_stats {
                next_stats += STATS_INTERVAL;
                log_stats(self.driver.core().stats(), &self.shared.store.borrow());
            }
            if self.stopping {
                // Everything delivered becomes durable before it stops: the
                // sync in flight, then one for what came after it.
                loop {
                    let (durable, last) = {
                        let store = self.shared.store.borrow();
                        (store.durable_id(), store.last_id())
                    };
                    if durable >= last {
                        break;
                    }
                    self.start_sync();
                    match self.syncs.1.recv().await {
                        Ok(done) => self.synced(done)?,
                        Err(_) => break,
                    }
                }
                return Ok(());
            }
        }
    }

    async fn wait(&self) -> Woken<Input> {
        if !self.clients.is_empty() || !self.syncs.1.is_empty() {
            return Woken::Nothing;
        }
        let gossip = async {
            // The driver's wait ends at the core's next deadline too.
            match self.driver.wait(Duration::from_secs(1)).await {
                Some(event) => Woken::Input(Input::Gossip(event)),
                None => Woken::Nothing,
            }
        };
        let stop = async {
            // A message or a closed channel both mean stop.
            let _ = self.stop.recv().await;
            Woken::Input(Input::Stop)
        };
        wake::first(
            gossip,
            wake::input(self.clients.recv(), Input::Client),
            wake::input(async { self.syncs.1.recv().await.ok() }, Input::Synced),
            stop,
        )
        .await
    }

    fn execute(&mut self, command: Command) {
        match command {
            Command::Deliver(messages) => self.deliver(messages),
            // The store is the watermark: `start_sync` after the turn makes
            // every stored message durable, one write and fdatasync at a
            // time.
            Command::PersistWatermark { .. } => {}
            Command::Send { .. } => {}
            Command::ReadCommitted { peer, .. } => {
                // Only voters read a log; answer empty so the core's
                // bookkeeping of reads in flight stays right.
                self.driver.step(Event::CommittedRead {
                    peer,
                    messages: Vec::new(),
                });
            }
        }
    }

    fn deliver(&mut self, messages: Vec<GossipMessage>) {
        if let Some(timings) = &mut self.timings {
            let wall_us = wall_clock_us();
            for message in &messages {
                // Timing lines are a measurement aid; a failed write loses a line, never a message.
                let _ = writeln!(timings, "{} {wall_us}", message.id);
            }
        }
        self.shared.store.borrow_mut().append(messages);
        self.shared.delivered.notify();
    }

    fn start_sync(&self) {
        let Some(job) = self.shared.store.borrow_mut().take_sync() else {
            return;
        };
        let done = self.syncs.0.clone();
        glommio::spawn_local(async move {
            let result = glommio::executor().spawn_blocking(move || job.run()).await;
            // The runtime stopped and no longer waits for this sync.
            let _ = done.send(result).await;
        })
        .detach();
    }

    fn synced(&mut self, done: SyncDone) -> Result<(), GossipNodeError> {
        self.shared
            .store
            .borrow_mut()
            .synced(done)
            .map_err(GossipNodeError::Persist)
    }

    fn status(&self) -> NodeStatus {
        let store = self.shared.store.borrow();
        NodeStatus {
            id: 0,
            role: NodeRole::Gossip,
            term: 0,
            leader: 0,
            commit_index: self.shared.known_max.get().max(store.last_id()),
            last_index: store.last_id(),
            durable_index: store.durable_id(),
            applied_index: store.last_id(),
            repairing: false,
            repair: String::new(),
            peers_repairing: Vec::new(),
        }
    }

    fn client_call(&mut self, call: ClientCall) {
        let ClientCall { conn, request } = call;
        let refuse = |request_id| {
            ClientResponse::Error(ErrorResponse {
                request_id,
                error: ClientError::BadRequest {
                    reason: "a gossip node takes no messages or reads: send them to a voter".into(),
                },
                leader: LeaderHint::default(),
            })
        };
        match request {
            ClientRequest::Propose(p) => {
                // A client that does not read loses the refusal; nothing is at stake.
                let _ = conn.try_send(&refuse(p.request_id));
            }
            ClientRequest::Read(r) => {
                // A client that does not read loses the refusal; nothing is at stake.
                let _ = conn.try_send(&refuse(r.request_id));
            }
            ClientRequest::Admin(a) => {
                // A client that does not read loses the refusal; nothing is at stake.
                let _ = conn.try_send(&refuse(a.request_id));
            }
            ClientRequest::Status(s) => {
                // A client that does not read loses the answer; it asks again.
                let _ = conn.try_send(&ClientResponse::Status(StatusResponse {
                    request_id: s.request_id,
                    status: self.status(),
                    leader: LeaderHint::default(),
                }));
            }
            ClientRequest::Log(log) => {
                let shared = self.shared.clone();
                glommio::spawn_local(serve_log(
                    shared,
                    conn,
                    log.request_id,
                    log.from_id,
                    log.follow,
                ))
                .detach();
            }
        }
    }
}

fn committed(message: GossipMessage) -> CommittedMessage {
    CommittedMessage {
        id: message.id,
        index: message.index,
        term: message.term,
        ts: message.ts,
        payload: message.payload,
        token: message.token,
    }
}

/// Streams delivered messages from `from_id` to a client, as a voter
/// streams committed ones: in id order, `done` at the end unless `follow`.
///
/// Not shared with the voter's stream (`Group::serve_log`,
/// node/group/log_stream.rs), which alike as it looks has another source:
/// a voter reads batches from its Raft log and cuts each message's token
/// from the commit statements it holds, waiting for those still missing
/// (`feed::follow`); a gossip node reads messages that arrived with their
/// tokens from its delivered store, and waits for the next delivery. What
/// the two have in common is the wire form of a chunk.
async fn serve_log(
    shared: Rc<Shared>,
    conn: ClientConn,
    request_id: u64,
    from_id: MessageId,
    follow: bool,
) {
    let mut next = from_id.max(1);
    loop {
        let generation = shared.delivered.generation();
        let read = shared
            .store
            .borrow()
            .read(next, LOG_CHUNK_MESSAGES_MAX, LOG_CHUNK_BYTES_MAX);
        let messages = match read {
            Ok(messages) => messages,
            Err(error) => {
                let error = match error {
                    StoreError::Compacted { first_id } => ClientError::Compacted { first_id },
                    other => ClientError::Internal {
                        reason: other.to_string(),
                    },
                };
                // A client that does not read loses the answer; it asks again.
                let _ = conn
                    .send(&ClientResponse::Error(ErrorResponse {
                        request_id,
                        error,
                        leader: LeaderHint::default(),
                    }))
                    .await;
                return;
            }
        };
        if let Some(last) = messages.last() {
            next = last.id + 1;
        }
        let caught_up = next > shared.store.borrow().last_id();
        let done = caught_up && !follow;
        if !messages.is_empty() || done {
            let response = ClientResponse::Log(LogResponse {
                request_id,
                messages: messages.into_iter().map(committed).collect(),
                done,
            });
            if conn.send(&response).await.is_err() || done {
                return;
            }
        }
        if caught_up {
            if shared.closed.get() {
                return;
            }
            shared.delivered.wait(generation).await;
        }
    }
}
