//! The peer transport: one connection per pair of voters.
//!
//! Dial rule: of two voters, the one with the lower id dials and the higher
//! one only accepts. One TCP connection then carries both directions, with
//! no race between two simultaneous dials to resolve, and a restarted
//! higher-id node needs nothing but to be dialed again. The cost: a node
//! cannot reach a lower-id peer until that peer dials it; messages to it
//! wait in its bounded queue meanwhile.
//!
//! Each peer has one outbound queue that outlives connections; it is
//! cleared, and the runtime told [`PeerEvent::Unreachable`], whenever a
//! connection is lost or a dial fails, so that stale frames are not sent
//! long after the core gave up on them (Raft retransmits anyway).
//!
//! Lives on one executor (shard); nothing here is `Send`. A node with
//! several shards runs one transport per shard that owns Raft groups.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use futures_lite::future::or;
use glommio::Task;
use glommio::net::{TcpListener, TcpStream};
use ordo_storage::NodeId;

use crate::handshake::{
    ConnectionRole, Handshake, Hello, HelloAck, HelloReject, PROTOCOL_VERSION, RejectReason,
};
use crate::peer::PeerMessage;
use crate::transport::TransportError;
use crate::transport::backoff::reconnect_delay;
use crate::transport::config::TransportConfig;
use crate::transport::handshake::{
    Pending, authenticate, check_hello, dial, receive_handshake, send_handshake, with_timeout,
};
use crate::transport::inbox::Inbox;
use crate::transport::io::{ConnectionError, Stream, read_frame, write_loop};
use crate::transport::notify::Notify;
use crate::transport::outbound::{OutQueue, QueueStats, SendError};
use crate::wire::{Decode, FrameSplitter, HANDSHAKE_FRAME_BYTES_MAX};

/// A connection reader lets the inbox's consumer run after this many frames.
/// While the socket has data the reader would otherwise fill the whole inbox
/// before the consumer runs, and the messages would leave the cache in
/// between (measured: 1.7 M to 3.0 M 64 B frames/s, docs/benchmarks.md).
pub(crate) const READER_YIELD_FRAMES: u32 = 32;

/// What the transport hands the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// A validated message from a peer. Messages from one peer arrive in
    /// the order it sent them within a lane (see [`crate::wire::Lane`]).
    Message {
        /// The sender.
        from: NodeId,
        /// The message.
        message: PeerMessage,
    },
    /// Frames to `peer` were dropped unsent (its connection was lost or
    /// could not be made): the core should treat it as unreachable
    /// (`Event::Unreachable`). Reported once per loss, not per frame.
    Unreachable {
        /// The peer.
        peer: NodeId,
    },
}

/// A peer's connection as the transport sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// No connection yet: dialing, or (as the higher id) waiting to be
    /// dialed. Frames queue.
    Connecting,
    /// A connection is up.
    Connected,
    /// The last connection or dial failed; frames queue until the next
    /// failure clears them.
    Down,
}

/// A snapshot of one peer's link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStats {
    /// The link.
    pub state: LinkState,
    /// Connections made so far.
    pub connections: u64,
    /// The outbound queue.
    pub queue: QueueStats,
    /// Frame bytes received from the peer.
    pub bytes_received: u64,
}

/// Connections the transport closed or refused, by what went wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionErrors {
    /// Connections closed for a bad frame, by [`crate::wire::WireError::label`].
    pub frame: std::collections::BTreeMap<&'static str, u64>,
    /// Inbound or outbound handshakes that failed or were refused, by
    /// reason (`cluster_mismatch`, `version_mismatch`, `role_mismatch`,
    /// `dial_rule`, `unavailable`, `expected_hello`, `timeout`, `io`, ...).
    pub handshake: std::collections::BTreeMap<&'static str, u64>,
}

