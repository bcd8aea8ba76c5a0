//! Requests a follower sent to the leader and not yet answered, with the
//! time each left, so that an unanswered one can be failed in time.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

/// Request ids in flight, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Outstanding {
    /// Request id → the time it was sent. A fixed hasher, so that the core
    /// is a function of its events alone; the ids are the runtime's own
    /// counter, not chosen by a peer or client, so a fast hasher is safe.
    sent: FxHashMap<u64, u64>,
    /// Requests in sending order. Invariant: the front is live (its id is
    /// in `sent` with that time) unless the whole queue is empty; entries
    /// further back may be dead (answered) and are skipped when reached.
    order: VecDeque<SentRequest>,
}

/// One request in [`Outstanding::order`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SentRequest {
    /// When it was sent.
    sent_us: u64,
    /// Its request id.
    id: u64,
}

impl SentRequest {
    /// Whether `sent` still holds this request with this time (it was not
    /// answered, or answered and sent again later).
    fn live(&self, sent: &FxHashMap<u64, u64>) -> bool {
        sent.get(&self.id) == Some(&self.sent_us)
    }
}

impl Outstanding {
    /// Requests in flight.
    pub fn len(&self) -> usize {
        self.sent.len()
    }

    /// Checks the invariant written on `order`.
    pub fn check(&self) {
        match self.order.front() {
            Some(front) => assert!(front.live(&self.sent), "stale front {front:?}"),
            None => assert!(self.sent.is_empty(), "requests in flight but none in order"),
        }
    }

    /// Records `id` sent at `now_us`.
    pub fn insert(&mut self, id: u64, now_us: u64) {
        if self.sent.insert(id, now_us).is_none() {
            self.order.push_back(SentRequest {
                sent_us: now_us,
                id,
            });
        }
    }

    /// Removes `id`; false if it was not in flight.
    pub fn remove(&mut self, id: u64) -> bool {
        let removed = self.sent.remove(&id).is_some();
        self.clean_front();
        removed
    }

    /// When the oldest request in flight was sent.
    pub fn oldest_sent_us(&self) -> Option<u64> {
        self.order.front().map(|request| request.sent_us)
    }

    /// Removes and returns every request sent at or before `sent_before_us`.
    pub fn expire(&mut self, sent_before_us: u64) -> Vec<u64> {
        let mut expired = Vec::new();
        while let Some(&request) = self.order.front() {
            if request.sent_us > sent_before_us {
                break;
            }
            self.order.pop_front();
            if request.live(&self.sent) {
                self.sent.remove(&request.id);
                expired.push(request.id);
            }
        }
        self.clean_front();
        expired
    }

    /// Removes and returns every request, oldest first.
    pub fn take_all(&mut self) -> Vec<u64> {
        let mut all = Vec::with_capacity(self.sent.len());
        for request in self.order.drain(..) {
            if request.live(&self.sent) {
                all.push(request.id);
            }
        }
        self.sent.clear();
        all
    }

    fn clean_front(&mut self) {
        while let Some(request) = self.order.front() {
            if request.live(&self.sent) {
                break;
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Outstanding;

    #[test]
    fn oldest_tracks_answers_and_expiry() {
        let mut outstanding = Outstanding::default();
        for id in 1..=4 {
            outstanding.insert(id, id * 10);
        }
        assert!(outstanding.remove(1));
        assert!(!outstanding.remove(1));
        assert_eq!(outstanding.oldest_sent_us(), Some(20));
        assert!(outstanding.remove(3));
        assert_eq!(outstanding.expire(30), vec![2]);
        assert_eq!(outstanding.oldest_sent_us(), Some(40));
        assert_eq!(outstanding.take_all(), vec![4]);
        assert_eq!(outstanding.len(), 0);
        assert_eq!(outstanding.oldest_sent_us(), None);
    }
}
