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
        // Where this waiter's waker sits in `wakers`, once registered. The
        // list is only drained by `notify_all`, which also moves the
        // generation on, so while the generation is `seen` the slot is
        // still ours: a re-poll checks one waker, not the whole list (with
        // hundreds of waiters per round that scan was quadratic).
        let mut slot: Option<usize> = None;
        std::future::poll_fn(move |cx| {
            if self.generation.get() != seen {
                return Poll::Ready(());
            }
            let mut wakers = self.wakers.borrow_mut();
            match slot {
                Some(at) => {
                    debug_assert!(
                        at < wakers.len(),
                        "a waiter's slot outlived its generation: only notify_all may drain the list"
                    );
                    if !wakers[at].will_wake(cx.waker()) {
                        wakers[at] = cx.waker().clone();
                    }
                }
                None => {
                    slot = Some(wakers.len());
                    wakers.push(cx.waker().clone());
                }
            }
            Poll::Pending
        })
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Wake};

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn every_waiter_wakes_once_however_often_it_was_polled() {
        let notify = Notify::default();
        let counts: Vec<Arc<Count>> = (0..8)
            .map(|_| Arc::new(Count(AtomicUsize::new(0))))
            .collect();
        let seen = notify.generation();
        let mut futures: Vec<_> = (0..8).map(|_| Box::pin(notify.wait(seen))).collect();
        for _ in 0..3 {
            for (future, count) in futures.iter_mut().zip(&counts) {
                let waker = Waker::from(count.clone());
                let mut cx = Context::from_waker(&waker);
                assert!(future.as_mut().poll(&mut cx).is_pending());
            }
        }
        assert_eq!(notify.wakers.borrow().len(), 8, "one slot per waiter");
        notify.notify_all();
        for (future, count) in futures.iter_mut().zip(&counts) {
            assert_eq!(count.0.load(Ordering::Relaxed), 1);
            let waker = Waker::from(count.clone());
            let mut cx = Context::from_waker(&waker);
            assert!(future.as_mut().poll(&mut cx).is_ready());
        }
        // A waiter polled with another waker replaces its own slot.
        let seen = notify.generation();
        let mut late = pin!(notify.wait(seen));
        let (first, second) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        for count in [&first, &second] {
            let waker = Waker::from(count.clone());
            assert!(
                late.as_mut()
                    .poll(&mut Context::from_waker(&waker))
                    .is_pending()
            );
        }
        notify.notify_all();
        assert_eq!(first.0.load(Ordering::Relaxed), 0);
        assert_eq!(second.0.load(Ordering::Relaxed), 1);
    }
}
