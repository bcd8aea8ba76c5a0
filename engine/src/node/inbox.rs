//! The group's inbox for requests from other threads and shards (the
//! embedding handle, the client shards): a bounded multi-producer queue
//! whose single receiver is woken only when it is parked.
//!
//! Why not `async_channel`: its every send notifies the receiver's
//! listener list under a mutex while the receiver waits, and the group
//! waits between almost every two turns. With 256 in-process proposers
//! that lock, and the wake-up behind it, was ~12 % of the engine-only
//! thread. Here a sender pays one push and one load of the `parked` flag;
//! only the sender that finds the receiver parked takes the waker and wakes
//! it, once per park.
//!
//! The handoff is Dekker's pattern: the receiver sets `parked` and then
//! looks at the queue again; a sender pushes and then looks at `parked`;
//! with a `SeqCst` fence between each side's write and read, at least one
//! of them sees the other's write, so an item is never left behind a
//! parked receiver.
//!
//! The receiver lives on the group's shard; senders anywhere (`Send`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crossbeam_queue::ArrayQueue;
use event_listener::Event;

/// The receiver is gone, or every sender is: the item comes back.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed<T>(pub T);

/// Why [`Sender::try_send`] did not queue the item.
#[derive(Debug, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The queue holds its capacity.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

struct Shared<T> {
    queue: ArrayQueue<T>,
    /// The receiver may be asleep and must be woken by the next push.
    parked: AtomicBool,
    /// The parked receiver's waker (locked once per park and per wake,
    /// never per item).
    waker: Mutex<Option<Waker>>,
    /// Senders waiting for room.
    space: Event,
    /// How many senders are (about to be) waiting on `space`: the receiver
    /// notifies only while this is not 0 (`Event::notify` took a lock per
    /// item even with nobody listening: ~4 % of the engine-only thread).
    space_waiters: AtomicUsize,
    /// Live senders; the receiver sees the end once it reaches 0.
    senders: AtomicUsize,
    /// The receiver was dropped.
    receiver_gone: AtomicBool,
}

impl<T> Shared<T> {
    fn wake_receiver(&self) {
        // Pairs with the receiver's fence between setting `parked` and
        // looking at the queue again.
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel) {
            let waker = self.waker.lock().map(|mut w| w.take()).unwrap_or(None);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// A bounded inbox of `capacity` items (at least 1).
pub fn inbox<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        queue: ArrayQueue::new(capacity.max(1)),
        parked: AtomicBool::new(false),
        waker: Mutex::new(None),
        space: Event::new(),
        space_waiters: AtomicUsize::new(0),
        senders: AtomicUsize::new(1),
        receiver_gone: AtomicBool::new(false),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// Queues items for the receiver (cheap to clone, `Send`).
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last one: a parked receiver must learn the end.
            self.shared.parked.store(true, Ordering::Relaxed);
            self.shared.wake_receiver();
        }
    }
}

impl<T> Sender<T> {
    /// Queues `item` now, or says why not.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        if self.shared.receiver_gone.load(Ordering::Acquire) {
            return Err(TrySendError::Closed(item));
        }
        match self.shared.queue.push(item) {
            Ok(()) => {
                self.shared.wake_receiver();
                Ok(())
            }
            Err(item) => Err(TrySendError::Full(item)),
        }
    }

    /// Queues `item`, waiting for room while the queue is full.
    pub async fn send(&self, item: T) -> Result<(), Closed<T>> {
        let mut item = item;
        loop {
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(Closed(back)),
                Err(TrySendError::Full(back)) => item = back,
            }
            let waiting = SpaceWaiter::new(&self.shared);
            let listener = self.shared.space.listen();
            // Room may have appeared before the listener was registered
            // (the receiver then saw no waiter and notified nobody).
            let retried = self.try_send(item);
            if retried.is_err() {
                listener.await;
            }
            drop(waiting);
            match retried {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(Closed(back)),
                Err(TrySendError::Full(back)) => item = back,
            }
        }
    }
}

/// Counts a sender in `space_waiters` while it lives (also when the
/// waiting future is dropped).
struct SpaceWaiter<'a, T>(&'a Shared<T>);

impl<'a, T> SpaceWaiter<'a, T> {
    fn new(shared: &'a Shared<T>) -> Self {
        shared.space_waiters.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl<T> Drop for SpaceWaiter<'_, T> {
    fn drop(&mut self) {
        self.0.space_waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes items in order (one per inbox; lives on the group's shard).
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Release);
        self.shared.space.notify(usize::MAX);
    }
}

impl<T> Receiver<T> {
    /// The next item, if one is queued.
    pub fn try_recv(&self) -> Option<T> {
        let item = self.shared.queue.pop()?;
        // Pairs with a waiting sender's increment before its retry: either
        // it sees the room this pop made, or we see it waiting.
        fence(Ordering::SeqCst);
        if self.shared.space_waiters.load(Ordering::Relaxed) > 0 {
            self.shared.space.notify(1);
        }
        Some(item)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.shared.queue.is_empty()
    }

