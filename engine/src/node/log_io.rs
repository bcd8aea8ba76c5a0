//! The runtime's side of the log: executes the core's log commands in
//! order, runs syncs concurrently with later appends (group commit), and
//! reports completions as core events.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use ordo_storage::{Batch, HardState, Index, LogId, LogStore};

use super::input::InputSender;
use crate::core::{Event, ReadPurpose};

/// One log write, in the order the core issued it.
#[derive(Debug)]
enum LogOp {
    Truncate(Index),
    Append(Vec<Batch>),
    Compact(Index),
    Reset(LogId),
}

#[derive(Default)]
struct Queue {
    ops: VecDeque<LogOp>,
    /// The core asked for a sync after the last op.
    sync_wanted: bool,
    sync_in_flight: bool,
    /// Latest hard state to write (only the newest matters).
    hard_state: Option<HardState>,
    hard_state_in_flight: bool,
    closed: bool,
    failed: Option<String>,
}

/// Executes log commands against a [`LogStore`] on the current shard.
///
/// Lives on the group's shard. Ops run one at a time in issue order; a sync
/// covers every op issued before it and runs while later appends proceed,
/// so appends that arrive during an fsync share the next one.
pub struct LogIo<S: LogStore + 'static> {
    store: Rc<S>,
    queue: Rc<RefCell<Queue>>,
    wake: Rc<super::notify::Notify>,
    inputs: InputSender,
    /// Each sync's latency, when the node exports metrics.
    sync_latency: Rc<RefCell<Option<crate::metrics::Spread>>>,
}

impl<S: LogStore + 'static> Clone for LogIo<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            queue: self.queue.clone(),
            wake: self.wake.clone(),
            sync_latency: self.sync_latency.clone(),
            inputs: self.inputs.clone(),
        }
    }
}

