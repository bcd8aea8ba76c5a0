//! What the group tells the operator: a log line per leader change, and,
//! with `[metrics] listen`, the values of [`crate::metrics::NodeMetrics`].
//!
//! Per turn it stores a few gauges; every [`SLOW_EVERY_US`] it copies the
//! totals the log, the peer transport and the gossip endpoint keep.

use std::collections::VecDeque;

use ordo_storage::{LogStore, NodeId};

use crate::core::{Raft, Role};
use crate::metrics::{NodeMetrics, label};

use super::peers::Peers;

/// How often the totals kept elsewhere are copied (µs).
const SLOW_EVERY_US: u64 = 250_000;
/// Intake runs kept for latency: older answers are timed from the oldest.
const RUNS_MAX: usize = 4096;

/// The group's observer.
pub struct Observer {
    metrics: Option<NodeMetrics>,
    id: NodeId,
    role: Role,
    term: u64,
    leader: NodeId,
    commit_index: u64,
    /// The current turn's time (µs, monotonic).
    turn_us: u64,
    /// `(first request id, µs)`: the requests of a turn share its time.
    runs: VecDeque<(u64, u64)>,
    slow_next_us: u64,
}

impl Observer {
    /// An observer for node `id`; `metrics` when the endpoint runs.
    pub fn new(id: NodeId, metrics: Option<NodeMetrics>) -> Self {
        Self {
            metrics,
            id,
            role: Role::Follower,
            term: 0,
            leader: 0,
            commit_index: 0,
            turn_us: 0,
            runs: VecDeque::new(),
            slow_next_us: 0,
        }
    }

    /// A turn starts at `now_us`.
    pub fn turn(&mut self, now_us: u64) {
        self.turn_us = now_us;
    }

    /// A request id was handed out in this turn.
    pub fn request(&mut self, request_id: u64) {
        if self.metrics.is_none() {
            return;
        }
        if self.runs.back().is_some_and(|&(_, us)| us == self.turn_us) {
            return;
        }
        if self.runs.len() == RUNS_MAX {
            self.runs.pop_front();
        }
        self.runs.push_back((request_id, self.turn_us));
    }

    /// `n` proposals were taken.
    pub fn proposed(&self, n: u64) {
        if let Some(metrics) = &self.metrics {
            metrics.proposals.add(n);
        }
    }

