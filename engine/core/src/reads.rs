//! Linearizable reads by ReadIndex (thesis §6.4): the leader notes its
//! commit index, confirms it still leads with one heartbeat round shared by
//! every read that arrived in the turn, and the read is served once the
//! state machine has applied that index.

use std::collections::VecDeque;

use ordo_net::{Message, ReadError, ReadIndexRequest, ReadIndexResponse};
use ordo_storage::{Index, NodeId};

use super::io::{Command, Role};
use super::outstanding::Outstanding;
use super::raft::Raft;

/// Who waits for a read index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOrigin {
    /// A client of this node.
    Local(u64),
    /// Reads a follower forwarded, by its request ids.
    Remote(NodeId, Vec<u64>),
}

/// A read at a leader, waiting for a quorum to confirm its round.
#[derive(Clone, Debug, PartialEq, Eq)]
struct WaitingRead {
    /// Who waits.
    origin: ReadOrigin,
    /// The commit index when the read arrived: served once applied.
    index: Index,
    /// The heartbeat round that confirms this node still led then.
    round: u64,
}

/// Reads in progress on one node.
#[derive(Clone, Debug, Default)]
pub struct ReadState {
    /// Leader: the latest read round; heartbeats carry it.
    pub(super) round: u64,
    /// Leader: the latest round a heartbeat was sent with (every heartbeat
    /// takes a fresh one). A read joins only a round not sent yet.
    pub(super) sent_round: u64,
    /// Leader: a round was opened this turn and awaits its heartbeats.
    round_open: bool,
    /// Leader: reads waiting for their round to be confirmed, in round
    /// order.
    waiting: VecDeque<WaitingRead>,
    /// Leader: reads that arrived before the leader committed an entry of
    /// its term (its commit index may be stale until then, thesis §6.4 step 1).
    waiting_for_commit: Vec<ReadOrigin>,
    /// Follower: reads to forward at the end of the turn.
    buffer: Vec<u64>,
    /// Follower: forwarded reads, by request id, with the time they left.
    forwarded: Outstanding,
}

impl ReadState {
    /// Checks the invariants of a node whose role is `leading` (or not)
    /// and whose commit index is `commit`: a leader holds only its own
    /// reads, in round order, at indexes it committed; any other node only
    /// the reads it forwards. Every node holds at most `reads_pending_max`.
    pub(super) fn check(&self, leading: bool, commit: Index, reads_pending_max: usize) {
        assert!(self.len() <= reads_pending_max, "{} reads held", self.len());
        assert!(self.sent_round <= self.round);
        self.forwarded.check();
        if leading {
            assert!(
                self.buffer.is_empty() && self.forwarded.len() == 0,
                "a leader forwards reads"
            );
            let mut previous = (0, 0);
            for read in &self.waiting {
                assert!(read.round <= self.round && read.index <= commit, "{read:?}");
                assert!(
                    (read.round, read.index) >= previous,
                    "reads out of round order"
                );
                previous = (read.round, read.index);
            }
        } else {
            assert!(
                self.waiting.is_empty() && self.waiting_for_commit.is_empty() && !self.round_open,
                "reads wait at a node that does not lead"
            );
        }
    }

    fn len(&self) -> usize {
        self.waiting.len()
            + self.waiting_for_commit.len()
            + self.buffer.len()
            + self.forwarded.len()
    }
}

impl Raft {
    pub(super) fn read(&mut self, request_id: u64) {
        assert!(self.reads.len() <= self.config.reads_pending_max);
        if self.reads.len() >= self.config.reads_pending_max {
            let leader = self.leader;
            self.read_ready(
                ReadOrigin::Local(request_id),
                Err(ReadError::Busy { leader }),
            );
            return;
        }
        match self.role {
            Role::Leader => self.leader_read(ReadOrigin::Local(request_id)),
            // Outside the configuration the leader has no connection back
            // to this node: redirect instead of asking it.
            _ if !self.configs.current().contains(self.id) => self.read_ready(
                ReadOrigin::Local(request_id),
                Err(ReadError::NotLeader {
                    leader: self.leader,
                }),
            ),
            _ if self.leader != 0 => self.reads.buffer.push(request_id),
            _ => self.read_ready(
                ReadOrigin::Local(request_id),
                Err(ReadError::NotLeader { leader: 0 }),
            ),
        }
    }

