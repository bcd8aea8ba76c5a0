//! The runtime's clocks: the core reads none, it is handed [`Now`]. Under
//! the simulator they read the simulated node's clocks (`env.rs`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::core::Now;

/// A monotonic clock for timers and the wall clock for entry timestamps.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock whose monotonic time starts near zero now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    /// The time now.
    pub fn now(&self) -> Now {
        if let Some(env) = super::env::current() {
            return env.now();
        }
        Now {
            mono_us: self.mono_us(),
            wall_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
        }
    }
}

impl Clock {
    /// Monotonic microseconds only: one clock read instead of two, for
    /// timers (each read costs ~30 ns here, and the group loop reads the
    /// clock on every turn of every voter).
    pub fn mono_us(&self) -> u64 {
        if let Some(env) = super::env::current() {
            return env.now().mono_us;
        }
        self.start.elapsed().as_micros() as u64 + 1
    }

    /// The instant at which [`Clock::mono_us`] reads `mono_us`.
    pub fn instant_at(&self, mono_us: u64) -> Instant {
        self.start + Duration::from_micros(mono_us.saturating_sub(1))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
