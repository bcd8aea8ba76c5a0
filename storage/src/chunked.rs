//! A deque stored in fixed-size chunks, so growing it never copies.
//!
//! [`crate::MemLog`] keeps every batch of its log in one of these. A
//! `VecDeque` doubles and copies when full: at 262,144 batches the copy took
//! ~53 ms on the reference machine (fresh pages are zeroed by the kernel
//! first), and the three voters of the engine-only benchmark grow in step,
//! which showed up as 0.2–0.6 s stalls (docs/benchmarks.md). Here a push
//! either fills the last chunk or starts a new one of [`CHUNK`] slots.

use std::collections::VecDeque;

/// Slots per chunk.
pub const CHUNK: usize = 4096;

/// A double-ended queue in chunks of [`CHUNK`] elements. Invariant: every
/// chunk but the first and the last holds exactly `CHUNK` elements, and no
/// chunk is empty.
#[derive(Clone, Debug)]
pub struct ChunkedDeque<T> {
    chunks: VecDeque<VecDeque<T>>,
    len: usize,
}

impl<T> Default for ChunkedDeque<T> {
    fn default() -> Self {
        Self {
            chunks: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> ChunkedDeque<T> {
    /// Elements held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The element at `at`, if held.
    pub fn get(&self, at: usize) -> Option<&T> {
        if at >= self.len {
            return None;
        }
        let first = self.chunks.front()?;
        if at < first.len() {
            return first.get(at);
        }
        let rest = at - first.len();
        self.chunks.get(1 + rest / CHUNK)?.get(rest % CHUNK)
    }

    /// The first element.
    pub fn front(&self) -> Option<&T> {
        self.chunks.front().and_then(VecDeque::front)
    }

    /// The last element.
    pub fn back(&self) -> Option<&T> {
        self.chunks.back().and_then(VecDeque::back)
    }

    /// Appends at the back.
    pub fn push_back(&mut self, value: T) {
        match self.chunks.back_mut() {
            Some(last) if last.len() < CHUNK => last.push_back(value),
            _ => {
                let mut chunk = VecDeque::with_capacity(CHUNK);
                chunk.push_back(value);
                self.chunks.push_back(chunk);
            }
        }
        self.len += 1;
    }

    /// Removes the first element.
    pub fn pop_front(&mut self) -> Option<T> {
        let first = self.chunks.front_mut()?;
        let value = first.pop_front();
        if first.is_empty() {
            self.chunks.pop_front();
        }
        if value.is_some() {
            self.len -= 1;
        }
        value
    }

    /// Keeps the first `len` elements.
    pub fn truncate(&mut self, len: usize) {
        while self.len > len {
            let Some(last) = self.chunks.back_mut() else {
                break;
            };
            let drop = (self.len - len).min(last.len());
            last.truncate(last.len() - drop);
            self.len -= drop;
            if last.is_empty() {
                self.chunks.pop_back();
            }
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    /// Every element, front to back.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + '_ {
        self.chunks.iter().flatten()
    }

    /// The elements from position `from` on.
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = &T> + '_ {
        // Find the chunk of `from` once, then walk the chunks.
        let (chunk, offset) = match self.chunks.front() {
            Some(first) if from < first.len() => (0, from),
            Some(first) => {
                let rest = from - first.len();
                (1 + rest / CHUNK, rest % CHUNK)
            }
            None => (0, 0),
        };
        let start = from.min(self.len);
        self.chunks
            .iter()
            .skip(chunk)
            .enumerate()
            .flat_map(move |(k, elements)| elements.iter().skip(if k == 0 { offset } else { 0 }))
            .take(self.len - start)
    }

    /// The first position whose element does not satisfy `pred`, for a
    /// `pred` that holds for a prefix (as `slice::partition_point`).
    pub fn partition_point(&self, mut pred: impl FnMut(&T) -> bool) -> usize {
        let (mut low, mut high) = (0, self.len);
        while low < high {
            let mid = low + (high - low) / 2;
            match self.get(mid) {
                Some(value) if pred(value) => low = mid + 1,
                _ => high = mid,
            }
        }
        low
    }
}

impl<T> Extend<T> for ChunkedDeque<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, values: I) {
        for value in values {
            self.push_back(value);
        }
    }
}

impl<T> std::ops::Index<usize> for ChunkedDeque<T> {
    type Output = T;

    fn index(&self, at: usize) -> &T {
        match self.get(at) {
            Some(value) => value,
            None => panic!("index {at} out of range for a deque of {}", self.len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Push(u32),
        PushMany(u16),
        Pop,
        Truncate(u16),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => any::<u32>().prop_map(Op::Push),
            3 => (0u16..10_000).prop_map(Op::PushMany),
            4 => Just(Op::Pop),
            2 => any::<u16>().prop_map(Op::Truncate),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// Every operation agrees with a `VecDeque`, and the chunk
        /// invariant holds after each.
        #[test]
        fn behaves_like_a_vecdeque(ops in proptest::collection::vec(op(), 1..60)) {
            let mut model: VecDeque<u32> = VecDeque::new();
            let mut deque = ChunkedDeque::default();
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Push(v) => { model.push_back(v); deque.push_back(v); }
                    Op::PushMany(n) => for _ in 0..n {
                        next = next.wrapping_add(1);
                        model.push_back(next);
                        deque.push_back(next);
                    },
                    Op::Pop => prop_assert_eq!(model.pop_front(), deque.pop_front()),
                    Op::Truncate(n) => {
                        let n = usize::from(n) % (model.len() + 1);
                        model.truncate(n);
                        deque.truncate(n);
                    }
                    Op::Clear => { model.clear(); deque.clear(); }
                }
                prop_assert_eq!(model.len(), deque.len());
                prop_assert_eq!(model.front(), deque.front());
                prop_assert_eq!(model.back(), deque.back());
                let chunks = deque.chunks.len();
                for (k, chunk) in deque.chunks.iter().enumerate() {
                    prop_assert!(!chunk.is_empty());
                    if k != 0 && k + 1 != chunks {
                        prop_assert_eq!(chunk.len(), CHUNK);
                    }
                }
                for at in [0, model.len() / 3, model.len() / 2, model.len().saturating_sub(1), model.len()] {
                    prop_assert_eq!(model.get(at), deque.get(at));
                    prop_assert!(model.iter().skip(at).eq(deque.iter_from(at)));
                }
                prop_assert!(model.iter().eq(deque.iter()));
            }
            let sorted: Vec<u32> = (0..model.len() as u32).collect();
            let mut sorted_deque = ChunkedDeque::default();
            sorted_deque.extend(sorted.iter().copied());
            for probe in [0, 1, sorted.len() as u32 / 2, sorted.len() as u32 + 5] {
                prop_assert_eq!(
                    sorted.partition_point(|&v| v < probe),
                    sorted_deque.partition_point(|&v| v < probe)
                );
            }
        }
    }

    #[test]
    fn iter_from_starts_at_a_position() {
        let mut deque = ChunkedDeque::default();
        deque.extend(0..10_000u32);
        for _ in 0..100 {
            deque.pop_front();
        }
        assert_eq!(deque.iter_from(5_000).next(), Some(&5_100));
        assert_eq!(deque.iter_from(9_899).count(), 1);
        assert_eq!(deque.iter_from(9_900).count(), 0);
        assert_eq!(deque[0], 100);
    }
}