    /// The next item, waiting for one; `None` once every sender is gone
    /// and the queue is empty. Cancel-safe: an item is only taken by the
    /// poll that returns it.
    pub fn recv(&self) -> Recv<'_, T> {
        Recv { receiver: self }
    }
}

/// The future of [`Receiver::recv`].
pub struct Recv<'a, T> {
    receiver: &'a Receiver<T>,
}

impl<T> Future for Recv<'_, T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let receiver = self.receiver;
        let shared = &receiver.shared;
        if let Some(item) = receiver.try_recv() {
            return Poll::Ready(Some(item));
        }
        if shared.senders.load(Ordering::Acquire) == 0 {
            return Poll::Ready(receiver.try_recv());
        }
        if let Ok(mut waker) = shared.waker.lock() {
            match waker.as_ref() {
                Some(current) if current.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
        }
        shared.parked.store(true, Ordering::Relaxed);
        // Pairs with the senders' fence between their push and their look
        // at `parked`.
        fence(Ordering::SeqCst);
        if let Some(item) = receiver.try_recv() {
            shared.parked.store(false, Ordering::Relaxed);
            return Poll::Ready(Some(item));
        }
        if shared.senders.load(Ordering::Acquire) == 0 {
            shared.parked.store(false, Ordering::Relaxed);
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl<T> Drop for Recv<'_, T> {
    fn drop(&mut self) {
        // Woken by something else: senders need not wake us any more.
        self.receiver.shared.parked.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::on_test_executor as on_executor;
    use std::time::Duration;

    #[test]
    fn items_come_out_in_order_and_a_full_inbox_refuses() {
        let (sender, receiver) = inbox(3);
        for i in 0..3 {
            sender.try_send(i).unwrap();
        }
        assert_eq!(sender.try_send(9), Err(TrySendError::Full(9)));
        assert_eq!(
            (0..3).map(|_| receiver.try_recv()).collect::<Vec<_>>(),
            vec![Some(0), Some(1), Some(2)]
        );
        assert!(receiver.is_empty() && receiver.try_recv().is_none());
    }

    #[test]
    fn a_dropped_receiver_closes_the_senders() {
        let (sender, receiver) = inbox(2);
        drop(receiver);
        assert_eq!(sender.try_send(1), Err(TrySendError::Closed(1)));
        assert_eq!(
            futures_lite::future::block_on(sender.send(2)),
            Err(Closed(2))
        );
    }

    #[test]
    fn the_receiver_drains_then_sees_the_end_when_senders_are_gone() {
        on_executor(|| async {
            let (sender, receiver) = inbox(4);
            let other = sender.clone();
            sender.try_send(1).unwrap();
            drop(sender);
            let thread = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                other.try_send(2).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                drop(other);
            });
            assert_eq!(receiver.recv().await, Some(1));
            // Parks, then is woken from the other thread by the push...
            assert_eq!(receiver.recv().await, Some(2));
            // ...and by the last sender's drop.
            assert_eq!(receiver.recv().await, None);
            thread.join().unwrap();
        });
    }

    #[test]
    fn a_sender_waits_for_room_and_nothing_is_lost_across_threads() {
        const THREADS: usize = 4;
        const ITEMS: usize = 20_000;
        on_executor(|| async {
            // Small capacity: senders wait for room often, the receiver
            // parks often.
            let (sender, receiver) = inbox::<(usize, usize)>(8);
            let threads: Vec<_> = (0..THREADS)
                .map(|t| {
                    let sender = sender.clone();
                    std::thread::spawn(move || {
                        for i in 0..ITEMS {
                            futures_lite::future::block_on(sender.send((t, i))).unwrap();
                        }
                    })
                })
                .collect();
            drop(sender);
            let mut next = [0usize; THREADS];
            let mut received = 0;
            while let Some((t, i)) = receiver.recv().await {
                assert_eq!(i, next[t], "items of one sender stay in order");
                next[t] += 1;
                received += 1;
                if received % 1000 == 0 {
                    // Let the receiver park now and then.
                    glommio::timer::sleep(Duration::from_micros(50)).await;
                }
            }
            assert_eq!(received, THREADS * ITEMS);
            for thread in threads {
                thread.join().unwrap();
            }
        });
    }
}
