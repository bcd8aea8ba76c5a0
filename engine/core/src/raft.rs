//! The Raft state machine: its state, the event dispatch, timers and role
//! changes. The protocol's parts live in sibling files as further `impl
//! Raft` blocks: `election`, `replication`, `proposals`, `reads`, `snapshot`.

use std::collections::{BTreeMap, VecDeque};

use ordo_net::{Message, ProposeResult, SnapshotMeta, VoteResponse};
use ordo_storage::{HardState, Index, NodeId, Term};

use super::config::{ConfigError, CoreConfig};
use super::election::{CampaignKind, PendingVoteResponse};
use super::io::{Command, Event, Now, ReadPurpose, Role};
use super::leader::LeaderState;
use super::log::{LogTail, RaftLog, RestoredLog};
use super::membership::{Configurations, Membership, decode_core_state};
use super::progress::Progress;
use super::proposals::QueuedProposal;
use super::reads::ReadState;
use super::repair::{Loss, Repair};
use super::rng::Rng;
use super::sessions::{SessionLimits, Sessions};

/// What a node brings to its core at start, read from storage.
#[derive(Clone, Debug, Default)]
pub struct RaftState {
    /// Term, vote and commit hint.
    pub hard_state: HardState,
    /// The log's bounds.
    pub log: RestoredLog,
    /// The latest snapshot (default when there is none).
    pub snapshot: SnapshotMeta,
    /// State the node may have acknowledged and lost (a damaged or wiped
    /// disk): it repairs before it takes part in elections.
    pub loss: Option<Loss>,
    /// The configuration entries the log holds after the snapshot, in
    /// index order (`LogStore::config_indexes`, decoded).
    pub configs: Vec<(Index, Membership)>,
}

/// A snapshot of the core's externally visible state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: Term,
    /// The leader it knows, `0` if none.
    pub leader: NodeId,
    /// Commit index.
    pub commit_index: Index,
    /// Last log index.
    pub last_index: Index,
    /// Highest durable index.
    pub durable_index: Index,
    /// Highest index handed to the state machine.
    pub applied_index: Index,
    /// Repairing a loss: no votes, no campaigns (see [`Loss`]).
    pub repairing: bool,
}

/// One voter's Raft core: a deterministic state machine. It reads no clock
/// (the runtime passes [`Now`] with every event), draws randomness only from
/// its seeded [`Rng`], and does no IO: it emits [`Command`]s.
///
/// Lives on the shard that owns its Raft group.
pub struct Raft {
    pub(super) id: NodeId,
    pub(super) config: CoreConfig,
    /// The configuration in force and those a truncation could restore
    /// (core/membership.rs).
    pub(super) configs: Configurations,
    /// Voters of the configuration in force, sorted (from `configs`). This
    /// node may be none of them: a learner, a node waiting to be added, or
    /// one that was removed.
    pub(super) voters: Vec<NodeId>,
    /// Learners of the configuration in force, sorted (from `configs`).
    pub(super) learners: Vec<NodeId>,
    /// A leadership transfer the runtime waits on (any role: the old
    /// leader hears who won as a follower).
    pub(super) transfer_waiter: Option<super::election::TransferWaiter>,
    pub(super) rng: Rng,
    pub(super) now: Now,

    pub(super) term: Term,
    pub(super) vote: NodeId,
    /// The hard state last reported durable.
    pub(super) durable_hard_state: HardState,
    /// The hard state last handed to the runtime for persisting.
    pub(super) requested_hard_state: HardState,

    pub(super) role: Role,
    pub(super) leader: NodeId,
    pub(super) log: RaftLog,
    pub(super) sessions: Sessions,
    pub(super) snapshot: SnapshotMeta,
    /// With `compact_to_previous_snapshot`: the snapshot before
    /// `snapshot`, the point the log is compacted to.
    pub(super) previous_snapshot: Option<SnapshotMeta>,
    pub(super) snapshot_in_progress: bool,
    /// A follower restoring a snapshot ignores appends until it is done.
    pub(super) restoring: Option<SnapshotMeta>,
    pub(super) apply_read_pending: bool,
    pub(super) tail_read_pending: bool,
    /// The tail after the last applied entry (a snapshot records its last
    /// id and timestamp).
    pub(super) applied_tail: LogTail,

