//! Protocol-aware recovery (Alagappan et al., FAST '18): a node whose disk
//! lost or damaged state it may have acknowledged — log entries, or its
//! term and vote — must not help elect a leader that lacks what it
//! acknowledged. Raft's safety rests on every acknowledged entry and every
//! granted vote surviving; a node that lost them and voted as if nothing
//! happened could elect a leader without a committed entry (issue 16,
//! case 2: a wiped follower and a lagging one elect each other).
//!
//! So a node that starts with a [`Loss`] is *repairing*:
//! - it grants no vote and no pre-vote, never campaigns, never takes over
//!   a leadership transfer, and echoes no read round;
//! - it still takes appends from a leader, but flags its acknowledgements
//!   `repairing`: the leader counts it towards neither commit, reads nor
//!   check-quorum (having lost its own term, it cannot tell a deposed
//!   leader from a live one, and must not let a deposed one commit), and
//!   appends a barrier no-op for it;
//! - a heartbeat's commit index applies only up to what it knows matches
//!   this leader (the leader's match for it may predate the loss);
//! - it is repaired once it durably holds, and has seen committed, the
//!   leader's log through one past the leader's last index when it first
//!   heard from that leader (every heartbeat carries the index). That
//!   entry was committed without this node, after its loss: the leader was
//!   live then, so by Leader Completeness its log held every entry ever
//!   committed (this node's vote counted for none of the leaders since).
//!   Whatever else this node had acknowledged was never committed and can
//!   only be committed again with fresh acknowledgements.
//!
//! The runtime records the loss durably before the node takes part and
//! clears it on [`Command::Repaired`], so a crash mid-repair restarts the
//! repair instead of forgetting it.

use ordo_storage::{Index, NodeId, Term};

use super::io::Command;
use super::raft::Raft;

/// Durable state this node may have acknowledged and no longer holds, as
/// its storage found at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loss {
    /// The highest index this node knows it held before the loss (intact
    /// entries found past the damage); `0` when unknown.
    pub held_through: Index,
    /// The term and vote were lost as well (a wiped data directory).
    pub hard_state_lost: bool,
    /// What storage found (file, offset, reason), for logs and status.
    pub reason: String,
}

/// A repair in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Repair {
    pub(super) loss: Loss,
    /// The index this node must hold, matching the leader, to be repaired;
    /// set by the first heartbeat of a leader of `target_term`.
    pub(super) target: Option<Index>,
    /// The term whose leader set `target`.
    pub(super) target_term: Term,
    /// The leader that set it.
    pub(super) target_leader: NodeId,
}

impl Raft {
    /// Whether this node is repairing a loss (it takes no part in
    /// elections).
    pub fn repairing(&self) -> bool {
        self.repair.is_some()
    }

    /// Why this node is repairing, if it is: what storage found (file,
    /// offset, the indexes lost), for `ordo status` and client errors.
    pub fn repair_reason(&self) -> Option<&str> {
        self.repair
            .as_ref()
            .map(|repair| repair.loss.reason.as_str())
    }

    /// A leader's heartbeat told its last index: the repair's target, once
    /// per leader.
    pub(super) fn repair_learn_target(&mut self, leader: NodeId, leader_last: Index) {
        let term = self.term;
        let Some(repair) = self.repair.as_mut() else {
            return;
        };
        if repair.target.is_some() && repair.target_term == term && repair.target_leader == leader {
            return;
        }
        // One past the leader's last index: the leader must commit an
        // entry it appended after this node lost its state (it appends a
        // barrier no-op for a repairing follower that caught up,
        // `append_repair_barrier`). Its commit index alone could predate a
        // newer term this node forgot. Entries this node held beyond the
        // leader's log (`held_through`) were never committed: a committed
        // one is in every later leader's log, this node's vote having
        // counted for none of them.
        let target = leader_last + 1;
        tracing::info!(
            id = self.id,
            leader,
            term,
            target,
            "repairing: catching up from the leader before taking part in elections"
        );
        repair.target = Some(target);
        repair.target_term = term;
        repair.target_leader = leader;
        self.maybe_finish_repair();
    }

    /// Ends the repair once this node durably holds the leader's log up to
    /// the target.
    pub(super) fn maybe_finish_repair(&mut self) {
        let Some(repair) = &self.repair else { return };
        let Some(target) = repair.target else { return };
        let current = repair.target_term == self.term && repair.target_leader == self.leader;
        // The leader committed the target without this node (a repairing
        // node's acknowledgements do not count): it leads its term for
        // real, not a deposed leader this node cannot tell from a live one
        // after losing its own term.
        let held = self
            .matched_leader_index
            .min(self.log.durable())
            .min(self.log.commit());
        if !current || held < target {
            return;
        }
        tracing::info!(
            id = self.id,
            term = self.term,
            leader = self.leader,
            index = target,
            reason = %repair.loss.reason,
            "repaired: holds the leader's log through the target again; taking part in elections"
        );
        self.repair = None;
        self.commands.push(Command::Repaired);
    }

    /// A new term or leader: the target must come from the new leader.
    pub(super) fn repair_leader_changed(&mut self) {
        if let Some(repair) = self.repair.as_mut()
            && (repair.target_term != self.term || repair.target_leader != self.leader)
        {
            repair.target = None;
        }
    }
}
