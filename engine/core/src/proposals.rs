//! Proposals: batching at the leader, forwarding from followers, answers
//! that are never lost, and deduplication by client session (thesis §6.3).

use std::collections::VecDeque;

use bytes::Bytes;
use ordo_net::{
    Committed, ForwardRequest, ForwardResults, ForwardedProposal, Message, ProposeError,
    ProposeResult,
};
use ordo_storage::{
    Batch, BatchKind, BatchMeta, ClientId, EntryOut, EntryView, Index, NodeId, Seq,
};
use rustc_hash::FxHashSet;

use super::io::{Command, Proposal, Role};
use super::membership::ChangeError;
use super::raft::Raft;
use super::sessions::SessionLookup;

/// The most recent `capacity` keys inserted, for duplicate detection with
/// bounded memory (oldest forgotten first).
#[derive(Clone, Debug)]
pub struct RecentSet {
    capacity: usize,
    /// A fixed hasher, so that the core is a function of its events alone;
    /// the keys are peers' request ids (their runtimes' counters), not
    /// chosen by clients.
    keys: FxHashSet<(NodeId, u64)>,
    order: VecDeque<(NodeId, u64)>,
}

impl RecentSet {
    /// An empty set remembering up to `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            keys: FxHashSet::default(),
            order: VecDeque::new(),
        }
    }

    /// Inserts `key`; false if it was already present.
    pub fn insert(&mut self, key: (NodeId, u64)) -> bool {
        if !self.keys.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            let oldest = self.order.pop_front().expect("non-empty");
            self.keys.remove(&oldest);
        }
        true
    }
}

/// Who waits for a proposal's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A client of this node, by the runtime's request id.
    Local(u64),
    /// A proposal another node forwarded, by that node's request id.
    Remote(NodeId, u64),
}

/// An entry a leader appended in its term, and who waits for its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PendingEntry {
    /// The entry's index.
    pub(super) index: Index,
    /// Who proposed it.
    pub(super) origin: Origin,
}

/// A proposal waiting in a node's queue.
#[derive(Clone, Debug)]
pub struct QueuedProposal {
    pub(super) origin: Origin,
    pub(super) client_id: ClientId,
    pub(super) seq: Seq,
    pub(super) payload: Bytes,
    pub(super) queued_at_us: u64,
}

impl Raft {
    pub(super) fn propose(&mut self, proposal: Proposal) {
        let origin = Origin::Local(proposal.request_id);
        if proposal.payload.len() > self.config.proposal_bytes_max {
            let error = ProposeError::TooLarge {
                bytes: proposal.payload.len() as u64,
                max: self.config.proposal_bytes_max as u64,
            };
            self.answer(origin, Err(error));
            return;
        }
        if self.role != Role::Leader && proposal.redirect {
            let leader = self.leader;
            self.answer(origin, Err(ProposeError::NotLeader { leader }));
            return;
        }
        if !self.configs.current().contains(self.id) {
            // Outside the cluster (removed, or not yet added): the leader
            // keeps no connection to this node, so a forwarded proposal's
            // answer could never come back, and with no leader none may
            // ever come. The client must go elsewhere (runtime simulator,
            // seeds 7293 and 16241).
            let leader = self.leader;
            self.answer(origin, Err(ProposeError::NotLeader { leader }));
            return;
        }
        self.enqueue(QueuedProposal {
            origin,
            client_id: proposal.client_id,
            seq: proposal.seq,
            payload: proposal.payload,
            queued_at_us: self.now.mono_us,
        });
    }

    fn enqueue(&mut self, proposal: QueuedProposal) {
        let full = self.queue.len() >= self.config.proposal_queue_max
            || (self.role != Role::Leader
                && self.queue.len() + self.forwarded.len() >= self.config.forward_inflight_max);
        let transferring = self
            .leader_state
            .as_ref()
            .is_some_and(|leading| leading.transfer.is_some());
        if full || transferring {
            let leader = self.leader;
            self.answer(proposal.origin, Err(ProposeError::Busy { leader }));
            return;
        }
        self.queue.push_back(proposal);
    }

