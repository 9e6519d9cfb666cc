//! Each lane's running totals of attempts, read by the hub's alert rules: cumulative
//! counters, as Prometheus keeps them, so a reader takes two snapshots and looks at their
//! difference over the window it cares about. Recording is a few relaxed atomic adds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets: those of
/// `ferry_delivery_attempt_duration_seconds`, so the hub's p99 and Prometheus's agree.
pub const LATENCY_BOUNDS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One lane's attempt totals since the hub started.
#[derive(Debug, Default)]
pub struct AttemptTally {
    delivered: AtomicU64,
    failed: AtomicU64,
    /// Attempts per latency bucket (not cumulative); the last one is above every bound.
    latency: [AtomicU64; LATENCY_BOUNDS.len() + 1],
}

/// A copy of an [`AttemptTally`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TallySnapshot {
    /// Attempts that delivered.
    pub delivered: u64,
    /// Attempts that failed (to be retried, or dead).
    pub failed: u64,
    /// Attempts per latency bucket of [`LATENCY_BOUNDS`], then above the last bound.
    pub latency: [u64; LATENCY_BOUNDS.len() + 1],
}

impl AttemptTally {
    /// Count one attempt's outcome.
    pub fn outcome(&self, delivered: bool) {
        let counter = if delivered {
            &self.delivered
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Count one call's latency.
    pub fn latency(&self, latency: Duration) {
        let secs = latency.as_secs_f64();
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The totals now.
    pub fn snapshot(&self) -> TallySnapshot {
        TallySnapshot {
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            latency: std::array::from_fn(|i| self.latency[i].load(Ordering::Relaxed)),
        }
    }
}

impl TallySnapshot {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &TallySnapshot) -> TallySnapshot {
        TallySnapshot {
            delivered: self.delivered.saturating_sub(earlier.delivered),
            failed: self.failed.saturating_sub(earlier.failed),
            latency: std::array::from_fn(|i| self.latency[i].saturating_sub(earlier.latency[i])),
        }
    }

    /// Attempts counted.
    pub fn attempts(&self) -> u64 {
        self.delivered + self.failed
    }

    /// The `q` quantile (0 to 1) of the latencies counted, interpolated inside its bucket
    /// as Prometheus's `histogram_quantile` does; `None` without a call. Above the last
    /// bound it is that bound (Prometheus's answer too): "at least 30 s".
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, count) in self.latency.iter().enumerate() {
            let upto = below + count;
            if (upto as f64) >= rank && *count > 0 {
                let Some(upper) = LATENCY_BOUNDS.get(i) else {
                    return Some(Duration::from_secs_f64(LATENCY_BOUNDS[i - 1]));
                };
                let lower = if i == 0 { 0.0 } else { LATENCY_BOUNDS[i - 1] };
                let within = (rank - below as f64) / *count as f64;
                return Some(Duration::from_secs_f64(lower + (upper - lower) * within));
            }
            below = upto;
        }
        Some(Duration::from_secs_f64(
            LATENCY_BOUNDS[LATENCY_BOUNDS.len() - 1],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_the_difference_of_two_snapshots() {
        let tally = AttemptTally::default();
        tally.outcome(true);
        let before = tally.snapshot();
        tally.outcome(false);
        tally.outcome(false);
        tally.outcome(true);
        let window = tally.snapshot().since(&before);
        assert_eq!(
            (window.delivered, window.failed, window.attempts()),
            (1, 2, 3)
        );
    }

    #[test]
    fn p99_falls_in_the_bucket_of_the_slowest_calls() {
        let tally = AttemptTally::default();
        for _ in 0..98 {
            tally.latency(Duration::from_millis(3));
        }
        tally.latency(Duration::from_secs(7));
        tally.latency(Duration::from_secs(7));
        let p99 = tally.snapshot().latency_quantile(0.99).unwrap();
        assert!(
            p99 > Duration::from_secs(5) && p99 <= Duration::from_secs(10),
            "{p99:?}"
        );
        let p50 = tally.snapshot().latency_quantile(0.5).unwrap();
        assert!(
            p50 > Duration::from_millis(2) && p50 <= Duration::from_millis(5),
            "{p50:?}"
        );
        tally.latency(Duration::from_secs(600));
        let all = tally.snapshot().latency_quantile(1.0).unwrap();
        assert_eq!(all, Duration::from_secs(30));
        assert_eq!(TallySnapshot::default().latency_quantile(0.99), None);
    }
}
