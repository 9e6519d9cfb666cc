//! One time base shared by the sender and the receiver (same process, same clock).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Maps monotonic instants to nanoseconds since the UNIX epoch, anchored once, so that
/// wall-clock steps during a run cannot distort latencies.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_wall_ns: u64,
}

impl Clock {
    pub fn new() -> Self {
        let base = Instant::now();
        let base_wall_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Self { base, base_wall_ns }
    }

    /// Nanoseconds since the UNIX epoch at `t`.
    pub fn wall_ns(&self, t: Instant) -> u64 {
        let since = t.saturating_duration_since(self.base).as_nanos();
        self.base_wall_ns
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }

    /// Nanoseconds since the UNIX epoch now.
    #[cfg(test)]
    pub fn now_ns(&self) -> u64 {
        self.wall_ns(Instant::now())
    }
}

/// Current UNIX time in seconds.
pub fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
