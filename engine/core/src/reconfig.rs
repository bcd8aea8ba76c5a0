//! Membership changes, one server at a time (thesis §4.1–§4.3): the
//! leader's checks and its configuration entry, the switch every node makes
//! when it appends, truncates or restores one, and a removed leader's
//! hand-over. The rules are in `core/membership.rs`.

use bytes::Bytes;
use ordo_net::{Message, TimeoutNow};
use ordo_storage::{Batch, BatchKind, Index, NodeId};

use super::io::{Command, Role};
use super::leader::DEPARTING_MAX;
use super::membership::{ChangeError, Membership, MembershipChange};
use super::progress::Progress;
use super::raft::Raft;

/// A membership change a leader appended, answered once it commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct MembershipWaiter {
    /// The runtime's handle.
    pub(super) request_id: u64,
    /// The configuration entry's index.
    pub(super) index: Index,
}

impl Raft {
    /// Proposes `change` at the leader; answered once it commits.
    pub(super) fn change_membership(
        &mut self,
        request_id: u64,
        change: MembershipChange,
        known_info: Vec<(NodeId, Bytes)>,
    ) {
        match self
            .check_change(&change)
            .map(|next| next.with_missing_info(known_info))
        {
            Err(error) => {
                tracing::info!(id = self.id, ?change, %error, "membership change refused");
                self.commands.push(Command::MembershipResult {
                    request_id,
                    result: Err(error),
                });
            }
            Ok(next) => {
                let index = self.append_config(next);
                tracing::info!(
                    id = self.id,
                    term = self.term,
                    index,
                    ?change,
                    "membership change appended"
                );
                self.leading_mut().membership_waiter = Some(MembershipWaiter { request_id, index });
            }
        }
    }

    /// The configuration `change` leads to, if it may be proposed now.
    fn check_change(&self, change: &MembershipChange) -> Result<Membership, ChangeError> {
        let Some(leading) = &self.leader_state else {
            return Err(ChangeError::NotLeader {
                leader: self.leader,
            });
        };
        let commit = self.log.commit();
        if self.configs.current_index() > commit || leading.membership_waiter.is_some() {
            return Err(ChangeError::InFlight {
                index: self.configs.current_index(),
            });
        }
        // The erratum to single-server changes: a leader changes the
        // configuration only once an entry of its own term is committed,
        // so that no uncommitted change of a deposed leader is still
        // pending beside its own.
        if commit < leading.term_start_index {
            return Err(ChangeError::LeaderNotReady {
                index: leading.term_start_index,
            });
        }
        if let Some(transfer) = leading.transfer {
            return Err(ChangeError::Invalid(format!(
                "a leadership transfer to node {} is in progress",
                transfer.to
            )));
        }
        let next = self.configs.current().apply(change)?;
        if let MembershipChange::Promote { id } = *change {
            let allowed = self.config.learner_promote_lag_max;
            let (behind, repairing) = match leading.progress.get(&id) {
                Some(progress) => (
                    self.log.last_index().saturating_sub(progress.match_index),
                    progress.repairing,
                ),
                None => (self.log.last_index(), false),
            };
            if behind > allowed || repairing {
                return Err(ChangeError::LearnerBehind {
                    id,
                    behind,
                    allowed,
                });
            }
        }
        Ok(next)
    }

    /// Appends `membership` as a configuration entry of this leader's term
    /// and puts it in force; returns its index.
    fn append_config(&mut self, membership: Membership) -> Index {
        let index = self.append_internal(BatchKind::Config, &membership.encode());
        self.configs.appended(index, membership);
        self.membership_changed();
        self.broadcast_append();
        index
    }

    /// Puts the configuration entries among `batches` (just appended to a
    /// follower's log) in force; returns whether any was.
    pub(super) fn configs_appended(&mut self, batches: &[Batch]) -> bool {
        let mut changed = false;
        for batch in batches.iter().filter(|b| b.kind() == BatchKind::Config) {
            for entry in batch.entries() {
                match Membership::decode(entry.payload) {
                    Ok(membership) => {
                        self.configs.appended(entry.index, membership);
                        changed = true;
                    }
                    // The leader validated it and the CRC protects it: a
                    // configuration this node cannot read comes from a newer
                    // version. It keeps its own and says so.
                    Err(error) => tracing::error!(
                        id = self.id,
                        index = entry.index,
                        %error,
                        "configuration entry unreadable; keeping the configuration in force"
                    ),
                }
            }
        }
        changed
    }