    /// Followers and candidates campaign at this time.
    pub(super) election_deadline_us: u64,
    /// When a follower last heard from its leader (for the vote lease).
    pub(super) leader_contact_us: Option<u64>,

    /// Votes received in the current election (pre-vote or vote).
    pub(super) votes: BTreeMap<NodeId, bool>,
    /// A granted vote, sent once the vote is durable.
    pub(super) pending_vote_response: Option<PendingVoteResponse>,
    /// Peers whose latest answer (a vote, an append or heartbeat answer)
    /// said they are repairing a loss: what holds an election back when
    /// no leader can win. At most one entry per voter.
    pub(super) peers_repairing: std::collections::BTreeSet<NodeId>,

    /// What only a leader holds. Invariant: `Some` exactly while `role`
    /// is `Leader`.
    pub(super) leader_state: Option<LeaderState>,
    /// Answers to forwarded proposals, sent at the end of the turn (a
    /// leader's, or one stepping down in it). Not in `LeaderState`: a
    /// leader that steps down fills it from that state as it takes it.
    pub(super) forward_results: BTreeMap<NodeId, Vec<(u64, ProposeResult)>>,
    /// Forwarded proposals this node received recently as leader, to drop
    /// duplicated messages. Bounded: `4 * forward_inflight_max` entries.
    /// Not in `LeaderState`: a duplicate can arrive after this node
    /// stepped down and leads again (client plumbing ignores terms), so
    /// the memory must outlive one term of leadership.
    pub(super) forward_seen: super::proposals::RecentSet,

    /// Proposals waiting: at a leader for room in the log; at a follower for
    /// a leader to forward to. Invariant: `len() <= proposal_queue_max`.
    pub(super) queue: VecDeque<QueuedProposal>,
    /// Follower: forwarded proposals not yet answered, by request id, with
    /// the time they were forwarded.
    pub(super) forwarded: super::outstanding::Outstanding,

    // Follower acknowledgement state.
    /// Highest index known to match the current leader's log.
    pub(super) matched_leader_index: Index,
    /// Highest match index acknowledged to the current leader.
    pub(super) acked_index: Index,
    /// An append was processed and must be answered.
    pub(super) owe_ack: bool,

    pub(super) reads: ReadState,
    /// Invariant: `None` while leader or candidate: a repairing node never
    /// campaigns.
    pub(super) repair: Option<Repair>,
    pub(super) commands: Vec<Command>,
    /// [`Raft::end_turn`] checks every invariant (debug builds, and
    /// simulators in any build: [`Raft::check_invariants_every_turn`]).
    pub(super) check_every_turn: bool,
}

