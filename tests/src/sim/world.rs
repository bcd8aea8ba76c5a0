//! The simulated world: a virtual clock, a queue of timed events, nodes with
//! drifting clocks and slow disks, the network, the clients, and the
//! checker after every step.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use ordo_engine::core::{Event, MemberRole, MembershipChange, Now, Proposal, Rng, Role};
use ordo_engine::testkit::host_log::SIM_LOG_DIR;
use ordo_engine::testkit::{AppliedEntry, Effect, Host, HostLog, WALL_START_US};
use ordo_net::{InstallSnapshot, Message, ProposeError, ProposeResult, SnapshotMeta};
use ordo_storage::disk::{SimDisk, SimDiskFaults};
use ordo_storage::{HardState, Index, NodeId, Term};

use super::checker::Checker;
use super::client::{Client, Outcome};
use super::network::{Fate, Network};
use super::{Failure, Plan, Summary};

/// How long after the clients finish the world keeps running so that every
/// node learns the final commit index.
const SETTLE_US: u64 = 3_000_000;
/// A hard cap on events, against a livelock in the simulator itself.
const EVENTS_MAX: u64 = 20_000_000;

enum What {
    Deliver {
        from: NodeId,
        to: NodeId,
        message: Message,
    },
    ClientDeliver {
        node: NodeId,
        event: Event,
    },
    Turn {
        node: NodeId,
    },
    Tick {
        node: NodeId,
        generation: u64,
    },
    SyncDone {
        node: NodeId,
        epoch: u64,
    },
    HardStateDone {
        node: NodeId,
        epoch: u64,
        hard_state: HardState,
    },
    SnapshotArrive {
        from: NodeId,
        to: NodeId,
        meta: SnapshotMeta,
        term: Term,
        data: Vec<AppliedEntry>,
    },
    SnapshotResult {
        node: NodeId,
        epoch: u64,
        to: NodeId,
        ok: bool,
    },
    Crash,
    Restart {
        node: NodeId,
    },
    Repartition,
    Heal,
    ClientWake {
        client: usize,
    },
    ClientAnswer {
        client: usize,
        request_id: u64,
        result: ProposeResult,
    },
    Reader,
    Reconfigure,
}

