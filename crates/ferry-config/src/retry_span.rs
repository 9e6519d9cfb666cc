//! How long a destination's retries last: the time a round of attempts spans, from the
//! first failure to the last attempt, and what a system's tier asks of it.
//!
//! The wait before retry `k` (from 1) is drawn uniformly from `[0, cap_k]` (full jitter),
//! with `cap_k = min(max_backoff, initial_backoff × 2^(k-1))`; a round has `max_attempts - 1`
//! waits and ends at `max_age` at the latest. So the attempts span at most the sum of the
//! caps, and on average half of it.

use std::time::Duration;

use crate::model::{RetryConfig, Tier};

/// The time a round of attempts spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySpan {
    /// The waits between the attempts (`max_attempts - 1`).
    pub waits: u32,
    /// The sum of the backoff caps, at most `max_age`: the longest a round can last.
    pub longest: Duration,
    /// Half that sum (each wait averages half its cap), at most `max_age`: how long a round
    /// lasts on average. What the checks compare.
    pub expected: Duration,
}

impl RetryConfig {
    /// How long a round of this policy's attempts spans (see the [module](self)).
    pub fn span(&self) -> RetrySpan {
        let waits = self.max_attempts.saturating_sub(1);
        let mut caps = Duration::ZERO;
        let mut cap = self.initial_backoff.min(self.max_backoff);
        let mut k = 0;
        // Doubling caps until they reach `max_backoff` (at most ~64 steps), then the rest
        // at `max_backoff` at once. A zero cap never grows.
        while k < waits && cap < self.max_backoff && !cap.is_zero() {
            caps = caps.saturating_add(cap);
            cap = cap.saturating_mul(2).min(self.max_backoff);
            k += 1;
        }
        if !cap.is_zero() {
            caps = caps.saturating_add(cap.saturating_mul(waits - k));
        }
        RetrySpan {
            waits,
            longest: caps.min(self.max_age),
            expected: (caps / 2).min(self.max_age),
        }
    }
}

impl Tier {
    /// The outage a destination of a system of this tier should ride out with its retries
    /// before a delivery is dead-lettered: critical 1h, high 15m, low 5m.
    pub fn min_retry_span(self) -> Duration {
        match self {
            Tier::Critical => Duration::from_secs(3600),
            Tier::High => Duration::from_secs(15 * 60),
            Tier::Low => Duration::from_secs(5 * 60),
        }
    }

    /// The tier's name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Critical => "critical",
            Tier::High => "high",
            Tier::Low => "low",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32, initial: u64, max: u64) -> RetryConfig {
        RetryConfig {
            max_attempts,
            initial_backoff: Duration::from_millis(initial),
            max_backoff: Duration::from_millis(max),
            ..RetryConfig::default()
        }
    }

    #[test]
    fn caps_double_then_stay_at_max_backoff() {
        // 100ms, 200ms, 400ms, 800ms, 1s, 1s: 3.5s at most, 1.75s on average.
        let s = policy(7, 100, 1000).span();
        assert_eq!(s.waits, 6);
        assert_eq!(s.longest, Duration::from_millis(3500));
        assert_eq!(s.expected, Duration::from_millis(1750));
        // The default policy: 1s doubling to 1h over 11 waits is 2047s.
        let d = RetryConfig::default().span();
        assert_eq!(d.longest, Duration::from_secs(2047));
        assert_eq!(d.expected, Duration::from_millis(1_023_500));
    }

    #[test]
    fn max_age_ends_the_round() {
        let p = RetryConfig {
            max_age: Duration::from_secs(60),
            ..policy(50, 1000, 3_600_000)
        };
        assert_eq!(p.span().longest, Duration::from_secs(60));
        assert_eq!(p.span().expected, Duration::from_secs(60));
    }

    #[test]
    fn edge_policies_do_not_overflow_or_loop() {
        assert_eq!(policy(1, 1000, 1000).span().longest, Duration::ZERO);
        assert_eq!(policy(0, 1000, 1000).span().waits, 0);
        assert_eq!(policy(u32::MAX, 0, 1000).span().longest, Duration::ZERO);
        let huge = RetryConfig {
            max_attempts: u32::MAX,
            initial_backoff: Duration::MAX,
            max_backoff: Duration::MAX,
            max_age: Duration::MAX,
        };
        assert_eq!(huge.span().longest, Duration::MAX);
        // initial_backoff above max_backoff (an error elsewhere): capped.
        assert_eq!(
            policy(3, 5000, 1000).span().longest,
            Duration::from_millis(2000)
        );
    }
}
