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
use glommio::net::TcpListener;
use ordo_storage::NodeId;

use crate::gossip::{GossipFrame, PeerAddr, Wire};
use crate::handshake::{ConnectionRole, Hello, PROTOCOL_VERSION};
use crate::transport::client_server::{ClientAdopter, ClientInbox, ClientServer};
use crate::transport::config::{ClientServerConfig, ConfigError, ConnectionLimits, Timings};
use crate::transport::gossip_conn::{accept_loop, run_outbound};
use crate::transport::inbox::Inbox;
use crate::transport::notify::Notify;
use crate::transport::outbound::{OutQueue, QueueStats, SendError};
use crate::transport::{LinkState, TransportError};

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
    /// The address other members know this one by, when it differs from
    /// `listen_addr` (listening on `0.0.0.0`, or behind a NAT). `None`:
    /// the bound address.
    pub advertise_addr: Option<SocketAddr>,
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
    /// Signs and checks gossip challenges and proofs (the engine's keyed
    /// hash of the cluster's gossip secret). Default: none.
    pub auth: crate::auth::Credential,
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
            advertise_addr: None,
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
            auth: crate::auth::Credential::none(),
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
            !self.listen_addr.ip().is_unspecified() || self.advertise_addr.is_some(),
            "listen_addr",
            "must be a concrete IP unless advertise_addr is set: it is the address peers know this member by",
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

pub(super) struct Outbound {
    pub(super) addr: PeerAddr,
    pub(super) queue: OutQueue,
    pub(super) state: Cell<LinkState>,
    /// Sends fail at once before this (after a failure).
    pub(super) retry_at: Cell<Option<Instant>>,
    /// Failures in a row (the backoff's exponent).
    pub(super) attempt: Cell<u32>,
    pub(super) last_send: Cell<Instant>,
    /// Counts connection tasks: a task only updates the entry if no newer
    /// one replaced it.
    pub(super) generation: Cell<u64>,
    pub(super) task: RefCell<Option<Task<()>>>,
}

pub(super) struct Shared {
    pub(super) config: GossipTransportConfig,
    pub(super) local_addr: SocketAddr,
    pub(super) outbound: RefCell<HashMap<PeerAddr, Rc<Outbound>>>,
    pub(super) inbox: Inbox<(PeerAddr, Wire)>,
    /// Peers with an unreported failure (bounded by `outbound_peers_max`).
    pub(super) unreachable: RefCell<BTreeSet<PeerAddr>>,
    /// Inbound gossip connections open (their tasks end on `shutdown`).
    pub(super) inbound: Cell<usize>,
    pub(super) closed: Cell<bool>,
    pub(super) shutdown: Notify,
    pub(super) accept_task: RefCell<Option<Task<()>>>,
    pub(super) handshakes_pending: Cell<usize>,
    pub(super) clients: Option<ClientAdopter>,
    pub(super) rng: RefCell<fastrand::Rng>,
    pub(super) connections_made: Cell<u64>,
    pub(super) frames_dropped: Cell<u64>,
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
        let bound = listener.local_addr().map_err(std::io::Error::from)?;
        let local_addr = config.advertise_addr.unwrap_or(bound);
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
    pub(super) fn new_outbound(self: &Rc<Self>, addr: PeerAddr, now: Instant) -> Rc<Outbound> {
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

    pub(super) fn hello(&self) -> Hello {
        Hello {
            cluster_id: self.config.cluster_id,
            node_id: self.config.node_id,
            protocol_version: PROTOCOL_VERSION,
            role: ConnectionRole::Gossip,
        }
    }
}
