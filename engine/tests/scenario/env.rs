//! The stage of the scenario scripts: testkit [`Host`]s (the real core over
//! an in-memory log, with instant disks) wired by a network the script
//! controls: links can be cut (messages dropped) and a node's inbound
//! messages can be held (queued, delivered on release).
//!
//! Execution is in rounds, like etcd's `stabilize`: deliver every message
//! that may be delivered, then every node with events runs one turn (all
//! its events, then `end_turn`); storage completions arrive in the next
//! round. Time moves only by script command; `tick` fires each node's timer
//! exactly at its deadline (`Raft::next_deadline_us`), as the runtime does.
//!
//! After every turn the environment checks election safety; after every
//! command, the cross-node invariants in [`Env::check`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use ordo_engine::core::{CoreConfig, Event, Now, Proposal, Role};
use ordo_engine::testkit::{Effect, Host, WALL_START_US};
use ordo_net::Message;
use ordo_storage::{NodeId, Term};

use super::format;

/// The monotonic clock at the start (µs).
const START_MONO_US: u64 = 1_000_000;

/// A message on its way.
#[derive(Clone, Debug)]
pub struct InFlight {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// The message.
    pub message: Message,
}

/// The cluster and everything the script controls.
pub struct Env {
    /// The nodes.
    pub hosts: BTreeMap<NodeId, Host>,
    /// Their configuration.
    pub config: CoreConfig,
    /// The shared monotonic clock.
    pub mono_us: u64,
    /// The shared wall clock.
    pub wall_us: u64,
    /// Per-node wall-clock offsets (µs).
    pub skew_us: BTreeMap<NodeId, i64>,
    inbox: BTreeMap<NodeId, Vec<Event>>,
    /// Messages sent and not yet delivered, in order.
    pub net: VecDeque<InFlight>,
    /// Links `(from, to)` that drop every message.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Nodes whose inbound messages wait in `net`.
    pub held: BTreeSet<NodeId>,
    /// Print every message delivered or dropped.
    pub trace: bool,
    /// Message kinds (`Message::kind`) the trace leaves out.
    pub trace_hidden: BTreeSet<String>,
    /// Messages delivered, by kind, since the last `stats`.
    pub stats: BTreeMap<&'static str, u64>,
    next_request_id: u64,
    /// `(role, term, leader)` of each node as last printed.
    seen: BTreeMap<NodeId, (Role, Term, NodeId)>,
    /// The leader of each term seen (election safety).
    leaders: BTreeMap<Term, NodeId>,
    /// The last answer printed for each request.
    pub answers: BTreeMap<u64, String>,
    /// Output of the current command.
    pub out: Vec<String>,
}

impl Env {
    /// `voters` nodes with ids `1..=voters`.
    pub fn new(voters: u64, config: CoreConfig, seed: u64) -> Self {
        let ids: Vec<NodeId> = (1..=voters).collect();
        let now = Now {
            mono_us: START_MONO_US,
            wall_us: WALL_START_US,
        };
        let hosts = ids
            .iter()
            .map(|&id| {
                (
                    id,
                    Host::new(
                        id,
                        &ids,
                        config.clone(),
                        seed ^ id.wrapping_mul(0x9E37_79B9),
                        now,
                    ),
                )
            })
            .collect();
        let seen = ids.iter().map(|&id| (id, (Role::Follower, 0, 0))).collect();
        Self {
            hosts,
            config,
            mono_us: now.mono_us,
            wall_us: now.wall_us,
            skew_us: BTreeMap::new(),
            inbox: BTreeMap::new(),
            net: VecDeque::new(),
            cut: BTreeSet::new(),
            held: BTreeSet::new(),
            trace: false,
            trace_hidden: BTreeSet::new(),
            stats: BTreeMap::new(),
            next_request_id: 1,
            seen,
            leaders: BTreeMap::new(),
            answers: BTreeMap::new(),
            out: Vec::new(),
        }
    }

