//! In-order, exactly-once delivery over dense ids: the delivered watermark
//! plus a bounded buffer of the messages received above it. Together they
//! are also the dedup set: an id is seen iff it is at or below the
//! watermark or buffered, so deduplication costs no memory beyond the
//! reorder buffer, however long the node runs.

use std::collections::BTreeMap;

use ordo_storage::MessageId;

use super::GossipMessage;

/// What the buffer makes of a message id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Delivered or buffered already (or id 0, which no message has).
    Seen,
    /// New and within bounds: verify it, then [`ReorderBuffer::insert`].
    New,
    /// New, but beyond the window or the byte bound: dropped for now; it
    /// is pulled once the watermark has moved up.
    OutOfWindow,
}

/// The delivered watermark and the messages waiting above it.
#[derive(Clone, Debug)]
pub struct ReorderBuffer {
    /// Every id up to here was delivered, exactly once, in order.
    delivered: MessageId,
    /// Invariant: every key is in `(delivered + 1, delivered + window]`
    /// (`delivered + 1` itself never waits: it is delivered at once).
    pending: BTreeMap<MessageId, GossipMessage>,
    /// Invariant: the sum of `size_bytes` over `pending`, at most
    /// `bytes_max`.
    pending_bytes: usize,
    window: u64,
    bytes_max: usize,
}

impl ReorderBuffer {
    /// A buffer that has delivered every id up to `delivered` (the
    /// persisted watermark of a restarted node, or 0).
    pub fn new(delivered: MessageId, window: u64, bytes_max: usize) -> Self {
        Self {
            delivered,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            window,
            bytes_max,
        }
    }

    /// The delivered watermark.
    pub fn delivered(&self) -> MessageId {
        self.delivered
    }

    /// Messages waiting for a gap below them to close.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Bytes of the waiting messages.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Whether `id` was delivered or is buffered.
    pub fn is_seen(&self, id: MessageId) -> bool {
        id == 0 || id <= self.delivered || self.pending.contains_key(&id)
    }

    /// Classifies a message of `size_bytes` with `id` before the (costly)
    /// verification.
    pub fn admission(&self, id: MessageId, size_bytes: usize) -> Admission {
        if self.is_seen(id) {
            return Admission::Seen;
        }
        // The next id to deliver is always admitted: it leaves the buffer
        // at once, and refusing it could stall delivery for good.
        if id == self.delivered.saturating_add(1) {
            return Admission::New;
        }
        if id - self.delivered > self.window || self.pending_bytes + size_bytes > self.bytes_max {
            return Admission::OutOfWindow;
        }
        Admission::New
    }

    /// Takes a verified message that [`Self::admission`] called
    /// [`Admission::New`], and returns the messages now deliverable, in id
    /// order (the watermark has moved past them).
    pub fn insert(&mut self, message: GossipMessage) -> Vec<GossipMessage> {
        debug_assert_eq!(
            self.admission(message.id, message.size_bytes()),
            Admission::New
        );
        let mut ready = Vec::new();
        if message.id == self.delivered.saturating_add(1) {
            self.delivered += 1;
            ready.push(message);
            while let Some(entry) = self.pending.first_entry() {
                if *entry.key() != self.delivered.saturating_add(1) {
                    break;
                }
                let next = entry.remove();
                self.pending_bytes -= next.size_bytes();
                self.delivered += 1;
                ready.push(next);
            }
        } else {
            self.pending_bytes += message.size_bytes();
            self.pending.insert(message.id, message);
        }
        ready
    }

    /// Which of the 64 ids after the watermark are buffered: bit `i` for
    /// id `delivered + 1 + i`.
    pub fn above_bitmap(&self) -> u64 {
        let mut bits = 0u64;
        let last = self.delivered.saturating_add(64);
        for &id in self
            .pending
            .range(self.delivered.saturating_add(1)..=last)
            .map(|(id, _)| id)
        {
            bits |= 1 << (id - self.delivered - 1);
        }
        bits
    }

    /// A buffered message (to serve a graft or a pull).
    pub fn get(&self, id: MessageId) -> Option<&GossipMessage> {
        self.pending.get(&id)
    }

