//! Wake-ups between tasks of one executor (no atomics: nothing here crosses
//! a thread).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes every task waiting on it. A waiter checks its condition, then
/// awaits [`Notify::notified`] created in the same poll: with one thread and
/// no `.await` between the check and the first poll, no wake-up is lost.
///
/// Invariant: `waiters` holds no two wakers that wake the same task.
#[derive(Debug, Default)]
pub(crate) struct Notify {
    generation: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    /// Wakes every current waiter.
    pub(crate) fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters {
            waker.wake();
        }
    }

    /// Completes at the next [`Notify::notify_all`].
    pub(crate) fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            generation: self.generation.get(),
        }
    }
}

/// See [`Notify::notified`].
pub(crate) struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut waiters = self.notify.waiters.borrow_mut();
        // Combinators (`or`) poll a pending future on every wake-up of its
        // sibling: without this check the list would grow with each one.
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
