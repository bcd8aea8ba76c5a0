//! The simulated gossip world: a virtual clock, a queue of timed events,
//! voters and gossip nodes running the real gossip core, the network, the
//! publisher, crashes and restarts, forgeries, and the checker.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use bytes::Bytes;
use ordo_engine::core::Rng;
use ordo_engine::gossip::{
    ChecksumSigner, ChecksumVerifier, Command, Event, GossipMessage, GossipNode, GossipStart,
    GossipStats, PeerAddr, PeerKind, Wire,
};
use ordo_storage::MessageId;

use super::checker::Checker;
use super::{Failure, Plan, Summary, quantile};
use crate::sim::network::{Fate, Network};

/// A hard cap on events, against a livelock in the simulator or the core.
const EVENTS_MAX: u64 = 50_000_000;
/// Wall clock at virtual time 0 (message timestamps derive from it).
const WALL_START_US: u64 = 1_700_000_000_000_000;
/// Faults stop this long after the last publication.
const HEAL_AFTER_LAST_PUBLISH_US: u64 = 500_000;

enum What {
    Deliver {
        from: usize,
        to: usize,
        message: Wire,
    },
    Local {
        node: usize,
        event: Event,
    },
    Turn {
        node: usize,
    },
    Tick {
        node: usize,
        generation: u64,
    },
    Persisted {
        node: usize,
        epoch: u64,
        delivered: MessageId,
    },
    Join {
        node: usize,
    },
    Publish {
        id: MessageId,
    },
    Crash {
        node: usize,
        restart_after_us: Option<u64>,
    },
    Restart {
        node: usize,
    },
    Forge,
    Heal,
    CheckDone,
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
    addr: PeerAddr,
    kind: PeerKind,
    name: String,
    /// `None` while down (or before joining).
    core: Option<GossipNode<ChecksumVerifier>>,
    /// Incremented at each crash: completions of an earlier life are void.
    epoch: u64,
    generation: u32,
    inbox: Vec<Event>,
    turn_scheduled: bool,
    tick_generation: u64,
    /// The subscribers' store: every id up to here, in order.
    store_last: MessageId,
    /// The durable watermark: what a restart starts from.
    durable: MessageId,
    disk_free_at: u64,
    crashed: bool,
    /// Stats of earlier lives.
    past_stats: Vec<GossipStats>,
    /// `(id, at)` of each delivery, for latencies.
    deliveries: Vec<(MessageId, u64)>,
}

/// The whole simulated world for one plan.
pub struct World {
    plan: Plan,
    rng: Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<SimNode>,
    by_addr: BTreeMap<PeerAddr, usize>,
    network: Network,
    signers: Vec<ChecksumSigner>,
    verifier: ChecksumVerifier,
    checker: Checker,
    publish_at: Vec<u64>,
    restarts_pending: usize,
    healed_at: Option<u64>,
    done: bool,
    summary: Summary,
    events: u64,
}

impl World {
    /// A world for `plan`.
    pub fn new(plan: Plan) -> Self {
        let mut rng = Rng::new(plan.seed);
        let mut nodes = Vec::new();
        let mut by_addr = BTreeMap::new();
        for i in 0..plan.voters + plan.gossip_nodes {
            let (kind, addr, name) = if i < plan.voters {
                let addr = PeerAddr::from(([127, 0, 0, 1], 9_000 + i as u16));
                (PeerKind::Voter, addr, format!("voter {addr}"))
            } else {
                let addr = PeerAddr::from(([127, 0, 0, 1], 10_000 + i as u16));
                (PeerKind::Gossip, addr, format!("gossip {addr}"))
            };
            by_addr.insert(addr, i);
            nodes.push(SimNode {
                addr,
                kind,
                name,
                core: None,
                epoch: 0,
                generation: 1,
                inbox: Vec::new(),
                turn_scheduled: false,
                tick_generation: 0,
                store_last: 0,
                durable: 0,
                disk_free_at: 0,
                crashed: false,
                past_stats: Vec::new(),
                deliveries: Vec::new(),
            });
        }
        let keys: Vec<(u64, u64)> = (0..plan.voters as u64)
            .map(|v| (v + 1, rng.next_u64()))
            .collect();
        let signers = keys
            .iter()
            .map(|&(id, key)| ChecksumSigner::new(id, key))
            .collect();
        let verifier = ChecksumVerifier::new(keys);
        let network = Network::new(plan.drop_ppm, plan.duplicate_ppm, plan.delay_us);
        Self {
            checker: Checker::new(verifier.clone()),
            plan,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            by_addr,
            network,
            signers,
            verifier,
            publish_at: Vec::new(),
            restarts_pending: 0,
            healed_at: None,
            done: false,
            summary: Summary::default(),
            events: 0,
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
            what: format!("gossip: {what}"),
            at_us: self.now,
            replay: format!(
                "ORDO_GOSSIP_SEED={} cargo test -p ordo-tests --test gossip_simulation replay -- --ignored --nocapture",
                self.plan.seed
            ),
        }
    }