    /// The first run of missing ids, `[delivered + 1, end]`, given that
    /// every id up to `known_max` exists; `None` if nothing is missing.
    pub fn first_gap(&self, known_max: MessageId) -> Option<(MessageId, MessageId)> {
        if known_max <= self.delivered {
            return None;
        }
        let from = self.delivered.saturating_add(1);
        let end = match self.pending.keys().next() {
            Some(&first) => (first - 1).min(known_max),
            None => known_max,
        };
        Some((from, end))
    }

    /// Checks the invariants written on the fields.
    pub fn check(&self) {
        let mut bytes = 0;
        for (&id, message) in &self.pending {
            assert_eq!(id, message.id);
            assert!(
                id > self.delivered.saturating_add(1) && id - self.delivered <= self.window,
                "pending id {id} outside the window above {}",
                self.delivered
            );
            bytes += message.size_bytes();
        }
        assert_eq!(bytes, self.pending_bytes);
        assert!(self.pending_bytes <= self.bytes_max);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn message(id: MessageId) -> GossipMessage {
        GossipMessage {
            id,
            index: id + 10,
            term: 1,
            ts: id,
            payload: Bytes::from(vec![0u8; 8]),
            token: Bytes::new(),
        }
    }

    fn ids(messages: &[GossipMessage]) -> Vec<MessageId> {
        messages.iter().map(|m| m.id).collect()
    }

    #[test]
    fn delivers_in_order_exactly_once_whatever_the_arrival_order() {
        let mut buffer = ReorderBuffer::new(0, 100, 1 << 20);
        let mut delivered = Vec::new();
        for id in [3, 1, 3, 5, 2, 2, 4, 1, 6] {
            if buffer.admission(id, 40) == Admission::New {
                delivered.extend(ids(&buffer.insert(message(id))));
            }
            buffer.check();
        }
        assert_eq!(delivered, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(buffer.delivered(), 6);
        assert_eq!(buffer.pending_len(), 0);
    }

    #[test]
    fn dedup_window_is_watermark_plus_pending() {
        let mut buffer = ReorderBuffer::new(10, 4, 1 << 20);
        assert!(buffer.is_seen(0), "id 0 is never a message");
        assert!(buffer.is_seen(10) && buffer.is_seen(1));
        assert_eq!(buffer.admission(11, 40), Admission::New);
        assert_eq!(buffer.admission(14, 40), Admission::New);
        assert_eq!(buffer.admission(15, 40), Admission::OutOfWindow);
        assert!(buffer.insert(message(13)).is_empty());
        assert_eq!(buffer.admission(13, 40), Admission::Seen);
        assert_eq!(ids(&buffer.insert(message(11))), vec![11]);
        // The window slid: 15 now fits.
        assert_eq!(buffer.admission(15, 40), Admission::New);
    }

    #[test]
    fn byte_bound_holds_but_never_blocks_the_next_id() {
        let size = message(1).size_bytes();
        let mut buffer = ReorderBuffer::new(0, 100, 2 * size);
        buffer.insert(message(3));
        buffer.insert(message(4));
        assert_eq!(buffer.admission(5, size), Admission::OutOfWindow);
        assert_eq!(buffer.admission(1, size), Admission::New);
        assert_eq!(ids(&buffer.insert(message(1))), vec![1]);
        assert_eq!(ids(&buffer.insert(message(2))), vec![2, 3, 4]);
        assert_eq!(buffer.pending_bytes(), 0);
        buffer.check();
    }

    #[test]
    fn gap_detection_finds_the_first_missing_run() {
        let mut buffer = ReorderBuffer::new(4, 100, 1 << 20);
        assert_eq!(buffer.first_gap(4), None);
        assert_eq!(buffer.first_gap(9), Some((5, 9)));
        buffer.insert(message(8));
        assert_eq!(buffer.first_gap(9), Some((5, 7)));
        assert_eq!(buffer.first_gap(6), Some((5, 6)));
        buffer.insert(message(5));
        assert_eq!(buffer.first_gap(9), Some((6, 7)));
    }

    #[test]
    fn restart_resumes_after_the_persisted_watermark() {
        let mut buffer = ReorderBuffer::new(41, 10, 1 << 20);
        assert_eq!(buffer.admission(41, 40), Admission::Seen);
        assert_eq!(ids(&buffer.insert(message(42))), vec![42]);
    }
}