impl<S: LogStore + 'static> LogIo<S> {
    /// Starts the writer task on the current executor ([`super::env`]).
    pub fn start(store: Rc<S>, inputs: InputSender) -> Self {
        let io = Self {
            store,
            queue: Rc::default(),
            wake: Rc::default(),
            inputs,
            sync_latency: Rc::default(),
        };
        let writer = io.clone();
        super::env::spawn(async move { writer.run().await });
        let hard_state = io.clone();
        super::env::spawn(async move { hard_state.run_hard_state().await });
        io
    }

    /// The store.
    pub fn store(&self) -> &Rc<S> {
        &self.store
    }

    /// Why the log failed, if it did (the node must stop: it can no longer
    /// keep its durability promises).
    pub fn failure(&self) -> Option<String> {
        let failed = self.queue.borrow().failed.clone();
        failed.or_else(|| self.store.failure())
    }

    fn push(&self, op: LogOp) {
        self.queue.borrow_mut().ops.push_back(op);
        self.wake.notify();
    }

    /// `Command::Truncate`.
    pub fn truncate(&self, from: Index) {
        self.push(LogOp::Truncate(from));
    }

    /// `Command::Append`.
    pub fn append(&self, batches: Vec<Batch>) {
        self.push(LogOp::Append(batches));
    }

    /// `Command::CompactLog`.
    pub fn compact(&self, upto: Index) {
        self.push(LogOp::Compact(upto));
    }

    /// Resets the log to a snapshot point (after the ops before it).
    pub fn reset(&self, point: LogId) {
        self.push(LogOp::Reset(point));
    }

    /// Records every sync's latency (µs) in `spread`.
    pub fn set_sync_latency(&self, spread: crate::metrics::Spread) {
        *self.sync_latency.borrow_mut() = Some(spread);
    }

    /// `Command::Sync`.
    pub fn sync(&self) {
        self.queue.borrow_mut().sync_wanted = true;
        self.wake.notify();
    }

    /// `Command::PersistHardState`: the newest request wins; each completed
    /// write is reported.
    pub fn persist_hard_state(&self, hard_state: HardState) {
        self.queue.borrow_mut().hard_state = Some(hard_state);
        self.wake.notify();
    }

    /// `Command::ReadLog`: reads in its own task; a failed read answers
    /// with no batches (the core retries).
    pub fn read(&self, purpose: ReadPurpose, from: Index, bytes_max: usize) {
        let store = self.store.clone();
        let inputs = self.inputs.clone();
        super::env::spawn(async move {
            let batches = match store.read(from, bytes_max).await {
                Ok(batches) => batches,
                Err(error) => {
                    tracing::warn!(%error, from, "log read failed");
                    Vec::new()
                }
            };
            inputs.completion(Event::LogRead { purpose, batches });
        });
    }

    /// Stops the writer once the queued ops are done.
    pub fn close(&self) {
        self.queue.borrow_mut().closed = true;
        self.wake.notify();
    }

    /// Whether every queued op and sync has completed.
    pub fn idle(&self) -> bool {
        let queue = self.queue.borrow();
        queue.ops.is_empty()
            && !queue.sync_wanted
            && !queue.sync_in_flight
            && !queue.hard_state_in_flight
            && queue.hard_state.is_none()
    }

    fn fail(&self, what: String) {
        tracing::error!(error = %what, "the log failed; the node stops");
        self.queue.borrow_mut().failed = Some(what);
        self.inputs.fatal();
    }

    async fn run(self) {
        loop {
            let generation = self.wake.generation();
            let op = self.queue.borrow_mut().ops.pop_front();
            if let Some(op) = op {
                let result = match op {
                    LogOp::Truncate(from) => self.store.truncate_suffix(from).await,
                    LogOp::Append(batches) => self.store.append(&batches).await,
                    LogOp::Compact(upto) => self.store.compact_prefix(upto).await,
                    LogOp::Reset(point) => self.store.reset(point).await,
                };
                if let Err(error) = result {
                    self.fail(error.to_string());
                    return;
                }
                continue;
            }
            let start_sync = {
                let mut queue = self.queue.borrow_mut();
                if queue.sync_wanted && !queue.sync_in_flight {
                    queue.sync_wanted = false;
                    queue.sync_in_flight = true;
                    true
                } else {
                    false
                }
            };
            if start_sync {
                let syncer = self.clone();
                super::env::spawn(async move { syncer.run_sync().await });
                continue;
            }
            if self.queue.borrow().closed {
                return;
            }
            self.wake.wait(generation).await;
        }
    }

    async fn run_sync(self) {
        // Every op issued before this point is covered; report the log's
        // last entry as it stood then. The core ignores the report if the
        // log changed under it.
        let last = self.store.state().last;
        let started = std::time::Instant::now();
        let synced = self.store.sync().await;
        if let Some(spread) = self.sync_latency.borrow().as_ref() {
            spread.observe(started.elapsed().as_micros() as u64);
        }
        match synced {
            Ok(_) => self.inputs.completion(Event::LogSynced { last }),
            Err(error) => self.fail(error.to_string()),
        }
        self.queue.borrow_mut().sync_in_flight = false;
        self.wake.notify();
    }

    async fn run_hard_state(self) {
        loop {
            let generation = self.wake.generation();
            let next = {
                let mut queue = self.queue.borrow_mut();
                let next = queue.hard_state.take();
                queue.hard_state_in_flight = next.is_some();
                next
            };
            match next {
                Some(hard_state) => {
                    let result = self.store.save_hard_state(hard_state).await;
                    self.queue.borrow_mut().hard_state_in_flight = false;
                    match result {
                        Ok(()) => self
                            .inputs
                            .completion(Event::HardStatePersisted(hard_state)),
                        Err(error) => {
                            self.fail(error.to_string());
                            return;
                        }
                    }
                }
                None => {
                    if self.queue.borrow().closed {
                        return;
                    }
                    self.wake.wait(generation).await;
                }
            }
        }
    }
}
