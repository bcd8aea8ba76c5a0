//! An in-memory cluster with perfect, instant disks and a network that
//! delivers in order unless a link is cut: the stage for scenario tests and
//! the core benchmark. Faults live in the simulator (`tests/`).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use ordo_net::{Message, ProposeResult, ReadError};
use ordo_storage::{Index, NodeId};

use super::host::{Effect, Host};
use crate::core::{
    ChangeError, CoreConfig, Event, MembershipChange, Now, Proposal, Role, TransferError,
};

/// Wall clock of the cluster's first instant (µs since the epoch).
pub const WALL_START_US: u64 = 1_700_000_000_000_000;

/// Several hosts wired together.
pub struct Cluster {
    /// The nodes, by id.
    pub hosts: BTreeMap<NodeId, Host>,
    /// The shared clock.
    pub now: Now,
    inbox: BTreeMap<NodeId, Vec<Event>>,
    /// Links `(from, to)` that drop every message.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Every message delivered, for tests that inspect traffic.
    pub trace: Vec<(NodeId, NodeId, Message)>,
    /// Whether to record `trace`.
    pub record: bool,
    next_request_id: u64,
}

impl Cluster {
    /// `n` voters with ids `1..=n`.
    pub fn new(n: u64, config: CoreConfig, seed: u64) -> Self {
        let voters: Vec<NodeId> = (1..=n).collect();
        let now = Now {
            mono_us: 1_000_000,
            wall_us: WALL_START_US,
        };
        let hosts = voters
            .iter()
            .map(|&id| {
                (
                    id,
                    Host::new(
                        id,
                        &voters,
                        config.clone(),
                        seed ^ id.wrapping_mul(0x9E37),
                        now,
                    ),
                )
            })
            .collect();
        Self {
            hosts,
            now,
            inbox: BTreeMap::new(),
            cut: BTreeSet::new(),
            trace: Vec::new(),
            record: false,
            next_request_id: 1,
        }
    }

    /// Starts node `id`, not yet a member: it waits to be added.
    pub fn add_node(&mut self, id: NodeId, config: CoreConfig, seed: u64) {
        let host = Host::new(id, &[], config, seed ^ id.wrapping_mul(0x9E37), self.now);
        self.hosts.insert(id, host);
    }

    /// Asks `node` to change the membership; returns the request id.
    pub fn change_membership(&mut self, node: NodeId, change: MembershipChange) -> u64 {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.inject(
            node,
            Event::ChangeMembership {
                request_id,
                change,
                known_info: Vec::new(),
            },
        );
        request_id
    }

    /// The answer `node` gave to membership change `request_id`, if any
    /// (taken).
    pub fn membership_result(
        &mut self,
        node: NodeId,
        request_id: u64,
    ) -> Option<Result<Index, ChangeError>> {
        let host = self.host(node);
        let at = host
            .membership_results
            .iter()
            .position(|(id, _)| *id == request_id)?;
        host.membership_results.remove(at).map(|(_, result)| result)
    }

    /// Asks `node` to hand leadership to `to`; returns the request id.
    pub fn transfer(&mut self, node: NodeId, to: NodeId) -> u64 {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.inject(node, Event::TransferLeadership { to, request_id });
        request_id
    }

    /// The answer `node` gave to transfer `request_id`, if any (taken).
    pub fn transfer_result(
        &mut self,
        node: NodeId,
        request_id: u64,
    ) -> Option<Result<NodeId, TransferError>> {
        let host = self.host(node);
        let at = host
            .transfer_results
            .iter()
            .position(|(id, _)| *id == request_id)?;
        host.transfer_results.remove(at).map(|(_, result)| result)
    }

    /// The host `id`.
    pub fn host(&mut self, id: NodeId) -> &mut Host {
        self.hosts.get_mut(&id).expect("node exists")
    }

    /// Advances the clock by `ms` and ticks every node, then delivers.
    pub fn advance(&mut self, ms: u64) {
        self.now.mono_us += ms * 1_000;
        self.now.wall_us += ms * 1_000;
        let ids: Vec<NodeId> = self.hosts.keys().copied().collect();
        for id in ids {
            self.inbox.entry(id).or_default().push(Event::Tick);
        }
        self.deliver_all();
    }

    /// Makes `id` campaign (the clock moves to its election deadline) and
    /// runs the election to completion.
    pub fn campaign(&mut self, id: NodeId) {
        let deadline = self.hosts[&id].raft.next_deadline_us();
        let shift = deadline.saturating_sub(self.now.mono_us);
        self.now.mono_us += shift;
        self.now.wall_us += shift;
        let now = self.now;
        let effects = self.host(id).turn(now, [Event::Tick]);
        self.route(id, effects);
        self.deliver_all();
    }