    fn leader_read(&mut self, origin: ReadOrigin) {
        assert_eq!(self.role, Role::Leader, "only a leader reads");
        assert!(self.reads.sent_round <= self.reads.round);
        if self.log.commit() < self.leading().term_start_index {
            self.reads.waiting_for_commit.push(origin);
            return;
        }
        let index = self.log.commit();
        if self.voters == [self.id] {
            self.read_ready(origin, Ok(index));
            return;
        }
        // A round already sent with a heartbeat (even to one follower)
        // could be echoed by answers from before this read arrived.
        if !self.reads.round_open || self.reads.round <= self.reads.sent_round {
            self.reads.round += 1;
            self.reads.round_open = true;
        }
        let round = self.reads.round;
        self.reads.waiting.push_back(WaitingRead {
            origin,
            index,
            round,
        });
    }

    fn read_ready(&mut self, origin: ReadOrigin, result: Result<Index, ReadError>) {
        match origin {
            ReadOrigin::Local(request_id) => self
                .commands
                .push(Command::ReadReady { request_id, result }),
            ReadOrigin::Remote(node, request_ids) => {
                let message = Message::ReadIndexResponse(ReadIndexResponse {
                    term: self.term,
                    request_ids,
                    result,
                });
                self.send(node, message);
            }
        }
    }

    /// End of a leader's turn: one heartbeat round confirms every read that
    /// arrived in it; idle followers also learn a new commit index
    /// ([`Raft::notify_commit`]; `answered`: the followers this turn
    /// answered forwarded proposals).
    pub(super) fn flush_read_round(&mut self, answered: &[NodeId]) {
        assert_eq!(self.role, Role::Leader, "only a leader confirms reads");
        if self.reads.round_open {
            self.reads.round_open = false;
            self.broadcast_heartbeat();
        }
        // Every turn, not only those that advanced the commit: a follower's
        // late acknowledgement can make it able to apply more.
        self.notify_commit(answered);
    }

    /// Tells idle followers a commit index they could apply but do not
    /// know of yet: at once with `commit_notify_delay_us` 0, else once it
    /// has waited that long. An AppendEntries sent meanwhile (the next
    /// proposal's) carries it instead, so a closed-loop client costs each
    /// follower one message per commit rather than two (docs/tuning.md).
    ///
    /// A follower in `answered` is told at once: it is woken by the answers
    /// anyway, and it applies (and publishes to gossip) the entries it
    /// forwarded only once it knows they committed.
    pub(super) fn notify_commit(&mut self, answered: &[NodeId]) {
        let commit = self.log.commit();
        let now = self.now.mono_us;
        let delay_us = self.config.commit_notify_delay_us;
        let leading = self.leading_mut();
        let behind: Vec<NodeId> = leading
            .progress
            .iter()
            .filter(|(_, p)| {
                p.inflight_messages() == 0 && p.match_index.min(commit) > p.commit_sent
            })
            .map(|(&peer, _)| peer)
            .collect();
        if behind.is_empty() {
            leading.commit_notify_due_us = None;
            return;
        }
        let due = *leading.commit_notify_due_us.get_or_insert(now + delay_us);
        let told: Vec<NodeId> = if now >= due {
            behind.clone()
        } else {
            behind
                .iter()
                .copied()
                .filter(|peer| answered.contains(peer))
                .collect()
        };
        if told.len() == behind.len() {
            leading.commit_notify_due_us = None;
        }
        for peer in told {
            self.send_heartbeat(peer);
        }
    }

