//! The group loop: the Raft core on its shard, and the runtime that executes
//! its commands. One turn: wait for input (peer frames, client calls,
//! completions, requests from other threads, the core's timer), step every
//! input that is ready (bounded), end the turn, execute the commands.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::future;
use ordo_net::transport::{ClientCall, ClientInbox, PeerEvent, SendError};
use ordo_net::{LeaderHint, Message, PeerMessage, ReadError};
use ordo_storage::{Index, LogStore, NodeId};

use super::StateMachine;
use super::clock::Clock;
use super::config::NodeConfig;
use super::feed::FeedState;
use super::gossip_bridge::GossipBridge;
use super::inbox;
use super::input::{External, InputSender};
use super::log_io::LogIo;
use super::members::Directory;
use super::peers::Peers;
use super::shards::ShardReply;
use super::snapshots::SnapshotIo;
use super::ticker::Ticker;
use super::tokens::Certificates;
use crate::core::{ApplyBatch, Command, Event, Raft, Role, Status};

mod admin;
mod answers;
mod certificate_repair;
mod intake;
mod log_stream;

use admin::AdminWaiter;
pub use answers::node_status;
use answers::{ProposalWaiter, Responder, TokenFound};

/// What ended a wait.
enum Woken {
    Nothing,
    Peer(PeerEvent),
    Client(ClientCall),
    External(External),
}

/// How often the log's disk is measured against `storage.retain_bytes`
/// (µs).
const RETAIN_CHECK_US: u64 = 20_000;
/// The log directory's files besides segments (the hard state), with room
/// to spare.
const RETAIN_SLACK_BYTES: u64 = 64 << 10;
/// Election timeouts a node waits, removed by a committed configuration,
/// before it stops (`Group::stop_if_removed`).
const REMOVED_STOP_DELAY_TIMEOUTS: u64 = 4;

/// The group's runtime state. Lives on shard 0.
pub struct Group<S: LogStore + 'static> {
    raft: Raft,
    config: Rc<NodeConfig>,
    clock: Clock,
    log: LogIo<S>,
    peers: Rc<Peers>,
    clients: Option<ClientInbox>,
    external: inbox::Receiver<External>,
    local: InputSender,
    state_machine: Box<dyn StateMachine>,
    feed: Rc<FeedState>,
    certificates: Rc<Certificates>,
    snapshots: Rc<SnapshotIo>,
    commands: Vec<Command>,
    /// Request ids are this node's own (not attacker-chosen): a fast hash.
    responders: FxHashMap<u64, ProposalWaiter>,
    read_responders: FxHashMap<u64, Responder<Result<Index, ReadError>>>,
    /// Reads whose index the state machine has not applied yet.
    read_waiters: BTreeMap<Index, Vec<(u64, Index)>>,
    next_request_id: u64,
    /// Answers for each client shard, sent once per turn.
    shard_replies: Vec<async_channel::Sender<Vec<ShardReply>>>,
    shard_out: Vec<Vec<ShardReply>>,
    status: Rc<std::cell::Cell<Status>>,
    shutting_down: bool,
    /// A configuration listed this node since it started: one that no
    /// longer lists it, committed, removed it (`stop_if_removed`).
    was_member: bool,
    /// Since when a committed configuration has left this node out.
    removed_since_us: Option<u64>,
    /// When the log's disk is next measured against
    /// `storage.retain_bytes` (µs, monotonic).
    retain_next_us: u64,
    /// The voter's gossip endpoint, if it runs one (`gossip_bridge.rs`).
    gossip: Option<GossipBridge>,
    /// The last leader hint built, reused while the leader is the same:
    /// every answer carries one, and formatting the address per answer was
    /// ~5 % of the leader's thread at C = 256.
    leader_hint: std::cell::RefCell<LeaderHint>,
    /// Wakes the loop at the core's next deadline (`ticker.rs`); started
    /// by [`Group::run`] on the group's executor.
    ticker: Option<Ticker>,
    /// This turn queued a message for a peer (held-back certificates ride
    /// with it: `Certificates::send_signed`).
    sent_to_peers: bool,
    /// Records that the node finished repairing (the simulator keeps its
    /// durable records itself); `None`: clears `data_dir/repair`.
    repaired_hook: Option<Box<dyn Fn()>>,
    /// Certificate repair requests sent (they alternate between the
    /// leader and the other voters).
    repair_rounds: u64,
    /// The gap the rounds so far asked about, and how many asked for it.
    repair_gap: (Index, u64),
    /// Answers whose token had to be built from the log or waited for
    /// ([`Group::find_token`]), ready to send.
    tokens_found: Rc<std::cell::RefCell<Vec<TokenFound>>>,
    /// How to reach the members of the configuration in force.
    directory: Directory,
    /// Membership changes and transfers waiting for the core's answer, by
    /// the request id handed to the core.
    admin_waiters: FxHashMap<u64, AdminWaiter>,
    /// Leader-change log lines and the metrics (`observe.rs`).
    observer: super::observe::Observer,
}