struct Scheduled {
    at: u64,
    seq: u64,
    what: What,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct SimNode {
    host: Host,
    up: bool,
    /// Incremented at each crash: completions of an earlier life are void.
    epoch: u64,
    inbox: Vec<Event>,
    turn_scheduled: bool,
    tick_generation: u64,
    drift_ppm: i64,
    skew_us: i64,
    disk_free_at: u64,
    sync_in_flight: bool,
    sync_wanted: bool,
    /// What the sync in flight covers (the writes made before it began).
    sync_point: Option<ordo_engine::testkit::HostSyncPoint>,
    /// The term this node was last seen leading (to spot new leaderships).
    led_term: Term,
}

/// The whole simulated world for one seed.
pub struct World {
    plan: Plan,
    rng: Rng,
    /// Draws whether a restart finds a wiped disk (its own generator, see
    /// `WIPE_SEED_SALT`).
    wipe_rng: Rng,
    /// Draws the client network's faults (its own generator, so that seeds
    /// without them run as before).
    client_rng: Rng,
    /// Draws membership changes and transfers (its own generator, as
    /// above).
    rng_membership: Rng,
    /// Per client, the nodes it cannot reach now.
    client_cut_off: Vec<std::collections::BTreeSet<NodeId>>,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<SimNode>,
    network: Network,
    clients: Vec<Client>,
    requests: HashMap<u64, usize>,
    reads: HashMap<u64, (NodeId, Index)>,
    next_request_id: u64,
    checker: Checker,
    summary: Summary,
    healed_at: Option<u64>,
    clients_done_at: Option<u64>,
    max_acked_index: Index,
}

impl World {
    /// A world for `plan`.
    pub fn new(plan: Plan) -> Self {
        let mut rng = Rng::new(plan.seed);
        let voters: Vec<NodeId> = (1..=plan.nodes).collect();
        let all: Vec<NodeId> = (1..=plan.nodes + plan.spares).collect();
        let nodes = all
            .iter()
            .map(|&id| {
                // Spares start outside the cluster, waiting to be added.
                let voters: &[NodeId] = if id <= plan.nodes { &voters } else { &[] };
                let drift_ppm =
                    rng.range(0, 2 * plan.drift_ppm_max + 1) as i64 - plan.drift_ppm_max as i64;
                let skew_us = rng.range(0, 100_001) as i64 - 50_000;
                let now = Now {
                    mono_us: 0,
                    wall_us: (WALL_START_US as i64 + skew_us) as u64,
                };
                let seed = rng.next_u64();
                let host = match plan.log {
                    super::LogKind::Memory => Host::new(id, voters, plan.config.clone(), seed, now),
                    super::LogKind::Disk { keep_ppm } => Host::on_disk(
                        id,
                        voters,
                        plan.config.clone(),
                        seed,
                        now,
                        SimDisk::new(
                            plan.seed ^ id.wrapping_mul(0x9E37),
                            SimDiskFaults {
                                keep_ppm,
                                misdirect_ppm: 0,
                            },
                        ),
                    ),
                };
                SimNode {
                    host,
                    up: true,
                    epoch: 0,
                    inbox: Vec::new(),
                    turn_scheduled: false,
                    tick_generation: 0,
                    drift_ppm,
                    skew_us,
                    disk_free_at: 0,
                    sync_in_flight: false,
                    sync_wanted: false,
                    sync_point: None,
                    led_term: 0,
                }
            })
            .collect();
        let clients = (0..plan.clients)
            .map(|i| {
                // The last client has no session.
                let client_id = if i + 1 == plan.clients { 0 } else { 1_000 + i };
                Client::new(client_id, plan.proposals_per_client, plan.client_window)
            })
            .collect();
        let network = Network::new(plan.drop_ppm, plan.duplicate_ppm, plan.delay_us);
        Self {
            wipe_rng: Rng::new(plan.seed ^ super::WIPE_SEED_SALT ^ 1),
            rng_membership: Rng::new(plan.seed ^ super::MEMBERSHIP_SEED_SALT ^ 1),
            client_rng: Rng::new(plan.seed ^ super::CLIENT_SEED_SALT ^ 1),
            client_cut_off: vec![Default::default(); plan.clients as usize],
            plan,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            network,
            clients,
            requests: HashMap::new(),
            reads: HashMap::new(),
            next_request_id: 1,
            checker: Checker::default(),
            summary: Summary::default(),
            healed_at: None,
            clients_done_at: None,
            max_acked_index: 0,
        }
    }

