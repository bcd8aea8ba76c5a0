//! The gossip transport: connections between gossip nodes and voters'
//! gossip endpoints, named by their gossip addresses.
//!
//! **Connection rule: each side dials for its own sends; a gossip
//! connection carries one direction.** The voters' rule (one connection
//! per pair, the lower id dials) needs ids both sides know in advance;
//! gossip members know each other only by address, join and leave at any
//! time, and talk to whomever SWIM samples. With one-way connections there
//! is nothing to resolve: no tie-break between simultaneous dials, no
//! waiting to be dialed, and a restarted member simply dials again. The
//! dialer's first frame after the handshake is a [`GossipIntro`] with its
//! own gossip address, which is how the acceptor names it to the core; the
//! acceptor checks that the address's IP is the connection's source IP (a
//! peer can claim another port of its own host, not another host), and
//! never writes on the connection. The cost is two connections per pair
//! that talk both ways.
//!
//! Outbound connections are opened on demand by the first send to an
//! address and closed after `idle_timeout` without sends; at most
//! `outbound_peers_max` exist (the least recently used is closed to make
//! room). A failed dial or a lost connection drops the peer's queued frames
//! and reports [`GossipEvent::Unreachable`] once; sends to it then fail at
//! once until a jittered, exponential backoff passes, and the next send
//! after it dials again (the gossip core repairs whatever was lost).
//! Inbound connections are bounded by `inbound_connections_max`.
//!
//! One listener serves both gossip and, optionally, clients: a connection
//! whose hello has the `Client` role is handed to a [`ClientServer`]
//! without a listener of its own, so `ordo log --node GOSSIP_ADDR` works
//! against a gossip node.
//!
//! Lives on one executor; nothing here is `Send`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future::or;
use glommio::Task;
use glommio::net::{TcpListener, TcpStream};
use ordo_storage::NodeId;

use crate::gossip::{GossipFrame, GossipIntro, PeerAddr, Wire};
use crate::handshake::{
    ConnectionRole, Handshake, Hello, HelloAck, HelloReject, PROTOCOL_VERSION, RejectReason,
};
use crate::transport::backoff::reconnect_delay;
use crate::transport::client_server::{ClientAdopter, ClientInbox, ClientServer};
use crate::transport::config::{ClientServerConfig, ConfigError, ConnectionLimits, Timings};
use crate::transport::handshake::{
    check_hello, dial, receive_handshake, send_handshake, with_timeout,
};
use crate::transport::inbox::Inbox;
use crate::transport::io::{ConnectionError, read_frame, write_all};
use crate::transport::notify::Notify;
use crate::transport::outbound::{OutQueue, QueueStats, SendError};
use crate::transport::peers::READER_YIELD_FRAMES;
use crate::transport::{LinkState, TransportError};
use crate::wire::{Decode, FrameSplitter, HANDSHAKE_FRAME_BYTES_MAX, encode_to_vec};

/// Configuration of one member's gossip transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipTransportConfig {
    /// The cluster: gossip connections from other clusters are refused.
    pub cluster_id: u64,
    /// Told in the handshake: the voter's id, or `0` for a gossip node.
    pub node_id: NodeId,
    /// Where to listen; also the address this member is known by, so it
    /// must be a concrete IP (not `0.0.0.0`) and, after binding, a concrete
    /// port.
    pub listen_addr: SocketAddr,
    /// Per-connection bounds.
    pub limits: ConnectionLimits,
    /// Dial, handshake and backoff timings.
    pub timings: Timings,
    /// Outbound connections (peers this member sends to) at once.
    pub outbound_peers_max: usize,
    /// Inbound gossip connections at once; more are refused.
    pub inbound_connections_max: usize,
    /// An outbound connection without a send for this long is closed.
    pub idle_timeout: Duration,
    /// Received gossip messages waiting for the runtime, by count.
    pub inbox_messages_max: usize,
    /// ... and by frame bytes. A full inbox stops reading sockets.
    pub inbox_bytes_max: usize,
    /// Accepted connections still in their handshake; more are closed.
    pub handshakes_pending_max: usize,
}