impl Raft {
    /// A core for node `id`, resuming from `state`. `voters` is the
    /// bootstrap configuration, in force until the snapshot or a
    /// configuration entry says otherwise; it is empty for a node that
    /// waits to be added to a running cluster.
    pub fn new(
        id: NodeId,
        voters: &[NodeId],
        config: CoreConfig,
        state: RaftState,
        seed: u64,
        now: Now,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if id == 0 {
            return Err(ConfigError {
                field: "id",
                reason: "node id 0 is reserved".into(),
            });
        }
        let (snapshot_membership, sessions_state) = decode_core_state(&state.snapshot.core_state)
            .map_err(|e| ConfigError {
            field: "snapshot",
            reason: e.to_string(),
        })?;
        let (base_index, base) = match snapshot_membership {
            Some(membership) => (state.snapshot.last.index, membership),
            None if !state.snapshot.voters.is_empty() => (
                state.snapshot.last.index,
                Membership::of_voters(&state.snapshot.voters),
            ),
            None => (0, Membership::of_voters(voters)),
        };
        let configs = Configurations::new(base_index, base, state.configs);
        let limits = SessionLimits {
            sessions_max: config.sessions_max,
            results_max: config.session_results_max,
            ttl_us: config.session_ttl_ms * 1_000,
        };
        let sessions = Sessions::decode(limits, sessions_state).map_err(|e| ConfigError {
            field: "snapshot",
            reason: e.to_string(),
        })?;
        let log = RaftLog::new(state.log, config.log_cache_bytes_max);
        let config_forward_inflight_max = config.forward_inflight_max;
        // A node whose log holds entries of term T has acknowledged in T, so
        // its term is at least T even if the hard state write was lost.
        let term = state.hard_state.term.max(log.last().term);
        let vote = if term == state.hard_state.term {
            state.hard_state.vote
        } else {
            0
        };
        let applied_tail = LogTail::after_snapshot(&state.snapshot);
        let repair = state.loss.map(|loss| {
            tracing::warn!(
                id,
                held_through = loss.held_through,
                hard_state_lost = loss.hard_state_lost,
                reason = %loss.reason,
                "this node lost state it may have acknowledged: it grants no votes until a leader repairs it"
            );
            Repair {
                loss,
                target: None,
                target_term: 0,
                target_leader: 0,
            }
        });
        let mut raft = Self {
            id,
            config,
            voters: configs.current().voters(),
            learners: configs.current().learners(),
            configs,
            transfer_waiter: None,
            rng: Rng::new(seed),
            now,
            term,
            vote,
            durable_hard_state: state.hard_state,
            requested_hard_state: state.hard_state,
            role: Role::Follower,
            leader: 0,
            log,
            sessions,
            snapshot: state.snapshot,
            previous_snapshot: None,
            snapshot_in_progress: false,
            restoring: None,
            apply_read_pending: false,
            tail_read_pending: false,
            applied_tail,
            election_deadline_us: 0,
            leader_contact_us: None,
            votes: BTreeMap::new(),
            peers_repairing: std::collections::BTreeSet::new(),
            pending_vote_response: None,
            leader_state: None,
            forward_results: BTreeMap::new(),
            forward_seen: super::proposals::RecentSet::new(4 * config_forward_inflight_max),
            queue: VecDeque::new(),
            forwarded: Default::default(),
            matched_leader_index: 0,
            acked_index: 0,
            owe_ack: false,
            reads: ReadState::default(),
            repair,
            commands: Vec::new(),
            check_every_turn: cfg!(debug_assertions),
        };
        raft.reset_election_deadline();
        raft.emit_role();
        raft.membership_changed();
        raft.apply_committed();
        Ok(raft)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The leader this node knows, `0` if none.
    pub fn leader(&self) -> NodeId {
        self.leader
    }

    /// The knobs this core runs with.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// The voters of the configuration in force, sorted.
    pub fn voters(&self) -> &[NodeId] {
        &self.voters
    }

    /// The learners of the configuration in force, sorted.
    pub fn learners(&self) -> &[NodeId] {
        &self.learners
    }

    /// The configuration in force (the latest in the log) and the index of
    /// its entry (`0`: the bootstrap configuration).
    pub fn membership(&self) -> (Index, &Membership) {
        (self.configs.current_index(), self.configs.current())
    }

    /// The latest configuration at or below the commit index.
    pub fn committed_membership(&self) -> (Index, &Membership) {
        self.configs.at(self.log.commit())
    }

    /// The vote cast in the current term, `0` if none.
    pub fn vote(&self) -> NodeId {
        self.vote
    }

    /// The log's view.
    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// The leader's view of a follower, if this node leads.
    pub fn progress(&self, peer: NodeId) -> Option<&Progress> {
        self.leader_state.as_ref()?.progress.get(&peer)
    }

    /// Status for `ordo status`.
    pub fn status(&self) -> Status {
        Status {
            id: self.id,
            role: self.role,
            term: self.term,
            leader: self.leader,
            commit_index: self.log.commit(),
            last_index: self.log.last_index(),
            durable_index: self.log.durable(),
            applied_index: self.log.applied(),
            repairing: self.repair.is_some(),
        }
    }

    /// Peers whose latest answer said they are repairing a loss (and so
    /// grant no vote).
    pub fn peers_repairing(&self) -> Vec<NodeId> {
        self.peers_repairing.iter().copied().collect()
    }

    /// The latest snapshot the core knows.
    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    /// Proposals queued and not yet in the log or forwarded.
    pub fn queued_proposals(&self) -> usize {
        self.queue.len()
    }

    /// The earliest time at which a [`Event::Tick`] has work to do.
    pub fn next_deadline_us(&self) -> u64 {
        let transfer = self.transfer_waiter.map_or(u64::MAX, |w| w.deadline_us);
        transfer.min(self.next_role_deadline_us())
    }

    fn next_role_deadline_us(&self) -> u64 {
        match &self.leader_state {
            Some(leading) => {
                let mut deadline = leading.heartbeat_deadline_us;
                if self.config.check_quorum {
                    deadline = deadline.min(leading.check_quorum_deadline_us);
                }
                if let Some(due) = leading.commit_notify_due_us {
                    deadline = deadline.min(due);
                }
                deadline
            }
            None => {
                let mut deadline = self.election_deadline_us;
                let oldest = [
                    self.forwarded.oldest_sent_us(),
                    self.oldest_forwarded_read_us(),
                ];
                if let Some(sent) = oldest.into_iter().flatten().min() {
                    deadline = deadline.min(sent + self.forward_timeout_us());
                }
                deadline
            }
        }
    }

    /// Hands the core one event.
    pub fn step(&mut self, now: Now, event: Event) {
        self.now = now;
        match event {
            Event::Tick => self.tick(),
            Event::Message { from, message } => self.step_message(from, message),
            Event::Propose(proposal) => self.propose(proposal),
            Event::Read { request_id } => self.read(request_id),
            Event::LogSynced { last } => {
                if self.log.synced(last) && self.role == Role::Leader {
                    self.maybe_commit();
                }
            }
            Event::HardStatePersisted(hard_state) => self.hard_state_persisted(hard_state),
            Event::LogRead { purpose, batches } => self.log_read(purpose, batches),
            Event::SnapshotCreated(meta) => self.snapshot_created(meta),
            Event::SnapshotNotCreated(_) => self.snapshot_in_progress = false,
            Event::SnapshotNotRestored(meta) => self.snapshot_not_restored(meta),
            Event::SnapshotUnreadable => self.snapshot_unreadable(),
            Event::TakeSnapshot => self.take_snapshot(),
            Event::SnapshotSent { to, ok } => self.snapshot_sent(to, ok),
            Event::SnapshotRestored(meta) => self.snapshot_restored(meta),
            Event::Unreachable { to } => self.unreachable(to),
            Event::TransferLeadership { to, request_id } => {
                self.transfer_leadership(to, request_id)
            }
            Event::ChangeMembership {
                request_id,
                change,
                known_info,
            } => self.change_membership(request_id, change, known_info),
        }
    }

    /// Ends a runtime turn: proposals received in it become batches, replies
    /// and acknowledgements are coalesced into one message per peer, and the
    /// hard state is handed over if it changed. Moves every command emitted
    /// since the last turn into `out`, in order.
    pub fn end_turn(&mut self, now: Now, out: &mut Vec<Command>) {
        self.now = now;
        match self.role {
            Role::Leader => {
                self.flush_proposals();
                let answered: Vec<NodeId> = self.forward_results.keys().copied().collect();
                self.send_forward_results();
                // Unless what it flushed committed a configuration that
                // removed this leader: then it stepped down.
                if self.role == Role::Leader {
                    self.flush_read_round(&answered);
                }
            }
            _ => {
                self.flush_forwards();
                self.flush_follower_reads();
                self.send_ack();
            }
        }
        self.request_hard_state();
        if self.check_every_turn {
            self.check_invariants();
        }
        out.append(&mut self.commands);
    }

    /// Makes [`Raft::end_turn`] check every invariant in every build, as
    /// debug builds always do: the simulators turn it on, so that their
    /// release runs over many seeds check as much as debug ones.
    pub fn check_invariants_every_turn(&mut self) {
        self.check_every_turn = true;
    }

    /// Checks every invariant written on the core's fields. Debug builds and
    /// the simulators run it after every turn; a failure is a bug.
    pub fn check_invariants(&self) {
        self.log.check();
        self.configs.check();
        assert!(self.configs.current_index() <= self.log.last_index());
        assert_eq!(self.voters, self.configs.current().voters());
        assert!(self.durable_hard_state.term <= self.term);
        assert_eq!(
            self.leader_state.is_some(),
            self.role == Role::Leader,
            "a leader, and only a leader, holds leader state"
        );
        if let Some(leading) = &self.leader_state {
            assert_eq!(self.leader, self.id);
            assert_eq!(self.vote, self.id, "a leader voted for itself in its term");
            leading.check(self.log.applied());
            let members: Vec<NodeId> = self
                .configs
                .current()
                .members()
                .iter()
                .map(|m| m.id)
                .filter(|&id| id != self.id)
                .collect();
            assert!(
                leading
                    .progress
                    .keys()
                    .copied()
                    .filter(|id| !leading.departing.contains(id))
                    .eq(members),
                "a leader tracks exactly the other members, and departing nodes"
            );
            for id in &leading.departing {
                assert!(!self.configs.current().contains(*id));
            }
            for progress in leading.progress.values() {
                progress.check();
                assert!(progress.match_index <= self.log.last_index());
                assert!(
                    progress.commit_sent <= self.log.commit(),
                    "a follower was told of a commit the leader has not made"
                );
            }
            let (commit, last) = (self.log.commit(), self.log.last_index());
            assert!(leading.term_start_index > 0 && leading.term_start_index <= last);
            assert!(
                leading
                    .uncommitted
                    .front()
                    .is_none_or(|span| span.last_index > commit)
                    && leading
                        .uncommitted
                        .back()
                        .is_none_or(|span| span.last_index <= last),
                "uncommitted batches outside (commit, last]"
            );
            assert!(
                leading
                    .pending
                    .back()
                    .is_none_or(|entry| entry.index <= last)
            );
        }
        assert!(
            self.acked_index <= self.matched_leader_index
                && self.matched_leader_index <= self.log.last_index(),
            "acked {}, matched {}, last {}",
            self.acked_index,
            self.matched_leader_index,
            self.log.last_index()
        );
        self.reads.check(
            self.role == Role::Leader,
            self.log.commit(),
            self.config.reads_pending_max,
        );
        self.forwarded.check();
        if self.restoring.is_some() {
            assert_eq!(self.role, Role::Follower, "a node restoring campaigned");
        }
        if matches!(self.role, Role::Candidate | Role::PreCandidate) {
            assert!(self.may_campaign(), "a node that may not stand campaigned");
        }
        assert!(self.queue.len() <= self.config.proposal_queue_max);
        if self.repair.is_some() {
            assert!(
                matches!(self.role, Role::Follower),
                "a repairing node campaigned"
            );
        }
        assert!(self.log.applied() >= self.snapshot.last.index || self.restoring.is_some());
    }

    fn tick(&mut self) {
        let now = self.now.mono_us;
        match self.role {
            Role::Leader => {
                let heartbeat_interval_us = self.config.heartbeat_interval_ms * 1_000;
                let check_quorum_interval_us = self.config.election_timeout_ms_min * 1_000;
                let check_quorum = self.config.check_quorum;
                let leading = self.leading_mut();
                let heartbeat_due = now >= leading.heartbeat_deadline_us;
                if heartbeat_due {
                    leading.heartbeat_deadline_us = now + heartbeat_interval_us;
                }
                let check_quorum_due = check_quorum && now >= leading.check_quorum_deadline_us;
                if check_quorum_due {
                    leading.check_quorum_deadline_us = now + check_quorum_interval_us;
                }
                if heartbeat_due {
                    self.broadcast_heartbeat();
                    self.detect_stalled_followers();
                }
                if check_quorum_due && !self.quorum_active() {
                    tracing::warn!(
                        id = self.id,
                        term = self.term,
                        "leader lost contact with a quorum; stepping down"
                    );
                    let term = self.term;
                    self.become_follower(term, 0);
                    return;
                }
                let leading = self.leading_mut();
                if leading
                    .transfer
                    .is_some_and(|transfer| now >= transfer.deadline_us)
                {
                    leading.transfer = None;
                }
                self.expire_transfer_waiter();
            }
            Role::Follower | Role::PreCandidate | Role::Candidate => {
                self.expire_transfer_waiter();
                if now >= self.election_deadline_us && self.repair.is_some() {
                    tracing::debug!(
                        id = self.id,
                        term = self.term,
                        "repairing: not campaigning; waiting for a leader"
                    );
                    self.reset_election_deadline();
                } else if now >= self.election_deadline_us && !self.may_campaign() {
                    // A node waiting to be added, or one the committed
                    // configuration removed, never campaigns.
                    self.reset_election_deadline();
                } else if now >= self.election_deadline_us {
                    let kind = if self.voters == [self.id] || !self.config.pre_vote {
                        CampaignKind::Election
                    } else {
                        CampaignKind::PreVote
                    };
                    self.campaign(kind);
                }
                self.expire_forwarded();
            }
        }
    }

    fn step_message(&mut self, from: NodeId, message: Message) {
        // Messages are processed whatever the sender's place in this
        // node's configuration (thesis §4.1): a node being added must
        // follow a leader it does not yet know of, and a voter whose log
        // lags its configuration must still vote. Only votes from voters
        // count, only members get progress, and a removed voter cannot
        // disrupt: members in touch with a leader ignore its votes (lease)
        // and its log lacks its own removal (pre-vote fails).
        if from == self.id || from == 0 {
            tracing::debug!(
                id = self.id,
                from,
                kind = message.kind(),
                "message with an invalid sender ignored"
            );
            return;
        }
        if matches!(message, Message::Vote(_)) && !self.configs.current().contains(from) {
            self.remind_removed(from);
        }
        // Whether a voter is repairing is a fact whatever its term (a wiped
        // one answers from term 0): note it before stale terms are dropped.
        if let Message::VoteResponse(response) = &message {
            self.note_peer_repairing(from, response.repairing);
        }
        // Answers to forwarded proposals are facts whatever the sender's term:
        // take them before a newer term fails what is still outstanding as
        // unknown.
        let message = match message {
            Message::ForwardResults(results) => {
                let term = results.term;
                self.handle_forward_results(results);
                Message::ForwardResults(ordo_net::ForwardResults {
                    term,
                    results: Vec::new(),
                })
            }
            other => other,
        };
        let term = message.term();
        let client_plumbing = matches!(
            message,
            Message::Forward(_)
                | Message::ForwardResults(_)
                | Message::ReadIndex(_)
                | Message::ReadIndexResponse(_)
        );
        if term > self.term {
            match &message {
                Message::Vote(request) => {
                    if self.in_lease() && !request.transfer {
                        // Thesis §9.6: a voter that hears from a live leader
                        // ignores votes, so a partitioned node that returns
                        // cannot depose it.
                        return;
                    }
                    if !request.pre_vote {
                        self.become_follower(term, 0);
                    }
                }
                Message::VoteResponse(response) if response.pre_vote && response.granted => {
                    // A granted pre-vote carries the term we would stand in.
                }
                Message::Append(_)
                | Message::Heartbeat(_)
                | Message::InstallSnapshot(_)
                | Message::TimeoutNow(_) => {
                    self.become_follower(term, from);
                }
                _ => self.become_follower(term, 0),
            }
        } else if term < self.term && !client_plumbing {
            match message {
                Message::Append(_) | Message::Heartbeat(_) => {
                    // Tell a stale leader about the newer term so it steps
                    // down (with pre-vote and check-quorum it may never hear
                    // a vote request).
                    let message = Message::HeartbeatResponse(ordo_net::HeartbeatResponse {
                        repairing: self.repair.is_some(),
                        term: self.term,
                        read_round: 0,
                        last_index: self.log.last_index(),
                    });
                    self.send(from, message);
                }
                Message::Vote(request) if request.pre_vote => {
                    let message = Message::VoteResponse(VoteResponse {
                        term: self.term,
                        granted: false,
                        pre_vote: true,
                        repairing: self.repair.is_some(),
                    });
                    self.send(from, message);
                }
                _ => {}
            }
            return;
        }
        match message {
            Message::Vote(request) => self.handle_vote_request(from, request),
            Message::VoteResponse(response) => self.handle_vote_response(from, response),
            Message::Append(request) => self.handle_append(from, request),
            Message::AppendResponse(response) => self.handle_append_response(from, response),
            Message::Heartbeat(heartbeat) => self.handle_heartbeat(from, heartbeat),
            Message::HeartbeatResponse(response) => self.handle_heartbeat_response(from, response),
            Message::Forward(request) => self.handle_forward(from, request),
            Message::ForwardResults(results) => self.handle_forward_results(results),
            Message::ReadIndex(request) => self.handle_read_index(from, request),
            Message::ReadIndexResponse(response) => self.handle_read_index_response(response),
            Message::InstallSnapshot(install) => self.handle_install_snapshot(from, install),
            Message::TimeoutNow(_) => {
                if self.repair.is_some() {
                    tracing::warn!(id = self.id, from, "repairing: leadership not taken over");
                } else if !self.may_campaign() {
                    tracing::warn!(id = self.id, from, "not a voter: leadership not taken over");
                } else if self.role != Role::Leader {
                    tracing::info!(id = self.id, from, "leadership handed over; campaigning");
                    self.campaign(CampaignKind::Transfer);
                }
            }
        }
    }

    /// Whether a leader is known to be alive: such a voter ignores vote
    /// requests (check-quorum lease).
    pub(super) fn in_lease(&self) -> bool {
        if !self.config.check_quorum || self.leader == 0 {
            return false;
        }
        if self.role == Role::Leader {
            return true;
        }
        self.leader_contact_us
            .is_some_and(|at| self.now.mono_us < at + self.config.election_timeout_ms_min * 1_000)
    }

    pub(super) fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Every other member, voter or learner: who the leader replicates to.
    pub(super) fn followers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.configs
            .current()
            .members()
            .iter()
            .map(|m| m.id)
            .filter(move |&id| id != self.id)
    }

