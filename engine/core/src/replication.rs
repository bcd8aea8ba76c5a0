//! Log replication (Raft §5.3, §5.4): the leader's pipelined AppendEntries
//! with per-follower windows and fast backtracking, the follower's
//! consistency check and durable acknowledgements, commit and apply.

use ordo_net::{
    AppendRequest, AppendResponse, AppendResult, Heartbeat, HeartbeatResponse, Message,
};
use ordo_storage::{Batch, BatchKind, BatchMeta, EntryOut, Index, LogId, NodeId};

use super::io::{ApplyBatch, Command, ReadPurpose, Role};
use super::leader::progress_mut;
use super::log::LogTail;
use super::progress::{BatchSpan, ReplicationState};
use super::raft::Raft;

impl Raft {
    /// A new leader's first entry: a no-op in its term, which commits every
    /// earlier entry once it commits (Raft §5.4.2, §8).
    pub(super) fn append_noop(&mut self) {
        let first_index = self.append_internal_noop();
        self.leading_mut().term_start_index = first_index;
    }

    /// Appends a no-op in this leader's term and returns its index.
    fn append_internal_noop(&mut self) -> Index {
        self.append_internal(BatchKind::Noop, &[])
    }

    /// Appends an internal entry (a no-op or a configuration: one entry,
    /// no message id) in this leader's term; returns its index.
    pub(super) fn append_internal(&mut self, kind: BatchKind, payload: &[u8]) -> Index {
        let tail = self.log.tail().expect("a leader knows its tail");
        let batch = Batch::encode(
            BatchMeta {
                kind,
                term: self.term,
                first_index: self.log.last_index() + 1,
                first_id: tail.next_id,
                first_ts: self.now.wall_us.max(tail.last_ts + 1),
            },
            vec![EntryOut {
                client_id: 0,
                seq: 0,
                payload,
            }],
        );
        let first_index = batch.first_index();
        self.append_own(vec![batch]);
        first_index
    }

    /// A follower said it is repairing: commit a new entry without it, so
    /// that it sees this leader commit after its loss (a deposed leader
    /// could not) before it trusts it (core/repair.rs).
    fn append_repair_barrier(&mut self) {
        if self.log.tail().is_some() {
            self.append_internal_noop();
            self.broadcast_append();
        }
    }

    /// Appends batches the leader created: to its cache now, to storage by
    /// command; its own durability counts once the sync reports it.
    pub(super) fn append_own(&mut self, batches: Vec<Batch>) {
        for batch in &batches {
            self.track_own(batch.clone());
        }
        self.commands.push(Command::Append { batches });
        self.commands.push(Command::Sync);
    }

    /// Adds a batch the leader created to its log view and to the bytes it
    /// holds beyond its commit index.
    pub(super) fn track_own(&mut self, batch: Batch) {
        let leading = self.leading_mut();
        leading.uncommitted.push_back(BatchSpan {
            last_index: batch.last_index(),
            bytes: batch.len_bytes(),
        });
        leading.uncommitted_bytes += batch.len_bytes();
        self.log.append(batch);
    }

    /// Sends whatever each follower's window allows.
    pub(super) fn broadcast_append(&mut self) {
        let peers: Vec<NodeId> = self.leading().progress.keys().copied().collect();
        for peer in peers {
            self.send_append(peer);
        }
    }

    /// Sends AppendEntries to `to` while its window has room (one message in
    /// `Probe`, a stream in `Replicate`).
    pub(super) fn send_append(&mut self, to: NodeId) {
        assert_eq!(self.role, Role::Leader, "only a leader sends appends");
        loop {
            let Some(progress) = self.progress(to) else {
                return;
            };
            assert!(
                progress.match_index < progress.next_index,
                "{to}: {progress:?}"
            );
            if !progress.can_send(
                self.config.inflight_messages_max,
                self.config.inflight_bytes_max,
            ) {
                return;
            }
            let next = progress.next_index;
            let Some(prev_term) = self.log.term_at(next - 1) else {
                self.start_snapshot(to);
                return;
            };
            let prev = LogId::new(prev_term, next - 1);
            if next > self.log.last_index() {
                // Nothing new. In Probe, an empty append finds the match.
                if progress.state == ReplicationState::Probe && progress.match_index < prev.index {
                    self.send_append_message(to, prev, Vec::new());
                }
                return;
            }
            let budget = match progress.state {
                ReplicationState::Replicate => progress
                    .inflight_bytes_room(self.config.inflight_bytes_max)
                    .min(self.config.append_bytes_max),
                _ => self.config.append_bytes_max,
            };
            let Some(batches) = self.log.cached_from(next, budget) else {
                self.request_log_for_peer(to, next);
                return;
            };
            let replicate = progress.state == ReplicationState::Replicate;
            self.send_append_message(to, prev, batches);
            if !replicate {
                return;
            }
        }
    }