    /// Answers one proposal: locally, or to the node that forwarded it.
    pub(super) fn answer(&mut self, origin: Origin, result: ProposeResult) {
        match origin {
            Origin::Local(request_id) => {
                self.commands.push(Command::Respond { request_id, result })
            }
            Origin::Remote(node, request_id) => {
                self.forward_results
                    .entry(node)
                    .or_default()
                    .push((request_id, result));
            }
        }
    }

    /// The leader takes proposals once its no-op is applied: then the
    /// session table covers every entry before its term, and
    /// `pending_sessions` every entry in it, so deduplication is exact.
    pub(super) fn leader_ready(&self) -> bool {
        self.leader_state.as_ref().is_some_and(|leading| {
            self.log.applied() >= leading.term_start_index && leading.transfer.is_none()
        })
    }

    /// Turns the proposals queued during a turn into batches bounded by
    /// `batch_entries_max` and `batch_bytes_max`, appends them and sends them.
    pub(super) fn flush_proposals(&mut self) {
        if !self.leader_ready() || self.queue.is_empty() {
            return;
        }
        let mut batches = Vec::new();
        while !self.queue.is_empty()
            && self.leading().uncommitted_bytes < self.config.uncommitted_bytes_max
        {
            if let Some(batch) = self.build_batch() {
                self.track_own(batch.clone());
                batches.push(batch);
            }
        }
        if batches.is_empty() {
            return;
        }
        self.commands.push(Command::Append { batches });
        self.commands.push(Command::Sync);
        self.broadcast_append();
        self.maybe_commit();
    }

    /// Takes one batch worth of proposals off the queue, answering
    /// duplicates from the session table instead of appending them again.
    fn build_batch(&mut self) -> Option<Batch> {
        let first_index = self.log.last_index() + 1;
        let tail = self.log.tail().expect("a leader knows its tail");
        let mut taken: Vec<QueuedProposal> = Vec::new();
        let mut bytes = 0usize;
        while let Some(front) = self.queue.front() {
            let full = taken.len() as u32 == self.config.batch_entries_max
                || (!taken.is_empty() && bytes + front.payload.len() > self.config.batch_bytes_max);
            if full {
                break;
            }
            let proposal = self.queue.pop_front().expect("checked");
            if proposal.client_id != 0 {
                let key = (proposal.client_id, proposal.seq);
                match self.sessions.lookup(proposal.client_id, proposal.seq) {
                    SessionLookup::Committed(committed) => {
                        self.answer(proposal.origin, Ok(committed));
                        continue;
                    }
                    SessionLookup::Expired => {
                        let error = ProposeError::SessionExpired {
                            client_id: proposal.client_id,
                            seq: proposal.seq,
                        };
                        self.answer(proposal.origin, Err(error));
                        continue;
                    }
                    SessionLookup::New => {}
                }
                let leading = self.leading_mut();
                if let Some(&index) = leading.pending_sessions.get(&key) {
                    leading
                        .extra_waiters
                        .entry(index)
                        .or_default()
                        .push(proposal.origin);
                    continue;
                }
                leading
                    .pending_sessions
                    .insert(key, first_index + taken.len() as u64);
            }
            bytes += proposal.payload.len();
            taken.push(proposal);
        }
        if taken.is_empty() {
            return None;
        }
        let entries = taken
            .iter()
            .map(|p| EntryOut {
                client_id: p.client_id,
                seq: p.seq,
                payload: &p.payload,
            })
            .collect();
        let batch = Batch::encode(
            BatchMeta {
                kind: BatchKind::Entries,
                term: self.term,
                first_index,
                first_id: tail.next_id,
                first_ts: self.now.wall_us.max(tail.last_ts + 1),
            },
            entries,
        );
        let leading = self.leading_mut();
        for (offset, proposal) in taken.iter().enumerate() {
            leading.pending.push_back(PendingEntry {
                index: first_index + offset as u64,
                origin: proposal.origin,
            });
        }
        Some(batch)
    }

