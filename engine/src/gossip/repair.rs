//! Gap detection and repair timing. Ids are dense, so "a message with id
//! `n` exists" says every id below `n` exists too: the node keeps the
//! highest id it knows of and, for ranges of ids, since when it has known
//! them, so that the first missing id is repaired only once it has had a
//! fair chance to arrive by the tree (Plumtree's IHAVE timer, per range
//! rather than per id, which keeps the memory bounded however far behind
//! the node is).

use std::collections::VecDeque;

use ordo_storage::MessageId;

/// Ranges of "known since" kept; beyond it adjacent ranges merge (keeping
/// the later time, so a repair is never early, only possibly late by one
/// range's age).
const KNOWN_RANGES_MAX: usize = 64;

/// What the node knows exists and which repair is in flight.
#[derive(Clone, Debug, Default)]
pub struct Repair {
    /// The highest id known to exist.
    known_max: MessageId,
    /// Every id up to here was delivered.
    delivered: MessageId,
    /// `(last, since_us)`: the ids after the previous entry's `last` up to
    /// `last` have been known since `since_us`.
    /// Invariant: `last` strictly increases, the final one is `known_max`,
    /// at most [`KNOWN_RANGES_MAX`] entries.
    known: VecDeque<(MessageId, u64)>,
    /// The lowest missing id the current repair is for.
    target: MessageId,
    /// Repairs sent for `target` so far.
    attempts: u32,
    /// When the repair in flight for `target` is given up on.
    retry_at_us: u64,
}

impl Repair {
    /// Nothing known beyond `delivered`.
    pub fn new(delivered: MessageId) -> Self {
        Self {
            known_max: delivered,
            delivered,
            ..Self::default()
        }
    }

    /// The highest id known to exist.
    pub fn known_max(&self) -> MessageId {
        self.known_max
    }

    /// Every id up to `id` exists, as of `since_us` (a time in the future
    /// defers its repair). Ids already known keep the earlier of the two
    /// times: an announcement shortens the wait that a later id (which
    /// only proves existence) set.
    pub fn learn(&mut self, id: MessageId, since_us: u64) {
        if id <= self.delivered {
            return;
        }
        let mut previous_last = self.delivered;
        let mut split = None;
        for (at, entry) in self.known.iter_mut().enumerate() {
            if entry.0 <= id {
                entry.1 = entry.1.min(since_us);
                previous_last = entry.0;
            } else {
                if since_us < entry.1 && previous_last < id {
                    split = Some(at);
                }
                break;
            }
        }
        if let Some(at) = split
            && self.known.len() < KNOWN_RANGES_MAX
        {
            self.known.insert(at, (id, since_us));
        }
        if id <= self.known_max {
            return;
        }
        self.known_max = id;
        if self.known.len() == KNOWN_RANGES_MAX
            && let Some(last) = self.known.back_mut()
        {
            last.0 = id;
            last.1 = last.1.max(since_us);
            return;
        }
        self.known.push_back((id, since_us));
    }

    /// Everything up to `delivered` has been delivered.
    pub fn delivered(&mut self, delivered: MessageId) {
        self.delivered = self.delivered.max(delivered);
        while let Some(&(last, _)) = self.known.front() {
            if last > delivered {
                break;
            }
            self.known.pop_front();
        }
        if self.known_max < delivered {
            self.known_max = delivered;
        }
        if self.target <= delivered {
            self.target = 0;
            self.attempts = 0;
            self.retry_at_us = 0;
        }
    }

    /// When a repair of `first_missing` is due.
    pub fn due_at_us(&self, first_missing: MessageId, graft_timeout_us: u64) -> Option<u64> {
        if first_missing > self.known_max {
            return None;
        }
        if self.target == first_missing {
            return Some(self.retry_at_us);
        }
        let since = self
            .known
            .iter()
            .find(|&&(last, _)| last >= first_missing)
            .map_or(0, |&(_, since)| since);
        Some(since.saturating_add(graft_timeout_us))
    }

    /// Repairs already sent for `first_missing`.
    pub fn attempts(&self, first_missing: MessageId) -> u32 {
        if self.target == first_missing {
            self.attempts
        } else {
            0
        }
    }