    fn send_append_message(&mut self, to: NodeId, prev: LogId, batches: Vec<Batch>) {
        let bytes = batches.iter().map(Batch::len_bytes).sum();
        let last = batches.last().map_or(prev.index, Batch::last_index);
        let commit = self.log.commit();
        let progress = progress_mut(&mut self.leader_state, to).expect("caller checked");
        progress.sent(last, bytes);
        progress.commit_sent = progress.commit_sent.max(commit.min(last));
        let message = Message::Append(AppendRequest {
            term: self.term,
            prev,
            commit,
            batches,
        });
        self.send(to, message);
    }

    fn request_log_for_peer(&mut self, to: NodeId, from: Index) {
        let progress = progress_mut(&mut self.leader_state, to).expect("caller checked");
        if progress.log_read_pending {
            return;
        }
        progress.log_read_pending = true;
        self.commands.push(Command::ReadLog {
            purpose: ReadPurpose::Peer(to),
            from,
            bytes_max: self.config.append_bytes_max,
        });
    }

    /// Entries read back from storage for a follower the cache could not
    /// serve: sent if they still fit its progress, otherwise dropped.
    pub(super) fn log_read_for_peer(&mut self, to: NodeId, batches: Vec<Batch>) {
        let Some(progress) = progress_mut(&mut self.leader_state, to) else {
            return;
        };
        progress.log_read_pending = false;
        let next = progress.next_index;
        let can_send = progress.can_send(
            self.config.inflight_messages_max,
            self.config.inflight_bytes_max,
        );
        let current = !batches.is_empty()
            && batches[0].header().contains(next)
            && batches
                .iter()
                .all(|b| self.log.term_at(b.last_index()) == Some(b.term()));
        if self.role != Role::Leader || !can_send || !current {
            return;
        }
        let Some(prev_term) = self.log.term_at(next - 1) else {
            return;
        };
        let mut batches = batches;
        if batches[0].first_index() < next {
            batches[0] = batches[0].slice(next, batches[0].last_index());
        }
        self.send_append_message(to, LogId::new(prev_term, next - 1), batches);
        self.send_append(to);
    }

    /// Heartbeats carry the commit index (bounded by each follower's match)
    /// and the current read round.
    pub(super) fn broadcast_heartbeat(&mut self) {
        let peers: Vec<NodeId> = self.leading().progress.keys().copied().collect();
        for peer in peers {
            self.send_heartbeat(peer);
        }
    }

    pub(super) fn send_heartbeat(&mut self, to: NodeId) {
        let commit = self.log.commit();
        let commit = match progress_mut(&mut self.leader_state, to) {
            Some(progress) => {
                let commit = commit.min(progress.match_index);
                progress.commit_sent = progress.commit_sent.max(commit);
                commit
            }
            None => 0,
        };
        // Every heartbeat gets a fresh round, so that its answer can be
        // ordered against acknowledgements (`Progress::match_round`). A
        // read still takes a round no heartbeat was sent with yet
        // (`leader_read`), so confirmation is unchanged.
        self.reads.round += 1;
        self.reads.sent_round = self.reads.round;
        let message = Message::Heartbeat(Heartbeat {
            term: self.term,
            commit,
            read_round: self.reads.round,
            last_index: self.log.last_index(),
        });
        self.send(to, message);
    }

    /// A pipeline that made no progress for an election timeout lost a
    /// message: fall back to probing. A snapshot that never completed is
    /// retried the same way.
    pub(super) fn detect_stalled_followers(&mut self) {
        let now = self.now.mono_us;
        let stall_us = self.config.election_timeout_ms_min * 1_000;
        let mut stalled = Vec::new();
        for (&peer, progress) in &mut self
            .leader_state
            .as_mut()
            .expect("only a leader watches its followers")
            .progress
        {
            let limit = match progress.state {
                ReplicationState::Replicate if progress.inflight_messages() > 0 => stall_us,
                ReplicationState::Snapshot { .. } => {
                    4 * self.config.election_timeout_ms_max * 1_000
                }
                _ => continue,
            };
            if now >= progress.last_progress_us + limit {
                progress.become_probe(now);
                stalled.push(peer);
            }
        }
        for peer in stalled {
            self.send_append(peer);
        }
    }