    /// A committed entry: a leader answers whoever waits for it.
    pub(super) fn resolve_pending(&mut self, entry: &EntryView<'_>) {
        loop {
            let Some(leading) = self.leader_state.as_mut() else {
                return;
            };
            let Some(&PendingEntry { index, origin }) = leading.pending.front() else {
                return;
            };
            if index > entry.index {
                return;
            }
            leading.pending.pop_front();
            assert_eq!(index, entry.index, "pending entry {index} skipped by apply");
            let waiters = leading.extra_waiters.remove(&index).unwrap_or_default();
            if entry.client_id != 0 {
                leading
                    .pending_sessions
                    .remove(&(entry.client_id, entry.seq));
            }
            let committed = Committed {
                id: entry.id,
                index: entry.index,
                term: entry.term,
                ts: entry.ts,
            };
            self.answer(origin, Ok(committed));
            for waiter in waiters {
                self.answer(waiter, Ok(committed));
            }
        }
    }

    /// A leader stepping down takes its leader state and answers everything
    /// it held: entries in its log may still commit (outcome unknown);
    /// queued proposals from other nodes were never appended (not leader);
    /// its own clients' queued proposals stay queued and go to the next
    /// leader.
    pub(super) fn step_down_leader_state(&mut self) {
        let Some(mut leading) = self.leader_state.take() else {
            return;
        };
        let leader = self.leader;
        while let Some(PendingEntry { index, origin }) = leading.pending.pop_front() {
            self.answer(origin, Err(ProposeError::Unknown { leader }));
            for waiter in leading.extra_waiters.remove(&index).unwrap_or_default() {
                self.answer(waiter, Err(ProposeError::Unknown { leader }));
            }
        }
        for (_, waiters) in std::mem::take(&mut leading.extra_waiters) {
            for waiter in waiters {
                self.answer(waiter, Err(ProposeError::Unknown { leader }));
            }
        }
        let queue = std::mem::take(&mut self.queue);
        for proposal in queue {
            match proposal.origin {
                Origin::Local(_) => self.queue.push_back(proposal),
                Origin::Remote(..) => {
                    self.answer(proposal.origin, Err(ProposeError::NotLeader { leader }))
                }
            }
        }
        self.send_forward_results();
        self.fail_leader_reads();
        if let Some(waiter) = leading.membership_waiter {
            self.commands.push(Command::MembershipResult {
                request_id: waiter.request_id,
                result: Err(ChangeError::Unknown),
            });
        }
    }

    /// Sends the answers gathered for forwarded proposals, one message per
    /// node.
    pub(super) fn send_forward_results(&mut self) {
        let results = std::mem::take(&mut self.forward_results);
        for (node, results) in results {
            let message = Message::ForwardResults(ForwardResults {
                term: self.term,
                results,
            });
            self.send(node, message);
        }
    }