    fn voter_addrs(&self) -> Vec<PeerAddr> {
        self.nodes[..self.plan.voters]
            .iter()
            .map(|n| n.addr)
            .collect()
    }

    fn start(&mut self, node: usize) {
        let seeds = self.voter_addrs();
        let rng_seed = self.rng.next_u64();
        let n = &mut self.nodes[node];
        let start = GossipStart {
            addr: n.addr,
            kind: n.kind,
            generation: n.generation,
            delivered: n.durable,
            seeds,
            rng_seed,
        };
        let core = GossipNode::new(start, self.plan.config.clone(), self.verifier.clone())
            .expect("the plan's config is valid");
        n.core = Some(core);
        self.enqueue(node, Event::Tick);
    }

    fn enqueue(&mut self, node: usize, event: Event) {
        let at = self.now + self.rng.range(0, 30);
        let n = &mut self.nodes[node];
        if n.core.is_none() {
            return;
        }
        n.inbox.push(event);
        if !n.turn_scheduled {
            n.turn_scheduled = true;
            self.schedule(at, What::Turn { node });
        }
    }

    /// Runs the world to the end; returns what it measured or the first
    /// broken invariant.
    pub fn run(mut self) -> Result<Summary, Failure> {
        for node in 0..self.nodes.len() {
            let at = if node < self.plan.voters {
                0
            } else {
                self.rng.range(0, self.plan.join_us)
            };
            self.schedule(at, What::Join { node });
        }
        let mut at = self.plan.publish_start_us;
        for id in 1..=self.plan.messages {
            self.schedule(at, What::Publish { id });
            at += self
                .rng
                .range(self.plan.publish_gap_us.0, self.plan.publish_gap_us.1);
        }
        let last_publish = at;
        self.schedule(last_publish + HEAL_AFTER_LAST_PUBLISH_US, What::Heal);
        let gossip: Vec<usize> = (self.plan.voters..self.nodes.len()).collect();
        let mut victims = gossip.clone();
        for i in 0..self.plan.crashes.min(victims.len()) {
            let pick = self.rng.range(i as u64, victims.len() as u64) as usize;
            victims.swap(i, pick);
            let node = victims[i];
            let at = self.rng.range(self.plan.publish_start_us, last_publish);
            let restart_after_us = (i < self.plan.restarts).then(|| {
                self.rng
                    .range(self.plan.downtime_us.0, self.plan.downtime_us.1)
            });
            if restart_after_us.is_some() {
                self.restarts_pending += 1;
            }
            self.schedule(
                at,
                What::Crash {
                    node,
                    restart_after_us,
                },
            );
        }
        for _ in 0..self.plan.forgeries {
            let at = self.rng.range(self.plan.publish_start_us, last_publish);
            self.schedule(at, What::Forge);
        }
        while let Some(Reverse(next)) = self.queue.pop() {
            self.events += 1;
            if self.events > EVENTS_MAX {
                return Err(
                    self.fail("the simulation exceeded its event budget (livelock?)".into())
                );
            }
            self.now = next.at;
            if let Some(healed) = self.healed_at
                && self.now > healed + self.plan.liveness_bound_us
            {
                return Err(self.fail(self.liveness_report()));
            }
            self.handle(next.what).map_err(|what| self.fail(what))?;
            if self.done {
                break;
            }
        }
        if !self.done {
            return Err(self.fail(self.liveness_report()));
        }
        Ok(self.summarize())
    }

