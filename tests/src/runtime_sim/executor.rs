//! A deterministic single-threaded executor with simulated time: one per
//! simulated node, so that a crash drops every task of that node and
//! nothing else.
//!
//! Tasks run in the order they were woken (FIFO), timers fire in the order
//! of their deadlines and then of their creation: a run is a pure function
//! of what the simulator does. Time passes only when the simulator moves
//! the shared clock.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use ordo_engine::core::Now;
use ordo_engine::node::env::{self, Env, LocalTask};

/// Microseconds since the start of the run, shared by every node.
pub type SimClock = Rc<Cell<u64>>;

/// Where woken tasks queue (the only part a `Waker` may hold: wakers are
/// `Send`, though nothing here leaves the thread).
type ReadyQueue = Arc<Mutex<VecDeque<u64>>>;

struct TaskWaker {
    id: u64,
    ready: ReadyQueue,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.lock().expect("single thread").push_back(self.id);
    }
}

/// Sleeps not yet over: (deadline in run time, order) → waker.
type Timers = Rc<RefCell<BTreeMap<(u64, u64), Waker>>>;

/// One node's executor and clocks.
pub struct Executor {
    tasks: RefCell<BTreeMap<u64, LocalTask>>,
    /// Each live task's waker.
    wakers: RefCell<BTreeMap<u64, Waker>>,
    /// Spawned while another task ran; moved into `tasks` after its poll.
    spawned: RefCell<Vec<(u64, LocalTask)>>,
    ready: ReadyQueue,
    next_id: Cell<u64>,
    /// Sleeps not yet over.
    timers: Timers,
    next_timer: Cell<u64>,
    clock: SimClock,
    /// This node's clock runs fast or slow by this many parts per million.
    drift_ppm: i64,
    /// Wall-clock microseconds at run time 0.
    wall_base_us: u64,
}

impl Executor {
    /// An executor on `clock`, whose node's clock drifts by `drift_ppm`.
    pub fn new(clock: SimClock, drift_ppm: i64) -> Rc<Self> {
        Rc::new(Self {
            tasks: RefCell::default(),
            wakers: RefCell::default(),
            spawned: RefCell::default(),
            ready: ReadyQueue::default(),
            next_id: Cell::new(1),
            timers: Timers::default(),
            next_timer: Cell::new(0),
            clock,
            drift_ppm,
            wall_base_us: 1_700_000_000_000_000,
        })
    }

    /// This node's monotonic time at run time `t`.
    fn local_at(&self, t: u64) -> u64 {
        let t = t as i128;
        (t + t * self.drift_ppm as i128 / 1_000_000) as u64 + 1
    }

    /// The first run time at which this node's clock reads `local`.
    fn run_time_of(&self, local: u64) -> u64 {
        let local = local.saturating_sub(1) as i128;
        let t = local * 1_000_000 / (1_000_000 + self.drift_ppm as i128);
        let mut t = t.max(0) as u64;
        while self.local_at(t) - 1 < local as u64 {
            t += 1;
        }
        t
    }

    /// The earliest run time a sleep ends at, if any sleeps.
    pub fn next_timer(&self) -> Option<u64> {
        self.timers.borrow().keys().next().map(|&(due, _)| due)
    }

    /// Wakes every sleep whose deadline passed.
    pub fn fire_timers(&self) {
        let now = self.clock.get();
        loop {
            let next = self.timers.borrow().keys().next().copied();
            match next {
                Some(key) if key.0 <= now => {
                    let waker = self.timers.borrow_mut().remove(&key).expect("listed");
                    waker.wake();
                }
                _ => return,
            }
        }
    }

    /// Whether a task waits to run.
    pub fn has_ready(&self) -> bool {
        !self.ready.lock().expect("single thread").is_empty()
    }

    /// Runs tasks until none is ready, under `env` (so that what they spawn,
    /// sleep and read from the clock is this node's); returns the polls
    /// made. Panics after `polls_max`: a task that wakes itself forever.
    pub fn run_until_idle(self: &Rc<Self>, polls_max: u64) -> u64 {
        let env: Rc<dyn Env> = self.clone();
        env::enter(&env, || {
            let mut polls = 0;
            loop {
                let next = self.ready.lock().expect("single thread").pop_front();
                let Some(id) = next else {
                    return polls;
                };
                self.adopt_spawned();
                let Some(mut task) = self.tasks.borrow_mut().remove(&id) else {
                    continue; // done already, or woken twice
                };
                polls += 1;
                assert!(polls <= polls_max, "a task does not stop waking itself");
                // One waker per task, reused: wakers kept by what the
                // task waits on are compared with `will_wake`, and a fresh
                // one per poll made those lists grow without bound.
                let waker = self
                    .wakers
                    .borrow_mut()
                    .entry(id)
                    .or_insert_with(|| {
                        Waker::from(Arc::new(TaskWaker {
                            id,
                            ready: self.ready.clone(),
                        }))
                    })
                    .clone();
                let mut cx = Context::from_waker(&waker);
                if task.as_mut().poll(&mut cx).is_pending() {
                    self.tasks.borrow_mut().insert(id, task);
                } else {
                    self.wakers.borrow_mut().remove(&id);
                }
                self.adopt_spawned();
            }
        })
    }

    /// Moves tasks spawned since the last poll into the task map.
    fn adopt_spawned(&self) {
        let spawned = std::mem::take(&mut *self.spawned.borrow_mut());
        for (id, task) in spawned {
            self.tasks.borrow_mut().insert(id, task);
        }
    }

    /// Tasks alive.
    pub fn tasks(&self) -> usize {
        self.tasks.borrow().len() + self.spawned.borrow().len()
    }

    /// Drops every task and timer (a crash: nothing of the node runs on).
    pub fn clear(&self) {
        // Tasks dropped here may drop wakers and channels; take them out
        // first so that nothing borrows the maps while they drop.
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        let spawned = std::mem::take(&mut *self.spawned.borrow_mut());
        drop(tasks);
        drop(spawned);
        self.wakers.borrow_mut().clear();
        self.timers.borrow_mut().clear();
        self.ready.lock().expect("single thread").clear();
    }
}

impl Env for Executor {
    fn spawn(&self, task: LocalTask) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.spawned.borrow_mut().push((id, task));
        self.ready.lock().expect("single thread").push_back(id);
    }

    fn sleep(&self, duration: Duration) -> LocalTask {
        let local_due = self.local_at(self.clock.get()) + duration.as_micros() as u64;
        // A sleep of any length ends after now: time moves only between
        // polls, so one that ended at once would let a task spin.
        let due = self.run_time_of(local_due).max(self.clock.get() + 1);
        let order = self.next_timer.get();
        self.next_timer.set(order + 1);
        Box::pin(Sleep {
            due,
            order,
            clock: self.clock.clone(),
            timers: self.timers.clone(),
        })
    }

    fn now(&self) -> Now {
        let mono_us = self.local_at(self.clock.get());
        Now {
            mono_us,
            wall_us: self.wall_base_us + mono_us,
        }
    }
}

/// A sleep on an [`Executor`]'s timers.
struct Sleep {
    due: u64,
    order: u64,
    clock: SimClock,
    timers: Timers,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.clock.get() >= self.due {
            return Poll::Ready(());
        }
        self.timers
            .borrow_mut()
            .insert((self.due, self.order), cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if self.clock.get() < self.due
            && let Ok(mut timers) = self.timers.try_borrow_mut()
        {
            timers.remove(&(self.due, self.order));
        }
    }
}