    fn schedule(&mut self, at: u64, what: What) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            what,
        }));
    }

    fn fail(&self, what: String) -> Failure {
        Failure {
            seed: self.plan.seed,
            what,
            at_us: self.now,
            replay: format!(
                "cargo run -p ordo-tests --bin ordo-sim -- {}",
                self.plan.seed
            ),
        }
    }

    fn node(&mut self, id: NodeId) -> &mut SimNode {
        &mut self.nodes[id as usize - 1]
    }

    fn local_now(&self, id: NodeId) -> Now {
        let node = &self.nodes[id as usize - 1];
        let mono = self.now as i128 + self.now as i128 * node.drift_ppm as i128 / 1_000_000;
        Now {
            mono_us: mono as u64,
            wall_us: (WALL_START_US as i128 + mono + node.skew_us as i128) as u64,
        }
    }

    fn global_time_of(&self, id: NodeId, mono_us: u64) -> u64 {
        let drift = self.nodes[id as usize - 1].drift_ppm as i128;
        (mono_us as i128 * 1_000_000 / (1_000_000 + drift)) as u64 + 1
    }

    /// Every node of the world: the initial voters and the spares.
    fn all_ids(&self) -> Vec<NodeId> {
        (1..=self.plan.nodes + self.plan.spares).collect()
    }

    /// Asks the leader for a membership change or a leadership transfer
    /// (fault phase): add a spare as a learner or a voter, promote a
    /// learner, remove a voter (never below three, so that the faults
    /// stay survivable) or a learner, or hand leadership over.
    fn reconfigure(&mut self) {
        if self.healed_at.is_some() {
            return;
        }
        let every = self.plan.reconfigure_every_us;
        let at = self.now + self.rng_membership.range(every / 2, every * 3 / 2);
        self.schedule(at, What::Reconfigure);
        let Some(leader) = self.current_leader() else {
            return;
        };
        let (voters, learners) = {
            let raft = &self.node(leader).host.raft;
            (raft.voters().to_vec(), raft.learners().to_vec())
        };
        let outsiders: Vec<NodeId> = self
            .all_ids()
            .into_iter()
            .filter(|id| !voters.contains(id) && !learners.contains(id))
            .collect();
        let rng = &mut self.rng_membership;
        let pick = |rng: &mut Rng, ids: &[NodeId]| ids[rng.range(0, ids.len() as u64) as usize];
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let event = match rng.range(0, 5) {
            0 if !outsiders.is_empty() => {
                let role = if rng.chance(1, 3) {
                    MemberRole::Voter
                } else {
                    MemberRole::Learner
                };
                let id = pick(rng, &outsiders);
                Event::ChangeMembership {
                    request_id,
                    change: MembershipChange::Add {
                        id,
                        role,
                        info: bytes::Bytes::new(),
                    },
                    known_info: Vec::new(),
                }
            }
            1 if !learners.is_empty() => Event::ChangeMembership {
                request_id,
                change: MembershipChange::Promote {
                    id: pick(rng, &learners),
                },
                known_info: Vec::new(),
            },
            2 if voters.len() > 3 || !learners.is_empty() => {
                let id = if voters.len() > 3 && (learners.is_empty() || rng.chance(1, 2)) {
                    pick(rng, &voters)
                } else {
                    pick(rng, &learners)
                };
                Event::ChangeMembership {
                    request_id,
                    change: MembershipChange::Remove { id },
                    known_info: Vec::new(),
                }
            }
            _ => Event::TransferLeadership {
                to: pick(rng, &voters),
                request_id,
            },
        };
        self.enqueue(leader, event);
    }

    fn up_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.up)
            .map(|n| n.host.id)
            .collect()
    }

    fn enqueue(&mut self, id: NodeId, event: Event) {
        let turn_delay = self.rng.range(0, 30);
        let at = self.now + turn_delay;
        let node = self.node(id);
        if !node.up {
            return;
        }
        node.inbox.push(event);
        if !node.turn_scheduled {
            node.turn_scheduled = true;
            self.schedule(at, What::Turn { node: id });
        }
    }

    /// Runs the world to the end; returns what happened or the first broken
    /// invariant.
    pub fn run(mut self) -> Result<Summary, Failure> {
        for id in self.all_ids() {
            self.enqueue(id, Event::Tick);
        }
        if self.plan.reconfigure_every_us > 0 {
            let every = self.plan.reconfigure_every_us;
            let at = self.rng_membership.range(every / 2, every * 3 / 2);
            self.schedule(at, What::Reconfigure);
        }
        for client in 0..self.clients.len() {
            let at = self.rng.range(0, 200_000);
            self.schedule(at, What::ClientWake { client });
        }
        let every = self.plan.partition_every_us;
        let at = self.rng.range(every / 2, every * 3 / 2);
        self.schedule(at, What::Repartition);
        if self.plan.crash_every_us > 0 {
            let every = self.plan.crash_every_us;
            let at = self.rng.range(every / 2, every * 3 / 2);
            self.schedule(at, What::Crash);
        }
        self.schedule(self.plan.fault_phase_us, What::Heal);
        self.schedule(50_000, What::Reader);
        let mut events = 0u64;
        while let Some(Reverse(next)) = self.queue.pop() {
            events += 1;
            if events > EVENTS_MAX {
                return Err(
                    self.fail("the simulation exceeded its event budget (livelock?)".into())
                );
            }
            self.now = next.at;
            if let Some(healed) = self.healed_at
                && self.now > healed + self.plan.liveness_bound_us
                && self.clients.iter().any(Client::busy)
            {
                let stuck: Vec<_> = self
                    .clients
                    .iter()
                    .filter(|c| c.busy())
                    .map(|c| {
                        let waiting: Vec<_> = c
                            .outstanding
                            .iter()
                            .map(|o| (o.seq, o.attempts.clone(), o.deadline_us, o.retry_at_us))
                            .collect();
                        format!(
                            "{} (hint {}, waiting {waiting:?})",
                            c.client_id, c.leader_hint
                        )
                    })
                    .collect();
                return Err(self.fail(format!(
                        "liveness: clients {stuck:?} still have uncommitted proposals {} µs after the faults healed\n{}",
                        self.plan.liveness_bound_us,
                        self.describe()
                    )));
            }
            if let Some(done) = self.clients_done_at
                && self.now > done + SETTLE_US
            {
                break;
            }
            self.handle(next.what).map_err(|what| self.fail(what))?;
        }
        self.finish().map_err(|what| self.fail(what))?;
        self.summary.duration_us = self.now;
        self.summary.elections = self.checker.elections;
        self.summary.committed = self.checker.ledger().len() as u64;
        Ok(self.summary)
    }

    fn handle(&mut self, what: What) -> Result<(), String> {
        match what {
            What::Deliver { from, to, message } => {
                self.enqueue(to, Event::Message { from, message })
            }
            What::ClientDeliver { node, event } => self.enqueue(node, event),
            What::Turn { node } => self.turn(node)?,
            What::Tick { node, generation } => {
                if self.node(node).tick_generation == generation {
                    self.enqueue(node, Event::Tick);
                }
            }
            What::SyncDone { node, epoch } => {
                let n = self.node(node);
                if n.epoch == epoch && n.up {
                    n.sync_in_flight = false;
                    let point = n.sync_point.take().expect("a sync in flight began");
                    let event = n.host.end_sync(point);
                    if n.sync_wanted {
                        n.sync_wanted = false;
                        self.start_sync(node);
                    }
                    self.enqueue(node, event);
                }
            }
            What::HardStateDone {
                node,
                epoch,
                hard_state,
            } => {
                let n = self.node(node);
                if n.epoch == epoch && n.up {
                    let event = n.host.complete_hard_state(hard_state);
                    self.enqueue(node, event);
                }
            }
            What::SnapshotArrive {
                from,
                to,
                meta,
                term,
                data,
            } => {
                if self.node(to).up {
                    self.node(to).host.received_snapshot = Some((meta.clone(), data));
                    let message = Message::InstallSnapshot(InstallSnapshot { term, meta });
                    self.enqueue(to, Event::Message { from, message });
                }
            }
            What::SnapshotResult {
                node,
                epoch,
                to,
                ok,
            } => {
                if self.node(node).epoch == epoch {
                    self.enqueue(node, Event::SnapshotSent { to, ok });
                }
            }
            What::Crash => self.crash(),
            What::Restart { node } => self.restart(node),
            What::Repartition => {
                if self.healed_at.is_none() {
                    let nodes = self.all_ids();
                    match self.current_leader() {
                        // Cutting the leader off forces elections with
                        // diverging logs (the Figure 8 situations).
                        Some(leader) if self.rng.chance(1, 3) => {
                            self.network.isolate(leader, &nodes)
                        }
                        _ => {
                            self.network.repartition(&mut self.rng, &nodes);
                        }
                    }
                    if self.plan.client_drop_ppm > 0 {
                        for cut_off in &mut self.client_cut_off {
                            cut_off.clear();
                            for &node in &nodes {
                                if self.client_rng.chance(1, 3) {
                                    cut_off.insert(node);
                                }
                            }
                        }
                    }
                    let every = self.plan.partition_every_us;
                    let at = self.now + self.rng.range(every / 2, every * 3 / 2);
                    self.schedule(at, What::Repartition);
                }
            }
            What::Heal => {
                self.network.heal();
                for cut_off in &mut self.client_cut_off {
                    cut_off.clear();
                }
                self.healed_at = Some(self.now);
                for id in self.all_ids() {
                    if !self.node(id).up {
                        self.restart(id);
                    }
                }
                self.check_all_done();
            }
            What::ClientWake { client } => self.client_wake(client),
            What::Reconfigure => self.reconfigure(),
            What::ClientAnswer {
                client,
                request_id,
                result,
            } => self.client_answer(client, request_id, result)?,
            What::Reader => {
                let up = self.up_nodes();
                if !up.is_empty() && self.clients_done_at.is_none() {
                    let node = up[self.rng.range(0, up.len() as u64) as usize];
                    let request_id = self.next_request_id;
                    self.next_request_id += 1;
                    self.reads.insert(request_id, (node, self.max_acked_index));
                    self.enqueue(node, Event::Read { request_id });
                }
                if self.clients_done_at.is_none() {
                    let at = self.now + self.rng.range(10_000, 80_000);
                    self.schedule(at, What::Reader);
                }
            }
        }
        Ok(())
    }

    fn turn(&mut self, id: NodeId) -> Result<(), String> {
        let now = self.local_now(id);
        let node = self.node(id);
        node.turn_scheduled = false;
        if !node.up {
            return Ok(());
        }
        let events = std::mem::take(&mut node.inbox);
        let effects = node.host.turn(now, events);
        self.summary.steps += 1;
        for effect in effects {
            self.effect(id, effect);
        }
        self.after_turn(id)
    }

    fn effect(&mut self, from: NodeId, effect: Effect) {
        match effect {
            Effect::Send { to, message } => {
                if let Fate::Delivered(delays) = self.network.fate(&mut self.rng, from, to) {
                    for delay in delays {
                        let message = message.clone();
                        self.schedule(self.now + delay, What::Deliver { from, to, message });
                    }
                }
            }
            Effect::Sync => {
                let node = self.node(from);
                if node.sync_in_flight {
                    node.sync_wanted = true;
                } else {
                    self.start_sync(from);
                }
            }
            Effect::PersistHardState(hard_state) => {
                let at = self.disk_time(from);
                let epoch = self.node(from).epoch;
                self.schedule(
                    at,
                    What::HardStateDone {
                        node: from,
                        epoch,
                        hard_state,
                    },
                );
            }
            Effect::SendSnapshot { to, meta, term } => {
                let data = self.node(from).host.snapshot_data(&meta);
                let epoch = self.node(from).epoch;
                let fate = self.network.fate(&mut self.rng, from, to);
                match (data, fate) {
                    (Some(data), Fate::Delivered(delays)) => {
                        let at = self.now + 10 * delays[0];
                        self.schedule(
                            at,
                            What::SnapshotArrive {
                                from,
                                to,
                                meta,
                                term,
                                data,
                            },
                        );
                        self.schedule(
                            at,
                            What::SnapshotResult {
                                node: from,
                                epoch,
                                to,
                                ok: true,
                            },
                        );
                    }
                    _ => {
                        let at = self.now + 1_000;
                        self.schedule(
                            at,
                            What::SnapshotResult {
                                node: from,
                                epoch,
                                to,
                                ok: false,
                            },
                        );
                    }
                }
            }
            Effect::Complete(event) => {
                if matches!(event, Event::SnapshotRestored(_)) {
                    self.summary.snapshots_installed += 1;
                }
                self.enqueue(from, event)
            }
        }
    }

    fn start_sync(&mut self, id: NodeId) {
        let at = self.disk_time(id);
        let node = self.node(id);
        node.sync_in_flight = true;
        node.sync_point = Some(node.host.begin_sync());
        let epoch = node.epoch;
        self.schedule(at, What::SyncDone { node: id, epoch });
    }

    /// Disk operations of one node complete in the order issued.
    fn disk_time(&mut self, id: NodeId) -> u64 {
        let (low, high) = self.plan.sync_us;
        let latency = self.rng.range(low, high);
        let now = self.now;
        let node = self.node(id);
        let at = node.disk_free_at.max(now) + latency;
        node.disk_free_at = at;
        at
    }

    fn after_turn(&mut self, id: NodeId) -> Result<(), String> {
        let index = id as usize - 1;
        let role = self.nodes[index].host.role();
        let term = self.nodes[index].host.raft.term();
        if role == Role::Leader {
            self.checker.leader_seen(id, term)?;
            if self.nodes[index].led_term != term {
                self.nodes[index].led_term = term;
                self.checker.new_leader(&self.nodes[index].host)?;
            }
        }
        self.checker.applied(&self.nodes[index].host)?;
        let responses: Vec<_> = self.nodes[index].host.responses.drain(..).collect();
        for (request_id, result) in responses {
            if let Some(&client) = self.requests.get(&request_id) {
                let at = self.now + self.rng.range(10, 500);
                if self.client_link_lost(client, id) {
                    continue;
                }
                self.schedule(
                    at,
                    What::ClientAnswer {
                        client,
                        request_id,
                        result,
                    },
                );
            }
        }
        let changes: Vec<_> = self.nodes[index]
            .host
            .membership_results
            .drain(..)
            .collect();
        self.summary.membership_changes += changes.iter().filter(|(_, r)| r.is_ok()).count() as u64;
        let transfers: Vec<_> = self.nodes[index].host.transfer_results.drain(..).collect();
        self.summary.transfers += transfers.iter().filter(|(_, r)| r.is_ok()).count() as u64;
        let reads: Vec<_> = self.nodes[index].host.read_results.drain(..).collect();
        for (request_id, result) in reads {
            if let Some((node, floor)) = self.reads.remove(&request_id)
                && let Ok(read_index) = result
            {
                self.checker.read(node, read_index, floor)?;
                self.summary.reads += 1;
            }
        }
        {
            // Log matching in full after every step: what this turn wrote
            // (or the whole log, after a restart) against every entry any
            // log held at its index and term, and the terms of every pair
            // of logs. Only this node's log changed in this step.
            let host = &mut self.nodes[index].host;
            let state = host.log.state_now();
            if let Some(from) = host.take_written_from()
                && from.max(state.prev.index + 1) <= state.last.index
            {
                let from = from.max(state.prev.index + 1);
                let batches = host
                    .log
                    .read_now(from, usize::MAX)
                    .map_err(|e| format!("node {id}: log read: {e}"))?;
                self.checker.entries_held(id, &batches)?;
            }
            let hosts: Vec<&Host> = self.nodes.iter().map(|n| &n.host).collect();
            self.checker.log_matching_terms(&hosts)?;
        }
        let deadline = self.nodes[index].host.raft.next_deadline_us();
        let at = self.global_time_of(id, deadline).max(self.now + 1);
        let node = self.node(id);
        node.tick_generation += 1;
        let generation = node.tick_generation;
        self.schedule(
            at,
            What::Tick {
                node: id,
                generation,
            },
        );
        Ok(())
    }

    /// Crashes one node (the leader half the time), several at once, or
    /// the whole cluster (a power loss): whatever was not synced is lost,
    /// which is what durability bugs need to show.
    fn crash(&mut self) {
        if self.healed_at.is_some() {
            return;
        }
        let up = self.up_nodes();
        let victims: Vec<NodeId> = match self.rng.range(0, 10) {
            0 => up.clone(),
            1..=3 => up
                .iter()
                .copied()
                .filter(|_| self.rng.chance(1, 2))
                .collect(),
            4..=6 => self.current_leader().into_iter().collect(),
            _ => up
                .get(self.rng.range(0, up.len().max(1) as u64) as usize)
                .copied()
                .into_iter()
                .collect(),
        };
        for id in victims {
            let node = self.node(id);
            if !node.up {
                continue;
            }
            node.up = false;
            node.epoch += 1;
            node.inbox.clear();
            node.sync_in_flight = false;
            node.sync_wanted = false;
            node.sync_point = None;
            node.turn_scheduled = false;
            self.summary.crashes += 1;
            let at = self.now + self.rng.range(20_000, 600_000);
            self.schedule(at, What::Restart { node: id });
        }
        let every = self.plan.crash_every_us;
        let at = self.now + self.rng.range(every / 2, every * 3 / 2);
        self.schedule(at, What::Crash);
    }

    fn current_leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.up && n.host.role() == Role::Leader)
            .max_by_key(|n| n.host.raft.term())
            .map(|n| n.host.id)
    }

    fn restart(&mut self, id: NodeId) {
        if self.node(id).up {
            return;
        }
        // Usually every unsynced write is lost; sometimes a disk got some out.
        let keep = if self.rng.chance(7, 10) {
            0
        } else {
            self.rng.range(1, 3) as usize
        };
        let seed = self.rng.next_u64();
        let now = self.local_now(id);
        // A wiped disk, unless another node is still repairing: two nodes
        // of three that lost the same acknowledged entry cannot get it
        // back (the cluster must stop; nothing can repair it).
        let others_repairing = self
            .nodes
            .iter()
            .any(|n| n.host.id != id && n.host.pending_loss.is_some());
        let wipe = self.plan.wipe_ppm > 0
            && !others_repairing
            && self.wipe_rng.range(0, 1_000_000) < self.plan.wipe_ppm;
        if wipe {
            self.summary.wipes += 1;
        }
        // A flipped synced byte of the log, under the same rule.
        let corrupt = !wipe
            && self.plan.corrupt_ppm > 0
            && !others_repairing
            && self.wipe_rng.range(0, 1_000_000) < self.plan.corrupt_ppm;
        let pick = if corrupt { self.wipe_rng.next_u64() } else { 0 };
        let node = self.node(id);
        let losses_before = node.host.losses_found;
        if wipe {
            node.host.wipe_and_restart(seed, now);
        } else {
            if corrupt && let HostLog::Disk(disk) = &node.host.log {
                // The crash first (what it keeps is its own draw), then
                // the damage to what it kept.
                disk.disk.crash();
                let hit = damage_acknowledged(&disk.disk, node.host.acked_saved, pick);
                node.host.restart_on_crashed_disk(seed, now);
                if hit {
                    self.summary.corruptions += 1;
                }
            } else {
                node.host.crash_and_restart(keep, seed, now);
            }
        }
        if self.node(id).host.losses_found > losses_before {
            self.summary.losses_found += 1;
        }
        let node = self.node(id);
        node.up = true;
        node.led_term = 0;
        node.disk_free_at = 0;
        self.checker.reset_node(id);
        self.enqueue(id, Event::Tick);
    }

    fn client_wake(&mut self, index: usize) {
        let now = self.now;
        while self.clients[index].start_next(now).is_some() {}
        let due = self.clients[index].due(now);
        if due.is_empty() {
            if !self.clients[index].busy() {
                self.check_all_done();
            } else {
                let at = self.clients[index]
                    .next_wake()
                    .unwrap_or(now + 1_000)
                    .max(now + 1);
                self.schedule(at, What::ClientWake { client: index });
            }
            return;
        }
        let up = self.up_nodes();
        for seq in due {
            let Some(node) = self.clients[index].pick_node(&mut self.rng, &up) else {
                self.schedule(now + 10_000, What::ClientWake { client: index });
                return;
            };
            let request_id = self.next_request_id;
            self.next_request_id += 1;
            self.requests.insert(request_id, index);
            let redirect = self.rng.chance(1, 4);
            let client = &mut self.clients[index];
            client.sent(seq, request_id, now);
            let outstanding = client.get(seq).expect("due proposals are outstanding");
            let proposal = Proposal {
                request_id,
                client_id: client.client_id,
                seq,
                payload: bytes::Bytes::from(outstanding.payload.clone()),
                redirect,
            };
            let at = now + self.rng.range(10, 500);
            if !self.client_link_lost(index, node) {
                self.schedule(
                    at,
                    What::ClientDeliver {
                        node,
                        event: Event::Propose(proposal),
                    },
                );
            }
        }
        if let Some(at) = self.clients[index].next_wake() {
            self.schedule(at.max(now + 1), What::ClientWake { client: index });
        }
    }

    /// Whether a message between client `index` and `node` is lost: the
    /// client is cut off from the node, or the message is dropped (fault
    /// phase, seeds with client faults only).
    fn client_link_lost(&mut self, index: usize, node: NodeId) -> bool {
        self.plan.client_drop_ppm > 0
            && self.healed_at.is_none()
            && (self.client_cut_off[index].contains(&node)
                || self.client_rng.chance(self.plan.client_drop_ppm, 1_000_000))
    }

    fn client_answer(
        &mut self,
        index: usize,
        request_id: u64,
        result: ProposeResult,
    ) -> Result<(), String> {
        if let Err(error @ (ProposeError::SessionExpired { .. } | ProposeError::TooLarge { .. })) =
            result
        {
            return Err(format!(
                "client {index} got {error} for a fresh, small proposal"
            ));
        }
        let client_id = self.clients[index].client_id;
        let now = self.now;
        match self.clients[index].answered(request_id, result, &mut self.rng, now) {
            Outcome::Acknowledged(seq, payload, committed) => {
                self.checker
                    .acknowledged(client_id, seq, &payload, committed)?;
                self.max_acked_index = self.max_acked_index.max(committed.index);
                let at = self.now + self.rng.range(0, 5_000);
                self.schedule(at, What::ClientWake { client: index });
            }
            Outcome::Retry(after) => {
                self.schedule(self.now + after, What::ClientWake { client: index })
            }
            Outcome::GaveUp => self.schedule(self.now + 1_000, What::ClientWake { client: index }),
            Outcome::Stale => {}
        }
        self.summary.acknowledged = self.clients.iter().map(|c| c.acknowledged).sum();
        Ok(())
    }

    fn check_all_done(&mut self) {
        if self.clients_done_at.is_none()
            && self.healed_at.is_some()
            && !self.clients.iter().any(Client::busy)
        {
            self.clients_done_at = Some(self.now);
        }
    }

    /// Every node's status and, for leaders, their followers' progress.
    fn describe(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push_str(&format!(
                "  node {} up={} {:?} voters {:?} learners {:?}\n",
                node.host.id,
                node.up,
                node.host.raft.status(),
                node.host.raft.voters(),
                node.host.raft.learners()
            ));
            for peer in self.all_ids() {
                if let Some(progress) = node.host.raft.progress(peer) {
                    out.push_str(&format!("    -> {peer}: {progress:?}\n"));
                }
            }
            out.push_str(&format!(
                "    log {:?} snapshot {:?}\n",
                node.host.log.state_now().prev,
                node.host.raft.snapshot_meta().last
            ));
        }
        out
    }

    fn finish(&mut self) -> Result<(), String> {
        if self.clients.iter().any(Client::busy) {
            return Err("the event queue ran dry with clients still busy".into());
        }
        let hosts: Vec<&Host> = self.nodes.iter().map(|n| &n.host).collect();
        self.checker.log_matching(&hosts)?;
        self.checker.finish()?;
        let committed = self.checker.ledger().len();
        // Members of the configuration committed last converge; nodes
        // outside it (removed, or never added) receive nothing more.
        let furthest = self
            .nodes
            .iter()
            .max_by_key(|n| n.host.raft.log().commit())
            .expect("nodes");
        let (_, membership) = furthest.host.raft.committed_membership();
        let members: Vec<NodeId> = membership.members().iter().map(|m| m.id).collect();
        for node in self.nodes.iter().filter(|n| members.contains(&n.host.id)) {
            let applied = node.host.state_machine().last().map_or(0, |e| e.index) as usize;
            if applied != committed {
                return Err(format!(
                    "convergence: node {} applied up to {applied} but {committed} entries are committed, {} µs after the clients finished\n{}",
                    node.host.id,
                    SETTLE_US,
                    self.describe()
                ));
            }
        }
        Ok(())
    }
}