    /// The configuration in force changed: refresh the voter and learner
    /// lists and the leader's progress, stop a campaign this node may no
    /// longer make, and tell the runtime.
    pub(super) fn membership_changed(&mut self) {
        let index = self.configs.current_index();
        let membership = self.configs.current().clone();
        self.voters = membership.voters();
        self.learners = membership.learners();
        let voters = &self.voters;
        self.peers_repairing
            .retain(|p| voters.binary_search(p).is_ok());
        if let Some(leading) = &mut self.leader_state {
            let next = self.log.last_index() + 1;
            let now = self.now.mono_us;
            let me = self.id;
            // A removed member keeps getting the log until it holds its
            // removal (`departing`); a member added back is one again.
            let removed: Vec<NodeId> = leading
                .progress
                .keys()
                .copied()
                .filter(|&id| !membership.contains(id) && !leading.departing.contains(&id))
                .collect();
            for id in removed {
                if leading.departing.len() < DEPARTING_MAX {
                    leading.departing.insert(id);
                } else {
                    leading.progress.remove(&id);
                }
            }
            leading.departing.retain(|&id| !membership.contains(id));
            leading.progress.retain(|&id, _| id != me);
            for member in membership.members() {
                if member.id != me {
                    leading
                        .progress
                        .entry(member.id)
                        .or_insert_with(|| Progress::new(next, now));
                }
            }
            if let Some(transfer) = leading.transfer
                && !self.voters.contains(&transfer.to)
            {
                leading.transfer = None;
            }
        }
        tracing::info!(
            id = self.id,
            index,
            voters = ?self.voters,
            learners = ?self.learners,
            "configuration in force"
        );
        if matches!(self.role, Role::PreCandidate | Role::Candidate) && !self.may_campaign() {
            let term = self.term;
            self.become_follower(term, 0);
        }
        self.commands
            .push(Command::MembershipChanged { index, membership });
    }

    /// The leader's commit index advanced: answer a change that committed,
    /// and hand over and step down if the committed configuration removed
    /// this leader (thesis §4.2.2).
    pub(super) fn membership_committed(&mut self) {
        let commit = self.log.commit();
        if let Some(waiter) = self.leading().membership_waiter
            && waiter.index <= commit
        {
            self.leading_mut().membership_waiter = None;
            let index = waiter.index;
            tracing::info!(id = self.id, index, "membership change committed");
            self.commands.push(Command::MembershipResult {
                request_id: waiter.request_id,
                result: Ok(index),
            });
        }
        if self.role == Role::Leader
            && self.configs.current_index() <= commit
            && !self.voters.contains(&self.id)
        {
            self.step_down_removed();
        }
    }

    /// A leader the committed configuration removed (or keeps as a
    /// learner: one that stood for election, `Raft::may_campaign`) hands
    /// leadership to the most up-to-date voter and steps down, so the
    /// cluster waits for no election timeout.
    fn step_down_removed(&mut self) {
        let last = self.log.last_index();
        let successor = self
            .other_voters()
            .filter_map(|v| self.progress(v).map(|p| (v, p)))
            .filter(|(_, p)| p.match_index == last && !p.repairing)
            .map(|(v, _)| v)
            .next();
        tracing::info!(
            id = self.id,
            term = self.term,
            ?successor,
            "not a voter of the committed configuration; stepping down"
        );
        if let Some(to) = successor {
            let term = self.term;
            self.send(to, Message::TimeoutNow(TimeoutNow { term }));
        }
        let term = self.term;
        self.become_follower(term, 0);
    }

    /// A node outside the configuration asked this leader for a vote: it
    /// was removed and does not know it. Send it the log until it holds
    /// its removal, so that it stops campaigning and forwards its clients
    /// (thesis §4.2.3 only keeps it from disrupting; it would otherwise
    /// campaign, and leave its clients unanswered, forever).
    pub(super) fn remind_removed(&mut self, from: NodeId) {
        let Some(leading) = &mut self.leader_state else {
            return;
        };
        if self.configs.current().contains(from)
            || leading.progress.contains_key(&from)
            || leading.departing.len() >= DEPARTING_MAX
        {
            return;
        }
        tracing::info!(
            id = self.id,
            node = from,
            "a removed node campaigns: sending it the log"
        );
        leading.departing.insert(from);
        leading.progress.insert(
            from,
            Progress::new(self.log.last_index() + 1, self.now.mono_us),
        );
        self.send_heartbeat(from);
        self.send_append(from);
    }

    /// Whether `id` votes in the configuration in force.
    pub(super) fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }
}