    /// Serves every read whose round a quorum has echoed.
    pub(super) fn confirm_reads(&mut self) {
        assert_eq!(self.role, Role::Leader, "only a leader confirms reads");
        if self.reads.waiting.is_empty() {
            return;
        }
        let confirmed =
            self.quorum_value(
                self.reads.round,
                |p| {
                    if p.repairing { 0 } else { p.read_round }
                },
            );
        while self
            .reads
            .waiting
            .front()
            .is_some_and(|read| read.round <= confirmed)
        {
            let read = self.reads.waiting.pop_front().expect("checked");
            self.read_ready(read.origin, Ok(read.index));
        }
    }

    pub(super) fn release_reads_waiting_for_commit(&mut self) {
        if self.log.commit() >= self.leading().term_start_index
            && !self.reads.waiting_for_commit.is_empty()
        {
            for origin in std::mem::take(&mut self.reads.waiting_for_commit) {
                self.leader_read(origin);
            }
        }
    }

    pub(super) fn fail_leader_reads(&mut self) {
        let leader = self.leader;
        let waiting: Vec<ReadOrigin> = self
            .reads
            .waiting
            .drain(..)
            .map(|read| read.origin)
            .collect();
        let before_commit = std::mem::take(&mut self.reads.waiting_for_commit);
        for origin in waiting.into_iter().chain(before_commit) {
            self.read_ready(origin, Err(ReadError::NotLeader { leader }));
        }
        self.reads.round_open = false;
    }

    pub(super) fn handle_read_index(&mut self, from: NodeId, request: ReadIndexRequest) {
        let origin = ReadOrigin::Remote(from, request.request_ids);
        if self.role != Role::Leader {
            let leader = self.leader;
            self.read_ready(origin, Err(ReadError::NotLeader { leader }));
        } else if self.reads.len() >= self.config.reads_pending_max {
            let leader = self.leader;
            self.read_ready(origin, Err(ReadError::Busy { leader }));
        } else {
            self.leader_read(origin);
        }
    }

    pub(super) fn handle_read_index_response(&mut self, response: ReadIndexResponse) {
        for request_id in response.request_ids {
            if self.reads.forwarded.remove(request_id) {
                self.commands.push(Command::ReadReady {
                    request_id,
                    result: response.result,
                });
            }
        }
    }

    /// A follower forwards the turn's reads to the leader in one message.
    pub(super) fn flush_follower_reads(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader forwards reads");
        if self.reads.buffer.is_empty() {
            return;
        }
        let request_ids = std::mem::take(&mut self.reads.buffer);
        if self.role != Role::Follower || self.leader == 0 {
            let leader = self.leader;
            for request_id in request_ids {
                self.read_ready(
                    ReadOrigin::Local(request_id),
                    Err(ReadError::NotLeader { leader }),
                );
            }
            return;
        }
        let now = self.now.mono_us;
        for &request_id in &request_ids {
            self.reads.forwarded.insert(request_id, now);
        }
        let leader = self.leader;
        let term = self.term;
        self.send(
            leader,
            Message::ReadIndex(ReadIndexRequest { term, request_ids }),
        );
    }

    /// The leader a follower asked is gone.
    pub(super) fn fail_follower_reads(&mut self) {
        let leader = self.leader;
        for request_id in self.reads.forwarded.take_all() {
            self.read_ready(
                ReadOrigin::Local(request_id),
                Err(ReadError::NotLeader { leader }),
            );
        }
    }

    pub(super) fn expire_follower_reads(&mut self, sent_before_us: u64) {
        let leader = self.leader;
        for request_id in self.reads.forwarded.expire(sent_before_us) {
            self.read_ready(
                ReadOrigin::Local(request_id),
                Err(ReadError::NotLeader { leader }),
            );
        }
    }

    /// When the oldest forwarded read left, if any is outstanding.
    pub(super) fn oldest_forwarded_read_us(&self) -> Option<u64> {
        self.reads.forwarded.oldest_sent_us()
    }
}
