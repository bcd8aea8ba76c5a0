//! A single-shard broadcast: tasks wait for the next `notify_all`.
//!
//! Group commit needs it: every `sync` waiting for an in-flight round must
//! wake when the round completes, all at once. Queueing them on the IO lock
//! instead makes a convoy: the waiters get the lock one at a time, and the
//! task that just synced re-appends and takes the lock again before they
//! run, so each round covers a single append.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::task::{Poll, Waker};

/// Wakes every waiter at once. Lives on one shard.
#[derive(Default)]
pub struct Notify {
    generation: Cell<u64>,
    /// Invariant: every waker was registered at the current generation.
    wakers: RefCell<Vec<Waker>>,
}

impl Notify {
    /// The current generation; pass it to [`Notify::wait`].
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        for waker in self.wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Completes once the generation is past `seen`.
    pub fn wait(&self, seen: u64) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.generation.get() != seen {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}