    /// The proposal of `request_id` was answered (committed or not).
    pub fn answered(&self, request_id: u64) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let run = self.runs.partition_point(|&(first, _)| first <= request_id);
        let since = self
            .runs
            .get(run.saturating_sub(1))
            .map_or(self.turn_us, |r| r.1);
        metrics
            .commit_latency
            .observe(self.turn_us.saturating_sub(since));
    }

    /// The leader appended `batches` of `entries` each.
    pub fn appended(&self, entries: impl Iterator<Item = u64>) {
        if let Some(metrics) = &self.metrics {
            for n in entries {
                metrics.batch_entries.observe(n);
            }
        }
    }

    /// The end of a turn: role, term, leader and indexes; a log line when
    /// the leader changes; every [`SLOW_EVERY_US`], the totals.
    pub fn end_turn<S: LogStore>(&mut self, raft: &Raft, applied: u64, store: &S, peers: &Peers) {
        let status = raft.status();
        if status.leader != self.leader || status.term != self.term && status.leader != 0 {
            if status.leader != 0 && status.leader != self.leader {
                tracing::info!(
                    id = self.id,
                    term = status.term,
                    leader = status.leader,
                    previous = self.leader,
                    "leader changed"
                );
                if let Some(metrics) = &self.metrics {
                    metrics.leader_changes.add(1);
                }
            } else if status.leader == 0 && self.leader != 0 {
                tracing::info!(
                    id = self.id,
                    term = status.term,
                    previous = self.leader,
                    "leader lost"
                );
            }
        }
        let campaigning = matches!(status.role, Role::PreCandidate | Role::Candidate);
        let new_campaign = campaigning
            && (status.role != self.role
                || (status.role == Role::Candidate && status.term != self.term));
        let Some(metrics) = &self.metrics else {
            self.role = status.role;
            self.term = status.term;
            self.leader = status.leader;
            return;
        };
        if new_campaign {
            metrics.elections.add(1);
        }
        if status.role != self.role || self.slow_next_us == 0 {
            for role in [
                Role::Follower,
                Role::PreCandidate,
                Role::Candidate,
                Role::Leader,
            ] {
                let on = i64::from(role == status.role);
                metrics
                    .role
                    .get_or_create(&label("role", role.as_str()))
                    .set(on);
            }
        }
        self.role = status.role;
        self.term = status.term;
        self.leader = status.leader;
        metrics.term.set(status.term as i64);
        metrics.leader.set(status.leader as i64);
        if status.commit_index > self.commit_index {
            metrics.commits.add(status.commit_index - self.commit_index);
            self.commit_index = status.commit_index;
        }
        metrics.commit_index.set(status.commit_index as i64);
        metrics.durable_index.set(status.durable_index as i64);
        metrics.applied_index.set(applied as i64);
        metrics.last_index.set(status.last_index as i64);
        if self.turn_us < self.slow_next_us {
            return;
        }
        self.slow_next_us = self.turn_us + SLOW_EVERY_US;
        self.slow(metrics, raft, status.last_index, store, peers);
    }

    fn slow<S: LogStore>(
        &self,
        metrics: &NodeMetrics,
        raft: &Raft,
        last_index: u64,
        store: &S,
        peers: &Peers,
    ) {
        if let Some(stats) = store.disk_stats() {
            metrics.log_appends.set(stats.appends);
            metrics.log_durable_writes.set(stats.syncs);
            metrics.log_entries.set(stats.entries);
            metrics.log_bytes_written.set(stats.bytes_written);
            metrics.log_fdatasyncs.set(stats.fdatasyncs);
            metrics
                .appends_per_durable_write_milli
                .set((stats.appends_per_sync() * 1000.0) as i64);
        }
        let leading = raft.role() == Role::Leader;
        let members = raft.voters().iter().chain(raft.learners());
        for &peer in members.filter(|&&p| p != self.id) {
            let key = label("peer", peer);
            let progress = raft.progress(peer).filter(|_| leading);
            let (messages, bytes, lag) = match progress {
                Some(p) => (
                    p.inflight_messages() as i64,
                    p.inflight_bytes() as i64,
                    last_index.saturating_sub(p.match_index) as i64,
                ),
                None => (0, 0, 0),
            };
            metrics
                .follower_inflight_messages
                .get_or_create(&key)
                .set(messages);
            metrics
                .follower_inflight_bytes
                .get_or_create(&key)
                .set(bytes);
            metrics.follower_lag.get_or_create(&key).set(lag);
            if let Peers::Tcp { transport, .. } = peers
                && let Some(stats) = transport.peer_stats(peer)
            {
                metrics
                    .peer_sent_bytes
                    .get_or_create(&key)
                    .set(stats.queue.bytes_sent);
                metrics
                    .peer_received_bytes
                    .get_or_create(&key)
                    .set(stats.bytes_received);
                let up = stats.state == ordo_net::transport::LinkState::Connected;
                metrics
                    .peer_connected
                    .get_or_create(&key)
                    .set(i64::from(up));
            }
        }
        if let Peers::Tcp { transport, .. } = peers {
            let errors = transport.connection_errors();
            for (reason, count) in errors.frame {
                metrics
                    .frame_errors
                    .get_or_create(&label("reason", reason))
                    .set(count);
            }
            for (reason, count) in errors.handshake {
                metrics
                    .handshake_errors
                    .get_or_create(&label("reason", reason))
                    .set(count);
            }
        }
    }
}
