//! Recently delivered (or published) messages, kept to answer grafts and
//! pulls. Bounded by count and bytes; the oldest ids go first, since a
//! peer that lags further than the cache reaches is served by a voter.

use std::collections::BTreeMap;

use ordo_storage::MessageId;

use super::GossipMessage;

/// A bounded map from id to message.
#[derive(Clone, Debug)]
pub struct MessageCache {
    messages: BTreeMap<MessageId, GossipMessage>,
    /// Invariant: the sum of `size_bytes` over `messages`.
    bytes: usize,
    messages_max: usize,
    bytes_max: usize,
}

impl MessageCache {
    /// An empty cache with these bounds.
    pub fn new(messages_max: usize, bytes_max: usize) -> Self {
        Self {
            messages: BTreeMap::new(),
            bytes: 0,
            messages_max,
            bytes_max,
        }
    }

    /// Keeps `message`, evicting the lowest ids to stay within bounds.
    pub fn insert(&mut self, message: GossipMessage) {
        if message.size_bytes() > self.bytes_max {
            return;
        }
        self.bytes += message.size_bytes();
        if let Some(old) = self.messages.insert(message.id, message) {
            self.bytes -= old.size_bytes();
        }
        while self.messages.len() > self.messages_max || self.bytes > self.bytes_max {
            let Some((_, evicted)) = self.messages.pop_first() else {
                break;
            };
            self.bytes -= evicted.size_bytes();
        }
    }

    /// The message with `id`, if kept.
    pub fn get(&self, id: MessageId) -> Option<&GossipMessage> {
        self.messages.get(&id)
    }

    /// The kept messages in `[from, to]`, at most `count_max` of them and
    /// `bytes_max` bytes (but at least one if any is kept).
    pub fn range(
        &self,
        from: MessageId,
        to: MessageId,
        count_max: u64,
        bytes_max: usize,
    ) -> Vec<GossipMessage> {
        let mut out = Vec::new();
        let mut bytes = 0;
        if from > to {
            return out;
        }
        for message in self.messages.range(from..=to).map(|(_, m)| m) {
            if out.len() as u64 >= count_max
                || (!out.is_empty() && bytes + message.size_bytes() > bytes_max)
            {
                break;
            }
            bytes += message.size_bytes();
            out.push(message.clone());
        }
        out
    }

    /// The lowest id kept.
    pub fn first_id(&self) -> Option<MessageId> {
        self.messages.keys().next().copied()
    }

    /// Messages kept.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Checks the bounds; cheap enough for every turn.
    pub fn check(&self) {
        assert!(self.messages.len() <= self.messages_max && self.bytes <= self.bytes_max);
    }

    /// Checks every invariant written on the fields, recounting the bytes
    /// (linear in the cache: for tests).
    pub fn check_full(&self) {
        self.check();
        let bytes: usize = self.messages.values().map(GossipMessage::size_bytes).sum();
        assert_eq!(bytes, self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn message(id: MessageId, payload_bytes: usize) -> GossipMessage {
        GossipMessage {
            id,
            index: id,
            term: 1,
            ts: id,
            payload: Bytes::from(vec![1u8; payload_bytes]),
            token: Bytes::new(),
        }
    }

    #[test]
    fn evicts_oldest_by_count_and_bytes() {
        let mut cache = MessageCache::new(3, 1 << 20);
        for id in 1..=5 {
            cache.insert(message(id, 10));
            cache.check_full();
        }
        assert_eq!(cache.first_id(), Some(3));
        let one = message(1, 100).size_bytes();
        let mut cache = MessageCache::new(100, 2 * one);
        for id in 1..=4 {
            cache.insert(message(id, 100));
            cache.check_full();
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.first_id(), Some(3));
    }

    #[test]
    fn range_respects_count_and_bytes() {
        let mut cache = MessageCache::new(100, 1 << 20);
        for id in 1..=10 {
            cache.insert(message(id, 100));
        }
        let ids = |v: Vec<GossipMessage>| v.iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(cache.range(3, 6, 100, 1 << 20)), vec![3, 4, 5, 6]);
        assert_eq!(ids(cache.range(3, 9, 2, 1 << 20)), vec![3, 4]);
        let one = message(1, 100).size_bytes();
        assert_eq!(ids(cache.range(3, 9, 100, 2 * one + 1)), vec![3, 4]);
        assert_eq!(ids(cache.range(3, 9, 100, 1)), vec![3], "at least one");
        assert!(cache.range(9, 3, 100, 1 << 20).is_empty());
    }
}