impl GossipTransportConfig {
    /// A configuration with default bounds. Gossip frames are at most one
    /// pull reply (4 MiB of messages by default) plus headers, so the frame
    /// limit is the peer default.
    pub fn new(cluster_id: u64, node_id: NodeId, listen_addr: SocketAddr) -> Self {
        Self {
            cluster_id,
            node_id,
            listen_addr,
            limits: ConnectionLimits {
                bulk_queue_bytes_max: 32 << 20,
                ..ConnectionLimits::default()
            },
            timings: Timings::default(),
            outbound_peers_max: 256,
            inbound_connections_max: 1024,
            idle_timeout: Duration::from_secs(60),
            inbox_messages_max: 16_384,
            inbox_bytes_max: 64 << 20,
            handshakes_pending_max: 64,
        }
    }

    /// Checks every relation between the bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, field, reason| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError { field, reason })
            }
        };
        self.limits.validate()?;
        self.timings.validate()?;
        check(
            !self.listen_addr.ip().is_unspecified(),
            "listen_addr",
            "must be a concrete IP: it is the address peers know this member by",
        )?;
        check(
            self.outbound_peers_max >= 1,
            "outbound_peers_max",
            "must be at least 1",
        )?;
        check(
            self.inbound_connections_max >= 1,
            "inbound_connections_max",
            "must be at least 1",
        )?;
        check(
            !self.idle_timeout.is_zero(),
            "idle_timeout",
            "must be positive",
        )?;
        check(
            self.inbox_messages_max >= 1,
            "inbox_messages_max",
            "must be at least 1",
        )?;
        check(
            self.inbox_bytes_max >= self.limits.frame_bytes_max,
            "inbox_bytes_max",
            "must be at least frame_bytes_max",
        )?;
        check(
            self.handshakes_pending_max >= 1,
            "handshakes_pending_max",
            "must be at least 1",
        )?;
        Ok(())
    }
}

/// What the gossip transport hands the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GossipEvent {
    /// A validated message from the member listening at `from`.
    Message {
        /// The sender's gossip address (from its intro).
        from: PeerAddr,
        /// The message.
        message: Wire,
    },
    /// A dial to `peer` failed or its connection was lost; frames queued
    /// for it were dropped. Reported once per failure.
    Unreachable {
        /// The peer.
        peer: PeerAddr,
    },
}

/// Counters of the whole transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GossipTransportStats {
    /// Outbound peers currently known (connected, connecting or backing off).
    pub outbound_peers: usize,
    /// Inbound gossip connections open.
    pub inbound_connections: usize,
    /// Outbound connections made so far.
    pub connections_made: u64,
    /// Frames dropped unsent (lost connections, evictions).
    pub frames_dropped: u64,
}

struct Outbound {
    addr: PeerAddr,
    queue: OutQueue,
    state: Cell<LinkState>,
    /// Sends fail at once before this (after a failure).
    retry_at: Cell<Option<Instant>>,
    /// Failures in a row (the backoff's exponent).
    attempt: Cell<u32>,
    last_send: Cell<Instant>,
    /// Counts connection tasks: a task only updates the entry if no newer
    /// one replaced it.
    generation: Cell<u64>,
    task: RefCell<Option<Task<()>>>,
}

struct Shared {
    config: GossipTransportConfig,
    local_addr: SocketAddr,
    outbound: RefCell<HashMap<PeerAddr, Rc<Outbound>>>,
    inbox: Inbox<(PeerAddr, Wire)>,
    /// Peers with an unreported failure (bounded by `outbound_peers_max`).
    unreachable: RefCell<BTreeSet<PeerAddr>>,
    /// Inbound gossip connections open (their tasks end on `shutdown`).
    inbound: Cell<usize>,
    closed: Cell<bool>,
    shutdown: Notify,
    accept_task: RefCell<Option<Task<()>>>,
    handshakes_pending: Cell<usize>,
    clients: Option<ClientAdopter>,
    rng: RefCell<fastrand::Rng>,
    connections_made: Cell<u64>,
    frames_dropped: Cell<u64>,
}

/// The sending side and the control surface of the gossip transport.
pub struct GossipTransport {
    shared: Rc<Shared>,
}

/// The receiving side: validated gossip messages and unreachable peers.
pub struct GossipInbox {
    shared: Rc<Shared>,
}

/// What [`GossipTransport::start`] returns.
pub struct GossipStarted {
    /// Sending and control.
    pub transport: GossipTransport,
    /// Receiving.
    pub inbox: GossipInbox,
    /// The client server on the same address, if one was asked for.
    pub clients: Option<(ClientServer, ClientInbox)>,
}

