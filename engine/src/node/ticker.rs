//! Wakes the group's loop at the core's next deadline without a timer per
//! wait.
//!
//! The loop waits for input or for the core's next deadline (a heartbeat,
//! an election timeout) many times per commit, and is nearly always woken
//! by input first. A `glommio::timer::sleep` per wait registered a timer in
//! the reactor, read the clock twice and deregistered it again on every
//! wait: ~10 % of the engine-only thread at C = 1. Here one task per group
//! sleeps until the deadline and pokes the group's local [`Notify`]; the
//! loop only records the deadline it wants. A deadline that moves later
//! (a follower's election timeout, on every AppendEntries) costs nothing
//! until the earlier one passes, when the task sleeps again; one that moves
//! earlier re-arms the task at once.
//!
//! Lives on the group's shard (not `Send`).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::future;

use super::clock::Clock;
use super::input::InputSender;
use super::notify::Notify;

/// What the group and its ticker task share. Deadlines are the group
/// clock's monotonic microseconds ([`Clock::mono_us`]).
#[derive(Default)]
struct Shared {
    /// When the group wants to be woken; `None`: not at all.
    due: Cell<Option<u64>>,
    /// When the task's current sleep ends; `None` while it is not asleep
    /// on a deadline.
    // Invariant: armed.is_none() || due.is_some() at the moment the task
    // armed it; a `due` earlier than `armed` is always followed by a
    // `rearm` notification.
    armed: Cell<Option<u64>>,
    /// Moves when `due` moved earlier than `armed`, or the ticker stopped.
    rearm: Notify,
    /// The ticker was dropped: the task ends.
    stopped: Cell<bool>,
}

/// The group's ticker; dropping it stops its task.
pub struct Ticker {
    shared: Rc<Shared>,
}

impl Ticker {
    /// Starts the ticker task on the current executor ([`super::env`]); it
    /// wakes the group through `inputs`' notify.
    pub fn start(inputs: InputSender, clock: Clock) -> Self {
        let shared = Rc::new(Shared::default());
        super::env::spawn(run(shared.clone(), inputs, clock));
        Self { shared }
    }

    /// Wake the group at `due` (replacing the previous request).
    pub fn wake_at(&self, due: u64) {
        self.shared.due.set(Some(due));
        if self.shared.armed.get().is_none_or(|armed| due < armed) {
            self.shared.rearm.notify();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stopped.set(true);
        self.shared.rearm.notify();
    }
}

async fn run(shared: Rc<Shared>, inputs: InputSender, clock: Clock) {
    loop {
        if shared.stopped.get() {
            return;
        }
        let generation = shared.rearm.generation();
        let Some(due) = shared.due.get() else {
            shared.armed.set(None);
            shared.rearm.wait(generation).await;
            continue;
        };
        let now = clock.mono_us();
        if due <= now {
            shared.due.set(None);
            shared.armed.set(None);
            inputs.0.notify.notify();
            continue;
        }
        shared.armed.set(Some(due));
        future::or(
            super::env::sleep(Duration::from_micros(due - now)),
            shared.rearm.wait(generation),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::on_test_executor as on_executor;
    use std::time::Duration;

    /// Waits until the group's notify moves, or `limit`; returns when.
    async fn woken(
        inputs: &InputSender,
        clock: Clock,
        generation: u64,
        limit: Duration,
    ) -> Option<u64> {
        future::or(
            async {
                inputs.0.notify.wait(generation).await;
                Some(clock.mono_us())
            },
            async {
                glommio::timer::sleep(limit).await;
                None
            },
        )
        .await
    }

    #[test]
    fn wakes_the_group_at_the_deadline_not_before() {
        on_executor(|| async {
            let inputs = InputSender::default();
            let clock = Clock::new();
            let ticker = Ticker::start(inputs.clone(), clock);
            let start = clock.mono_us();
            let generation = inputs.0.notify.generation();
            ticker.wake_at(start + 30_000);
            let at = woken(&inputs, clock, generation, Duration::from_secs(5))
                .await
                .expect("woken");
            assert!(at >= start + 30_000);
        });
    }

    #[test]
    fn an_earlier_deadline_rearms_and_a_later_one_delays() {
        on_executor(|| async {
            let inputs = InputSender::default();
            let clock = Clock::new();
            let ticker = Ticker::start(inputs.clone(), clock);
            let start = clock.mono_us();
            ticker.wake_at(start + 60_000_000);
            glommio::yield_if_needed().await;
            glommio::timer::sleep(Duration::from_millis(5)).await;
            // Earlier: must not wait for the minute.
            let generation = inputs.0.notify.generation();
            ticker.wake_at(start + 20_000);
            let at = woken(&inputs, clock, generation, Duration::from_secs(5))
                .await
                .expect("re-armed");
            assert!(at >= start + 20_000);

            // Later, after arming: no wake at the first deadline.
            let start = clock.mono_us();
            let generation = inputs.0.notify.generation();
            ticker.wake_at(start + 20_000);
            glommio::timer::sleep(Duration::from_millis(5)).await;
            ticker.wake_at(start + 80_000);
            let at = woken(&inputs, clock, generation, Duration::from_secs(5))
                .await
                .expect("woken");
            assert!(at >= start + 80_000, "woken early");
        });
    }

    #[test]
    fn dropping_the_ticker_stops_it() {
        on_executor(|| async {
            let inputs = InputSender::default();
            let clock = Clock::new();
            let ticker = Ticker::start(inputs.clone(), clock);
            let generation = inputs.0.notify.generation();
            ticker.wake_at(clock.mono_us() + 10_000);
            drop(ticker);
            assert_eq!(
                woken(&inputs, clock, generation, Duration::from_millis(50)).await,
                None
            );
        });
    }
}
