//! The runtime's clocks: the core reads none, it is handed [`Now`].

use std::time::{Instant, SystemTime, UNIX_EPOCH};

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
        Now {
            mono_us: self.start.elapsed().as_micros() as u64 + 1,
            wall_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
