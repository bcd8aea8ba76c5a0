//! The gossip core's state, event dispatch, turn boundary, deadlines and
//! invariants. What it does with each message lives in `dissemination.rs`
//! (Plumtree and anti-entropy), `neighbors.rs` (the overlay) and
//! `voter.rs` (a voter's side).

use std::collections::BTreeMap;

use ordo_storage::MessageId;

use super::cache::MessageCache;
use super::membership::{MemberChange, Membership};
use super::order::ReorderBuffer;
use super::plumtree::Links;
use super::repair::Repair;
use super::swim_codec::SwimIdentity;
use super::{
    Command, Event, GossipConfig, GossipMessage, GossipStart, GossipStats, PeerAddr, PeerKind,
    Verify, Wire,
};
use crate::core::{ConfigError, Rng};

/// Voters a gossip node reports its watermark to (a node is the entry of
/// at most one link per voter; a few voters suffice).
pub(super) const FEEDING_VOTERS_MAX: usize = 8;

/// One member's gossip state machine: a gossip node, or the gossip side of
/// a voter. Pure and deterministic like the Raft core: no clock (time comes
/// with each call), no IO (it emits [`Command`]s), randomness only from the
/// seed in [`GossipStart`]. Lives on one shard; the runtime feeds it the
/// events of that shard's gossip connections.
///
/// A runtime turn: [`Self::step`] for each event that arrived, then
/// [`Self::end_turn`], then execute the commands in order; tick at
/// [`Self::next_deadline_us`] at the latest.
pub struct GossipNode<V: Verify> {
    pub(super) config: GossipConfig,
    pub(super) addr: PeerAddr,
    pub(super) kind: PeerKind,
    pub(super) verifier: V,
    pub(super) rng: Rng,
    pub(super) now_us: u64,
    pub(super) membership: Membership,
    /// Gossip node: its neighbours (the tree's links). Voter: the gossip
    /// nodes it feeds.
    pub(super) links: Links,
    /// Voter only: the link its messages enter the tree by.
    /// Invariant: a link, if set.
    pub(super) entry: Option<PeerAddr>,
    /// Neighbour requests in flight, with when they are given up.
    /// Invariant: none to a link.
    pub(super) neighbor_requests: BTreeMap<PeerAddr, u64>,
    /// When the overlay is next checked for missing neighbours.
    pub(super) next_neighbor_check_us: u64,
    /// Lazy announcements are not sent again before this.
    pub(super) next_lazy_flush_us: u64,
    /// Gossip node: the delivered watermark and the reorder buffer (the
    /// dedup set). A voter delivers nothing; its stays at the start value.
    pub(super) order: ReorderBuffer,
    /// Voter only: every id up to here is committed.
    pub(super) committed: MessageId,
    /// Recently accepted (gossip node) or published (voter) messages.
    pub(super) cache: MessageCache,
    pub(super) repair: Repair,
    /// Hops from the voters of recent pushes (a moving average, in
    /// sixteenths of a hop).
    pub(super) depth_x16: u32,
    /// An eager link was lost since the last graft: the next repair
    /// grafts, reconnecting the tree.
    pub(super) eager_link_lost: bool,
    /// Repairs started since the last message that arrived by push.
    pub(super) repairs_in_a_row: u32,
    /// Gossip node: voters that pushed to it, with the watermark last
    /// announced to each: they hear it like neighbours do, so that a voter
    /// knows whether its push arrived.
    /// Invariant: at most [`FEEDING_VOTERS_MAX`] entries.
    pub(super) feeding_voters: BTreeMap<PeerAddr, (MessageId, u64)>,
    /// Voter only: its recent publications `(id, pushed_at_us, pushes)`
    /// not yet confirmed by the entry. Invariant: at most
    /// `cache_messages_max` entries, in push time order.
    pub(super) unconfirmed: std::collections::VecDeque<(MessageId, u64, u32)>,
    /// Voter only: log reads in flight for pulls.
    /// Invariant: at most `voter_reads_inflight_max`.
    pub(super) reads_inflight: usize,
    /// Delivered in this turn, handed over at its end.
    /// Invariant: ids `handed_over + 1 ..= order.delivered()`, in order.
    pub(super) delivering: Vec<GossipMessage>,
    /// The last id handed over in a [`Command::Deliver`].
    pub(super) handed_over: MessageId,
    pub(super) commands: Vec<Command>,
    pub(super) changes: Vec<MemberChange>,
    pub(super) stats: GossipStats,
}

impl<V: Verify> std::fmt::Debug for GossipNode<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipNode")
            .field("addr", &self.addr)
            .field("kind", &self.kind)
            .field("delivered", &self.order.delivered())
            .field("known_max", &self.repair.known_max())
            .field("links", &self.links)
            .field("membership", &self.membership)
            .finish()
    }
}