impl<S: LogStore + 'static> Group<S> {
    /// Assembles the group; `raft` was built from `log`'s store.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        raft: Raft,
        config: Rc<NodeConfig>,
        log: LogIo<S>,
        local: InputSender,
        peers: Rc<Peers>,
        clients: Option<ClientInbox>,
        external: inbox::Receiver<External>,
        state_machine: Box<dyn StateMachine>,
        feed: Rc<FeedState>,
        certificates: Rc<Certificates>,
        snapshots: Rc<SnapshotIo>,
        status: Rc<std::cell::Cell<Status>>,
        shard_replies: Vec<async_channel::Sender<Vec<ShardReply>>>,
    ) -> Self {
        let clock = Clock::new();
        // Request ids must never repeat across restarts (the leader drops a
        // forwarded proposal whose (node, request id) it saw recently):
        // start from the wall clock in microseconds, shifted for headroom.
        let next_request_id = clock.now().wall_us << 8;
        let raft_id = raft.id();
        Self {
            raft,
            config,
            clock,
            log,
            peers,
            clients,
            external,
            local,
            state_machine,
            feed,
            certificates,
            snapshots,
            commands: Vec::new(),
            responders: FxHashMap::default(),
            read_responders: FxHashMap::default(),
            read_waiters: BTreeMap::new(),
            next_request_id,
            shard_out: shard_replies.iter().map(|_| Vec::new()).collect(),
            shard_replies,
            status,
            shutting_down: false,
            was_member: false,
            removed_since_us: None,
            retain_next_us: 0,
            gossip: None,
            leader_hint: std::cell::RefCell::new(LeaderHint {
                id: 0,
                client_addr: String::new(),
            }),
            ticker: None,
            sent_to_peers: false,
            repaired_hook: None,
            repair_rounds: 0,
            repair_gap: (0, 0),
            tokens_found: Rc::default(),
            directory: Directory::default(),
            admin_waiters: FxHashMap::default(),
            observer: super::observe::Observer::new(raft_id, None),
        }
    }

    /// Connects the voter's gossip endpoint: applies and answers to
    /// clients are handed to it (`gossip_bridge.rs`).
    pub fn with_gossip(mut self, gossip: Option<GossipBridge>) -> Self {
        self.gossip = gossip;
        self
    }

    /// Records the end of a repair with `hook` instead of clearing the
    /// repair record in the data directory (the simulator).
    pub fn with_repaired_hook(mut self, hook: Box<dyn Fn()>) -> Self {
        self.repaired_hook = Some(hook);
        self
    }

    fn request_id(&mut self) -> u64 {
        self.next_request_id += 1;
        self.observer.request(self.next_request_id);
        self.next_request_id
    }

    /// Exports the group's values to `metrics` (`[metrics] listen`).
    pub fn with_metrics(mut self, metrics: Option<crate::metrics::NodeMetrics>) -> Self {
        if let Some(metrics) = &metrics {
            self.log
                .set_sync_latency(metrics.durable_write_latency.clone());
        }
        self.observer = super::observe::Observer::new(self.config.id, metrics);
        self
    }

    /// Runs until shutdown or a fatal storage failure.
    pub async fn run(mut self) -> Result<(), String> {
        let turn_max = self.config.runtime.turn_events_max;
        let batch_delay = Duration::from_micros(self.config.runtime.batch_delay_us);
        self.ticker = Some(Ticker::start(self.local.clone(), self.clock));
        loop {
            let woken = self.wait(None).await;
            let mut now = self.clock.now();
            self.observer.turn(now.mono_us);
            self.take(now, woken);
            self.drain(now, turn_max);
            if !batch_delay.is_zero() && self.wants_fuller_batch() {
                // Gather more proposals into this batch (batch_delay_us).
                let woken = self.wait(Some(batch_delay)).await;
                now = self.clock.now();
                self.observer.turn(now.mono_us);
                self.take(now, woken);
                self.drain(now, turn_max);
            }
            if self.local.failed() || self.log.store().failure().is_some() {
                let reason = self
                    .log
                    .failure()
                    .unwrap_or_else(|| "storage failure".into());
                self.fail_everything();
                return Err(reason);
            }
            self.raft.step(now, Event::Tick);
            self.retain(now);
            self.raft.end_turn(now, &mut self.commands);
            let commands = std::mem::take(&mut self.commands);
            for command in commands {
                self.execute(command);
            }
            self.answer_tokens_found();
            self.flush_shard_replies();
            self.stop_if_removed(now);
            // After the answers: see `Certificates::send_signed`.
            let riding = std::mem::take(&mut self.sent_to_peers);
            self.certificates
                .send_signed(&self.peers, self.raft.voters(), now.mono_us, riding);
            self.certificates
                .flush_stale(self.clock.instant_at(now.mono_us));
            self.repair_certificates(now);
            self.publish_status();
            if self.shutting_down && self.log.idle() {
                self.fail_everything();
                self.feed.closed.set(true);
                self.feed.notify.notify();
                self.feed.closing.notify();
                self.log.close();
                return Ok(());
            }
        }
    }

    fn take(&mut self, now: crate::core::Now, woken: Woken) {
        match woken {
            Woken::Nothing => {}
            Woken::Peer(event) => self.peer_event(now, event),
            Woken::Client(call) => self.client_call(now, call),
            Woken::External(request) => self.external_request(now, request),
        }
    }

    /// Steps every input that is ready, up to `turn_max`.
    fn drain(&mut self, now: crate::core::Now, turn_max: usize) {
        let mut taken = 0;
        while taken < turn_max {
            let mut progressed = false;
            if let Some(event) = self.local.pop() {
                self.raft.step(now, event);
                progressed = true;
            }
            if let Some(event) = self.peers.try_recv() {
                self.peer_event(now, event);
                progressed = true;
            }
            if let Some(call) = self.clients.as_ref().and_then(ClientInbox::try_recv) {
                self.client_call(now, call);
                progressed = true;
            }
            if let Some(request) = self.external.try_recv() {
                self.external_request(now, request);
                progressed = true;
            }
            if !progressed {
                break;
            }
            taken += 1;
        }
    }

    /// A leader with queued proposals short of a full batch.
    fn wants_fuller_batch(&self) -> bool {
        let queued = self.raft.queued_proposals();
        self.raft.role() == Role::Leader
            && queued > 0
            && queued < self.config.raft.batch_entries_max as usize
    }

    /// Waits for any input or the core's next deadline (or `cap`, if
    /// given); returns the input that woke it, if it took one (every
    /// source's `recv` is cancel-safe).
    async fn wait(&self, cap: Option<Duration>) -> Woken {
        let generation = self.local.0.notify.generation();
        if self.local.failed() || !self.external.is_empty() || !self.peers.is_empty() {
            return Woken::Nothing;
        }
        if self.clients.as_ref().is_some_and(|c| !c.is_empty()) {
            return Woken::Nothing;
        }
        let mut deadline = self.raft.next_deadline_us();
        if let Some(due) = self.certificates.send_due_us() {
            deadline = deadline.min(due);
        }
        let now = self.clock.mono_us();
        if deadline <= now {
            return Woken::Nothing;
        }
        let cap_us = if self.shutting_down { 1_000 } else { 1_000_000 };
        let mut sleep = Duration::from_micros((deadline - now).min(cap_us));
        if let Some(cap) = cap {
            sleep = sleep.min(cap);
        }
        if let Some(ticker) = &self.ticker {
            ticker.wake_at(now + sleep.as_micros() as u64);
        }
        let local = async {
            self.local.0.notify.wait(generation).await;
            Woken::Nothing
        };
        let peers = async {
            match self.peers.recv().await {
                Some(event) => Woken::Peer(event),
                None => future::pending().await,
            }
        };
        let clients = async {
            match self.clients.as_ref() {
                Some(inbox) => match inbox.recv().await {
                    Some(call) => Woken::Client(call),
                    None => future::pending().await,
                },
                None => future::pending().await,
            }
        };
        let external = async {
            match self.external.recv().await {
                Some(request) => Woken::External(request),
                None => future::pending().await,
            }
        };
        future::or(future::or(local, peers), future::or(clients, external)).await
    }

    /// Stops taking work; a leader hands leadership to a caught-up voter
    /// first so the cluster does not wait an election timeout.
    fn begin_shutdown(&mut self, now: crate::core::Now) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        tracing::info!(id = self.config.id, "shutting down");
        if let Some(to) = self.raft.shutdown_transfer_target() {
            let request_id = self.request_id();
            self.raft
                .step(now, Event::TransferLeadership { to, request_id });
        }
    }

    fn execute(&mut self, command: Command) {
        match command {
            Command::Send { to, message } => self.send(to, message),
            Command::PersistHardState(hard_state) => self.log.persist_hard_state(hard_state),
            Command::Truncate { from } => self.log.truncate(from),
            Command::Append { batches } => {
                self.observer
                    .appended(batches.iter().map(|b| b.entries().len() as u64));
                self.log.append(batches)
            }
            Command::Sync => self.log.sync(),
            Command::ReadLog {
                purpose,
                from,
                bytes_max,
            } => self.log.read(purpose, from, bytes_max),
            Command::Apply(apply) => self.apply(apply),
            Command::Respond { request_id, result } => self.respond(request_id, result),
            Command::ReadReady { request_id, result } => match result {
                Ok(index) if index > self.feed.applied_index.get() => {
                    self.read_waiters
                        .entry(index)
                        .or_default()
                        .push((request_id, index));
                }
                result => self.answer_read(request_id, result),
            },
            Command::CreateSnapshot(meta) => {
                let data = super::chain_store::wrap_snapshot(
                    &self.certificates.links_held(),
                    &self.state_machine.snapshot(),
                );
                self.snapshots.save(meta, data);
            }
            Command::CompactLog { upto } => {
                let upto = self.compaction_point(upto);
                let first = self.log.store().state().first_index();
                // Statements go once their entries are gone from the log:
                // the store drops whole segments only, and after the
                // compaction asked for here completes (a compaction
                // behind, so tokens are never cut short).
                self.certificates.compact(first.saturating_sub(1));
                if upto >= first {
                    self.log.compact(upto);
                }
            }
            Command::SendSnapshot { to, meta, term } => self.snapshots.send(to, meta, term),
            Command::RestoreSnapshot(meta) => match self
                .snapshots
                .take_received(&meta)
                .map(super::chain_store::unwrap_snapshot)
            {
                Some(Err(error)) => {
                    tracing::error!(%error, "a received snapshot is malformed");
                    self.local.completion(Event::SnapshotNotRestored(meta));
                }
                Some(Ok((links, data))) => match self.state_machine.restore(&data) {
                    Ok(()) => {
                        tracing::info!(
                            id = self.config.id,
                            index = meta.last.index,
                            term = meta.last.term,
                            "recovery: installed a snapshot from the leader"
                        );
                        self.log.reset(meta.last);
                        self.certificates.adopt_links(links);
                        self.certificates
                            .start_schedule(meta.last.index, &snapshot_membership(&meta));
                        self.feed.applied_index.set(meta.last.index);
                        self.feed.applied_id.set(meta.last_id);
                        // Streams waiting for the next apply move on (and
                        // learn what the snapshot compacted): found by the
                        // runtime simulator, a stream on a follower that
                        // installed a snapshot waited for the next commit.
                        self.feed.notify.notify();
                        self.local.completion(Event::SnapshotRestored(meta));
                    }
                    Err(error) => {
                        tracing::error!(%error, "state machine refused the snapshot");
                        self.local.completion(Event::SnapshotNotRestored(meta));
                    }
                },
                None => {
                    // A duplicated `InstallSnapshot` arrived while the
                    // snapshot is still being saved (runtime simulator,
                    // seed 2318: the core waited for this restore forever).
                    tracing::debug!(snapshot = ?meta.last, "the snapshot to restore is not durable yet");
                    self.local.completion(Event::SnapshotNotRestored(meta));
                }
            },
            Command::Repaired => {
                tracing::info!(
                    id = self.config.id,
                    "recovery: repaired by the leader; the node votes again"
                );
                if let Some(hook) = &self.repaired_hook {
                    hook();
                } else if let Err(error) = super::durability::repaired(&self.config.data_dir) {
                    // The next start repairs again: safe, only slower.
                    tracing::warn!(%error, "cannot clear the recorded repair");
                }
            }
            Command::MembershipChanged { index, membership } => {
                self.membership_changed(index, &membership)
            }
            Command::MembershipResult { request_id, result } => {
                self.membership_result(request_id, result)
            }
            Command::TransferResult { request_id, result } => {
                self.transfer_result(request_id, result)
            }
            Command::RoleChanged { role, term, leader } => {
                tracing::info!(
                    id = self.config.id,
                    role = role.as_str(),
                    term,
                    leader,
                    "role changed"
                );
            }
        }
    }

    /// A node a committed configuration removed stops, saying so: it has
    /// nothing left to do, and it must not look like a member to
    /// operators or clients. (A node that never was one waits to be added.)
    /// It waits [`REMOVED_STOP_DELAY_TIMEOUTS`] election timeouts first: a
    /// node catching up on its log meets its own removal before it meets a
    /// later entry that added it back, which the leader sends at once
    /// (runtime simulator, seed 1976: a re-added node stopped on every
    /// restart). The leader sends a removed node nothing once it holds its
    /// removal.
    fn stop_if_removed(&mut self, now: crate::core::Now) {
        let (index, membership) = self.raft.membership();
        let id = self.config.id;
        if membership.contains(id) {
            self.was_member = true;
            self.removed_since_us = None;
            return;
        }
        if !self.was_member || index == 0 || index > self.raft.log().commit() || self.shutting_down
        {
            return;
        }
        let since = *self.removed_since_us.get_or_insert(now.mono_us);
        let delay =
            REMOVED_STOP_DELAY_TIMEOUTS * self.raft.config().election_timeout_ms_max * 1_000;
        if now.mono_us >= since + delay {
            tracing::warn!(
                id,
                index,
                "removed from the cluster by a committed configuration; stopping"
            );
            self.begin_shutdown(now);
        }
    }

    /// How far the log may be compacted toward `upto`: never past an
    /// entry this node holds no commit statement for. Its token could not
    /// be cut again without the entry, and if every node that held the
    /// statement lost it (a crash drops the unsynced tail of the
    /// certificates file), a follower that still holds the entry could
    /// never serve it (found by the runtime simulator). Kept, the entry
    /// lets this node sign the gap when it leads.
    fn compaction_point(&self, upto: Index) -> Index {
        if !self.certificates.enabled() {
            return upto;
        }
        let floor = self.log.store().state().first_index();
        // Not past a configuration entry whose link has not formed: after
        // compaction only the chain file would hold it.
        let upto = match self.certificates.first_pending_link() {
            Some(index) => upto.min(index.saturating_sub(1)),
            None => upto,
        };
        match self.certificates.first_gap(floor, upto) {
            Some((from, _)) => upto.min(from.saturating_sub(1)),
            None => upto,
        }
    }

    /// `storage.retain_bytes`: every `RETAIN_CHECK_US`, measures the log's
    /// directory (blocks allocated: its segments, the prepared spare and
    /// the hard state). With the bound less three segments and the hard
    /// state as `room`, it takes a snapshot once the segments after the
    /// latest snapshot hold half of `room` (or the whole directory reaches
    /// `room`, whatever the snapshots did). The core compacts to the
    /// snapshot before (`compact_to_previous_snapshot`), so the log keeps
    /// between half and all of `room`: the entries of the last interval
    /// stay for followers and readers a little behind. (A single
    /// threshold on the whole directory took snapshots in pairs, and the
    /// second compacted to the first, a few milliseconds back.)
    fn retain(&mut self, now: crate::core::Now) {
        let storage = &self.config.storage;
        if storage.retain_bytes == 0
            || !storage.retain_log
            || storage.kind != "disk"
            || now.mono_us < self.retain_next_us
        {
            return;
        }
        self.retain_next_us = now.mono_us + RETAIN_CHECK_US;
        let room = storage
            .retain_bytes
            .saturating_sub(3 * storage.segment_bytes + RETAIN_SLACK_BYTES);
        let snapshot = self.raft.snapshot_meta().last.index;
        let usage = super::durability::log_usage(&self.config.data_dir.join("log"), snapshot);
        if usage.since >= room / 2 || usage.total >= room {
            tracing::debug!(
                id = self.config.id,
                used = usage.total,
                since_snapshot = usage.since,
                bound = storage.retain_bytes,
                "log at its retention interval: taking a snapshot"
            );
            self.raft.step(now, Event::TakeSnapshot);
        }
    }

    fn send(&mut self, to: NodeId, message: Message) {
        let message = match message {
            Message::ForwardResults(mut results) => {
                results.tokens = results
                    .results
                    .iter()
                    .map(|(_, result)| match result {
                        Ok(committed) => self.certificates.token_for(committed).unwrap_or_default(),
                        Err(_) => Vec::new(),
                    })
                    .collect();
                Message::ForwardResults(results)
            }
            other => other,
        };
        match self.peers.try_send(to, PeerMessage::Raft(message)) {
            Ok(()) => self.sent_to_peers = true,
            Err(SendError::Full { .. }) => {
                // Backpressure: Raft tolerates a lost message; the peer is
                // slow, so probe it rather than stream into a full queue.
                let now = self.clock.now();
                self.raft.step(now, Event::Unreachable { to });
            }
            Err(error) => tracing::debug!(to, %error, "peer send failed"),
        }
    }

    fn apply(&mut self, apply: ApplyBatch) {
        let leader = self.raft.role() == Role::Leader;
        if leader {
            self.certificates.sign_commit(&apply, self.raft.term());
        }
        self.certificates.applied(&apply);
        self.state_machine.apply(&apply);
        self.feed.applied_index.set(apply.last_index);
        self.feed.applied_id.set(apply.last_id());
        self.feed.notify.notify();
        if let Some(gossip) = &self.gossip {
            gossip.applied(&apply);
        }
        let applied = apply.last_index;
        let ready: Vec<Index> = self
            .read_waiters
            .range(..=applied)
            .map(|(&i, _)| i)
            .collect();
        for index in ready {
            for (request_id, read_index) in self.read_waiters.remove(&index).unwrap_or_default() {
                self.answer_read(request_id, Ok(read_index));
            }
        }
    }

    fn publish_status(&mut self) {
        let mut status = self.raft.status();
        status.applied_index = self.feed.applied_index.get();
        self.status.set(status);
        self.observer.end_turn(
            &self.raft,
            status.applied_index,
            &**self.log.store(),
            &self.peers,
        );
    }
}

/// The configuration a snapshot holds (its core state's; a snapshot
/// written before configurations were kept there names only its voters).
pub(super) fn snapshot_membership(meta: &ordo_net::SnapshotMeta) -> crate::core::Membership {
    match crate::core::decode_core_state(&meta.core_state) {
        Ok((Some(membership), _)) => membership,
        _ => crate::core::Membership::of_voters(&meta.voters),
    }
}
