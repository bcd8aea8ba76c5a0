//! What the leader knows of each follower (etcd raft's `tracker.Progress`).

use std::collections::VecDeque;

use ordo_storage::Index;

/// The end and size of batches sent (or appended) together: how the
/// leader's windows count what is in flight or uncommitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BatchSpan {
    /// The last index the batches hold.
    pub(super) last_index: Index,
    /// Their encoded bytes.
    pub(super) bytes: usize,
}

/// How the leader currently replicates to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// The leader does not know where the follower's log matches. One
    /// AppendEntries at a time until a success.
    Probe,
    /// The follower's log matches; AppendEntries stream optimistically,
    /// bounded by the inflight window.
    Replicate,
    /// The follower needs entries the leader compacted; a snapshot is being
    /// sent.
    Snapshot {
        /// The index the snapshot covers.
        index: Index,
    },
}

/// The leader's view of one follower.
#[derive(Clone, Debug)]
pub struct Progress {
    /// How it is replicated to.
    pub state: ReplicationState,
    /// Highest index known to match the leader's log and to be durable on
    /// the follower. Invariant: `match_index < next_index`.
    pub match_index: Index,
    /// The next index to send.
    pub next_index: Index,
    /// In `Probe`: a probe is outstanding; wait for its answer (or the next
    /// heartbeat answer) before sending another.
    pub probe_sent: bool,
    /// In `Probe`: what the outstanding probe carried.
    /// A follower may acknowledge its durable prefix before the probe's
    /// entries are synced; on switching to `Replicate` the probe then counts
    /// as in flight instead of being sent again.
    probe_carried: Option<BatchSpan>,
    /// In `Replicate`: what each message sent and not yet acknowledged
    /// carried, oldest first.
    /// Invariant: last indexes strictly increase and are `< next_index`.
    inflight: VecDeque<BatchSpan>,
    /// Sum of `inflight`'s bytes.
    inflight_bytes: usize,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// Highest read round the follower echoed.
    pub read_round: u64,
    /// The leader's read round when `match_index` last advanced: a
    /// heartbeat response echoing a round no later than this may have
    /// been answered before the acknowledgement it seems to contradict.
    pub match_round: u64,
    /// A log read for this follower is outstanding.
    pub log_read_pending: bool,
    /// When `match_index` last advanced or the state last changed, for
    /// detecting a stalled pipeline.
    pub last_progress_us: u64,
    /// Highest commit index the follower was told it may apply (the commit
    /// of an AppendEntries capped at its last entry, or of a heartbeat).
    /// Forgotten when probing starts again (a message may have been lost).
    /// Invariant: at most the leader's commit index (`Raft::check_invariants`).
    pub commit_sent: Index,
    /// The follower said it is repairing a loss: its match does not count
    /// towards commit (it may be acknowledging for a leader that lost its
    /// term, having lost its own record of the newer one).
    pub repairing: bool,
}

impl Progress {
    /// A follower the leader knows nothing about: probe from `next_index`.
    pub fn new(next_index: Index, now_us: u64) -> Self {
        Self {
            state: ReplicationState::Probe,
            match_index: 0,
            next_index,
            probe_sent: false,
            probe_carried: None,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            recent_active: true,
            read_round: 0,
            match_round: 0,
            log_read_pending: false,
            last_progress_us: now_us,
            commit_sent: 0,
            repairing: false,
        }
    }

    /// The follower holds only up to `last_index` now (it lost entries it
    /// acknowledged): nothing it holds is known to match any more (what it
    /// refilled may have come from another leader), so probe again from
    /// its last index.
    pub fn regress(&mut self, last_index: Index, now_us: u64) {
        self.match_index = 0;
        self.next_index = last_index + 1;
        self.commit_sent = 0;
        self.reset(ReplicationState::Probe, now_us);
    }

    /// Checks the invariants written on the fields.
    pub fn check(&self) {
        assert!(self.match_index < self.next_index, "{self:?}");
        let mut previous = self.match_index;
        for span in &self.inflight {
            assert!(
                span.last_index > previous && span.last_index < self.next_index,
                "{self:?}"
            );
            previous = span.last_index;
        }
        assert_eq!(
            self.inflight_bytes,
            self.inflight.iter().map(|span| span.bytes).sum::<usize>(),
            "{self:?}"
        );
    }

    fn reset(&mut self, state: ReplicationState, now_us: u64) {
        self.state = state;
        self.probe_sent = false;
        self.probe_carried = None;
        self.inflight.clear();
        self.inflight_bytes = 0;
        self.last_progress_us = now_us;
    }

    /// Back to probing from just after the match.
    pub fn become_probe(&mut self, now_us: u64) {
        let next = match self.state {
            ReplicationState::Snapshot { index } => (self.match_index + 1).max(index + 1),
            _ => self.match_index + 1,
        };
        self.reset(ReplicationState::Probe, now_us);
        self.commit_sent = 0;
        self.next_index = next;
    }

