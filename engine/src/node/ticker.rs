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
use std::time::Instant;

use futures_lite::future;

use super::input::InputSender;
use super::notify::Notify;

/// What the group and its ticker task share.
#[derive(Default)]
struct Shared {
    /// When the group wants to be woken; `None`: not at all.
    due: Cell<Option<Instant>>,
    /// When the task's current sleep ends; `None` while it is not asleep
    /// on a deadline.
    // Invariant: armed.is_none() || due.is_some() at the moment the task
    // armed it; a `due` earlier than `armed` is always followed by a
    // `rearm` notification.
    armed: Cell<Option<Instant>>,
    /// Moves when `due` moved earlier than `armed`.
    rearm: Notify,
}

/// The group's ticker; dropping it cancels its task.
pub struct Ticker {
    shared: Rc<Shared>,
    _task: glommio::Task<()>,
}

impl Ticker {
    /// Starts the ticker task on the current executor; it wakes the group
    /// through `inputs`' notify.
    pub fn start(inputs: InputSender) -> Self {
        let shared = Rc::new(Shared::default());
        let task = glommio::spawn_local(run(shared.clone(), inputs));
        Self {
            shared,
            _task: task,
        }
    }

    /// Wake the group at `due` (replacing the previous request).
    pub fn wake_at(&self, due: Instant) {
        self.shared.due.set(Some(due));
        if self.shared.armed.get().is_none_or(|armed| due < armed) {
            self.shared.rearm.notify();
        }
    }
}

async fn run(shared: Rc<Shared>, inputs: InputSender) {
    loop {
        let generation = shared.rearm.generation();
        let Some(due) = shared.due.get() else {
            shared.armed.set(None);
            shared.rearm.wait(generation).await;
            continue;
        };
        let now = Instant::now();
        if due <= now {
            shared.due.set(None);
            shared.armed.set(None);
            inputs.0.notify.notify();
            continue;
        }
        shared.armed.set(Some(due));
        future::or(
            glommio::timer::sleep(due - now),
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
    async fn woken(inputs: &InputSender, generation: u64, limit: Duration) -> Option<Instant> {
        future::or(
            async {
                inputs.0.notify.wait(generation).await;
                Some(Instant::now())
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
            let ticker = Ticker::start(inputs.clone());
            let start = Instant::now();
            let generation = inputs.0.notify.generation();
            ticker.wake_at(start + Duration::from_millis(30));
            let at = woken(&inputs, generation, Duration::from_secs(5))
                .await
                .expect("woken");
            assert!(at >= start + Duration::from_millis(30));
        });
    }

    #[test]
    fn an_earlier_deadline_rearms_and_a_later_one_delays() {
        on_executor(|| async {
            let inputs = InputSender::default();
            let ticker = Ticker::start(inputs.clone());
            let start = Instant::now();
            ticker.wake_at(start + Duration::from_secs(60));
            glommio::yield_if_needed().await;
            glommio::timer::sleep(Duration::from_millis(5)).await;
            // Earlier: must not wait for the minute.
            let generation = inputs.0.notify.generation();
            ticker.wake_at(start + Duration::from_millis(20));
            let at = woken(&inputs, generation, Duration::from_secs(5))
                .await
                .expect("re-armed");
            assert!(at >= start + Duration::from_millis(20));

            // Later, after arming: no wake at the first deadline.
            let start = Instant::now();
            let generation = inputs.0.notify.generation();
            ticker.wake_at(start + Duration::from_millis(20));
            glommio::timer::sleep(Duration::from_millis(5)).await;
            ticker.wake_at(start + Duration::from_millis(80));
            let at = woken(&inputs, generation, Duration::from_secs(5))
                .await
                .expect("woken");
            assert!(at >= start + Duration::from_millis(80), "woken early");
        });
    }

    #[test]
    fn dropping_the_ticker_stops_it() {
        on_executor(|| async {
            let inputs = InputSender::default();
            let ticker = Ticker::start(inputs.clone());
            let generation = inputs.0.notify.generation();
            ticker.wake_at(Instant::now() + Duration::from_millis(10));
            drop(ticker);
            assert_eq!(
                woken(&inputs, generation, Duration::from_millis(50)).await,
                None
            );
        });
    }
}