struct Peer {
    id: NodeId,
    addr: Cell<Option<SocketAddr>>,
    queue: OutQueue,
    state: Cell<LinkState>,
    /// Counts connections; a connection task only marks the peer down if no
    /// newer connection replaced it.
    generation: Cell<u64>,
    /// The dial loop (lower id) or the current connection (higher id).
    /// Dropping it cancels it.
    task: RefCell<Option<Task<()>>>,
    removed: Cell<bool>,
    bytes_received: Cell<u64>,
}

struct Shared {
    config: TransportConfig,
    local_addr: SocketAddr,
    peers: RefCell<HashMap<NodeId, Rc<Peer>>>,
    inbox: Inbox<(NodeId, PeerMessage)>,
    /// Peers with an [`PeerEvent::Unreachable`] not yet handed out: one per
    /// peer however often it failed, so this is bounded by the peer count.
    unreachable: RefCell<BTreeSet<NodeId>>,
    closed: Cell<bool>,
    shutdown: Notify,
    accept_task: RefCell<Option<Task<()>>>,
    handshakes_pending: Cell<usize>,
    rng: RefCell<fastrand::Rng>,
    errors: RefCell<ConnectionErrors>,
}

/// The sending side and the control surface of the peer transport.
pub struct PeerTransport {
    shared: Rc<Shared>,
}

/// The receiving side: validated messages and reachability events.
pub struct PeerInbox {
    shared: Rc<Shared>,
}

impl PeerTransport {
    /// Binds the listener and starts accepting peers. Must run on the
    /// glommio executor that will own the transport.
    pub fn start(config: TransportConfig) -> Result<(PeerTransport, PeerInbox), TransportError> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen_addr).map_err(std::io::Error::from)?;
        let local_addr = listener.local_addr().map_err(std::io::Error::from)?;
        let shared = Rc::new(Shared {
            inbox: Inbox::new(config.inbox_messages_max, config.inbox_bytes_max),
            config,
            local_addr,
            peers: RefCell::new(HashMap::new()),
            unreachable: RefCell::new(BTreeSet::new()),
            closed: Cell::new(false),
            shutdown: Notify::default(),
            accept_task: RefCell::new(None),
            handshakes_pending: Cell::new(0),
            rng: RefCell::new(fastrand::Rng::new()),
            errors: RefCell::new(ConnectionErrors::default()),
        });
        let task = glommio::spawn_local(accept_loop(shared.clone(), listener));
        *shared.accept_task.borrow_mut() = Some(task);
        Ok((
            PeerTransport {
                shared: shared.clone(),
            },
            PeerInbox { shared },
        ))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.config.node_id
    }

    /// Registers a peer (or changes its address). If this node has the
    /// lower id it starts dialing; otherwise it waits to be dialed.
    pub fn add_peer(&self, id: NodeId, addr: SocketAddr) -> Result<(), TransportError> {
        let own = self.shared.config.node_id;
        if id == 0 || id == own {
            return Err(TransportError::InvalidPeer {
                id,
                reason: "a peer id is neither 0 nor this node's",
            });
        }
        if self.shared.closed.get() {
            return Err(TransportError::Closed);
        }
        let peer = self.shared.peer_entry(id);
        peer.addr.set(Some(addr));
        if own < id && peer.task.borrow().is_none() {
            let task = glommio::spawn_local(dial_loop(self.shared.clone(), peer.clone()));
            *peer.task.borrow_mut() = Some(task);
        }
        Ok(())
    }

    /// Forgets a peer: its connection closes and its queue is dropped.
    pub fn remove_peer(&self, id: NodeId) {
        if let Some(peer) = self.shared.peers.borrow_mut().remove(&id) {
            peer.removed.set(true);
            peer.queue.close();
            peer.queue.clear();
            drop(peer.task.borrow_mut().take());
        }
    }

    /// Queues `message` for `to` without waiting. `Err(Full)` is
    /// backpressure: the peer is slower than this node; the message was not
    /// queued.
    pub fn try_send(&self, to: NodeId, message: &PeerMessage) -> Result<(), SendError> {
        let peer = self
            .shared
            .peers
            .borrow()
            .get(&to)
            .cloned()
            .ok_or(SendError::UnknownPeer(to))?;
        peer.queue.try_push(message)
    }

    /// Queues `message` for `to`, waiting while its lane is full.
    pub async fn send(&self, to: NodeId, message: &PeerMessage) -> Result<(), SendError> {
        let peer = self
            .shared
            .peers
            .borrow()
            .get(&to)
            .cloned()
            .ok_or(SendError::UnknownPeer(to))?;
        loop {
            match peer.queue.try_push(message) {
                Err(SendError::Full { .. }) => peer.queue.space.notified().await,
                other => return other,
            }
        }
    }

    /// A peer's link and queue counters.
    pub fn peer_stats(&self, id: NodeId) -> Option<PeerStats> {
        let peers = self.shared.peers.borrow();
        let peer = peers.get(&id)?;
        Some(PeerStats {
            state: peer.state.get(),
            connections: peer.generation.get(),
            queue: peer.queue.stats(),
            bytes_received: peer.bytes_received.get(),
        })
    }

    /// Connections closed or refused so far, by reason.
    pub fn connection_errors(&self) -> ConnectionErrors {
        self.shared.errors.borrow().clone()
    }

    /// Stops: refuses new sends, stops accepting, gives queued frames up to
    /// `shutdown_flush_timeout` to be written, then closes every connection.
    /// The inbox then yields what it holds and ends.
    pub async fn shutdown(self) {
        let shared = &self.shared;
        shared.closed.set(true);
        shared.shutdown.notify_all();
        drop(shared.accept_task.borrow_mut().take());
        let peers: Vec<Rc<Peer>> = shared.peers.borrow().values().cloned().collect();
        for peer in &peers {
            peer.queue.close();
        }
        let deadline = Instant::now() + shared.config.timings.shutdown_flush_timeout;
        for peer in &peers {
            let task = peer.task.borrow_mut().take();
            if let Some(task) = task {
                let left = deadline.saturating_duration_since(Instant::now());
                // Dropping the `or` drops the task, which cancels it.
                or(task, glommio::timer::sleep(left)).await;
            }
        }
        shared.peers.borrow_mut().clear();
        shared.inbox.close();
    }
}