    /// A follower forwards its queued proposals to the leader, bounded by
    /// `forward_inflight_max` outstanding and `append_bytes_max` per message.
    /// Without a leader they wait, up to an election timeout.
    pub(super) fn flush_forwards(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        if self.role != Role::Follower || self.leader == 0 {
            let limit = self.config.election_timeout_ms_max * 1_000;
            while self
                .queue
                .front()
                .is_some_and(|p| self.now.mono_us >= p.queued_at_us + limit)
            {
                let proposal = self.queue.pop_front().expect("checked");
                self.answer(proposal.origin, Err(ProposeError::NotLeader { leader: 0 }));
            }
            return;
        }
        let leader = self.leader;
        let now = self.now.mono_us;
        let mut proposals = Vec::new();
        let mut bytes = 0;
        while self.forwarded.len() < self.config.forward_inflight_max {
            let Some(proposal) = self.queue.pop_front() else {
                break;
            };
            let Origin::Local(request_id) = proposal.origin else {
                unreachable!("a follower queues only its own clients' proposals")
            };
            bytes += proposal.payload.len();
            self.forwarded.insert(request_id, now);
            proposals.push(ForwardedProposal {
                request_id,
                client_id: proposal.client_id,
                seq: proposal.seq,
                payload: proposal.payload,
            });
            if bytes >= self.config.append_bytes_max {
                let message = Message::Forward(ForwardRequest {
                    term: self.term,
                    proposals: std::mem::take(&mut proposals),
                });
                self.send(leader, message);
                bytes = 0;
            }
        }
        if !proposals.is_empty() {
            let message = Message::Forward(ForwardRequest {
                term: self.term,
                proposals,
            });
            self.send(leader, message);
        }
    }

    pub(super) fn handle_forward(&mut self, from: NodeId, request: ForwardRequest) {
        if self.role != Role::Leader {
            let leader = self.leader;
            // `NotLeader` promises the proposal was appended nowhere, so the
            // proposer may retry without a session. That holds only if this
            // node never led the forward's term: a duplicated Forward can
            // arrive after this node, leading that term, appended the first
            // copy and stepped down (simulator seed 94683). A node leads a
            // term only after voting for itself in it durably, so its vote
            // tells; a later term tells nothing.
            let never_led =
                request.term > self.term || (request.term == self.term && self.vote != self.id);
            let error = if never_led {
                ProposeError::NotLeader { leader }
            } else {
                ProposeError::Unknown { leader }
            };
            let results = request
                .proposals
                .iter()
                .map(|p| (p.request_id, Err(error)))
                .collect();
            let message = Message::ForwardResults(ForwardResults {
                term: self.term,
                results,
            });
            self.send(from, message);
            return;
        }
        for proposal in request.proposals {
            if !self.forward_seen.insert((from, proposal.request_id)) {
                // A duplicated message: the original is already queued, in
                // the log or answered. Appending it again would commit a
                // sessionless proposal twice.
                continue;
            }
            let origin = Origin::Remote(from, proposal.request_id);
            if proposal.payload.len() > self.config.proposal_bytes_max {
                let error = ProposeError::TooLarge {
                    bytes: proposal.payload.len() as u64,
                    max: self.config.proposal_bytes_max as u64,
                };
                self.answer(origin, Err(error));
                continue;
            }
            self.enqueue(QueuedProposal {
                origin,
                client_id: proposal.client_id,
                seq: proposal.seq,
                payload: proposal.payload,
                queued_at_us: self.now.mono_us,
            });
        }
    }

    pub(super) fn handle_forward_results(&mut self, results: ForwardResults) {
        for (request_id, result) in results.results {
            if self.forwarded.remove(request_id) {
                self.commands.push(Command::Respond { request_id, result });
            }
        }
    }

    /// The leader this node forwarded to is gone: what it forwarded may or
    /// may not commit.
    pub(super) fn fail_forwarded(&mut self) {
        let leader = self.leader;
        for request_id in self.forwarded.take_all() {
            let result = Err(ProposeError::Unknown { leader });
            self.commands.push(Command::Respond { request_id, result });
        }
    }

    /// Forwarded proposals (and reads) that got no answer in time (a lost
    /// message) fail with an unknown outcome rather than waiting forever.
    pub(super) fn expire_forwarded(&mut self) {
        let deadline = self.now.mono_us.saturating_sub(self.forward_timeout_us());
        let leader = self.leader;
        for request_id in self.forwarded.expire(deadline) {
            let result = Err(ProposeError::Unknown { leader });
            self.commands.push(Command::Respond { request_id, result });
        }
        self.expire_follower_reads(deadline);
    }
}