impl GossipTransport {
    /// Binds the listener and starts accepting. With `clients`, client
    /// connections on the same address are served by a [`ClientServer`]
    /// (its `listen_addr` is ignored); without, they are refused. Must run
    /// on the glommio executor that will own the transport.
    pub fn start(
        config: GossipTransportConfig,
        clients: Option<ClientServerConfig>,
    ) -> Result<GossipStarted, TransportError> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen_addr).map_err(std::io::Error::from)?;
        let local_addr = listener.local_addr().map_err(std::io::Error::from)?;
        let clients = match clients {
            Some(client_config) => Some(ClientServer::without_listener(client_config, local_addr)?),
            None => None,
        };
        let shared = Rc::new(Shared {
            inbox: Inbox::new(config.inbox_messages_max, config.inbox_bytes_max),
            config,
            local_addr,
            outbound: RefCell::new(HashMap::new()),
            unreachable: RefCell::new(BTreeSet::new()),
            inbound: Cell::new(0),
            closed: Cell::new(false),
            shutdown: Notify::default(),
            accept_task: RefCell::new(None),
            handshakes_pending: Cell::new(0),
            clients: clients.as_ref().map(|(server, _)| server.adopter()),
            rng: RefCell::new(fastrand::Rng::new()),
            connections_made: Cell::new(0),
            frames_dropped: Cell::new(0),
        });
        let task = glommio::spawn_local(accept_loop(shared.clone(), listener));
        *shared.accept_task.borrow_mut() = Some(task);
        Ok(GossipStarted {
            transport: GossipTransport {
                shared: shared.clone(),
            },
            inbox: GossipInbox { shared },
            clients,
        })
    }

    /// The address this member listens on and is known by.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Queues `message` for the member at `to`, dialing it if needed.
    /// Never waits. `Err(Full)`: its queue is at its bound; `Err(Closed)`:
    /// it is unreachable (backing off after a failure) or the transport is
    /// shut down. Either way nothing was queued; the gossip core repairs.
    pub fn try_send(&self, to: PeerAddr, message: Wire) -> Result<(), SendError> {
        let shared = &self.shared;
        if shared.closed.get() || to == shared.local_addr {
            return Err(SendError::Closed);
        }
        let now = Instant::now();
        let known = shared.outbound.borrow().get(&to).cloned();
        let peer = match known {
            Some(peer) => peer,
            None => shared.new_outbound(to, now),
        };
        if peer.state.get() == LinkState::Down {
            if peer.retry_at.get().is_some_and(|at| now < at) {
                return Err(SendError::Closed);
            }
            shared.connect(&peer);
        }
        peer.last_send.set(now);
        peer.queue.try_push(&GossipFrame::Wire(message))
    }

    /// A peer's link and queue, if it is known.
    pub fn peer_stats(&self, peer: PeerAddr) -> Option<(LinkState, QueueStats)> {
        let outbound = self.shared.outbound.borrow();
        let entry = outbound.get(&peer)?;
        Some((entry.state.get(), entry.queue.stats()))
    }

    /// Counters of the whole transport.
    pub fn stats(&self) -> GossipTransportStats {
        GossipTransportStats {
            outbound_peers: self.shared.outbound.borrow().len(),
            inbound_connections: self.shared.inbound.get(),
            connections_made: self.shared.connections_made.get(),
            frames_dropped: self.shared.frames_dropped.get(),
        }
    }

    /// Stops: refuses sends, stops accepting, gives queued frames up to
    /// `shutdown_flush_timeout` to be written, then closes every
    /// connection. The inbox then yields what it holds and ends.
    pub async fn shutdown(self) {
        let shared = &self.shared;
        shared.closed.set(true);
        shared.shutdown.notify_all();
        drop(shared.accept_task.borrow_mut().take());
        let peers: Vec<Rc<Outbound>> = shared.outbound.borrow().values().cloned().collect();
        for peer in &peers {
            peer.queue.close();
        }
        let deadline = Instant::now() + shared.config.timings.shutdown_flush_timeout;
        for peer in &peers {
            let task = peer.task.borrow_mut().take();
            if let Some(task) = task {
                let left = deadline.saturating_duration_since(Instant::now());
                or(task, glommio::timer::sleep(left)).await;
            }
        }
        shared.outbound.borrow_mut().clear();
        shared.inbox.close();
    }
}

impl GossipInbox {
    /// The next event; `None` once the transport is shut down and drained.
    pub async fn recv(&self) -> Option<GossipEvent> {
        loop {
            if let Some(event) = self.try_recv() {
                return Some(event);
            }
            if self.shared.inbox.is_closed() {
                return None;
            }
            self.shared.inbox.readable.notified().await;
        }
    }