    /// Stream from just after the match, or after what the last probe
    /// carried if the follower has not acknowledged all of it yet.
    pub fn become_replicate(&mut self, now_us: u64) {
        let carried = self
            .probe_carried
            .filter(|span| span.last_index > self.match_index);
        self.reset(ReplicationState::Replicate, now_us);
        self.next_index = self.match_index + 1;
        if let Some(span) = carried {
            self.inflight.push_back(span);
            self.inflight_bytes += span.bytes;
            self.next_index = span.last_index + 1;
        }
    }

    /// A snapshot covering `index` is on its way.
    pub fn become_snapshot(&mut self, index: Index, now_us: u64) {
        self.reset(ReplicationState::Snapshot { index }, now_us);
    }

    /// The follower acknowledged `index`. Returns whether the match advanced.
    pub fn maybe_update(&mut self, index: Index, now_us: u64) -> bool {
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
            self.probe_sent = false;
            self.last_progress_us = now_us;
            while self
                .inflight
                .front()
                .is_some_and(|span| span.last_index <= index)
            {
                let span = self.inflight.pop_front().expect("checked");
                self.inflight_bytes -= span.bytes;
            }
        }
        self.next_index = self.next_index.max(index + 1);
        advanced
    }

    /// The follower rejected an append at `rejected`; retry from
    /// `next_index` (computed from its hint). Returns false for a stale
    /// rejection, which changes nothing.
    pub fn maybe_decrease_to(&mut self, rejected: Index, next_index: Index, now_us: u64) -> bool {
        match self.state {
            ReplicationState::Replicate => {
                if rejected <= self.match_index {
                    return false;
                }
                self.become_probe(now_us);
                self.next_index = next_index.max(self.match_index + 1);
                true
            }
            ReplicationState::Probe => {
                if rejected != self.next_index - 1 {
                    return false;
                }
                self.next_index =
                    next_index.clamp(self.match_index + 1, rejected.max(self.match_index + 1));
                self.probe_sent = false;
                true
            }
            ReplicationState::Snapshot { .. } => false,
        }
    }

    /// Whether the leader may send entries now.
    pub fn can_send(&self, inflight_messages_max: usize, inflight_bytes_max: usize) -> bool {
        match self.state {
            ReplicationState::Probe => !self.probe_sent,
            ReplicationState::Replicate => {
                self.inflight.len() < inflight_messages_max
                    && self.inflight_bytes < inflight_bytes_max
            }
            ReplicationState::Snapshot { .. } => false,
        }
    }

    /// Room left in the byte window.
    pub fn inflight_bytes_room(&self, inflight_bytes_max: usize) -> usize {
        inflight_bytes_max.saturating_sub(self.inflight_bytes)
    }

    /// Records an AppendEntries carrying entries up to `last` (`bytes` of
    /// batches).
    pub fn sent(&mut self, last: Index, bytes: usize) {
        match self.state {
            ReplicationState::Replicate => {
                if last >= self.next_index {
                    self.inflight.push_back(BatchSpan {
                        last_index: last,
                        bytes,
                    });
                    self.inflight_bytes += bytes;
                    self.next_index = last + 1;
                }
            }
            ReplicationState::Probe => {
                self.probe_sent = true;
                self.probe_carried = (last >= self.next_index).then_some(BatchSpan {
                    last_index: last,
                    bytes,
                });
            }
            ReplicationState::Snapshot { .. } => {}
        }
    }

    /// Messages in flight.
    pub fn inflight_messages(&self) -> usize {
        self.inflight.len()
    }

    /// Bytes in flight.
    pub fn inflight_bytes(&self) -> usize {
        self.inflight_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_messages_and_bytes() {
        let mut progress = Progress::new(1, 0);
        progress.maybe_update(0, 0);
        progress.become_replicate(0);
        for last in 1..=3 {
            assert!(progress.can_send(3, 1_000));
            progress.sent(last * 10, 100);
        }
        assert!(!progress.can_send(3, 1_000));
        assert_eq!(progress.next_index, 31);
        assert!(progress.maybe_update(20, 1));
        assert_eq!(progress.inflight_messages(), 1);
        assert!(progress.can_send(3, 1_000));
        assert!(!progress.can_send(3, 100));
        progress.check();
    }

    #[test]
    fn stale_rejections_are_ignored() {
        let mut progress = Progress::new(11, 0);
        progress.maybe_update(10, 0);
        progress.become_replicate(0);
        progress.sent(15, 10);
        assert!(!progress.maybe_decrease_to(9, 5, 0));
        assert!(progress.maybe_decrease_to(12, 12, 0));
        assert_eq!(progress.state, ReplicationState::Probe);
        assert_eq!(progress.next_index, 12);
        assert!(
            !progress.maybe_decrease_to(15, 3, 0),
            "not the outstanding probe"
        );
        assert!(progress.maybe_decrease_to(11, 3, 0));
        assert_eq!(progress.next_index, 11, "never below match + 1");
    }
}
