//! The group loop: the Raft core on its shard, and the runtime that executes
//! its commands. One turn: wait for input (peer frames, client calls,
//! completions, requests from other threads, the core's timer), step every
//! input that is ready (bounded), end the turn, execute the commands.
//!
//! This file holds the [`Group`] and its turn loop (and how it stops); the
//! rest of its work is in further `impl Group` blocks, one file a job:
//!
//! - `intake.rs`: peer frames, client calls and the embedding API's
//!   requests enter here and become core events;
//! - `execute.rs`: the core's commands of a turn, run;
//! - `answers.rs`: proposals and reads answered to whoever waits for them;
//! - `admin.rs`: membership changes and leadership transfers, and the
//!   configuration in force;
//! - `log_stream.rs`: committed messages streamed to clients and
//!   subscribers;
//! - `certificate_repair.rs`: missing commit statements signed or fetched;
//! - `retention.rs`: how much of the log the disk keeps.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use std::rc::Rc;
use std::time::Duration;

use ordo_net::transport::{ClientCall, ClientInbox, PeerEvent};
use ordo_net::{LeaderHint, ReadError};
use ordo_storage::{Index, LogStore};

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
use super::wake::{self, Woken};
use crate::core::{Command, Event, Raft, Role, Status};

mod admin;
mod answers;
mod certificate_repair;
mod execute;
mod intake;
mod log_stream;
mod retention;

use admin::AdminWaiter;
pub use answers::node_status;
use answers::{ProposalWaiter, Responder, TokenFound};
pub(super) use execute::snapshot_membership;

/// An input the group loop takes from one of its sources.
enum Input {
    Peer(PeerEvent),
    Client(ClientCall),
    External(External),
}

/// Why the group loop stopped before a shutdown: its log failed (a write,
/// an fsync or a read the store refused), and a node whose log failed
/// takes no further part. The reason is the store's own
/// ([`LogStore::failure`], which is a string: it is kept across the
/// store's tasks after the error itself has gone to its caller).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{reason}")]
pub struct LogFailed {
    /// What the store said.
    pub reason: String,
}

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
    pub async fn run(mut self) -> Result<(), LogFailed> {
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
                return Err(LogFailed { reason });
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

    fn take(&mut self, now: crate::core::Now, woken: Woken<Input>) {
        match woken {
            Woken::Nothing => {}
            Woken::Input(Input::Peer(event)) => self.peer_event(now, event),
            Woken::Input(Input::Client(call)) => self.client_call(now, call),
            Woken::Input(Input::External(request)) => self.external_request(now, request),
        }
    }

    /// Steps every input that is ready, up to `turn_max`.
    fn drain(&mut self, now: crate::core::Now, turn_max: usize) {
        let mut taken = 0;
        while taken < turn_max {
            let mut progressed = false;
            if let Some(event) = self.local.pop() {
                if let Event::LogSynced { last } = &event {
                    crate::node::timeline::mark(self.config.id, "log.synced", 0, last.index);
                }
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
    async fn wait(&self, cap: Option<Duration>) -> Woken<Input> {
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
        let clients = async {
            match self.clients.as_ref() {
                Some(inbox) => inbox.recv().await,
                // No client server: a source that never has input.
                None => None,
            }
        };
        wake::first(
            wake::nothing(self.local.0.notify.wait(generation)),
            wake::input(self.peers.recv(), Input::Peer),
            wake::input(clients, Input::Client),
            wake::input(self.external.recv(), Input::External),
        )
        .await
    }

    /// Stops taking work; a leader hands leadership to the voter the core
    /// names ([`Raft::shutdown_transfer_target`]) first, so the cluster
    /// does not wait an election timeout.
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