/// Flips one byte, chosen by `pick`, of what the node's disk holds and
/// its acknowledgement watermark `acked` covers: a frame of a segment
/// whose entries end at or below it, or the hard-state file. The fault
/// model of docs/storage.md: damage to entries acknowledged in the
/// watermark's last interval before a crash is the residual risk it names,
/// a double fault the simulator does not make. Returns whether a byte
/// was flipped.
pub fn damage_acknowledged(disk: &SimDisk, acked: Index, pick: u64) -> bool {
    use ordo_storage::frame::BatchHeader;
    let mut targets: Vec<(std::path::PathBuf, u64, u64)> = Vec::new();
    let mut hard_state = None;
    for path in disk.files() {
        if !path.starts_with(SIM_LOG_DIR) {
            continue;
        }
        let Some(bytes) = disk.contents(&path) else {
            continue;
        };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == ordo_storage::disk::HARD_STATE_FILE_NAME {
            hard_state = Some((path.clone(), bytes.len() as u64));
            continue;
        }
        if !name.ends_with(".seg") {
            continue;
        }
        let mut at = 4096usize;
        while at < bytes.len() {
            let Ok(header) = BatchHeader::parse(&bytes[at..]) else {
                break;
            };
            let len = header.frame_len as usize;
            if header.last_index() <= acked && at + len <= bytes.len() {
                targets.push((path.clone(), at as u64, len as u64));
            }
            at += len.max(1);
        }
    }
    let total: u64 = targets.iter().map(|t| t.2).sum();
    // A quarter of the damage goes to the hard state (either slot alone
    // must not cost term or vote), the rest to acknowledged frames.
    if (total == 0 || pick.is_multiple_of(4))
        && let Some((path, len)) = hard_state
        && len > 0
    {
        return disk.corrupt_at(&path, (pick / 4) % len);
    }
    if total == 0 {
        return false;
    }
    let mut offset = (pick / 4) % total;
    for (path, start, len) in targets {
        if offset < len {
            return disk.corrupt_at(&path, start + offset);
        }
        offset -= len;
    }
    false
}