impl<V: Verify> GossipNode<V> {
    /// A core for `start`, checking `config` first.
    pub fn new(start: GossipStart, config: GossipConfig, verifier: V) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = Rng::new(start.rng_seed);
        let identity = SwimIdentity {
            addr: start.addr,
            kind: start.kind,
            generation: start.generation,
        };
        let membership = Membership::new(identity, &config, rng.next_u64(), start.seeds);
        let links_max = match start.kind {
            PeerKind::Voter => config.voter_fanout,
            PeerKind::Gossip => config.neighbors_max,
        };
        let committed = match start.kind {
            PeerKind::Voter => start.delivered,
            PeerKind::Gossip => 0,
        };
        Ok(Self {
            addr: start.addr,
            kind: start.kind,
            verifier,
            rng,
            now_us: 0,
            membership,
            links: Links::new(links_max),
            entry: None,
            neighbor_requests: BTreeMap::new(),
            next_neighbor_check_us: 0,
            next_lazy_flush_us: 0,
            order: ReorderBuffer::new(
                start.delivered,
                config.reorder_messages_max,
                config.reorder_bytes_max,
            ),
            committed,
            cache: MessageCache::new(config.cache_messages_max, config.cache_bytes_max),
            repair: Repair::new(start.delivered),
            depth_x16: 0,
            eager_link_lost: false,
            repairs_in_a_row: 0,
            reads_inflight: 0,
            feeding_voters: BTreeMap::new(),
            unconfirmed: std::collections::VecDeque::new(),
            delivering: Vec::new(),
            handed_over: start.delivered,
            commands: Vec::new(),
            changes: Vec::new(),
            stats: GossipStats::default(),
            config,
        })
    }

    /// This member's address.
    pub fn addr(&self) -> PeerAddr {
        self.addr
    }

    /// Voter or gossip node.
    pub fn kind(&self) -> PeerKind {
        self.kind
    }

    /// Every id up to here was delivered (gossip node).
    pub fn delivered(&self) -> MessageId {
        self.order.delivered()
    }

    /// The highest id this member knows to exist.
    pub fn known_max(&self) -> MessageId {
        self.repair.known_max().max(self.committed)
    }

    /// Its current links and whether each is eager.
    pub fn links(&self) -> Vec<(PeerAddr, bool)> {
        self.links
            .iter()
            .map(|(peer, link)| (peer, link.eager))
            .collect()
    }

    /// The active members it knows of, other than itself.
    pub fn members(&self) -> Vec<(PeerAddr, PeerKind)> {
        self.membership
            .members()
            .map(|m| (m.addr, m.kind))
            .collect()
    }

    /// Whether an active member of `kind` is known (without collecting
    /// the members).
    pub fn has_member(&self, kind: PeerKind) -> bool {
        self.membership.members().any(|m| m.kind == kind)
    }

    /// Its SWIM identity (generation included).
    pub fn identity(&self) -> SwimIdentity {
        self.membership.identity()
    }

    /// What it has done so far.
    pub fn stats(&self) -> &GossipStats {
        &self.stats
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &GossipConfig {
        &self.config
    }

    /// Hands the core one event that happened at `now_us` (a monotonic
    /// clock in microseconds).
    pub fn step(&mut self, now_us: u64, event: Event) {
        self.now_us = self.now_us.max(now_us);
        match event {
            Event::Tick => self.tick(),
            Event::Message { from, message } => {
                if from == self.addr {
                    return;
                }
                *self.stats.received.entry(message.name()).or_default() += 1;
                self.receive(from, message);
            }
            Event::Publish(message) => self.publish(message),
            Event::CommitAdvanced { id } => self.commit_advanced(id),
            Event::CommittedRead { peer, messages } => self.committed_read(peer, messages),
            Event::Chain { links } => self.learn_chain(None, links),
            Event::Unreachable { peer } => self.drop_link(peer),
        }
        if self.kind == PeerKind::Gossip {
            self.maybe_repair();
        }
    }

    /// Ends a runtime turn: the messages delivered in it are handed over in
    /// one [`Command::Deliver`], followed by the watermark to persist. Moves
    /// every command emitted since the last turn into `out`, in order.
    pub fn end_turn(&mut self, now_us: u64, out: &mut Vec<Command>) {
        self.now_us = self.now_us.max(now_us);
        if !self.delivering.is_empty() {
            let batch = std::mem::take(&mut self.delivering);
            self.handed_over = self.order.delivered();
            self.commands.push(Command::Deliver(batch));
            self.commands.push(Command::PersistWatermark {
                delivered: self.handed_over,
            });
        }
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
        out.append(&mut self.commands);
    }

    /// The earliest time at which an [`Event::Tick`] has work to do.
    pub fn next_deadline_us(&self) -> u64 {
        let mut deadline = self.membership.next_deadline_us();
        let status_us = self.config.status_interval_ms * 1_000;
        let watermark = match self.kind {
            PeerKind::Voter => (self.committed, 0),
            PeerKind::Gossip => (self.order.delivered(), self.order.above_bitmap()),
        };
        let wanted = match self.kind {
            PeerKind::Voter => self.config.voter_fanout,
            PeerKind::Gossip => self.config.neighbors_min,
        };
        if self.links.len() < wanted {
            deadline = deadline.min(self.next_neighbor_check_us);
        }
        for (_, link) in self.links.iter() {
            deadline = deadline.min(link.announced_us + status_us);
            if link.announced != watermark {
                deadline = deadline.min(self.next_lazy_flush_us);
            }
        }
        if self.feeding_voters.values().any(|&a| a != watermark) {
            deadline = deadline.min(self.next_lazy_flush_us);
        }
        if let Some(&(_, pushed_at, _)) = self.unconfirmed.front() {
            deadline = deadline.min(pushed_at + self.config.graft_timeout_ms * 1_000);
        }
        if self.kind == PeerKind::Gossip
            && let Some((first, _)) = self.order.first_gap(self.repair.known_max())
            && let Some(due) = self.repair.due_at_us(first, self.graft_timeout_us())
        {
            deadline = deadline.min(due);
        }
        deadline
    }

    /// Checks every invariant written on the core's fields. Debug builds and
    /// the simulator run it after every turn; a failure is a bug.
    pub fn check_invariants(&self) {
        self.order.check();
        self.cache.check();
        self.repair.check();
        self.links.check(self.addr);
        if let Some(entry) = self.entry {
            assert!(self.links.contains(entry), "entry is not a link");
        }
        for peer in self.neighbor_requests.keys() {
            assert!(!self.links.contains(*peer), "request to a link");
        }
        assert!(self.reads_inflight <= self.config.voter_reads_inflight_max);
        assert!(self.feeding_voters.len() <= FEEDING_VOTERS_MAX);
        assert!(self.unconfirmed.len() <= self.config.cache_messages_max);
        let mut expected = self.handed_over;
        for message in &self.delivering {
            expected += 1;
            assert_eq!(message.id, expected, "deliveries not consecutive");
        }
        assert_eq!(
            expected,
            self.order.delivered(),
            "deliveries lag the watermark"
        );
    }

    fn tick(&mut self) {
        let now = self.now_us;
        self.membership
            .tick(now, &mut self.commands, &mut self.changes);
        self.apply_member_changes();
        match self.kind {
            PeerKind::Gossip => {
                self.maintain_neighbors();
                self.announce();
            }
            PeerKind::Voter => {
                self.maintain_downstream();
                self.announce();
                self.confirm_publications();
            }
        }
    }

    fn receive(&mut self, from: PeerAddr, message: Wire) {
        match message {
            Wire::Membership(packet) => {
                self.membership.receive(
                    self.now_us,
                    from,
                    &packet,
                    &mut self.commands,
                    &mut self.changes,
                );
                self.apply_member_changes();
            }
            Wire::Neighbor { urgent } => self.on_neighbor(from, urgent),
            Wire::NeighborReply { accepted } => self.on_neighbor_reply(from, accepted),
            Wire::Disconnect => {
                self.drop_link(from);
                self.feeding_voters.remove(&from);
            }
            Wire::Push {
                message,
                hops,
                repair,
            } => self.on_push(from, message, hops, repair),
            Wire::IHave { delivered, above } => self.on_ihave(from, delivered, above),
            Wire::Graft { from: first, to } => self.on_graft(from, first, to),
            Wire::Prune => {
                self.links.set_eager(from, false);
            }
            Wire::Pull { from: first, to } => self.on_pull(from, first, to),
            Wire::PullReply {
                messages,
                delivered,
            } => self.on_pull_reply(from, messages, delivered),
            Wire::Chain { links } => self.learn_chain(Some(from), links),
        }
    }

    /// Learns configuration links (from a peer, or a voter's own node);
    /// if any was new, every link but `from` hears the whole chain, so it
    /// spreads as far as it is news and no further.
    fn learn_chain(&mut self, from: Option<PeerAddr>, links: Vec<bytes::Bytes>) {
        let mut learned = false;
        for link in links.iter().take(crate::token::CHAIN_CONFIGS_MAX) {
            match self.verifier.learn(link) {
                Ok(true) => {
                    learned = true;
                    self.stats.links_learned += 1;
                }
                Ok(false) => {}
                Err(error) => {
                    self.stats.links_refused += 1;
                    tracing::debug!(?from, %error, "configuration link refused");
                }
            }
        }
        if !learned {
            return;
        }
        let chain = self.verifier.links();
        let peers: Vec<PeerAddr> = self
            .links
            .iter()
            .map(|(peer, _)| peer)
            .filter(|&peer| Some(peer) != from)
            .collect();
        for peer in peers {
            self.send(
                peer,
                Wire::Chain {
                    links: chain.clone(),
                },
            );
        }
    }

    /// A link to `peer` was made: it hears the chain this node knows.
    pub(super) fn send_chain(&mut self, peer: PeerAddr) {
        let links = self.verifier.links();
        if !links.is_empty() {
            self.send(peer, Wire::Chain { links });
        }
    }

    /// How long a known id may take to arrive before it is repaired.
    pub(super) fn graft_timeout_us(&self) -> u64 {
        self.config.graft_timeout_ms * 1_000
            + u64::from(self.depth_x16) * self.config.graft_timeout_per_hop_us / 16
    }

    /// Sends `message` to `to`, counting it.
    pub(super) fn send(&mut self, to: PeerAddr, message: Wire) {
        *self.stats.sent.entry(message.name()).or_default() += 1;
        self.commands.push(Command::Send { to, message });
    }

    /// The cached messages of `[first, to]`, as many as one pull answer
    /// holds.
    pub(super) fn cached_for_pull(&self, first: MessageId, to: MessageId) -> Vec<GossipMessage> {
        self.cache.range(
            first,
            to,
            self.config.pull_messages_max,
            self.config.pull_reply_bytes_max,
        )
    }

    /// Answers a pull from `to` with `messages` and the watermark
    /// `delivered`.
    pub(super) fn send_pull_reply(
        &mut self,
        to: PeerAddr,
        messages: Vec<GossipMessage>,
        delivered: MessageId,
    ) {
        self.send(
            to,
            Wire::PullReply {
                messages,
                delivered,
            },
        );
    }

    /// A uniformly random element of `items`.
    pub(super) fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        Some(items[self.rng.range(0, items.len() as u64) as usize])
    }

    /// The kind of `peer` as membership knows it.
    pub(super) fn kind_of(&self, peer: PeerAddr) -> Option<PeerKind> {
        self.membership.kind_of(peer)
    }

    /// Sends the watermark to links that need it: lazy links (every link
    /// of a voter) when it moved, at most once per lazy flush interval;
    /// every link once per status interval.
    fn announce(&mut self) {
        let now = self.now_us;
        let watermark = match self.kind {
            PeerKind::Voter => (self.committed, 0),
            PeerKind::Gossip => (self.order.delivered(), self.order.above_bitmap()),
        };
        let status_us = self.config.status_interval_ms * 1_000;
        let flush = now >= self.next_lazy_flush_us;
        let mut flushed = false;
        let due: Vec<PeerAddr> = self
            .links
            .iter()
            .filter(|(_, link)| {
                (flush && link.announced != watermark) || now >= link.announced_us + status_us
            })
            .map(|(peer, _)| peer)
            .collect();
        for peer in due {
            if self
                .links
                .get(peer)
                .is_some_and(|l| l.announced != watermark)
            {
                flushed = true;
            }
            self.links.announced(peer, watermark, now);
            self.send(
                peer,
                Wire::IHave {
                    delivered: watermark.0,
                    above: watermark.1,
                },
            );
        }
        if flush {
            let voters: Vec<PeerAddr> = self
                .feeding_voters
                .iter()
                .filter(|&(_, &announced)| announced != watermark)
                .map(|(&voter, _)| voter)
                .collect();
            for voter in voters {
                flushed = true;
                self.feeding_voters.insert(voter, watermark);
                self.send(
                    voter,
                    Wire::IHave {
                        delivered: watermark.0,
                        above: watermark.1,
                    },
                );
            }
        }
        if flushed {
            self.next_lazy_flush_us = now + self.config.lazy_flush_interval_ms * 1_000;
        }
    }

    /// Remembers a voter that pushed to this node.
    pub(super) fn feeding_voter(&mut self, voter: PeerAddr) {
        if self.feeding_voters.contains_key(&voter) {
            return;
        }
        if self.feeding_voters.len() == FEEDING_VOTERS_MAX
            && let Some(&oldest) = self.feeding_voters.keys().next()
        {
            self.feeding_voters.remove(&oldest);
        }
        self.feeding_voters.insert(voter, (0, 0));
    }
}