    /// Check-quorum: whether a quorum (this leader included) was heard from
    /// since the last check; resets the marks.
    pub(super) fn quorum_active(&mut self) -> bool {
        let mut active = usize::from(self.is_voter(self.id));
        let voters = &self.voters;
        let leading = self
            .leader_state
            .as_mut()
            .expect("only a leader checks its quorum");
        for (peer, progress) in leading.progress.iter_mut() {
            if progress.recent_active && !progress.repairing && voters.binary_search(peer).is_ok() {
                active += 1;
            }
            progress.recent_active = false;
        }
        active >= self.quorum()
    }

    pub(super) fn unreachable(&mut self, to: NodeId) {
        let now = self.now.mono_us;
        if let Some(progress) = progress_mut(&mut self.leader_state, to)
            && progress.state == ReplicationState::Replicate
        {
            progress.become_probe(now);
        }
    }

    pub(super) fn handle_append_response(&mut self, from: NodeId, response: AppendResponse) {
        // `step_message` dropped stale answers and stepped down for newer
        // ones. A leader that stepped down in this term still hears them.
        assert_eq!(response.term, self.term, "an answer of another term");
        self.note_peer_repairing(from, response.repairing);
        if self.role != Role::Leader {
            return;
        }
        self.check_leader_log();
        let now = self.now.mono_us;
        let Some(progress) = progress_mut(&mut self.leader_state, from) else {
            return;
        };
        progress.recent_active = true;
        let mut barrier = false;
        if progress.repairing != response.repairing {
            progress.repairing = response.repairing;
            barrier = response.repairing;
            if response.repairing {
                // Nothing it holds is known to match any more: it may have
                // refilled its log from a deposed leader (seed 68017).
                let next = progress.next_index;
                progress.regress(next - 1, now);
            }
            tracing::info!(
                id = self.id,
                follower = from,
                repairing = response.repairing,
                "a follower's acknowledgements {} towards commit",
                if response.repairing {
                    "no longer count"
                } else {
                    "count again"
                }
            );
        }
        if barrier {
            self.append_repair_barrier();
        }
        let round = self.reads.sent_round;
        let Some(progress) = progress_mut(&mut self.leader_state, from) else {
            return;
        };
        match response.result {
            AppendResult::Success { match_index } => {
                if match_index > self.log.last_index() {
                    tracing::warn!(
                        id = self.id,
                        from,
                        match_index,
                        "acknowledgement beyond the log ignored"
                    );
                    return;
                }
                let advanced = progress.maybe_update(match_index, now);
                if advanced {
                    // No heartbeat sent before this point echoes a later round.
                    progress.match_round = round;
                }
                let config_index = self.configs.current_index();
                let leading = self.leading_mut();
                if leading.departing.contains(&from) && match_index >= config_index {
                    // It holds the configuration that removed it.
                    leading.departing.remove(&from);
                    leading.progress.remove(&from);
                    tracing::info!(
                        id = self.id,
                        node = from,
                        "a removed member learned it was removed"
                    );
                    return;
                }
                let Some(progress) = progress_mut(&mut self.leader_state, from) else {
                    return;
                };
                match progress.state {
                    ReplicationState::Probe => progress.become_replicate(now),
                    ReplicationState::Snapshot { index } if progress.match_index >= index => {
                        progress.become_replicate(now)
                    }
                    _ => {}
                }
                if advanced {
                    self.maybe_commit();
                    if self.role != Role::Leader {
                        // The configuration it committed removed this leader.
                        return;
                    }
                    self.maybe_send_timeout_now(from);
                }
                self.send_append(from);
            }
            AppendResult::Conflict { rejected, hint } => {
                // Fast backtracking: skip every entry of a term the follower
                // does not hold in one round trip.
                let probe = if hint.term > 0 {
                    self.log.find_conflict_by_term(hint.index, hint.term)
                } else {
                    hint.index
                };
                let next = rejected.min(probe + 1).max(1);
                if progress.maybe_decrease_to(rejected, next, now) {
                    self.send_append(from);
                }
            }
        }
    }