    /// The node `id` (panics with a script-friendly message if absent).
    pub fn host(&self, id: NodeId) -> &Host {
        self.hosts
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// What node `id`'s clock reads.
    pub fn now_of(&self, id: NodeId) -> Now {
        let skew = self.skew_us.get(&id).copied().unwrap_or(0);
        Now {
            mono_us: self.mono_us,
            wall_us: self
                .wall_us
                .checked_add_signed(skew)
                .expect("wall clock in range"),
        }
    }

    /// Queues a proposal at `node`; returns its request id.
    pub fn propose(
        &mut self,
        node: NodeId,
        payload: Bytes,
        client_id: u64,
        seq: u64,
        redirect: bool,
    ) -> u64 {
        self.host(node);
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let proposal = Proposal {
            request_id,
            client_id,
            seq,
            payload,
            redirect,
        };
        self.inbox
            .entry(node)
            .or_default()
            .push(Event::Propose(proposal));
        request_id
    }

    /// Queues an event for `node`'s next turn.
    pub fn inject(&mut self, node: NodeId, event: Event) {
        self.host(node);
        self.inbox.entry(node).or_default().push(event);
    }

    /// Queues a linearizable read at `node`; returns its request id.
    pub fn read(&mut self, node: NodeId) -> u64 {
        self.host(node);
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.inbox
            .entry(node)
            .or_default()
            .push(Event::Read { request_id });
        request_id
    }

    /// Makes `node`'s election timer fire now: it ticks at its own deadline
    /// (its clock runs ahead of the others' by at most the election timeout
    /// for that one turn), then the cluster runs until quiet.
    pub fn campaign(&mut self, node: NodeId) {
        let deadline = self.host(node).raft.next_deadline_us();
        let mut now = self.now_of(node);
        let ahead = deadline.saturating_sub(now.mono_us);
        now.mono_us += ahead;
        now.wall_us += ahead;
        self.turn(node, now, vec![Event::Tick]);
        self.run();
    }

    /// Moves the clock forward by `ms`, ticking each node at each of its
    /// deadlines on the way, in time order, and running the cluster until
    /// quiet after each.
    pub fn tick(&mut self, ms: u64) {
        let target = self.mono_us + ms * 1_000;
        for _ in 0..1_000_000 {
            let next = self
                .hosts
                .values()
                .map(|h| h.raft.next_deadline_us())
                .min()
                .expect("nodes");
            if next > target {
                break;
            }
            let at = next.max(self.mono_us);
            self.set_clock(at);
            let due: Vec<NodeId> = self
                .hosts
                .iter()
                .filter(|(_, h)| h.raft.next_deadline_us() <= at)
                .map(|(&id, _)| id)
                .collect();
            for &id in &due {
                self.inbox.entry(id).or_default().push(Event::Tick);
            }
            self.run();
            for id in due {
                let deadline = self.host(id).raft.next_deadline_us();
                assert!(
                    deadline > at,
                    "node {id}: a tick at {at} left its deadline at {deadline}"
                );
            }
        }
        self.set_clock(target);
    }

    fn set_clock(&mut self, mono_us: u64) {
        let delta = mono_us - self.mono_us;
        self.mono_us += delta;
        self.wall_us += delta;
    }

    /// Runs rounds until no message can be delivered and no node has events.
    pub fn run(&mut self) {
        for _ in 0..100_000 {
            let delivered = self.deliver();
            let ready: Vec<NodeId> = self
                .inbox
                .iter()
                .filter(|(_, e)| !e.is_empty())
                .map(|(&id, _)| id)
                .collect();
            if ready.is_empty() && !delivered {
                return;
            }
            for id in ready {
                let events = std::mem::take(self.inbox.get_mut(&id).expect("ready"));
                let now = self.now_of(id);
                self.turn(id, now, events);
            }
        }
        panic!("the cluster did not quiesce");
    }

    /// Delivers every message whose receiver is not held. Returns whether
    /// any was.
    fn deliver(&mut self) -> bool {
        let mut delivered = false;
        let mut kept = VecDeque::new();
        for flight in std::mem::take(&mut self.net) {
            if self.held.contains(&flight.to) {
                kept.push_back(flight);
                continue;
            }
            delivered = true;
            if self.traced(&flight.message) {
                self.out.push(format!(
                    "{}->{} {}",
                    flight.from,
                    flight.to,
                    format::message(&flight.message)
                ));
            }
            *self.stats.entry(flight.message.kind()).or_default() += 1;
            let event = Event::Message {
                from: flight.from,
                message: flight.message,
            };
            self.inbox.entry(flight.to).or_default().push(event);
        }
        self.net = kept;
        delivered
    }

    fn traced(&self, message: &Message) -> bool {
        self.trace && !self.trace_hidden.contains(message.kind())
    }

    fn turn(&mut self, id: NodeId, now: Now, events: Vec<Event>) {
        let host = self.hosts.get_mut(&id).expect("node");
        let effects = host.turn(now, events);
        for effect in effects {
            match effect {
                Effect::Send { to, message } => {
                    if self.cut.contains(&(id, to)) {
                        if self.traced(&message) {
                            self.out.push(format!(
                                "{id}->{to} {} (dropped)",
                                format::message(&message)
                            ));
                        }
                    } else {
                        self.net.push_back(InFlight {
                            from: id,
                            to,
                            message,
                        });
                    }
                }
                Effect::Sync => {
                    let event = self.hosts.get_mut(&id).expect("node").complete_sync();
                    self.inbox.entry(id).or_default().push(event);
                }
                Effect::PersistHardState(hard_state) => {
                    let event = self
                        .hosts
                        .get_mut(&id)
                        .expect("node")
                        .complete_hard_state(hard_state);
                    self.inbox.entry(id).or_default().push(event);
                }
                Effect::SendSnapshot { to, meta, term } => {
                    let data = self.host(id).snapshot_data(&meta);
                    let ok = data.is_some() && !self.cut.contains(&(id, to));
                    if let Some(data) = data.filter(|_| ok) {
                        self.hosts.get_mut(&to).expect("node").received_snapshot =
                            Some((meta.clone(), data));
                        let message =
                            Message::InstallSnapshot(ordo_net::InstallSnapshot { term, meta });
                        self.net.push_back(InFlight {
                            from: id,
                            to,
                            message,
                        });
                    }
                    self.inbox
                        .entry(id)
                        .or_default()
                        .push(Event::SnapshotSent { to, ok });
                }
                Effect::Complete(event) => self.inbox.entry(id).or_default().push(event),
            }
        }
        self.after_turn(id);
    }

    /// Prints role changes (with the time) and answers; checks election
    /// safety.
    fn after_turn(&mut self, id: NodeId) {
        let host = self.hosts.get_mut(&id).expect("node");
        let (role, term, leader) = (host.raft.role(), host.raft.term(), host.raft.leader());
        let mut answers = Vec::new();
        while let Some((request_id, result)) = host.responses.pop_front() {
            answers.push((request_id, format::propose_result(&result), result.ok()));
        }
        while let Some((request_id, result)) = host.read_results.pop_front() {
            answers.push((request_id, format::read_result(&result), None));
        }
        if self.seen.get(&id) != Some(&(role, term, leader)) {
            self.seen.insert(id, (role, term, leader));
            let leader = if role == Role::Follower && leader != 0 {
                format!(" leader={leader}")
            } else {
                String::new()
            };
            let ms = (self.mono_us - START_MONO_US) as f64 / 1_000.0;
            self.out.push(format!(
                "[{ms:.3}ms] {id} is {} at t{term}{leader}",
                role.as_str()
            ));
        }
        for (request_id, text, _) in &answers {
            self.answers.insert(*request_id, text.clone());
        }
        self.out.extend(format::group_answers(id, &answers));
        if role == Role::Leader {
            let first = *self.leaders.entry(term).or_insert(id);
            assert_eq!(
                first, id,
                "election safety: nodes {first} and {id} both lead term {term}"
            );
        }
    }

    /// The cross-node invariants, checked after every command:
    /// - state machine safety: every two nodes applied the same entry at
    ///   every index both applied;
    /// - ids are dense over user entries (no-ops take none) and timestamps
    ///   strictly increase along every applied log;
    /// - no `(client_id, seq)` was applied twice;
    /// - every batch in every log respects `batch_entries_max`, and
    ///   `batch_bytes_max` unless it holds a single entry.
    pub fn check(&self) {
        let nodes: Vec<&Host> = self.hosts.values().collect();
        for (i, a) in nodes.iter().enumerate() {
            let applied = a.state_machine();
            let mut next_id = 1;
            let mut last_ts = 0;
            let mut sessions = BTreeSet::new();
            for entry in applied {
                if entry.kind == ordo_storage::BatchKind::Entries {
                    assert_eq!(
                        entry.id, next_id,
                        "node {}: ids not dense at index {}",
                        a.id, entry.index
                    );
                    next_id += 1;
                    if entry.client_id != 0 {
                        let fresh = sessions.insert((entry.client_id, entry.seq));
                        assert!(
                            fresh,
                            "node {}: c{}/s{} applied twice",
                            a.id, entry.client_id, entry.seq
                        );
                    }
                }
                assert!(
                    entry.ts > last_ts,
                    "node {}: ts not increasing at index {}",
                    a.id,
                    entry.index
                );
                last_ts = entry.ts;
            }
            for b in &nodes[i + 1..] {
                for (x, y) in applied.iter().zip(b.state_machine()) {
                    assert_eq!(
                        x, y,
                        "state machine safety: nodes {} and {} differ",
                        a.id, b.id
                    );
                }
            }
            let state = a.log.state_now();
            if state.last.index > state.prev.index {
                let batches = a
                    .log
                    .read_now(state.prev.index + 1, usize::MAX)
                    .expect("read");
                for batch in batches {
                    let payload: usize = batch.entries().map(|e| e.payload.len()).sum();
                    assert!(
                        batch.count() <= self.config.batch_entries_max,
                        "node {}: {batch:?}",
                        a.id
                    );
                    assert!(
                        batch.count() == 1 || payload <= self.config.batch_bytes_max,
                        "node {}: {batch:?} holds {payload} payload bytes",
                        a.id
                    );
                }
            }
        }
    }

    /// Takes the output of the current command.
    pub fn take_output(&mut self) -> Vec<String> {
        std::mem::take(&mut self.out)
    }
}