    /// Elects `id` and lets its no-op commit.
    pub fn elect(&mut self, id: NodeId) {
        self.campaign(id);
        assert_eq!(
            self.hosts[&id].role(),
            Role::Leader,
            "node {id} did not win"
        );
    }

    /// The node that leads the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.hosts
            .values()
            .filter(|h| h.role() == Role::Leader)
            .max_by_key(|h| h.raft.term())
            .map(|h| h.id)
    }

    /// Proposes `payload` at `node` without a session; returns its request id.
    pub fn propose(&mut self, node: NodeId, payload: &[u8]) -> u64 {
        self.propose_with(node, payload, 0, 0, false)
    }

    /// Proposes with a session and the redirect flag.
    pub fn propose_with(
        &mut self,
        node: NodeId,
        payload: &[u8],
        client_id: u64,
        seq: u64,
        redirect: bool,
    ) -> u64 {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let proposal = Proposal {
            request_id,
            client_id,
            seq,
            payload: Bytes::copy_from_slice(payload),
            redirect,
        };
        self.inbox
            .entry(node)
            .or_default()
            .push(Event::Propose(proposal));
        request_id
    }

    /// Asks `node` for a linearizable read; returns its request id.
    pub fn read(&mut self, node: NodeId) -> u64 {
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.inbox
            .entry(node)
            .or_default()
            .push(Event::Read { request_id });
        request_id
    }

    /// Queues an event for `node`'s next turn.
    pub fn inject(&mut self, node: NodeId, event: Event) {
        self.inbox.entry(node).or_default().push(event);
    }

    /// The answer `node` gave to `request_id`, if any (taken).
    pub fn response(&mut self, node: NodeId, request_id: u64) -> Option<ProposeResult> {
        let host = self.host(node);
        let at = host
            .responses
            .iter()
            .position(|(id, _)| *id == request_id)?;
        host.responses.remove(at).map(|(_, result)| result)
    }

    /// The read index `node` gave to `request_id`, if any (taken).
    pub fn read_result(
        &mut self,
        node: NodeId,
        request_id: u64,
    ) -> Option<Result<Index, ReadError>> {
        let host = self.host(node);
        let at = host
            .read_results
            .iter()
            .position(|(id, _)| *id == request_id)?;
        host.read_results.remove(at).map(|(_, result)| result)
    }

    /// Cuts `a` off from every other node, both ways.
    pub fn isolate(&mut self, a: NodeId) {
        let ids: Vec<NodeId> = self.hosts.keys().copied().collect();
        for b in ids {
            if a != b {
                self.cut.insert((a, b));
                self.cut.insert((b, a));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Runs turns until no node has anything left to do.
    pub fn deliver_all(&mut self) {
        for _round in 0..100_000 {
            if !self.deliver_one() {
                return;
            }
        }
        panic!("cluster did not quiesce");
    }

    /// Runs one turn of the lowest-numbered node with events waiting;
    /// returns whether there was one.
    pub fn deliver_one(&mut self) -> bool {
        let Some((&id, _)) = self.inbox.iter().find(|(_, events)| !events.is_empty()) else {
            return false;
        };
        let events = std::mem::take(self.inbox.get_mut(&id).expect("found"));
        let now = self.now;
        let effects = self.host(id).turn(now, events);
        self.route(id, effects);
        true
    }

    fn route(&mut self, from: NodeId, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send { to, message } => {
                    if self.cut.contains(&(from, to)) {
                        continue;
                    }
                    if self.record {
                        self.trace.push((from, to, message.clone()));
                    }
                    self.inbox
                        .entry(to)
                        .or_default()
                        .push(Event::Message { from, message });
                }
                Effect::Sync => {
                    let event = self.host(from).complete_sync();
                    self.inbox.entry(from).or_default().push(event);
                }
                Effect::PersistHardState(hard_state) => {
                    let event = self.host(from).complete_hard_state(hard_state);
                    self.inbox.entry(from).or_default().push(event);
                }
                Effect::SendSnapshot { to, meta, term } => {
                    let data = self.hosts[&from].snapshot_data(&meta);
                    let ok = data.is_some() && !self.cut.contains(&(from, to));
                    if let Some(data) = data.filter(|_| ok) {
                        self.host(to).received_snapshot = Some((meta.clone(), data));
                        let message =
                            Message::InstallSnapshot(ordo_net::InstallSnapshot { term, meta });
                        self.inbox
                            .entry(to)
                            .or_default()
                            .push(Event::Message { from, message });
                    }
                    self.inbox
                        .entry(from)
                        .or_default()
                        .push(Event::SnapshotSent { to, ok });
                }
                Effect::Complete(event) => self.inbox.entry(from).or_default().push(event),
            }
        }
    }
}
