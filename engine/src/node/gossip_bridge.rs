//! A voter's gossip endpoint: the voter is a seed and a source of the
//! gossip layer. It runs its own gossip core (kind `Voter`) and transport
//! on the group's shard, as a task beside the group loop, listening on the
//! config's `gossip_addr`.
//!
//! The group calls two hooks, both non-blocking:
//! - [`GossipBridge::applied`] on every apply: the core learns the commit
//!   watermark (`CommitAdvanced`), so it announces it and serves pulls up
//!   to it;
//! - [`GossipBridge::answered`] when this voter answers a client's
//!   proposal with a commit: the message is published (`Publish`) with
//!   its payload and token.
//!
//! A published message needs its payload (from the apply) and its token
//! (from the answer). On the leader the core emits the apply, then the
//! answers it resolves, in the same turn: the payloads of the latest apply
//! are kept until the next one (they are held by the apply anyway, so
//! this pins no more memory than one apply). On a follower the leader's
//! forwarded answer usually comes before the follower applies the entry:
//! the answer waits for its apply in a bounded map keyed by id. An answer
//! for an entry applied earlier (its payload no longer kept) has its
//! payload read back from the log, at most `LATE_READS_MAX` at a time.
//! Whatever falls out of these bounds is not lost, only not pushed:
//! gossip nodes see the watermark move and pull the message from a
//! voter's log, where `ReadCommitted` is served with
//! `feed::read_committed` (tokens included).
//!
//! While the endpoint knows no gossip node, the hooks only move the
//! watermark: nobody would receive a push, and keeping payloads and
//! tokens for publication cost the leader about half of its commits/s in
//! the engine-only benchmark (docs/benchmarks.md). A gossip node that
//! joins later learns the watermark and pulls what it lacks.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future;
use ordo_net::Committed;
use ordo_net::transport::{GossipTransport, GossipTransportConfig};
use ordo_storage::{BatchKind, LogStore, MessageId};

use super::config::NodeConfig;
use super::feed::{self, FeedState, LogSource};
use super::gossip_driver::{Driver, TURN_EVENTS_MAX, wall_clock_us};
use super::notify::Notify;
use super::tokens::Certificates;
use crate::core::ApplyBatch;
use crate::gossip::{
    Command, Event, GossipConfig, GossipMessage, GossipNode, GossipStart, PeerAddr, PeerKind,
    TokenVerifier,
};
use crate::token::Verifier;

/// Answers waiting for their apply, at most this many (the oldest leave
/// first).
const PENDING_PUBLICATIONS_MAX: usize = 4096;
/// Log reads in flight for answers whose apply came first.
const LATE_READS_MAX: usize = 64;
/// Events from the group waiting for the bridge's loop; beyond it new
/// publications are dropped (gossip nodes pull them) — commit advances
/// are merged, so they never are.
const EVENTS_MAX: usize = 16_384;
/// Messages one `ReadCommitted` returns at most.
const READ_MESSAGES_MAX: u64 = 1024;

struct Shared {
    /// Events for the core, from the group's hooks and log reads.
    events: RefCell<VecDeque<Event>>,
    /// The last commit watermark not yet handed to the core.
    committed: Cell<Option<MessageId>>,
    /// Payloads of the latest apply's messages, by id.
    applied: RefCell<BTreeMap<MessageId, Bytes>>,
    /// The last message id applied.
    applied_id: Cell<MessageId>,
    /// The endpoint knows at least one gossip node (set by its loop after
    /// every turn); without one, nothing is published.
    gossip_peers: Cell<bool>,
    /// Answers whose apply came first, waiting for a log read of their
    /// payload. Invariant: at most `LATE_READS_MAX` (with those in flight).
    late: RefCell<Vec<(Committed, Bytes)>>,
    /// Late reads in flight.
    late_reads: Cell<usize>,
    /// Answers to clients not yet applied here: `(committed, token)`.
    answered: RefCell<BTreeMap<MessageId, (Committed, Bytes)>>,
    notify: Notify,
    /// Appends `publish id wall_us` lines (measurements).
    timings: RefCell<Option<std::io::BufWriter<std::fs::File>>>,
    /// The endpoint's metrics, when the node exports them.
    metrics: Option<crate::metrics::GossipMetrics>,
}

/// Why a voter's gossip endpoint (the config's `gossip_addr`) could not
/// start.
#[derive(Debug, thiserror::Error)]
#[error("gossip endpoint {addr} (gossip_addr): {reason}")]
pub struct GossipEndpointError {
    /// The endpoint's address.
    pub addr: PeerAddr,
    /// What failed.
    #[source]
    pub reason: GossipStartError,
}