    /// Whether this node may stand for election: it votes in the
    /// configuration in force; or that configuration, not yet committed
    /// as far as this node knows, removed it from the one before. Then it
    /// may hold entries no voter that can stand holds (a leader removing
    /// itself lost its quorum before committing the change, and the only
    /// other up-to-date voter is repairing: runtime simulator, seed 963),
    /// and it stands as the thesis lets a leader outside the new
    /// configuration manage it (§4.2.2): asking and counting only the new
    /// configuration's voters, so the usual overlap of majorities keeps
    /// elections safe. Once the change commits it steps down.
    ///
    /// A learner stands too, on the same terms (the thesis, §4.2.1: "a
    /// server that is not part of its own latest configuration should
    /// still start new elections, as it might still be needed"): it may
    /// have been promoted by a configuration it has not received, and
    /// hold the newest entries of the voters that can vote (runtime
    /// simulator, seed 1722: the promotion reached one voter only, the
    /// learner held an entry of a later term, and the fourth voter was
    /// repairing a wiped disk: no voter could win). Pre-vote and the
    /// check-quorum lease keep a learner from disrupting a live leader,
    /// and one behind the voters fails the log check.
    pub(super) fn may_campaign(&self) -> bool {
        self.voters.contains(&self.id)
            || (!self.voters.is_empty()
                && self
                    .configs
                    .current()
                    .get(self.id)
                    .is_some_and(|m| m.role == crate::MemberRole::Learner))
            || (self.configs.current_index() > self.log.commit()
                && self.configs.previous().is_some_and(|m| m.is_voter(self.id))
                && !self.voters.is_empty())
    }