    fn handle(&mut self, what: What) -> Result<(), String> {
        match what {
            What::Deliver { from, to, message } => {
                let from = self.nodes[from].addr;
                self.enqueue(to, Event::Message { from, message });
            }
            What::Local { node, event } => self.enqueue(node, event),
            What::Turn { node } => self.turn(node)?,
            What::Tick { node, generation } => {
                if self.nodes[node].tick_generation == generation {
                    self.enqueue(node, Event::Tick);
                }
            }
            What::Persisted {
                node,
                epoch,
                delivered,
            } => {
                let n = &mut self.nodes[node];
                if n.epoch == epoch {
                    n.durable = n.durable.max(delivered);
                }
            }
            What::Join { node } => self.start(node),
            What::Publish { id } => self.publish(id),
            What::Crash {
                node,
                restart_after_us,
            } => {
                let n = &mut self.nodes[node];
                if let Some(core) = n.core.take() {
                    n.past_stats.push(core.stats().clone());
                }
                n.epoch += 1;
                n.crashed = true;
                n.inbox.clear();
                // What was delivered but not durable is lost with the
                // process; the next life delivers it again.
                n.store_last = n.durable;
                self.summary.crashes += 1;
                if let Some(after) = restart_after_us {
                    self.schedule(self.now + after, What::Restart { node });
                }
            }
            What::Restart { node } => {
                self.restarts_pending -= 1;
                self.summary.restarts += 1;
                self.nodes[node].generation += 1;
                self.start(node);
            }
            What::Forge => self.forge(),
            What::Heal => {
                self.network.heal();
                self.healed_at = Some(self.now);
                self.schedule(self.now, What::CheckDone);
            }
            What::CheckDone => {
                let total = self.plan.messages;
                self.done = self.restarts_pending == 0
                    && self.nodes[self.plan.voters..]
                        .iter()
                        .filter(|n| n.core.is_some())
                        .all(|n| n.store_last == total);
                if !self.done {
                    self.schedule(self.now + 50_000, What::CheckDone);
                }
            }
        }
        Ok(())
    }

    fn publish(&mut self, id: MessageId) {
        let voter = self.rng.range(0, self.plan.voters as u64) as usize;
        let len = self.rng.range(16, 256) as usize;
        let payload: Vec<u8> = (0..len).map(|_| self.rng.next_u64() as u8).collect();
        let message = self.signers[voter].sign(GossipMessage {
            id,
            // Internal entries (no-ops, configuration) take indexes but no
            // ids, so indexes run ahead.
            index: id + id / 7 + 1,
            term: 1 + id / 100,
            ts: WALL_START_US + self.now,
            payload: Bytes::from(payload),
            token: Bytes::new(),
        });
        self.checker.published(message.clone());
        self.publish_at.push(self.now);
        self.enqueue(voter, Event::Publish(message));
        // Every voter applies the commit soon after.
        for other in 0..self.plan.voters {
            let at = self.now + self.rng.range(0, 2_000);
            self.schedule(
                at,
                What::Local {
                    node: other,
                    event: Event::CommitAdvanced { id },
                },
            );
        }
    }