    pub(super) fn handle_heartbeat_response(&mut self, from: NodeId, response: HeartbeatResponse) {
        assert_eq!(response.term, self.term, "an answer of another term");
        self.note_peer_repairing(from, response.repairing);
        if self.role != Role::Leader {
            return;
        }
        self.check_leader_log();
        let last_index = self.log.last_index();
        let all_committed = self.log.commit() >= last_index;
        let Some(progress) = progress_mut(&mut self.leader_state, from) else {
            return;
        };
        progress.recent_active = true;
        if response.read_round > progress.read_round {
            progress.read_round = response.read_round;
        }
        if response.repairing && !progress.repairing {
            // A follower that lost its state, or restarted mid-repair,
            // while this leader believed it caught up: what it holds may
            // have come from a deposed leader, so nothing is known to match
            // (simulator seed 68017); probe from its last index.
            progress.repairing = true;
            progress.regress(response.last_index, self.now.mono_us);
            tracing::info!(
                id = self.id,
                follower = from,
                "a follower's acknowledgements no longer count towards commit"
            );
        }
        // Only a response to a heartbeat sent after the acknowledgement
        // that set `match_index` shows the log went backwards; an older one,
        // delayed or reordered, merely predates it (runtime simulator, seed
        // 84710: 31,000 spurious resets under reordering starved a follower).
        // A repairing follower echoes no round (it confirms no reads), and
        // its log may go back again mid-repair: its answers always count.
        let fresh = response.repairing || response.read_round > progress.match_round;
        if response.last_index < progress.match_index && fresh {
            // The follower's log went backwards: it lost entries it had
            // acknowledged (a damaged or wiped disk). Replicate them again
            // from what it holds, now, rather than when new proposals come.
            tracing::warn!(
                id = self.id,
                follower = from,
                match_index = progress.match_index,
                last_index = response.last_index,
                "a follower's log went backwards; resending from its last index"
            );
            progress.regress(response.last_index, self.now.mono_us);
        }
        // A repairing follower that holds everything needs a new entry
        // committed without it to finish (core/repair.rs).
        let barrier = progress.repairing && progress.match_index >= last_index && all_committed;
        let resend = match progress.state {
            ReplicationState::Probe => {
                progress.probe_sent = false;
                progress.match_index < last_index
            }
            ReplicationState::Replicate => {
                progress.inflight_messages() == 0 && progress.match_index < last_index
            }
            ReplicationState::Snapshot { .. } => false,
        };
        self.confirm_reads();
        if barrier {
            self.append_repair_barrier();
        } else if resend {
            self.send_append(from);
        }
    }

    /// The follower's side of AppendEntries (Figure 2 receiver rules 1–5).
    pub(super) fn handle_append(&mut self, from: NodeId, request: AppendRequest) {
        // `step_message` dropped stale appends and followed a newer term.
        assert_eq!(request.term, self.term, "an append of another term");
        self.follow(from);
        self.check_follower_log(from);
        if self.restoring.is_some() {
            return;
        }
        let last_new = request.last_index();
        let mut prev = request.prev;
        let mut batches = request.batches;
        // Entries at or below this node's commit index match the leader's
        // (Leader Completeness); skip them.
        let commit = self.log.commit();
        if prev.index < commit {
            batches.retain(|b| b.last_index() > commit);
            if let Some(first) = batches.first_mut()
                && first.first_index() <= commit
            {
                *first = first.slice(commit + 1, first.last_index());
            }
            prev = LogId::new(self.log.term_at(commit).expect("commit is held"), commit);
        }
        if !self.log.matches(prev) {
            let hint_index = self
                .log
                .find_conflict_by_term(prev.index.min(self.log.last_index()), prev.term);
            let hint = LogId::new(self.log.term_at(hint_index).unwrap_or(0), hint_index);
            let message = Message::AppendResponse(AppendResponse {
                term: self.term,
                repairing: self.repair.is_some(),
                result: AppendResult::Conflict {
                    rejected: request.prev.index,
                    hint,
                },
            });
            self.send(from, message);
            return;
        }
        let mut truncate_from = None;
        let mut new_batches: Vec<Batch> = Vec::new();
        let last = self.log.last_index();
        for batch in batches {
            if !new_batches.is_empty() || batch.first_index() > last {
                new_batches.push(batch);
                continue;
            }
            let overlap_end = batch.last_index().min(last);
            match self
                .log
                .first_term_mismatch(batch.first_index(), overlap_end, batch.term())
            {
                Some(conflict) => {
                    truncate_from = Some(conflict);
                    new_batches.push(if conflict == batch.first_index() {
                        batch
                    } else {
                        batch.slice(conflict, batch.last_index())
                    });
                }
                None if batch.last_index() > last => {
                    new_batches.push(batch.slice(last + 1, batch.last_index()))
                }
                None => {}
            }
        }
        let mut configs_changed = false;
        if let Some(from_index) = truncate_from {
            assert!(
                from_index > self.matched_leader_index,
                "the leader contradicted entries it sent in its own term"
            );
            self.log.truncate(from_index);
            configs_changed |= self.configs.truncated(from_index);
            self.commands.push(Command::Truncate { from: from_index });
        }
        if !new_batches.is_empty() {
            for batch in &new_batches {
                self.log.append(batch.clone());
            }
            configs_changed |= self.configs_appended(&new_batches);
            self.commands.push(Command::Append {
                batches: new_batches,
            });
            self.commands.push(Command::Sync);
        }
        if configs_changed {
            self.membership_changed();
        }
        self.matched_leader_index = self.matched_leader_index.max(last_new);
        self.log.commit_to(request.commit.min(last_new));
        self.owe_ack = true;
        self.apply_committed();
    }