    /// The next event, if one is ready.
    pub fn try_recv(&self) -> Option<GossipEvent> {
        let peer = self.shared.unreachable.borrow_mut().pop_first();
        if let Some(peer) = peer {
            return Some(GossipEvent::Unreachable { peer });
        }
        let (from, message) = self.shared.inbox.try_pop()?;
        Some(GossipEvent::Message { from, message })
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.shared.inbox.len() == 0 && self.shared.unreachable.borrow().is_empty()
    }
}

impl Shared {
    /// A new outbound entry for `addr`, making room if at the bound.
    fn new_outbound(self: &Rc<Self>, addr: PeerAddr, now: Instant) -> Rc<Outbound> {
        let mut outbound = self.outbound.borrow_mut();
        if outbound.len() >= self.config.outbound_peers_max {
            let oldest = outbound
                .values()
                .min_by_key(|p| p.last_send.get())
                .map(|p| p.addr);
            if let Some(oldest) = oldest
                && let Some(evicted) = outbound.remove(&oldest)
            {
                self.frames_dropped
                    .set(self.frames_dropped.get() + evicted.queue.clear() as u64);
                evicted.queue.close();
                drop(evicted.task.borrow_mut().take());
            }
        }
        let peer = Rc::new(Outbound {
            addr,
            queue: OutQueue::new(self.config.limits.clone()),
            state: Cell::new(LinkState::Down),
            retry_at: Cell::new(None),
            attempt: Cell::new(0),
            last_send: Cell::new(now),
            generation: Cell::new(0),
            task: RefCell::new(None),
        });
        outbound.insert(addr, peer.clone());
        peer
    }

    /// Starts a connection task for `peer` (which must be down).
    fn connect(self: &Rc<Self>, peer: &Rc<Outbound>) {
        peer.state.set(LinkState::Connecting);
        let generation = peer.generation.get() + 1;
        peer.generation.set(generation);
        let task = glommio::spawn_local(run_outbound(self.clone(), peer.clone(), generation));
        // Replacing the handle drops (cancels) a finished previous task.
        let previous = peer.task.replace(Some(task));
        drop(previous);
    }

    fn hello(&self) -> Hello {
        Hello {
            cluster_id: self.config.cluster_id,
            node_id: self.config.node_id,
            protocol_version: PROTOCOL_VERSION,
            role: ConnectionRole::Gossip,
        }
    }
}

/// How an outbound connection ended.
enum Ended {
    /// Idle for `idle_timeout`: closed without a failure.
    Idle,
    /// The transport closed and the queue was flushed.
    Flushed,
    /// Dial or connection failure.
    Failed(ConnectionError),
}

/// One outbound connection: dial, introduce, drain the queue until idle or
/// failed; then update the entry.
async fn run_outbound(shared: Rc<Shared>, peer: Rc<Outbound>, generation: u64) {
    let ended = outbound_connection(&shared, &peer).await;
    if peer.generation.get() != generation {
        return;
    }
    match ended {
        Ended::Idle | Ended::Flushed => {
            tracing::debug!(peer = %peer.addr, "gossip connection closed (idle)");
            peer.state.set(LinkState::Down);
            peer.retry_at.set(None);
            let mut outbound = shared.outbound.borrow_mut();
            if outbound
                .get(&peer.addr)
                .is_some_and(|p| Rc::ptr_eq(p, &peer))
                && peer.queue.stats().bulk_frames == 0
                && peer.queue.stats().priority_bytes == 0
            {
                outbound.remove(&peer.addr);
            }
        }
        Ended::Failed(reason) => {
            if peer.attempt.get() == 0 {
                tracing::info!(peer = %peer.addr, %reason, "gossip peer unreachable");
            } else {
                tracing::debug!(peer = %peer.addr, %reason, "gossip peer still unreachable");
            }
            let attempt = peer.attempt.get();
            peer.attempt.set(attempt.saturating_add(1));
            let timings = &shared.config.timings;
            let delay = reconnect_delay(
                attempt,
                timings.reconnect_backoff_min,
                timings.reconnect_backoff_max,
                &mut shared.rng.borrow_mut(),
            );
            peer.retry_at.set(Some(Instant::now() + delay));
            peer.state.set(LinkState::Down);
            let dropped = peer.queue.clear();
            shared
                .frames_dropped
                .set(shared.frames_dropped.get() + dropped as u64);
            if !shared.closed.get() {
                shared.unreachable.borrow_mut().insert(peer.addr);
                shared.inbox.readable.notify_all();
            }
        }
    }
}

