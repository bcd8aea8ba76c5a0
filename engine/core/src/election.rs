//! Elections: randomized timeouts, pre-vote, votes that wait for durability
//! (Raft §5.2, §5.4.1; thesis §9.6).

use ordo_net::{Message, VoteRequest, VoteResponse};
use ordo_storage::NodeId;

use super::io::{Command, ReadPurpose, Role};
use super::raft::Raft;

/// What kind of election a node starts (etcd raft's `CampaignType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CampaignKind {
    /// Asks whether the voters would grant a vote in the next term,
    /// without raising this node's term or theirs (thesis §9.6).
    PreVote,
    /// Stands in the next term (Raft §5.2).
    Election,
    /// Stands in the next term because the leader handed leadership over
    /// (`TimeoutNow`, thesis §3.10): voters grant it despite their
    /// check-quorum lease.
    Transfer,
}

impl Raft {
    /// Starts an election of `kind`, unless this node does not know its
    /// log's tail (it reads it first) or is restoring a snapshot. Only a
    /// node that may stand gets here: never a leader, a repairing node or
    /// one outside the voters it could stand for.
    pub(super) fn campaign(&mut self, kind: CampaignKind) {
        assert_ne!(self.role, Role::Leader, "a leader campaigned");
        assert!(self.repair.is_none(), "a repairing node campaigned");
        assert!(self.may_campaign(), "a node that may not stand campaigned");
        self.reset_election_deadline();
        if self.log.tail().is_none() {
            // A leader must stamp its first entry with the next id and a
            // timestamp after the last one; learn them before campaigning.
            if !self.tail_read_pending {
                self.tail_read_pending = true;
                self.commands.push(Command::ReadLog {
                    purpose: ReadPurpose::Tail,
                    from: self.log.last_index(),
                    bytes_max: 1,
                });
            }
            return;
        }
        if self.restoring.is_some() {
            return;
        }
        self.votes.clear();
        self.leader = 0;
        let last = self.log.last();
        let transfer = kind == CampaignKind::Transfer;
        if kind == CampaignKind::PreVote {
            tracing::debug!(id = self.id, term = self.term, "pre-vote campaign");
            self.role = Role::PreCandidate;
            if self.voters.contains(&self.id) {
                self.votes.insert(self.id, true);
            }
            self.emit_role();
            let request = VoteRequest {
                term: self.term + 1,
                last,
                pre_vote: true,
                transfer,
            };
            self.broadcast_vote(request);
            self.tally_votes();
        } else {
            self.term += 1;
            self.vote = self.id;
            tracing::debug!(id = self.id, term = self.term, "vote campaign");
            self.role = Role::Candidate;
            self.emit_role();
            self.pending_vote_response = None;
            // The self-vote counts once durable; request it now.
            self.persist_hard_state_now();
            let request = VoteRequest {
                term: self.term,
                last,
                pre_vote: false,
                transfer,
            };
            self.broadcast_vote(request);
            self.tally_votes();
        }
    }

    fn broadcast_vote(&mut self, request: VoteRequest) {
        let peers: Vec<NodeId> = self.other_voters().collect();
        for peer in peers {
            self.send(peer, Message::Vote(request.clone()));
        }
    }

    /// Counts votes; wins or loses the election when a quorum decides.
    pub(super) fn tally_votes(&mut self) {
        assert!(
            matches!(self.role, Role::PreCandidate | Role::Candidate),
            "votes counted by a {:?}",
            self.role
        );
        let mut granted = self.votes.values().filter(|&&g| g).count();
        let rejected = self.votes.values().filter(|&&g| !g).count();
        // Invariant: a leader's term (and its vote for itself) is durable.
        // Other voters' grants alone can make a quorum, but a candidate
        // that led before its term was durable could crash, restart in the
        // previous term, win the same term again from the same voters
        // (their durable votes name it) and lead that term a second time
        // with a different log: two entries at one (term, index), which
        // breaks Log Matching (simulator seed 11750).
        let term_durable = self.role == Role::Candidate
            && self.durable_hard_state.term == self.term
            && self.durable_hard_state.vote == self.id;
        if term_durable && self.voters.contains(&self.id) {
            granted += 1;
        }
        let quorum = self.quorum();
        match self.role {
            Role::PreCandidate if granted >= quorum => self.campaign(CampaignKind::Election),
            Role::Candidate if granted >= quorum && term_durable => self.become_leader(),
            Role::PreCandidate | Role::Candidate if rejected >= quorum => {
                let term = self.term;
                self.become_follower(term, 0);
            }
            _ => {}
        }
    }