impl PeerInbox {
    /// The next event; `None` once the transport is shut down and drained.
    pub async fn recv(&self) -> Option<PeerEvent> {
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
    pub fn try_recv(&self) -> Option<PeerEvent> {
        let peer = self.shared.unreachable.borrow_mut().pop_first();
        if let Some(peer) = peer {
            return Some(PeerEvent::Unreachable { peer });
        }
        let (from, message) = self.shared.inbox.try_pop()?;
        Some(PeerEvent::Message { from, message })
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.shared.inbox.len()
    }

    /// Whether no message waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Shared {
    fn count_handshake_error(&self, reason: &'static str) {
        *self
            .errors
            .borrow_mut()
            .handshake
            .entry(reason)
            .or_default() += 1;
    }

    fn peer_entry(&self, id: NodeId) -> Rc<Peer> {
        self.peers
            .borrow_mut()
            .entry(id)
            .or_insert_with(|| {
                Rc::new(Peer {
                    id,
                    addr: Cell::new(None),
                    queue: OutQueue::new(self.config.limits.clone()),
                    state: Cell::new(LinkState::Connecting),
                    generation: Cell::new(0),
                    task: RefCell::new(None),
                    removed: Cell::new(false),
                    bytes_received: Cell::new(0),
                })
            })
            .clone()
    }

    /// The link is lost: drop queued frames and tell the runtime once.
    fn mark_down(&self, peer: &Peer) {
        let was = peer.state.replace(LinkState::Down);
        let dropped = peer.queue.clear();
        if peer.removed.get() || self.closed.get() {
            return;
        }
        if was != LinkState::Down || dropped > 0 {
            self.unreachable.borrow_mut().insert(peer.id);
            self.inbox.readable.notify_all();
        }
    }

    fn hello(&self) -> Hello {
        Hello {
            cluster_id: self.config.cluster_id,
            node_id: self.config.node_id,
            protocol_version: PROTOCOL_VERSION,
            role: ConnectionRole::Peer,
        }
    }

    /// Runs one established connection until it fails or the transport
    /// shuts down: the reader feeds the inbox, the writer drains the queue.
    async fn run_connection(&self, peer: &Peer, stream: Stream, mut splitter: FrameSplitter) {
        peer.state.set(LinkState::Connected);
        tracing::info!(node = self.config.node_id, peer = peer.id, "peer connected");
        let reader = async {
            let mut until_yield = READER_YIELD_FRAMES;
            loop {
                let frame = read_frame(&stream, &mut splitter)
                    .await?
                    .ok_or(ConnectionError::Eof)?;
                let bytes = frame.header().frame_len as usize;
                peer.bytes_received
                    .set(peer.bytes_received.get() + bytes as u64);
                let message = PeerMessage::decode(&frame)?;
                self.inbox
                    .push((peer.id, message), bytes)
                    .await
                    .map_err(|_| ConnectionError::Closed)?;
                until_yield -= 1;
                if until_yield == 0 {
                    until_yield = READER_YIELD_FRAMES;
                    futures_lite::future::yield_now().await;
                }
            }
        };
        let writer = write_loop(&stream, &peer.queue);
        match or(reader, writer).await {
            Ok(()) => tracing::debug!(
                node = self.config.node_id,
                peer = peer.id,
                "peer connection closed after flush"
            ),
            Err(ConnectionError::Wire(reason)) => {
                *self
                    .errors
                    .borrow_mut()
                    .frame
                    .entry(reason.label())
                    .or_default() += 1;
                tracing::warn!(node = self.config.node_id, peer = peer.id, %reason, "peer disconnected: bad frame");
            }
            Err(reason) => {
                tracing::info!(node = self.config.node_id, peer = peer.id, %reason, "peer disconnected")
            }
        }
    }
}

/// The lower id's loop: dial, run the connection, back off, again.
async fn dial_loop(shared: Rc<Shared>, peer: Rc<Peer>) {
    let timings = shared.config.timings.clone();
    let limits = shared.config.limits.clone();
    let mut attempt = 0u32;
    while !shared.closed.get() && !peer.removed.get() {
        let Some(addr) = peer.addr.get() else { break };
        let dialed = dial(
            addr,
            shared.hello(),
            Some(peer.id),
            &shared.config.auth,
            timings.connect_timeout,
            timings.handshake_timeout,
            limits.receive_slab_bytes,
            limits.frame_bytes_max,
            None,
        )
        .await;
        match dialed {
            Ok(dialed) => {
                attempt = 0;
                peer.generation.set(peer.generation.get() + 1);
                shared
                    .run_connection(&peer, dialed.stream, dialed.splitter)
                    .await;
            }
            Err(reason) => {
                if peer.state.get() != LinkState::Down {
                    tracing::info!(node = shared.config.node_id, peer = peer.id, %addr, %reason, "cannot reach peer");
                }
            }
        }
        shared.mark_down(&peer);
        if shared.closed.get() || peer.removed.get() {
            break;
        }
        let delay = reconnect_delay(
            attempt,
            timings.reconnect_backoff_min,
            timings.reconnect_backoff_max,
            &mut shared.rng.borrow_mut(),
        );
        attempt = attempt.saturating_add(1);
        or(glommio::timer::sleep(delay), shared.shutdown.notified()).await;
    }
}

/// Accepts connections; each gets its own handshake task.
async fn accept_loop(shared: Rc<Shared>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(node = shared.config.node_id, %error, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if shared.closed.get() {
            break;
        }
        if shared.handshakes_pending.get() >= shared.config.handshakes_pending_max {
            tracing::warn!(node = shared.config.node_id, remote = ?stream.peer_addr().ok(), "closing inbound connection: too many handshakes pending");
            continue;
        }
        shared
            .handshakes_pending
            .set(shared.handshakes_pending.get() + 1);
        glommio::spawn_local(accept_one(shared.clone(), stream)).detach();
    }
}

/// The higher id's side: handshake, then adopt the connection for the
/// dialer's peer entry (replacing an older one: the dialer only redials
/// when it lost the old connection, even if this side has not noticed).
async fn accept_one(shared: Rc<Shared>, stream: TcpStream) {
    let pending = Pending(&shared.handshakes_pending);
    let remote = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let stream = Stream::plain(stream);
    let mut splitter = FrameSplitter::new(
        shared.config.limits.receive_slab_bytes,
        HANDSHAKE_FRAME_BYTES_MAX,
    );
    let received = with_timeout(
        shared.config.timings.handshake_timeout,
        "handshake",
        receive_handshake(&stream, &mut splitter),
    )
    .await;
    let hello = match received {
        Ok(Handshake::Hello(hello)) => hello,
        Ok(other) => {
            shared.count_handshake_error("expected_hello");
            tracing::warn!(node = shared.config.node_id, ?remote, frame = ?other, "closing inbound connection: expected hello");
            return;
        }
        Err(reason) => {
            shared.count_handshake_error(reason.label());
            tracing::warn!(node = shared.config.node_id, ?remote, %reason, "closing inbound connection: handshake failed");
            return;
        }
    };
    let own = shared.config.node_id;
    let reject =
        check_hello(&hello, shared.config.cluster_id, ConnectionRole::Peer).or_else(|| {
            if hello.node_id == 0 || hello.node_id >= own {
                Some(HelloReject {
                    reason: RejectReason::DialRule,
                    protocol_version: PROTOCOL_VERSION,
                    detail: format!(
                        "node {} may not dial node {own}: the lower id dials",
                        hello.node_id
                    ),
                })
            } else if shared.closed.get() {
                Some(HelloReject {
                    reason: RejectReason::Unavailable,
                    protocol_version: PROTOCOL_VERSION,
                    detail: "shutting down".into(),
                })
            } else {
                None
            }
        });
    if let Some(reject) = reject {
        shared.count_handshake_error(reject.reason.label());
        tracing::warn!(node = own, peer = hello.node_id, ?remote, reason = ?reject.reason, detail = %reject.detail, "refusing peer connection");
        let _ = with_timeout(
            shared.config.timings.handshake_timeout,
            "reject",
            send_handshake(&stream, Handshake::Reject(reject)),
        )
        .await;
        return;
    }
    if let Err(reason) = authenticate(
        &stream,
        &mut splitter,
        &hello,
        shared.config.cluster_id,
        own,
        &shared.config.auth,
        shared.config.timings.handshake_timeout,
    )
    .await
    {
        tracing::warn!(node = own, peer = hello.node_id, ?remote, %reason, "refusing peer connection");
        return;
    }
    drop(pending);
    let ack = Handshake::Ack(HelloAck {
        cluster_id: shared.config.cluster_id,
        node_id: own,
        protocol_version: PROTOCOL_VERSION,
    });
    if let Err(reason) = with_timeout(
        shared.config.timings.handshake_timeout,
        "ack",
        send_handshake(&stream, ack),
    )
    .await
    {
        tracing::warn!(node = own, peer = hello.node_id, ?remote, %reason, "closing inbound connection: handshake failed");
        return;
    }
    splitter.set_frame_bytes_max(shared.config.limits.frame_bytes_max);
    let peer = shared.peer_entry(hello.node_id);
    if peer.removed.get() {
        return;
    }
    let generation = peer.generation.get() + 1;
    peer.generation.set(generation);
    let task = glommio::spawn_local({
        let shared = shared.clone();
        let peer = peer.clone();
        async move {
            shared.run_connection(&peer, stream, splitter).await;
            if peer.generation.get() == generation {
                shared.mark_down(&peer);
            }
        }
    });
    // Replacing the handle drops (cancels) the previous connection's task.
    let previous = peer.task.replace(Some(task));
    drop(previous);
}
