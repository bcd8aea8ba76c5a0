//! A bounded queue from a transport's connections to the runtime.

use std::cell::RefCell;
use std::collections::VecDeque;

use crate::transport::notify::Notify;

/// Received items waiting for the runtime, bounded by count and by bytes.
/// A reader that finds it full waits, and stops reading its socket: the
/// kernel's receive window fills and TCP slows the sender. Memory for
/// received frames is thus bounded by the inbox, not by the senders.
///
/// Invariant: `bytes` is the sum of the sizes of `items`; `items.len() <=
/// items_max`; `bytes <= bytes_max` unless a single item is larger.
#[derive(Debug)]
pub(crate) struct Inbox<T> {
    state: RefCell<State<T>>,
    items_max: usize,
    bytes_max: usize,
    /// Wakes the consumer.
    pub(crate) readable: Notify,
    writable: Notify,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    closed: bool,
}

/// The inbox was closed: the item was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InboxClosed;

impl<T> Inbox<T> {
    pub(crate) fn new(items_max: usize, bytes_max: usize) -> Self {
        Self {
            state: RefCell::new(State {
                items: VecDeque::new(),
                bytes: 0,
                closed: false,
            }),
            items_max,
            bytes_max,
            readable: Notify::default(),
            writable: Notify::default(),
        }
    }

    /// Queues `item` of `bytes`, waiting for room.
    pub(crate) async fn push(&self, item: T, bytes: usize) -> Result<(), InboxClosed> {
        loop {
            {
                let mut state = self.state.borrow_mut();
                if state.closed {
                    return Err(InboxClosed);
                }
                let room = state.items.len() < self.items_max
                    && (state.items.is_empty() || state.bytes + bytes <= self.bytes_max);
                if room {
                    state.items.push_back((item, bytes));
                    state.bytes += bytes;
                    drop(state);
                    self.readable.notify_all();
                    return Ok(());
                }
            }
            self.writable.notified().await;
        }
    }

    /// Takes the oldest item, if any.
    pub(crate) fn try_pop(&self) -> Option<T> {
        let mut state = self.state.borrow_mut();
        let (item, bytes) = state.items.pop_front()?;
        state.bytes -= bytes;
        drop(state);
        self.writable.notify_all();
        Some(item)
    }

    /// Whether the inbox was closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.state.borrow().closed
    }

    /// Refuses further items; queued ones can still be taken.
    pub(crate) fn close(&self) {
        self.state.borrow_mut().closed = true;
        self.readable.notify_all();
        self.writable.notify_all();
    }

    /// Items waiting.
    pub(crate) fn len(&self) -> usize {
        self.state.borrow().items.len()
    }
}