    /// Injects a forged message at a random live gossip node, as if a
    /// gossip peer (or anyone on the network) sent it.
    fn forge(&mut self) {
        let published = self.checker.published_count();
        let live: Vec<usize> = (self.plan.voters..self.nodes.len())
            .filter(|&n| self.nodes[n].core.is_some())
            .collect();
        if published == 0 || live.is_empty() {
            return;
        }
        let target = live[self.rng.range(0, live.len() as u64) as usize];
        let spoofed = self.nodes[self.rng.range(0, self.nodes.len() as u64) as usize].addr;
        // Often the next id, so that the forgery arrives before the real
        // message and must be told apart by verification, not dedup.
        let id = if self.rng.chance(1, 2) {
            published
        } else {
            self.rng.range(1, published + 1)
        };
        let Some(real) = self.checker.message(id).cloned() else {
            return;
        };
        let mut forged = real.clone();
        match self.rng.range(0, 4) {
            0 => forged.payload = Bytes::from_static(b"forged payload"),
            1 => forged.id = published + 1,
            2 => forged.ts += 1,
            _ => {
                forged.id = published + 1;
                forged = ChecksumSigner::new(999, 0xF0F0).sign(forged);
            }
        }
        self.summary.forgeries += 1;
        let message = if self.rng.chance(1, 2) {
            Wire::Push {
                message: forged,
                hops: 1,
                repair: self.rng.chance(1, 2),
            }
        } else {
            Wire::PullReply {
                messages: vec![forged],
                delivered: published + 1,
            }
        };
        self.enqueue(
            target,
            Event::Message {
                from: spoofed,
                message,
            },
        );
    }

    fn turn(&mut self, node: usize) -> Result<(), String> {
        let now = self.now;
        let n = &mut self.nodes[node];
        n.turn_scheduled = false;
        let Some(core) = n.core.as_mut() else {
            return Ok(());
        };
        let events = std::mem::take(&mut n.inbox);
        for event in events {
            core.step(now, event);
        }
        let mut commands = Vec::new();
        core.end_turn(now, &mut commands);
        core.check_invariants();
        let deadline = core.next_deadline_us();
        for command in commands {
            self.command(node, command)?;
        }
        let n = &mut self.nodes[node];
        n.tick_generation += 1;
        let generation = n.tick_generation;
        if deadline != u64::MAX {
            self.schedule(deadline.max(now + 1), What::Tick { node, generation });
        }
        Ok(())
    }

    fn command(&mut self, node: usize, command: Command) -> Result<(), String> {
        match command {
            Command::Send { to, message } => {
                self.checker.sent(&self.nodes[node].name, &message)?;
                let peer = to;
                let Some(&to) = self.by_addr.get(&to) else {
                    return Err(format!(
                        "{} sent to unknown address {to}",
                        self.nodes[node].name
                    ));
                };
                if self.nodes[to].core.is_none() {
                    // A crashed process's port refuses the connection: the
                    // transport reports it after about a round trip.
                    let (low, high) = self.plan.delay_us;
                    let at = self.now + 2 * self.rng.range(low, high);
                    self.schedule(
                        at,
                        What::Local {
                            node,
                            event: Event::Unreachable { peer },
                        },
                    );
                    return Ok(());
                }
                if let Fate::Delivered(delays) =
                    self.network
                        .fate(&mut self.rng, node as u64 + 1, to as u64 + 1)
                {
                    for delay in delays {
                        let message = message.clone();
                        self.schedule(
                            self.now + delay,
                            What::Deliver {
                                from: node,
                                to,
                                message,
                            },
                        );
                    }
                }
            }
            Command::Deliver(messages) => {
                let now = self.now;
                let n = &mut self.nodes[node];
                if n.kind == PeerKind::Voter {
                    return Err(format!("{} (a voter) delivered", n.name));
                }
                self.checker
                    .delivered(&n.name, &mut n.store_last, &messages)?;
                n.deliveries.extend(messages.iter().map(|m| (m.id, now)));
            }
            Command::PersistWatermark { delivered } => {
                let (low, high) = self.plan.persist_us;
                let latency = self.rng.range(low, high);
                let n = &mut self.nodes[node];
                // A disk completes writes in the order issued.
                let at = n.disk_free_at.max(self.now) + latency;
                n.disk_free_at = at;
                let epoch = n.epoch;
                self.schedule(
                    at,
                    What::Persisted {
                        node,
                        epoch,
                        delivered,
                    },
                );
            }
            Command::ReadCommitted {
                peer,
                from,
                to,
                bytes_max,
            } => {
                if self.nodes[node].kind != PeerKind::Voter {
                    return Err(format!(
                        "{} (not a voter) read the log",
                        self.nodes[node].name
                    ));
                }
                let mut messages = Vec::new();
                let mut bytes = 0;
                for id in from..=to.min(self.checker.published_count()) {
                    let Some(message) = self.checker.message(id) else {
                        break;
                    };
                    if !messages.is_empty() && bytes + message.size_bytes() > bytes_max {
                        break;
                    }
                    bytes += message.size_bytes();
                    messages.push(message.clone());
                }
                let at = self.now + self.rng.range(100, 1_000);
                self.schedule(
                    at,
                    What::Local {
                        node,
                        event: Event::CommittedRead { peer, messages },
                    },
                );
            }
        }
        Ok(())
    }