    pub(super) fn handle_heartbeat(&mut self, from: NodeId, heartbeat: Heartbeat) {
        assert_eq!(heartbeat.term, self.term, "a heartbeat of another term");
        self.follow(from);
        self.check_follower_log(from);
        if self.restoring.is_none() {
            // The leader bounds the commit by this follower's match, which
            // this node holds durably and which matches the leader. Not
            // after a loss: the leader's match may predate it (until this
            // node's answer regresses it), and what the node holds since may
            // have come from a deposed leader (simulator seed 20465); a
            // repairing node trusts only what it knows matches this leader.
            let bound = if self.repair.is_some() {
                self.matched_leader_index
            } else {
                self.log.last_index()
            };
            let commit = heartbeat.commit.min(bound);
            self.log.commit_to(commit);
            self.apply_committed();
            self.repair_learn_target(from, heartbeat.last_index);
        }
        // A repairing node confirms no leadership for reads: having lost
        // its own term, it cannot tell a deposed leader from a live one.
        let read_round = if self.repair.is_some() {
            0
        } else {
            heartbeat.read_round
        };
        let message = Message::HeartbeatResponse(HeartbeatResponse {
            term: self.term,
            read_round,
            last_index: self.log.last_index(),
            repairing: self.repair.is_some(),
        });
        self.send(from, message);
    }

    /// A message from the leader of the current term: follow it.
    fn follow(&mut self, leader: NodeId) {
        assert_ne!(self.role, Role::Leader, "two leaders in term {}", self.term);
        if self.role != Role::Follower || self.leader != leader {
            let term = self.term;
            self.become_follower(term, leader);
        }
        self.leader_contact_us = Some(self.now.mono_us);
        self.reset_election_deadline();
    }

    /// What holds whenever a leader handles a follower's answer: the
    /// leader's commit and the entries it appended in its term are in its
    /// log, and the log's cursors are ordered.
    fn check_leader_log(&self) {
        let leading = self.leading();
        let (applied, commit, last) =
            (self.log.applied(), self.log.commit(), self.log.last_index());
        assert!(
            applied <= commit && commit <= last,
            "applied {applied}, commit {commit}, last {last}"
        );
        assert!(
            leading.term_start_index > 0 && leading.term_start_index <= last,
            "no-op at {} with last {last}",
            leading.term_start_index
        );
        assert!(self.log.durable() <= last);
    }

    /// What holds whenever a follower takes an append or heartbeat from
    /// `leader` (after [`Raft::follow`]): it follows that leader, and what
    /// it matched and acknowledged to it is in its log.
    fn check_follower_log(&self, leader: NodeId) {
        assert_eq!(self.role, Role::Follower);
        assert_eq!(self.leader, leader);
        assert!(self.leader_state.is_none());
        let (commit, last) = (self.log.commit(), self.log.last_index());
        assert!(commit <= last, "commit {commit} beyond last {last}");
        assert!(
            self.acked_index <= self.matched_leader_index && self.matched_leader_index <= last,
            "acked {}, matched {}, last {last}",
            self.acked_index,
            self.matched_leader_index
        );
    }

