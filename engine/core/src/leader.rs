//! What only a leader holds: its view of each follower, the entries it
//! appended in its term and who waits for them, a membership change or a
//! leadership transfer in progress, and its timers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ordo_storage::{ClientId, Index, NodeId, Seq};

use super::election::Transfer;
use super::progress::{BatchSpan, Progress};
use super::proposals::{Origin, PendingEntry};
use super::reconfig::MembershipWaiter;

/// Most removed nodes a leader keeps sending the log to until they learn
/// of their removal.
pub(super) const DEPARTING_MAX: usize = 16;

/// A leader's own state: `Raft::leader_state` is `Some` exactly while the
/// node leads. Each term of leadership starts from a fresh one
/// ([`LeaderState::new`]); stepping down takes it and answers everything
/// it holds (`Raft::step_down_leader_state`), so nothing of one term's
/// leadership outlives it.
#[derive(Debug)]
pub(super) struct LeaderState {
    /// The leader's view of every other member, and of the `departing`
    /// nodes. Invariant: the keys are exactly the other members of the
    /// configuration in force, plus `departing`.
    pub(super) progress: BTreeMap<NodeId, Progress>,
    /// Nodes the configuration in force removed, still sent the log until
    /// they hold the entry that removed them (so that they stop
    /// campaigning and can tell their clients). Not members: they count
    /// for nothing. Invariant: each has a `progress`, none is a member, at
    /// most [`DEPARTING_MAX`].
    pub(super) departing: BTreeSet<NodeId>,
    /// The membership change this leader appended and answers once it
    /// commits.
    pub(super) membership_waiter: Option<MembershipWaiter>,
    /// Index of this leader's no-op; proposals wait until it is applied, so
    /// that the session table covers every earlier entry.
    pub(super) term_start_index: Index,
    /// Entries appended in this term and not yet answered, by index.
    /// Invariant: strictly increasing indexes, all `> log.applied()`.
    pub(super) pending: VecDeque<PendingEntry>,
    /// Retries that arrived while the original was uncommitted. Ordered:
    /// a leader stepping down answers them in index order.
    pub(super) extra_waiters: BTreeMap<Index, Vec<Origin>>,
    /// Sessions of `pending` entries. Ordered rather than hashed: clients
    /// choose their ids and sequence numbers (no hash flooding), and the
    /// core must be a function of its events alone.
    pub(super) pending_sessions: BTreeMap<(ClientId, Seq), Index>,
    /// This leader's batches beyond its commit, oldest first.
    pub(super) uncommitted: VecDeque<BatchSpan>,
    /// Sum of the bytes in `uncommitted`; bounded by `uncommitted_bytes_max`
    /// (proposals wait in the queue beyond it).
    pub(super) uncommitted_bytes: usize,
    /// When idle followers must be told the commit index if no
    /// AppendEntries has carried it by then (`commit_notify_delay_us`).
    /// Invariant: after a leader's turn, `Some` exactly while an idle
    /// follower is behind (`Raft::notify_commit`).
    pub(super) commit_notify_due_us: Option<u64>,
    /// A leadership transfer in progress: no proposals meanwhile.
    pub(super) transfer: Option<Transfer>,
    /// The next heartbeat is due at this time.
    pub(super) heartbeat_deadline_us: u64,
    /// The next check-quorum round is due at this time.
    pub(super) check_quorum_deadline_us: u64,
}

impl LeaderState {
    /// A new leader's state: every follower probed from `next_index`,
    /// timers started at `now_us`.
    pub(super) fn new(
        followers: impl Iterator<Item = NodeId>,
        next_index: Index,
        now_us: u64,
        heartbeat_interval_us: u64,
        check_quorum_interval_us: u64,
    ) -> Self {
        Self {
            progress: followers
                .map(|peer| (peer, Progress::new(next_index, now_us)))
                .collect(),
            departing: BTreeSet::new(),
            membership_waiter: None,
            term_start_index: 0,
            pending: VecDeque::new(),
            extra_waiters: BTreeMap::new(),
            pending_sessions: BTreeMap::new(),
            uncommitted: VecDeque::new(),
            uncommitted_bytes: 0,
            commit_notify_due_us: None,
            transfer: None,
            heartbeat_deadline_us: now_us + heartbeat_interval_us,
            check_quorum_deadline_us: now_us + check_quorum_interval_us,
        }
    }

    /// Checks the invariants that need nothing but this state and the
    /// applied index; `Raft::check_invariants` checks those that relate it
    /// to the log and the configuration.
    pub(super) fn check(&self, applied: Index) {
        assert!(self.departing.len() <= DEPARTING_MAX);
        for id in &self.departing {
            assert!(self.progress.contains_key(id), "departing {id} untracked");
        }
        let mut previous = applied;
        for entry in &self.pending {
            assert!(
                entry.index > previous,
                "pending not increasing past applied"
            );
            previous = entry.index;
        }
        for &index in self.pending_sessions.values() {
            assert!(index > applied, "a session of an applied entry is pending");
        }
        assert_eq!(
            self.uncommitted_bytes,
            self.uncommitted
                .iter()
                .map(|span| span.bytes)
                .sum::<usize>()
        );
        for (earlier, later) in self.uncommitted.iter().zip(self.uncommitted.iter().skip(1)) {
            assert!(
                earlier.last_index < later.last_index,
                "{earlier:?} {later:?}"
            );
        }
    }
}

/// `peer`'s progress, to change it, if this node leads and tracks `peer`.
/// A function of the field rather than a method of `Raft`, so that callers
/// may hold it while they read the core's other fields.
pub(super) fn progress_mut(
    leader_state: &mut Option<LeaderState>,
    peer: NodeId,
) -> Option<&mut Progress> {
    leader_state.as_mut()?.progress.get_mut(&peer)
}
