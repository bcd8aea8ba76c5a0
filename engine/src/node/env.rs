//! Where the runtime's tasks run and how its time passes.
//!
//! In production that is the shard's glommio executor and the machine's
//! clocks. The deterministic simulator runs the same runtime (the group
//! loop, its log writer, snapshot transfers, log streams, tokens) on an
//! executor of its own with simulated time: it [`enter`]s a node's [`Env`]
//! around every poll of that node's tasks, so everything the runtime
//! spawns, every sleep and every clock read goes to the simulated node,
//! as glommio's own `spawn_local` goes to the current executor.
//!
//! Lives on one thread (not `Send`).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use crate::core::Now;

/// A task or a sleep, boxed.
pub type LocalTask = Pin<Box<dyn Future<Output = ()>>>;

/// What the runtime needs from around it, when that is not glommio and the
/// machine's clocks (the simulator).
pub trait Env {
    /// Runs `task` to completion in the background (detached).
    fn spawn(&self, task: LocalTask);
    /// Resolves once `duration` of this node's time has passed.
    fn sleep(&self, duration: Duration) -> LocalTask;
    /// This node's clocks: monotonic microseconds (from 1) and the wall
    /// clock for entry timestamps.
    fn now(&self) -> Now;
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<dyn Env>>> = const { RefCell::new(None) };
}

/// Runs `f` with `env` as the runtime's surroundings (restoring the
/// previous ones after, even if `f` panics).
pub fn enter<T>(env: &Rc<dyn Env>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Rc<dyn Env>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|current| *current.borrow_mut() = previous);
        }
    }
    let previous = CURRENT.with(|current| current.borrow_mut().replace(env.clone()));
    let _restore = Restore(previous);
    f()
}

/// The simulated surroundings, if any were entered.
pub(crate) fn current() -> Option<Rc<dyn Env>> {
    CURRENT.with(|current| current.borrow().clone())
}

/// Spawns a detached task on the current executor.
pub fn spawn(task: impl Future<Output = ()> + 'static) {
    match current() {
        Some(env) => env.spawn(Box::pin(task)),
        None => {
            glommio::spawn_local(task).detach();
        }
    }
}

/// Sleeps for `duration` of the node's time.
pub async fn sleep(duration: Duration) {
    match current() {
        Some(env) => env.sleep(duration).await,
        None => glommio::timer::sleep(duration).await,
    }
}

/// A random 64-bit value from the OS generator: the seeds of election
/// jitter and gossip, and client session ids. Should the OS generator
/// fail, the process id through SipHash's randomly keyed state.
pub fn random_u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish()
    })
}