/// What failed while a gossip runtime started, for a voter's endpoint
/// ([`GossipEndpointError`]) and a gossip node alike.
#[derive(Debug, thiserror::Error)]
pub enum GossipStartError {
    /// The voter's config names no keys file, which tokens are checked
    /// with.
    #[error("no keys_file in the config")]
    NoKeysFile,
    /// The cluster keys file does not load.
    #[error(transparent)]
    Keys(#[from] crate::token::KeyError),
    /// The gossip secret does not load.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// The transport could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: ordo_net::transport::TransportError,
    },
    /// A gossip knob is out of its domain.
    #[error("invalid gossip knob {}: {}", .0.field, .0.reason)]
    Knob(#[source] crate::core::ConfigError),
    /// The measurement file (`ORDO_GOSSIP_TIMINGS_DIR`, `--timings`) does
    /// not open.
    #[error("cannot open {}: {source}", path.display())]
    Timings {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The group's handle on the voter's gossip endpoint. Lives on the group's
/// shard.
pub struct GossipBridge {
    shared: Rc<Shared>,
}

impl GossipBridge {
    /// Starts the endpoint on `config.gossip_addr`, if the config has one.
    /// An endpoint the config names that cannot start (no keys file, port
    /// taken) is an error: the node does not run without a listener its
    /// config promises.
    pub fn start<S: LogStore + 'static>(
        config: &NodeConfig,
        store: Rc<S>,
        feed: Rc<FeedState>,
        certificates: Rc<Certificates>,
        metrics: Option<crate::metrics::GossipMetrics>,
    ) -> Result<Option<GossipBridge>, GossipEndpointError> {
        let Some(addr) = config.gossip_addr else {
            return Ok(None);
        };
        Self::try_start(config, addr, store, feed, certificates, metrics)
            .map(Some)
            .map_err(|reason| GossipEndpointError { addr, reason })
    }

    fn try_start<S: LogStore + 'static>(
        config: &NodeConfig,
        addr: PeerAddr,
        store: Rc<S>,
        feed: Rc<FeedState>,
        certificates: Rc<Certificates>,
        metrics: Option<crate::metrics::GossipMetrics>,
    ) -> Result<GossipBridge, GossipStartError> {
        let keys = config
            .keys_file
            .as_ref()
            .ok_or(GossipStartError::NoKeysFile)?;
        let verifier = Verifier::load(keys)?;
        let gossip_config = GossipConfig::default();
        let mut transport_config =
            GossipTransportConfig::new(config.cluster_id, config.id, config.listen.gossip_or(addr));
        transport_config.advertise_addr = Some(addr);
        transport_config.auth = config.auth.gossip_credential(config.keys_file.as_deref())?;
        transport_config.limits.frame_bytes_max = transport_config
            .limits
            .frame_bytes_max
            .max(gossip_config.pull_reply_bytes_max + (1 << 20));
        let started = GossipTransport::start(transport_config, None)
            .map_err(|source| GossipStartError::Listen { addr, source })?;
        let generation = (wall_clock_us() / 1_000_000) as u32;
        let start = GossipStart {
            addr,
            kind: PeerKind::Voter,
            generation: generation.max(1),
            delivered: feed.applied_id.get(),
            seeds: Vec::new(),
            rng_seed: wall_clock_us() ^ (config.id << 48),
        };
        let core = GossipNode::new(start, gossip_config, TokenVerifier::new(verifier))
            .map_err(GossipStartError::Knob)?;
        let timings = match std::env::var_os("ORDO_GOSSIP_TIMINGS_DIR") {
            Some(dir) => {
                let path = std::path::Path::new(&dir).join(format!("publish-{}.txt", config.id));
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|source| GossipStartError::Timings {
                        path: path.clone(),
                        source,
                    })?;
                Some(std::io::BufWriter::new(file))
            }
            None => None,
        };
        let shared = Rc::new(Shared {
            events: RefCell::new(VecDeque::new()),
            committed: Cell::new(None),
            applied: RefCell::new(BTreeMap::new()),
            applied_id: Cell::new(feed.applied_id.get()),
            gossip_peers: Cell::new(false),
            metrics,
            late: RefCell::new(Vec::new()),
            late_reads: Cell::new(0),
            answered: RefCell::new(BTreeMap::new()),
            notify: Notify::default(),
            timings: RefCell::new(timings),
        });
        let driver = Driver::new(core, started.transport, started.inbox);
        tracing::info!(id = config.id, %addr, "gossip endpoint started");
        let reader = LogSource {
            store,
            state: feed,
            certificates,
        };
        glommio::spawn_local(run(driver, shared.clone(), reader)).detach();
        Ok(GossipBridge { shared })
    }