async fn outbound_connection(shared: &Shared, peer: &Outbound) -> Ended {
    let timings = &shared.config.timings;
    let limits = &shared.config.limits;
    let dialed = dial(
        peer.addr,
        shared.hello(),
        None,
        timings.connect_timeout,
        timings.handshake_timeout,
        limits.receive_slab_bytes,
        limits.frame_bytes_max,
    )
    .await;
    let dialed = match dialed {
        Ok(dialed) => dialed,
        Err(reason) => return Ended::Failed(reason),
    };
    if dialed.ack.cluster_id != shared.config.cluster_id {
        return Ended::Failed(ConnectionError::Handshake(format!(
            "{} is in cluster {}",
            peer.addr, dialed.ack.cluster_id
        )));
    }
    let intro = GossipFrame::Intro(GossipIntro {
        listen_addr: shared.local_addr,
    });
    let stream = dialed.stream;
    let mut splitter = dialed.splitter;
    let sent = match encode_to_vec(&intro, HANDSHAKE_FRAME_BYTES_MAX) {
        Ok(bytes) => write_all(&stream, &[&bytes])
            .await
            .map_err(ConnectionError::from),
        Err(error) => Err(error.into()),
    };
    if let Err(reason) = sent {
        return Ended::Failed(reason);
    }
    shared
        .connections_made
        .set(shared.connections_made.get() + 1);
    peer.state.set(LinkState::Connected);
    peer.attempt.set(0);
    peer.retry_at.set(None);
    // The acceptor never writes: any frame or a close ends the connection.
    let reader = async {
        match read_frame(&stream, &mut splitter).await {
            Ok(Some(_)) => Ended::Failed(ConnectionError::Handshake(
                "the acceptor wrote on a one-way gossip connection".into(),
            )),
            Ok(None) => Ended::Failed(ConnectionError::Eof),
            Err(reason) => Ended::Failed(reason),
        }
    };
    let idle = shared.config.idle_timeout;
    let writer = async {
        loop {
            if let Some(batch) = peer.queue.take() {
                if let Err(error) = write_all(&stream, &batch.slices()).await {
                    return Ended::Failed(error.into());
                }
                peer.queue.complete(batch);
                continue;
            }
            if peer.queue.is_closed() {
                return Ended::Flushed;
            }
            let since = peer.last_send.get().elapsed();
            if since >= idle {
                return Ended::Idle;
            }
            or(
                peer.queue.writer_wake.notified(),
                glommio::timer::sleep(idle - since),
            )
            .await;
        }
    };
    or(reader, writer).await
}

/// Accepts connections; each gets its own handshake task.
async fn accept_loop(shared: Rc<Shared>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "gossip accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if shared.closed.get() {
            break;
        }
        if shared.handshakes_pending.get() >= shared.config.handshakes_pending_max {
            tracing::warn!(remote = ?stream.peer_addr().ok(), "closing inbound gossip connection: too many handshakes pending");
            continue;
        }
        shared
            .handshakes_pending
            .set(shared.handshakes_pending.get() + 1);
        glommio::spawn_local(accept_one(shared.clone(), stream)).detach();
    }
}

async fn reject(shared: &Shared, stream: &RefCell<TcpStream>, reject: HelloReject) {
    let _ = with_timeout(
        shared.config.timings.handshake_timeout,
        "reject",
        send_handshake(stream, Handshake::Reject(reject)),
    )
    .await;
}