    pub(super) fn handle_vote_request(&mut self, from: NodeId, request: VoteRequest) {
        // `step_message` answered stale requests and took a real vote's
        // newer term; only a pre-vote stands in a term above this node's.
        assert_ne!(from, self.id);
        assert!(request.term >= self.term, "stale vote request handled");
        assert!(
            request.pre_vote || request.term == self.term,
            "a vote request of term {} handled in term {}",
            request.term,
            self.term
        );
        // Raft §5.2: one vote per term, first come; thesis §9.6: a pre-vote
        // is granted to a higher term without changing anything.
        // A repairing node may lack entries it acknowledged (or the vote it
        // cast): its vote could elect a leader without them.
        let can_vote = self.repair.is_none()
            && (self.vote == from
                || (self.vote == 0 && self.leader == 0)
                || (request.pre_vote && request.term > self.term));
        let up_to_date = self.log.is_up_to_date(request.last);
        if can_vote && up_to_date {
            if request.pre_vote {
                let response = VoteResponse {
                    term: request.term,
                    granted: true,
                    pre_vote: true,
                    repairing: false,
                };
                self.send(from, Message::VoteResponse(response));
            } else {
                self.vote = from;
                self.reset_election_deadline();
                self.persist_hard_state_now();
                let response = VoteResponse {
                    term: self.term,
                    granted: true,
                    pre_vote: false,
                    repairing: false,
                };
                if self.durable_hard_state.term == self.term && self.durable_hard_state.vote == from
                {
                    self.send(from, Message::VoteResponse(response));
                } else {
                    // Sent once the vote is durable (Figure 2).
                    self.pending_vote_response = Some(PendingVoteResponse { to: from, response });
                }
            }
        } else {
            let response = VoteResponse {
                term: self.term,
                granted: false,
                pre_vote: request.pre_vote,
                repairing: self.repair.is_some(),
            };
            self.send(from, Message::VoteResponse(response));
        }
    }

    pub(super) fn handle_vote_response(&mut self, from: NodeId, response: VoteResponse) {
        // `step_message` dropped stale answers and took any newer term but
        // that of a granted pre-vote (the term the candidate would stand in).
        assert!(response.term >= self.term, "stale vote response handled");
        assert!(
            (response.pre_vote && response.granted) || response.term == self.term,
            "a vote response of term {} handled in term {}",
            response.term,
            self.term
        );
        let expected = match self.role {
            Role::PreCandidate => response.pre_vote,
            Role::Candidate => !response.pre_vote && response.term == self.term,
            _ => false,
        };
        if !expected || !self.voters.contains(&from) {
            return;
        }
        if response.pre_vote && !response.granted && response.term > self.term {
            self.become_follower(response.term, 0);
            return;
        }
        self.votes.entry(from).or_insert(response.granted);
        self.tally_votes();
    }

    /// Records whether `peer` said it is repairing; says so in the log
    /// when that changes.
    pub(super) fn note_peer_repairing(&mut self, peer: NodeId, repairing: bool) {
        if !self.voters.contains(&peer) {
            return;
        }
        let changed = if repairing {
            self.peers_repairing.insert(peer)
        } else {
            self.peers_repairing.remove(&peer)
        };
        if changed {
            tracing::info!(
                id = self.id,
                peer,
                repairing,
                "a peer {} repairing a loss",
                if repairing { "is" } else { "is no longer" }
            );
        }
    }

