//! Snapshots and log compaction (Raft §7): when to take one, compacting
//! after it, and installing one on a follower the log no longer reaches.
//! The data itself is streamed in chunks by the runtime; the core sees only
//! metadata.

use ordo_net::{AppendResponse, AppendResult, InstallSnapshot, Message, SnapshotMeta};
use ordo_storage::{LogId, NodeId};

use super::io::{Command, Role};
use super::leader::progress_mut;
use super::log::LogTail;
use super::membership::{Membership, decode_core_state, encode_core_state};
use super::raft::Raft;
use super::sessions::{SessionLimits, Sessions};

impl Raft {
    /// Asks for a snapshot once enough entries were applied since the last.
    pub(super) fn maybe_snapshot(&mut self) {
        let applied = self.log.applied();
        if applied
            < self
                .snapshot
                .last
                .index
                .saturating_add(self.config.snapshot_entries_threshold)
        {
            return;
        }
        self.take_snapshot();
    }

    /// The latest snapshot cannot be read back (damaged on disk): take one
    /// now, whatever the threshold, so that followers behind the compacted
    /// log can be sent a sound one (runtime simulator, seed 176: a leader
    /// streamed its damaged snapshot forever).
    pub(super) fn snapshot_unreadable(&mut self) {
        if self.snapshot.last.index > 0 {
            self.take_snapshot();
        }
    }

    /// Asks the runtime for a snapshot at the applied index, unless one is
    /// being taken.
    pub(super) fn take_snapshot(&mut self) {
        let applied = self.log.applied();
        assert!(applied <= self.log.commit(), "applied beyond commit");
        assert!(
            self.snapshot.last.index <= applied || self.restoring.is_some(),
            "the snapshot {:?} is ahead of applied {applied}",
            self.snapshot.last
        );
        if self.snapshot_in_progress {
            return;
        }
        let Some(term) = self.log.term_at(applied) else {
            return;
        };
        self.snapshot_in_progress = true;
        let (_, membership) = self.configs.at(applied);
        let meta = SnapshotMeta {
            last: LogId::new(term, applied),
            last_id: self.applied_tail.last_id(),
            last_ts: self.applied_tail.last_ts,
            voters: membership.voters(),
            core_state: encode_core_state(membership, &self.sessions.encode()),
        };
        self.commands.push(Command::CreateSnapshot(meta));
    }

    pub(super) fn snapshot_created(&mut self, meta: SnapshotMeta) {
        // Taken at the applied index, which only grows (a restore moves it
        // past the commit index).
        assert!(self.snapshot_in_progress, "a snapshot nobody asked for");
        assert!(
            meta.last.index <= self.log.applied(),
            "snapshot {:?} beyond applied {}",
            meta.last,
            self.log.applied()
        );
        self.snapshot_in_progress = false;
        if meta.last.index <= self.snapshot.last.index || !self.log.matches(meta.last) {
            return;
        }
        // With `compact_to_previous_snapshot` the log keeps the entries
        // since the snapshot before this one: a follower a little behind
        // (or a reader) gets entries, not the snapshot.
        // The first snapshot since the start has no predecessor known:
        // it compacts to itself (the bound matters more than a follower
        // served a snapshot once).
        let point = if self.config.compact_to_previous_snapshot {
            self.previous_snapshot
                .replace(meta.clone())
                .unwrap_or_else(|| meta.clone())
        } else {
            meta.clone()
        };
        self.snapshot = meta;
        if self.log.matches(point.last) {
            self.log
                .compact(point.last, LogTail::after_snapshot(&point));
            self.commands.push(Command::CompactLog {
                upto: point.last.index,
            });
        }
    }

    /// The follower needs entries before the log's start: send the snapshot.
    pub(super) fn start_snapshot(&mut self, to: NodeId) {
        assert_eq!(self.role, Role::Leader, "only a leader sends snapshots");
        // A leader never restores one: restoring keeps a node a follower.
        assert!(self.restoring.is_none() && self.snapshot.last.index <= self.log.applied());
        let now = self.now.mono_us;
        let Some(progress) = progress_mut(&mut self.leader_state, to) else {
            return;
        };
        if self.snapshot.last.index == 0 {
            return;
        }
        tracing::info!(id = self.id, to, snapshot = ?self.snapshot.last, "follower needs a snapshot");
        progress.become_snapshot(self.snapshot.last.index, now);
        let command = Command::SendSnapshot {
            to,
            meta: self.snapshot.clone(),
            term: self.term,
        };
        self.commands.push(command);
    }