    /// A follower acknowledges what it holds durably and knows to match the
    /// leader, once per turn. While a sync is pending it waits for it, so
    /// each sync yields one acknowledgement.
    pub(super) fn send_ack(&mut self) {
        if self.role != Role::Follower || self.leader == 0 || self.restoring.is_some() {
            return;
        }
        let durable = self.log.durable();
        let ack = durable.min(self.matched_leader_index);
        let sync_pending = durable < self.matched_leader_index;
        self.maybe_finish_repair();
        if ack > self.acked_index || (self.owe_ack && !sync_pending) {
            self.acked_index = self.acked_index.max(ack);
            self.owe_ack = false;
            let message = Message::AppendResponse(AppendResponse {
                term: self.term,
                repairing: self.repair.is_some(),
                result: AppendResult::Success { match_index: ack },
            });
            let leader = self.leader;
            self.send(leader, message);
        }
    }

    /// Commits the highest index a quorum holds durably, if it is of the
    /// current term (Raft §5.4.2). The leader counts itself only up to its
    /// own durable index, so its fsync runs in parallel with replication
    /// (thesis §10.2.1).
    pub(super) fn maybe_commit(&mut self) {
        assert_eq!(self.role, Role::Leader, "only a leader commits");
        // A repairing follower counts as holding nothing: the leader must
        // reach a quorum without it (core/repair.rs). Only voters of the
        // configuration in force count, this leader only if it is one.
        let candidate = self.quorum_value(self.log.durable(), |p| {
            if p.repairing { 0 } else { p.match_index }
        });
        if candidate <= self.log.commit() || self.log.term_at(candidate) != Some(self.term) {
            return;
        }
        self.log.commit_to(candidate);
        self.membership_committed();
        if self.role != Role::Leader {
            // Removed by the configuration that just committed.
            self.apply_committed();
            return;
        }
        let leading = self.leading_mut();
        while leading
            .uncommitted
            .front()
            .is_some_and(|span| span.last_index <= candidate)
        {
            let span = leading.uncommitted.pop_front().expect("checked");
            leading.uncommitted_bytes -= span.bytes;
        }
        self.apply_committed();
        self.release_reads_waiting_for_commit();
    }

    /// Hands committed entries to the state machine in order, each once;
    /// answers their proposers; reads back from storage what the cache lost.
    pub(super) fn apply_committed(&mut self) {
        assert!(
            self.log.applied() <= self.log.commit() && self.log.commit() <= self.log.last_index()
        );
        while self.log.applied() < self.log.commit() && self.restoring.is_none() {
            let from = self.log.applied() + 1;
            let to = self.log.commit();
            match self.log.cached_range(from, to) {
                Some(batches) if !batches.is_empty() => self.apply_batches(batches, from, to),
                _ => {
                    if !self.apply_read_pending {
                        self.apply_read_pending = true;
                        self.commands.push(Command::ReadLog {
                            purpose: ReadPurpose::Apply,
                            from,
                            bytes_max: self.config.append_bytes_max,
                        });
                    }
                    return;
                }
            }
        }
        self.maybe_snapshot();
    }

    /// Committed entries read back from storage.
    pub(super) fn apply_from_read(&mut self, batches: Vec<Batch>) {
        let from = self.log.applied() + 1;
        let to = self.log.commit();
        let current = from <= to
            && !batches.is_empty()
            && batches[0].header().contains(from)
            && batches.iter().all(|b| {
                b.last_index().min(to) < b.first_index()
                    || self.log.term_at(b.first_index().max(from)) == Some(b.term())
            });
        if current && self.restoring.is_none() {
            let batches: Vec<Batch> = batches
                .into_iter()
                .take_while(|b| b.first_index() <= to)
                .collect();
            self.apply_batches(batches, from, to);
        }
        self.apply_committed();
    }

    fn apply_batches(&mut self, batches: Vec<Batch>, from: Index, to: Index) {
        let last_index = to.min(batches.last().expect("non-empty").last_index());
        self.log.applied_to(last_index);
        self.configs.committed(last_index);
        // The state machine sees the entries before their proposers hear back.
        self.commands.push(Command::Apply(ApplyBatch {
            batches: batches.clone(),
            first_index: from,
            last_index,
        }));
        for batch in &batches {
            let header = *batch.header();
            for entry in batch.entries() {
                if entry.index < from {
                    continue;
                }
                if entry.index > last_index {
                    break;
                }
                self.sessions.apply(&entry);
                self.resolve_pending(&entry);
            }
            let last_in_batch = header.last_index().min(last_index);
            if last_in_batch >= from {
                self.applied_tail = LogTail::at(&header, last_in_batch);
            }
        }
    }
}