    /// Hands leadership to `to` (thesis §3.10): stop taking proposals, bring
    /// `to` up to date, then tell it to campaign at once. Answered with
    /// [`Command::TransferResult`]: at once if the transfer cannot start,
    /// when this node learns `to` leads, or after an election timeout
    /// (`election_timeout_ms_max`), when this node takes proposals again
    /// if it still leads.
    pub(super) fn transfer_leadership(&mut self, to: NodeId, request_id: u64) {
        let refused = if self.role != Role::Leader {
            Some(TransferError::NotLeader {
                leader: self.leader,
            })
        } else if to == self.id {
            self.commands.push(Command::TransferResult {
                request_id,
                result: Ok(to),
            });
            return;
        } else if !self.voters.contains(&to) {
            Some(TransferError::NotAVoter(to))
        } else if self.peers_repairing.contains(&to) {
            Some(TransferError::Repairing(to))
        } else {
            self.leading()
                .transfer
                .map(|transfer| TransferError::InProgress(transfer.to))
        };
        if let Some(error) = refused {
            self.commands.push(Command::TransferResult {
                request_id,
                result: Err(error),
            });
            return;
        }
        let timeout_us = self.config.election_timeout_ms_max * 1_000;
        let deadline = self.now.mono_us + timeout_us;
        tracing::info!(
            id = self.id,
            term = self.term,
            to,
            "transferring leadership"
        );
        self.leading_mut().transfer = Some(Transfer {
            to,
            deadline_us: deadline,
        });
        if let Some(previous) = self.transfer_waiter.replace(TransferWaiter {
            request_id,
            to,
            deadline_us: deadline,
        }) {
            // A waiter outlives leadership only until its deadline; a new
            // transfer from a new term of leadership supersedes it.
            self.commands.push(Command::TransferResult {
                request_id: previous.request_id,
                result: Err(TransferError::Superseded {
                    to: previous.to,
                    leader: self.id,
                }),
            });
        }
        self.maybe_send_timeout_now(to);
    }

    /// The voter a leader that stops hands leadership to, so that the
    /// cluster need not wait an election timeout (thesis §3.10): the other
    /// voter whose log matches this leader's furthest, since it can take
    /// over soonest (among equals, the highest id). `None` unless this node
    /// leads and another voter exists.
    pub fn shutdown_transfer_target(&self) -> Option<NodeId> {
        if self.role != Role::Leader {
            return None;
        }
        self.other_voters()
            .max_by_key(|&v| self.progress(v).map_or(0, |p| p.match_index))
    }

    /// This node learned who leads (as a follower): a waiting transfer
    /// succeeded, or someone else took over.
    pub(super) fn transfer_leader_known(&mut self, leader: NodeId) {
        if leader == 0 || leader == self.id {
            return;
        }
        if let Some(waiter) = self.transfer_waiter.take() {
            let result = if leader == waiter.to {
                tracing::info!(id = self.id, to = leader, "leadership transferred");
                Ok(leader)
            } else {
                Err(TransferError::Superseded {
                    to: waiter.to,
                    leader,
                })
            };
            self.commands.push(Command::TransferResult {
                request_id: waiter.request_id,
                result,
            });
        }
    }

    /// Fails a transfer whose deadline passed.
    pub(super) fn expire_transfer_waiter(&mut self) {
        let Some(waiter) = self.transfer_waiter else {
            return;
        };
        if self.now.mono_us < waiter.deadline_us {
            return;
        }
        self.transfer_waiter = None;
        if let Some(leading) = &mut self.leader_state {
            leading.transfer = None;
        }
        tracing::warn!(
            id = self.id,
            to = waiter.to,
            leader = self.leader,
            "leadership transfer timed out"
        );
        self.commands.push(Command::TransferResult {
            request_id: waiter.request_id,
            result: Err(TransferError::TimedOut {
                to: waiter.to,
                timeout_ms: self.config.election_timeout_ms_max,
                leader: self.leader,
            }),
        });
    }

    pub(super) fn maybe_send_timeout_now(&mut self, to: NodeId) {
        assert_eq!(self.role, Role::Leader, "only a leader hands over");
        if self.leading().transfer.map(|transfer| transfer.to) != Some(to) {
            return;
        }
        let caught_up = self
            .progress(to)
            .is_some_and(|p| p.match_index == self.log.last_index());
        if caught_up {
            let term = self.term;
            self.send(to, Message::TimeoutNow(ordo_net::TimeoutNow { term }));
        } else {
            self.send_append(to);
        }
    }
}

/// A granted vote waiting for the hard state that records it to be durable
/// (Raft Figure 2: persist before responding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PendingVoteResponse {
    /// The candidate.
    pub(super) to: NodeId,
    /// The grant.
    pub(super) response: VoteResponse,
}

/// A leader's hand-over in progress (thesis §3.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Transfer {
    /// The voter leadership is handed to.
    pub(super) to: NodeId,
    /// When the leader gives up and takes proposals again.
    pub(super) deadline_us: u64,
}

/// A leadership transfer the runtime waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferWaiter {
    /// The runtime's handle.
    pub request_id: u64,
    /// The voter leadership is handed to.
    pub to: NodeId,
    /// When the transfer fails if `to` has not been seen leading.
    pub deadline_us: u64,
}