    /// A repair for `first_missing` was sent; retry after `retry_at_us`.
    pub fn sent(&mut self, first_missing: MessageId, retry_at_us: u64) {
        if self.target != first_missing {
            self.target = first_missing;
            self.attempts = 0;
        }
        self.attempts = self.attempts.saturating_add(1);
        self.retry_at_us = retry_at_us;
    }

    /// Nothing above `max` exists (a voter said so): forget higher ids.
    pub fn clamp(&mut self, max: MessageId) {
        let max = max.max(self.delivered);
        if max >= self.known_max {
            return;
        }
        self.known_max = max;
        let mut since = None;
        while let Some(&(last, at)) = self.known.back() {
            if last <= max {
                break;
            }
            since = Some(at);
            self.known.pop_back();
        }
        let covered = self.known.back().map_or(self.delivered, |&(last, _)| last);
        if let Some(since) = since
            && covered < max
        {
            self.known.push_back((max, since));
        }
    }

    /// The repair of `first_missing` failed in a way no other gossip peer
    /// is likely to fix: count it as `attempts` tries and retry at once.
    pub fn escalate(&mut self, first_missing: MessageId, attempts: u32, now_us: u64) {
        if self.target == first_missing {
            self.attempts = self.attempts.max(attempts);
            self.retry_at_us = self.retry_at_us.min(now_us);
        }
    }

    /// Checks the invariants written on the fields.
    pub fn check(&self) {
        assert!(self.known.len() <= KNOWN_RANGES_MAX);
        let mut previous = self.delivered;
        for &(last, _) in &self.known {
            assert!(last > previous, "known ranges not increasing");
            previous = last;
        }
        if let Some(&(last, _)) = self.known.back() {
            assert_eq!(last, self.known_max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_waits_for_the_graft_timeout_of_the_first_missing_id() {
        let mut repair = Repair::new(0);
        repair.learn(5, 1_000);
        repair.learn(9, 2_000);
        repair.check();
        assert_eq!(repair.due_at_us(1, 100), Some(1_100));
        // Ids 6..=9 were learned later: their timer runs from then.
        repair.delivered(5);
        assert_eq!(repair.due_at_us(6, 100), Some(2_100));
        repair.delivered(9);
        assert_eq!(repair.due_at_us(10, 100), None);
    }

    #[test]
    fn an_announcement_shortens_the_wait_a_later_id_set() {
        let mut repair = Repair::new(0);
        repair.learn(9, 5_000);
        repair.learn(4, 1_000);
        repair.check();
        assert_eq!(repair.due_at_us(1, 100), Some(1_100));
        assert_eq!(repair.due_at_us(5, 100), Some(5_100));
        repair.learn(9, 2_000);
        assert_eq!(repair.due_at_us(5, 100), Some(2_100));
        assert_eq!(repair.known_max(), 9);
    }

    #[test]
    fn a_voter_clamps_what_a_liar_announced() {
        let mut repair = Repair::new(0);
        repair.learn(5, 100);
        repair.learn(1_000_000, 200);
        repair.clamp(8);
        repair.check();
        assert_eq!(repair.known_max(), 8);
        assert_eq!(repair.due_at_us(6, 0), Some(200));
        repair.delivered(8);
        assert_eq!(repair.due_at_us(9, 0), None);
    }

    #[test]
    fn attempts_count_per_missing_id_and_reset_on_progress() {
        let mut repair = Repair::new(0);
        repair.learn(10, 0);
        repair.sent(1, 500);
        repair.sent(1, 900);
        assert_eq!(repair.attempts(1), 2);
        assert_eq!(repair.due_at_us(1, 100), Some(900));
        repair.delivered(4);
        assert_eq!(repair.attempts(5), 0);
        assert_eq!(repair.due_at_us(5, 100), Some(100));
    }

    #[test]
    fn ranges_stay_bounded_and_never_make_a_repair_early() {
        let mut repair = Repair::new(0);
        for i in 1..=1_000u64 {
            repair.learn(i, i * 10);
        }
        repair.check();
        assert_eq!(repair.known_max(), 1_000);
        for i in 1..=1_000u64 {
            assert!(repair.due_at_us(i, 0).unwrap() >= i * 10, "id {i} early");
        }
    }
}