    /// Every other voter: who a candidate asks.
    pub(super) fn other_voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().copied().filter(move |&v| v != self.id)
    }

    /// The value at which a quorum of voters stands: `own` for this node if
    /// it votes, `of(progress)` for each other voter (the leader's view).
    pub(super) fn quorum_value(&self, own: u64, of: impl Fn(&Progress) -> u64) -> u64 {
        let mut values: Vec<u64> = self
            .other_voters()
            .map(|v| self.progress(v).map_or(0, &of))
            .collect();
        if self.voters.contains(&self.id) {
            values.push(own);
        }
        values.sort_unstable_by(|a, b| b.cmp(a));
        values.get(self.quorum() - 1).copied().unwrap_or(0)
    }

    /// The leader's state. Only a leader calls it: callers checked the
    /// role, so anything else is a bug.
    pub(super) fn leading(&self) -> &LeaderState {
        self.leader_state
            .as_ref()
            .expect("only a leader holds leader state")
    }

    /// The leader's state, to change it; see [`Raft::leading`].
    pub(super) fn leading_mut(&mut self) -> &mut LeaderState {
        self.leader_state
            .as_mut()
            .expect("only a leader holds leader state")
    }

    pub(super) fn send(&mut self, to: NodeId, message: Message) {
        self.commands.push(Command::Send { to, message });
    }

    pub(super) fn reset_election_deadline(&mut self) {
        let min = self.config.election_timeout_ms_min * 1_000;
        let max = self.config.election_timeout_ms_max * 1_000;
        self.election_deadline_us = self.now.mono_us + self.rng.range(min, max);
    }

    pub(super) fn forward_timeout_us(&self) -> u64 {
        4 * self.config.election_timeout_ms_max * 1_000
    }

    pub(super) fn emit_role(&mut self) {
        self.commands.push(Command::RoleChanged {
            role: self.role,
            term: self.term,
            leader: self.leader,
        });
    }

    /// Becomes a follower in `term` (a higher term resets the vote) of
    /// `leader` (`0` if unknown). Everything a leader or candidate had in
    /// flight is answered, never dropped silently.
    pub(super) fn become_follower(&mut self, term: Term, leader: NodeId) {
        assert!(term >= self.term);
        let term_changed = term > self.term;
        if term_changed {
            self.term = term;
            self.vote = 0;
        }
        let was_leader = self.role == Role::Leader;
        // What this node matched and acknowledged belongs to one leader in
        // one term: the same node leading a later term may have lost
        // unsynced entries it sent before (a crash), so nothing matched
        // earlier may be acknowledged to it again (simulator seed 6480).
        let leader_changed = leader != self.leader || term_changed;
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        if leader != 0 {
            self.leader_contact_us = Some(self.now.mono_us);
        }
        self.reset_election_deadline();
        if was_leader {
            self.step_down_leader_state();
        }
        self.transfer_leader_known(leader);
        if leader_changed {
            self.matched_leader_index = 0;
            self.acked_index = 0;
            self.owe_ack = false;
            self.fail_forwarded();
            self.fail_follower_reads();
            self.repair_leader_changed();
        }
        self.emit_role();
    }

    pub(super) fn become_leader(&mut self) {
        assert!(matches!(self.role, Role::Candidate));
        // Invariant: a leader's term and its vote for itself are durable, so
        // no node ever leads one term twice (see `tally_votes`).
        assert!(
            self.durable_hard_state.term == self.term && self.durable_hard_state.vote == self.id,
            "node {} would lead term {} before its term is durable",
            self.id,
            self.term
        );
        tracing::info!(id = self.id, term = self.term, last = ?self.log.last(), "became leader");
        self.role = Role::Leader;
        self.leader = self.id;
        self.votes.clear();
        self.fail_forwarded();
        self.fail_follower_reads();
        let leading = LeaderState::new(
            self.followers(),
            self.log.last_index() + 1,
            self.now.mono_us,
            self.config.heartbeat_interval_ms * 1_000,
            self.config.election_timeout_ms_min * 1_000,
        );
        self.leader_state = Some(leading);
        self.append_noop();
        self.emit_role();
        self.broadcast_append();
        self.maybe_commit();
    }

    /// Asks the runtime to persist the hard state if term or vote changed.
    fn request_hard_state(&mut self) {
        let wanted = HardState {
            term: self.term,
            vote: self.vote,
            commit: self.requested_hard_state.commit,
        };
        if wanted.term != self.requested_hard_state.term
            || wanted.vote != self.requested_hard_state.vote
        {
            let wanted = HardState {
                commit: self.log.commit(),
                ..wanted
            };
            self.requested_hard_state = wanted;
            self.commands.push(Command::PersistHardState(wanted));
        }
    }

    /// Votes need their hard state durable; a candidate counts its own vote
    /// only then (Raft Figure 2: persist before responding).
    pub(super) fn persist_hard_state_now(&mut self) {
        self.request_hard_state();
    }

    fn hard_state_persisted(&mut self, hard_state: HardState) {
        if hard_state.term < self.durable_hard_state.term {
            return;
        }
        self.durable_hard_state = hard_state;
        if let Some(pending) = self.pending_vote_response.clone() {
            if self.term != pending.response.term {
                self.pending_vote_response = None;
            } else if hard_state.term == pending.response.term && hard_state.vote == pending.to {
                self.pending_vote_response = None;
                self.send(pending.to, Message::VoteResponse(pending.response));
            }
        }
        if self.role == Role::Candidate {
            self.tally_votes();
        }
    }

    fn log_read(&mut self, purpose: ReadPurpose, batches: Vec<ordo_storage::Batch>) {
        match purpose {
            ReadPurpose::Peer(peer) => self.log_read_for_peer(peer, batches),
            ReadPurpose::Apply => {
                self.apply_read_pending = false;
                self.apply_from_read(batches);
            }
            ReadPurpose::Tail => {
                self.tail_read_pending = false;
                if let Some(batch) = batches
                    .iter()
                    .find(|b| b.header().contains(self.log.last_index()))
                {
                    self.log.set_tail_from(batch);
                }
            }
        }
    }
}