    pub(super) fn snapshot_sent(&mut self, to: NodeId, ok: bool) {
        let now = self.now.mono_us;
        if let Some(progress) = progress_mut(&mut self.leader_state, to)
            && !ok
            && matches!(
                progress.state,
                super::progress::ReplicationState::Snapshot { .. }
            )
        {
            // Try again after the next heartbeat answer.
            progress.become_probe(now);
            progress.probe_sent = true;
        }
    }

    pub(super) fn handle_install_snapshot(&mut self, from: NodeId, install: InstallSnapshot) {
        // `step_message` dropped stale ones and followed a newer term.
        assert_eq!(install.term, self.term, "a snapshot of another term");
        assert_ne!(self.role, Role::Leader, "two leaders in term {}", self.term);
        if self.role != Role::Follower || self.leader != from {
            let term = self.term;
            self.become_follower(term, from);
        }
        self.leader_contact_us = Some(self.now.mono_us);
        self.reset_election_deadline();
        if self.restoring.is_some() {
            return;
        }
        if install.meta.last.index <= self.log.commit() {
            // Already holds everything it covers.
            self.matched_leader_index = self.matched_leader_index.max(self.log.commit());
            self.owe_ack = true;
            return;
        }
        if self.log.matches(install.meta.last) {
            // Raft §7: the log holds the snapshot's last entry, so everything
            // up to it matches the leader and is committed; keep the entries
            // after it. Resetting here would drop entries this node may have
            // acknowledged (seed 2281).
            self.matched_leader_index = self.matched_leader_index.max(install.meta.last.index);
            self.log.commit_to(install.meta.last.index);
            self.owe_ack = true;
            self.apply_committed();
            return;
        }
        tracing::info!(id = self.id, snapshot = ?install.meta.last, "installing snapshot");
        self.restoring = Some(install.meta.clone());
        self.commands.push(Command::RestoreSnapshot(install.meta));
    }

    pub(super) fn snapshot_not_restored(&mut self, meta: SnapshotMeta) {
        if self.restoring.as_ref().map(|m| m.last) == Some(meta.last) {
            self.restoring = None;
        }
    }

    pub(super) fn snapshot_restored(&mut self, meta: SnapshotMeta) {
        if self.restoring.as_ref().map(|m| m.last) != Some(meta.last) {
            return;
        }
        // Restoring keeps a node a follower, and freezes its commit index
        // below the snapshot (appends and heartbeats wait for the restore).
        assert_eq!(self.role, Role::Follower, "a node restoring campaigned");
        assert!(
            meta.last.index > self.log.commit(),
            "restored {:?} at or below commit {}",
            meta.last,
            self.log.commit()
        );
        self.restoring = None;
        let limits = SessionLimits {
            sessions_max: self.config.sessions_max,
            results_max: self.config.session_results_max,
            ttl_us: self.config.session_ttl_ms * 1_000,
        };
        let (membership, sessions) = match decode_core_state(&meta.core_state) {
            Ok((membership, sessions)) => (membership, sessions),
            Err(error) => {
                tracing::error!(id = self.id, %error, "snapshot carries an invalid configuration; keeping the one in force");
                (None, &[][..])
            }
        };
        match Sessions::decode(limits, sessions) {
            Ok(sessions) => self.sessions = sessions,
            Err(error) => {
                tracing::error!(id = self.id, %error, "snapshot carries invalid session state; keeping the old table");
            }
        }
        self.log.reset(meta.last, LogTail::after_snapshot(&meta));
        let membership = membership
            .or_else(|| (!meta.voters.is_empty()).then(|| Membership::of_voters(&meta.voters)));
        let membership = membership.unwrap_or_else(|| self.configs.current().clone());
        self.configs.reset(meta.last.index, membership);
        self.membership_changed();
        self.applied_tail = LogTail::after_snapshot(&meta);
        self.matched_leader_index = meta.last.index;
        self.snapshot = meta;
        if self.role == Role::Follower && self.leader != 0 {
            let message = Message::AppendResponse(AppendResponse {
                term: self.term,
                repairing: self.repair.is_some(),
                result: AppendResult::Success {
                    match_index: self.log.last_index(),
                },
            });
            self.acked_index = self.log.last_index();
            let leader = self.leader;
            self.send(leader, message);
        }
    }
}