/// Handshake, then: a client goes to the client server; a gossip peer
/// introduces itself and its frames go to the inbox.
async fn accept_one(shared: Rc<Shared>, stream: TcpStream) {
    let remote = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let stream = RefCell::new(stream);
    let limits = shared.config.limits.clone();
    let mut splitter = FrameSplitter::new(limits.receive_slab_bytes, HANDSHAKE_FRAME_BYTES_MAX);
    let timeout = shared.config.timings.handshake_timeout;
    let received = with_timeout(
        timeout,
        "handshake",
        receive_handshake(&stream, &mut splitter),
    )
    .await;
    shared
        .handshakes_pending
        .set(shared.handshakes_pending.get() - 1);
    let hello = match received {
        Ok(Handshake::Hello(hello)) => hello,
        Ok(_) => {
            tracing::warn!(?remote, "closing inbound gossip connection: expected hello");
            return;
        }
        Err(reason) => {
            tracing::warn!(?remote, %reason, "closing inbound gossip connection: handshake failed");
            return;
        }
    };
    if hello.role == ConnectionRole::Client
        && let Some(clients) = &shared.clients
    {
        clients.serve(stream, splitter, hello, remote).await;
        return;
    }
    let role_refusal = (hello.role != ConnectionRole::Gossip).then(|| HelloReject {
        reason: RejectReason::RoleMismatch,
        protocol_version: PROTOCOL_VERSION,
        detail: format!(
            "this port takes gossip connections, dialer is a {:?}",
            hello.role
        ),
    });
    let refusal = role_refusal
        .or_else(|| check_hello(&hello, shared.config.cluster_id, ConnectionRole::Gossip))
        .or_else(|| {
            (shared.closed.get() || shared.inbound.get() >= shared.config.inbound_connections_max)
                .then(|| HelloReject {
                    reason: RejectReason::Unavailable,
                    protocol_version: PROTOCOL_VERSION,
                    detail: "shutting down or at the gossip connection limit".into(),
                })
        });
    if let Some(refusal) = refusal {
        tracing::warn!(?remote, reason = ?refusal.reason, detail = %refusal.detail, "refusing gossip connection");
        reject(&shared, &stream, refusal).await;
        return;
    }
    let ack = Handshake::Ack(HelloAck {
        cluster_id: shared.config.cluster_id,
        node_id: shared.config.node_id,
        protocol_version: PROTOCOL_VERSION,
    });
    if let Err(reason) = with_timeout(timeout, "ack", send_handshake(&stream, ack)).await {
        tracing::warn!(?remote, %reason, "closing inbound gossip connection: handshake failed");
        return;
    }
    let intro = with_timeout(timeout, "intro", async {
        let frame = read_frame(&stream, &mut splitter)
            .await?
            .ok_or(ConnectionError::Eof)?;
        match GossipFrame::decode(&frame)? {
            GossipFrame::Intro(intro) => Ok(intro),
            GossipFrame::Wire(_) => Err(ConnectionError::Handshake(
                "a gossip connection must start with an intro".into(),
            )),
        }
    })
    .await;
    let from = match intro {
        Ok(intro) => intro.listen_addr,
        Err(reason) => {
            tracing::warn!(?remote, %reason, "closing inbound gossip connection: no intro");
            return;
        }
    };
    if let Some(remote) = remote
        && remote.ip() != from.ip()
    {
        tracing::warn!(%remote, claimed = %from, "closing inbound gossip connection: it claims another host's address");
        return;
    }
    splitter.set_frame_bytes_max(limits.frame_bytes_max);
    shared.inbound.set(shared.inbound.get() + 1);
    let result = read_inbound(&shared, &stream, &mut splitter, from).await;
    match result {
        Err(ConnectionError::Wire(reason)) => {
            tracing::warn!(peer = %from, %reason, "closing gossip connection: bad frame");
        }
        Err(reason) => tracing::debug!(peer = %from, %reason, "gossip connection closed"),
        Ok(()) => {}
    }
    shared.inbound.set(shared.inbound.get() - 1);
}

async fn read_inbound(
    shared: &Shared,
    stream: &RefCell<TcpStream>,
    splitter: &mut FrameSplitter,
    from: PeerAddr,
) -> Result<(), ConnectionError> {
    let mut until_yield = READER_YIELD_FRAMES;
    let stop = async {
        shared.shutdown.notified().await;
        Err(ConnectionError::Closed)
    };
    let read = async {
        loop {
            let frame = read_frame(stream, splitter)
                .await?
                .ok_or(ConnectionError::Eof)?;
            let bytes = frame.header().frame_len as usize;
            let message = match GossipFrame::decode(&frame)? {
                GossipFrame::Wire(message) => message,
                GossipFrame::Intro(_) => {
                    return Err(ConnectionError::Handshake("a second intro".into()));
                }
            };
            shared
                .inbox
                .push((from, message), bytes)
                .await
                .map_err(|_| ConnectionError::Closed)?;
            until_yield -= 1;
            if until_yield == 0 {
                until_yield = READER_YIELD_FRAMES;
                futures_lite::future::yield_now().await;
            }
        }
    };
    or(read, stop).await
}