/// Why a leadership transfer did not happen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// Only the leader hands leadership over.
    #[error("not the leader (leader: {leader})")]
    NotLeader {
        /// The leader this node knows, `0` if none.
        leader: NodeId,
    },
    /// The target does not vote.
    #[error("node {0} is not a voter")]
    NotAVoter(NodeId),
    /// The target is repairing a loss and cannot lead.
    #[error("node {0} is repairing a loss and cannot lead")]
    Repairing(NodeId),
    /// Another transfer runs.
    #[error("a transfer to node {0} is in progress")]
    InProgress(NodeId),
    /// The target did not take over in time.
    #[error("node {to} did not take over within {timeout_ms} ms (leader now: {leader})")]
    TimedOut {
        /// The target.
        to: NodeId,
        /// The timeout.
        timeout_ms: u64,
        /// The leader this node knows now, `0` if none.
        leader: NodeId,
    },
    /// Another node leads now.
    #[error("node {leader} leads instead of node {to}")]
    Superseded {
        /// The target.
        to: NodeId,
        /// Who leads.
        leader: NodeId,
    },
}

#[cfg(test)]
mod tests {
    use ordo_net::{AppendResponse, AppendResult, Message, VoteResponse};
    use ordo_storage::{HardState, NodeId};

    use crate::{CoreConfig, Event, Now, Raft, RaftState, Role};

    const START: Now = Now {
        mono_us: 1_000_000,
        wall_us: 1_700_000_000_000_000,
    };

    /// Node 1 of voters 1, 2, 3, elected in term 1 (its no-op at index 1).
    fn leader_of_three() -> Raft {
        let config = CoreConfig {
            pre_vote: false,
            check_quorum: false,
            ..CoreConfig::default()
        };
        let mut raft = Raft::new(1, &[1, 2, 3], config, RaftState::default(), 7, START).unwrap();
        assert_eq!(
            raft.shutdown_transfer_target(),
            None,
            "a follower hands nothing over"
        );
        let now = Now {
            mono_us: raft.next_deadline_us(),
            ..START
        };
        raft.step(now, Event::Tick);
        assert_eq!(raft.role(), Role::Candidate);
        let durable = HardState {
            term: 1,
            vote: 1,
            commit: 0,
        };
        raft.step(now, Event::HardStatePersisted(durable));
        let grant = VoteResponse {
            term: 1,
            granted: true,
            pre_vote: false,
            repairing: false,
        };
        raft.step(
            now,
            Event::Message {
                from: 2,
                message: Message::VoteResponse(grant),
            },
        );
        assert_eq!(raft.role(), Role::Leader);
        raft
    }

    fn acknowledge(raft: &mut Raft, from: NodeId, match_index: u64) {
        let response = AppendResponse {
            term: 1,
            result: AppendResult::Success { match_index },
            repairing: false,
        };
        raft.step(
            START,
            Event::Message {
                from,
                message: Message::AppendResponse(response),
            },
        );
    }

    #[test]
    fn a_stopping_leader_hands_over_to_the_most_caught_up_voter() {
        let mut raft = leader_of_three();
        acknowledge(&mut raft, 2, 1);
        assert_eq!(raft.progress(2).map(|p| p.match_index), Some(1));
        assert_eq!(raft.progress(3).map(|p| p.match_index), Some(0));
        assert_eq!(raft.shutdown_transfer_target(), Some(2));
    }

    #[test]
    fn among_equally_caught_up_voters_the_highest_id_takes_over() {
        let mut raft = leader_of_three();
        assert_eq!(raft.shutdown_transfer_target(), Some(3));
        acknowledge(&mut raft, 2, 1);
        acknowledge(&mut raft, 3, 1);
        assert_eq!(raft.shutdown_transfer_target(), Some(3));
    }

    #[test]
    fn a_lone_voter_has_no_one_to_hand_over_to() {
        let mut raft = Raft::new(
            1,
            &[1],
            CoreConfig::default(),
            RaftState::default(),
            7,
            START,
        )
        .unwrap();
        let now = Now {
            mono_us: raft.next_deadline_us(),
            ..START
        };
        raft.step(now, Event::Tick);
        let durable = HardState {
            term: 1,
            vote: 1,
            commit: 0,
        };
        raft.step(now, Event::HardStatePersisted(durable));
        assert_eq!(raft.role(), Role::Leader);
        assert_eq!(raft.shutdown_transfer_target(), None);
    }
}