    fn liveness_report(&self) -> String {
        let total = self.plan.messages;
        let behind: Vec<String> = self.nodes[self.plan.voters..]
            .iter()
            .filter_map(|n| {
                let core = n.core.as_ref()?;
                (n.store_last != total).then(|| {
                    format!(
                        "{} delivered {} of {total} (known max {}, links {:?}, members {})",
                        n.name,
                        n.store_last,
                        core.known_max(),
                        core.links(),
                        core.members().len()
                    )
                })
            })
            .collect();
        format!(
            "complete-delivery: {} live nodes still miss messages {} µs after the faults healed (restarts pending: {}):\n  {}",
            behind.len(),
            self.plan.liveness_bound_us,
            self.restarts_pending,
            behind.join("\n  ")
        )
    }

    fn summarize(mut self) -> Summary {
        let gossip = &self.nodes[self.plan.voters..];
        let mut payload = 0u64;
        let mut pushes = 0u64;
        let mut delivered = 0u64;
        let mut control = 0u64;
        let mut membership = 0u64;
        let (mut grafts, mut pulls, mut voter_pulls) = (0, 0, 0);
        let mut rejected = 0;
        let mut hops_max = 0;
        for n in gossip {
            let current = n.core.as_ref().map(|c| c.stats().clone());
            for stats in n.past_stats.iter().chain(current.iter()) {
                payload += stats.payload_received;
                pushes += stats.received.get("push").copied().unwrap_or(0);
                delivered += stats.delivered;
                rejected += stats.rejected;
                grafts += stats.grafts_sent;
                pulls += stats.pulls_sent;
                voter_pulls += stats.voter_pulls_sent;
                hops_max = hops_max.max(stats.hops_max);
                for (&kind, &count) in &stats.received {
                    match kind {
                        "membership" => membership += count,
                        "push" | "pull_reply" => {}
                        _ => control += count,
                    }
                }
            }
        }
        let mut last_node = vec![0u64; self.plan.messages as usize];
        let mut each = Vec::new();
        for n in gossip.iter().filter(|n| !n.crashed) {
            for &(id, at) in &n.deliveries {
                let latency = at - self.publish_at[id as usize - 1];
                each.push(latency);
                let slot = &mut last_node[id as usize - 1];
                *slot = (*slot).max(latency);
            }
        }
        last_node.sort_unstable();
        each.sort_unstable();
        let duration_s = self.now as f64 / 1e6;
        let s = &mut self.summary;
        s.messages = self.plan.messages;
        s.live_nodes = gossip.iter().filter(|n| n.core.is_some()).count();
        s.rejected = rejected;
        s.last_node_latency_us = (
            quantile(&last_node, 0.5),
            quantile(&last_node, 0.99),
            last_node.last().copied().unwrap_or(0),
        );
        s.delivery_latency_us = (quantile(&each, 0.5), quantile(&each, 0.99));
        let per = |x: u64| x as f64 / delivered.max(1) as f64;
        s.redundancy = per(payload) - 1.0;
        s.push_redundancy = per(pushes) - 1.0;
        s.control_per_delivery = per(control);
        s.membership_per_node_s = membership as f64 / gossip.len().max(1) as f64 / duration_s;
        s.repairs = (grafts, pulls, voter_pulls);
        s.hops_max = hops_max;
        s.duration_us = self.now;
        s.events = self.events;
        self.summary
    }
}