    /// Hook: the group applied `apply`. The core learns the new commit
    /// watermark; payloads are kept for the answers still to come.
    pub fn applied(&self, apply: &ApplyBatch) {
        let mut last = None;
        self.shared.applied.borrow_mut().clear();
        if !self.shared.gossip_peers.get() {
            self.shared.answered.borrow_mut().clear();
            let id = apply.last_id();
            if id > self.shared.applied_id.get() {
                self.advance(id);
            }
            return;
        }
        for batch in &apply.batches {
            for entry in batch.entries() {
                if entry.index < apply.first_index
                    || entry.index > apply.last_index
                    || entry.kind != BatchKind::Entries
                {
                    continue;
                }
                last = Some(entry.id);
                let payload = batch.bytes().slice_ref(entry.payload);
                let answer = self.shared.answered.borrow_mut().remove(&entry.id);
                match answer {
                    Some((committed, token)) => self.publish(&committed, payload, token),
                    None => {
                        self.shared.applied.borrow_mut().insert(entry.id, payload);
                    }
                }
            }
        }
        if let Some(id) = last {
            self.advance(id);
        }
    }

    /// The commit watermark moved to message `id`. With no gossip node to
    /// serve, the endpoint is not woken for it: its next turn (a transport
    /// event or its timer) steps the newest watermark before anything else,
    /// and waking three endpoints per commit cost ~3 µs of the in-process
    /// C = 1 commit latency.
    fn advance(&self, id: MessageId) {
        self.shared.applied_id.set(id);
        self.shared.committed.set(Some(id));
        if self.shared.gossip_peers.get() {
            self.shared.notify.notify();
        }
    }

    /// Hook: this voter answered a client's proposal with `committed` and
    /// `token` (empty when it has no statement yet: the message is then
    /// left to the gossip nodes' pulls).
    pub fn answered(&self, committed: &Committed, token: &[u8]) {
        if token.is_empty() || !self.shared.gossip_peers.get() {
            return;
        }
        let token = Bytes::copy_from_slice(token);
        let applied = self.shared.applied.borrow_mut().remove(&committed.id);
        match applied {
            Some(payload) => self.publish(committed, payload, token),
            None if committed.id <= self.shared.applied_id.get() => {
                let shared = &self.shared;
                if shared.late.borrow().len() + shared.late_reads.get() < LATE_READS_MAX {
                    shared.late.borrow_mut().push((*committed, token));
                    shared.notify.notify();
                }
            }
            None => {
                let mut answered = self.shared.answered.borrow_mut();
                answered.insert(committed.id, (*committed, token));
                while answered.len() > PENDING_PUBLICATIONS_MAX {
                    answered.pop_first();
                }
            }
        }
    }

    fn publish(&self, committed: &Committed, payload: Bytes, token: Bytes) {
        self.shared.publish(GossipMessage {
            id: committed.id,
            index: committed.index,
            term: committed.term,
            ts: committed.ts,
            payload,
            token,
        });
    }
}

impl Shared {
    fn publish(&self, message: GossipMessage) {
        let mut events = self.events.borrow_mut();
        if events.len() >= EVENTS_MAX {
            return;
        }
        if let Some(timings) = self.timings.borrow_mut().as_mut() {
            // Timing lines are a measurement aid (`--timings`); a failed write loses a line, never a message.
            let _ = writeln!(timings, "{} {}", message.id, wall_clock_us());
        }
        events.push_back(Event::Publish(message));
        drop(events);
        self.notify.notify();
    }
}

/// The endpoint's loop: like a gossip node's, with the group's hooks and
/// log reads as extra inputs. Ends when the group shuts down (the feed
/// closes).
async fn run<S: LogStore + 'static>(
    mut driver: Driver<TokenVerifier>,
    shared: Rc<Shared>,
    reader: LogSource<S>,
) {
    let LogSource {
        state: feed,
        certificates,
        ..
    } = &reader;
    let mut links_sent = 0;
    loop {
        let generation = shared.notify.generation();
        let feed_generation = feed.closing.generation();
        if feed.closed.get() {
            break;
        }
        let late = std::mem::take(&mut *shared.late.borrow_mut());
        for (committed, token) in late {
            shared.late_reads.set(shared.late_reads.get() + 1);
            let (reader, shared) = (reader.clone(), shared.clone());
            glommio::spawn_local(async move {
                let id = committed.id;
                let read = read_committed(&reader, id, id, usize::MAX).await;
                shared.late_reads.set(shared.late_reads.get() - 1);
                if let Some(mut message) = read.into_iter().next()
                    && message.id == id
                    && message.index == committed.index
                {
                    message.token = token;
                    shared.publish(message);
                }
            })
            .detach();
        }
        let has_events = !shared.events.borrow().is_empty() || shared.committed.get().is_some();
        if !has_events {
            let woken = future::or(
                async { driver.wait(Duration::from_secs(1)).await },
                future::or(
                    async {
                        shared.notify.wait(generation).await;
                        None
                    },
                    async {
                        feed.closing.wait(feed_generation).await;
                        None
                    },
                ),
            )
            .await;
            if let Some(event) = woken {
                driver.transport_event(event);
            }
        }
        if let Some(id) = shared.committed.take() {
            driver.step(Event::CommitAdvanced { id });
        }
        // New configuration links of this voter's node: the gossip nodes
        // it feeds learn them (and spread them) before messages signed by
        // the voters they add.
        if certificates.chain_len() != links_sent {
            let links: Vec<Bytes> = certificates
                .links_held()
                .iter()
                .map(|link| Bytes::from(link.to_bytes()))
                .collect();
            links_sent = links.len();
            driver.step(Event::Chain { links });
        }
        let mut taken = driver.drain_transport(TURN_EVENTS_MAX);
        while taken < TURN_EVENTS_MAX {
            let Some(event) = shared.events.borrow_mut().pop_front() else {
                break;
            };
            driver.step(event);
            taken += 1;
        }
        if let Some(timings) = shared.timings.borrow_mut().as_mut() {
            // As above: a measurement aid.
            let _ = timings.flush();
        }
        shared
            .gossip_peers
            .set(driver.core().has_member(PeerKind::Gossip));
        if let Some(metrics) = &shared.metrics {
            metrics.update(driver.core().stats(), shared.applied_id.get());
        }
        for command in driver.end_turn() {
            if let Command::ReadCommitted {
                peer,
                from,
                to,
                bytes_max,
            } = command
            {
                let (reader, shared) = (reader.clone(), shared.clone());
                glommio::spawn_local(async move {
                    let messages = read_committed(&reader, from, to, bytes_max).await;
                    shared
                        .events
                        .borrow_mut()
                        .push_back(Event::CommittedRead { peer, messages });
                    shared.notify.notify();
                })
                .detach();
            }
            // A voter delivers nothing and persists no watermark.
        }
    }
    driver.shutdown().await;
}

/// Committed messages `[from, to]` with their tokens, at most `bytes_max`
/// bytes (at least one message), stopping before the first whose
/// certificate has not arrived (no message leaves without its token).
/// Empty if the log cannot serve them (compacted, or failed).
async fn read_committed<S: LogStore>(
    source: &LogSource<S>,
    from: MessageId,
    to: MessageId,
    bytes_max: usize,
) -> Vec<GossipMessage> {
    if to < from {
        return Vec::new();
    }
    let mut cursor = match source.locate(from).await {
        Ok(cursor) => cursor,
        Err(error) => {
            tracing::debug!(%error, from, "gossip pull cannot be served from the log");
            return Vec::new();
        }
    };
    let limit = feed::ChunkLimit {
        messages_max: (to - from).saturating_add(1).min(READ_MESSAGES_MAX) as usize,
        bytes_max,
    };
    let LogSource {
        store,
        state,
        certificates,
    } = source;
    let chunk = match feed::read_committed(&**store, state, certificates, &mut cursor, limit).await
    {
        Ok(chunk) => chunk,
        Err(error) => {
            tracing::warn!(%error, from, to, "gossip pull: log read failed");
            return Vec::new();
        }
    };
    if let Some(missing) = chunk.token_missing
        && missing.id <= to
    {
        // The puller asks again; the group's repair fetches the statement.
        tracing::debug!(
            id = missing.id,
            index = missing.index,
            "gossip pull held at a message whose certificate has not arrived"
        );
    }
    chunk
        .messages
        .into_iter()
        .take_while(|m| m.id >= from && m.id <= to)
        .map(|m| GossipMessage {
            id: m.id,
            index: m.index,
            term: m.term,
            ts: m.ts,
            payload: m.payload,
            token: m.token,
        })
        .collect()
}
