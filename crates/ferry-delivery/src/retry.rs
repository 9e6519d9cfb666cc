//! The retry policy of a lane: how often and for how long a delivery is retried, and how long
//! to wait between tries (exponential backoff with full jitter).

use std::time::Duration;

/// How a lane retries a delivery that failed with a retryable error.
///
/// Limits count per *round*: a round starts when the delivery is created and again on every
/// replay, so a replayed dead delivery gets a fresh budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per round, the first one included. When this many attempts have failed the
    /// delivery is dead-lettered. `0` behaves like `1` (no retries).
    pub max_attempts: u32,
    /// How long after the round started a retry may still be scheduled. A retry that would
    /// happen later than `round_started_at + max_age` dead-letters the delivery instead.
    pub max_age: Duration,
    /// The backoff ceiling after the first failed attempt.
    pub initial_backoff: Duration,
    /// The largest backoff ceiling (a `Retry-After` from the receiver may exceed it).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 12 attempts within a day, backoff ceilings from 1 s up to 10 min.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 12,
            max_age: Duration::from_secs(24 * 60 * 60),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10 * 60),
        }
    }
}

impl RetryPolicy {
    /// Full-jitter exponential backoff: uniform random in
    /// `[0, min(max_backoff, initial_backoff * 2^(round_attempts-1))]`.
    ///
    /// `round_attempts` is the number of attempts made in this round so far (the failed one
    /// included), so the wait after the first failure is drawn from `[0, initial_backoff]`.
    /// `0` is treated as `1`. Never overflows, whatever the inputs.
    pub fn backoff(&self, round_attempts: u32, rng: &mut impl rand::Rng) -> Duration {
        let ceiling = self.backoff_ceiling(round_attempts);
        // Nanoseconds fit in u64 for ~584 years; clamp anything longer.
        let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=ceiling_nanos))
    }

    /// The upper bound of [`RetryPolicy::backoff`] for `round_attempts`:
    /// `min(max_backoff, initial_backoff * 2^(round_attempts-1))`.
    pub fn backoff_ceiling(&self, round_attempts: u32) -> Duration {
        let exponent = round_attempts.max(1) - 1;
        let cap = self.max_backoff.as_nanos();
        let grown = if exponent >= 64 {
            u128::MAX
        } else {
            self.initial_backoff
                .as_nanos()
                .saturating_mul(1u128 << exponent)
        };
        let nanos = grown.min(cap);
        // `nanos <= max_backoff.as_nanos()`, which came from a Duration.
        Duration::new(
            u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX),
            u32::try_from(nanos % 1_000_000_000).unwrap_or(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            max_age: Duration::from_secs(3600),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }

    #[test]
    fn ceiling_grows_exponentially_then_caps() {
        let p = policy();
        assert_eq!(p.backoff_ceiling(0), Duration::from_millis(100));
        assert_eq!(p.backoff_ceiling(1), Duration::from_millis(100));
        assert_eq!(p.backoff_ceiling(2), Duration::from_millis(200));
        assert_eq!(p.backoff_ceiling(3), Duration::from_millis(400));
        assert_eq!(p.backoff_ceiling(5), Duration::from_millis(1600));
        assert_eq!(p.backoff_ceiling(6), Duration::from_secs(2));
        assert_eq!(p.backoff_ceiling(40), Duration::from_secs(2));
        assert_eq!(p.backoff_ceiling(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let p = RetryPolicy {
            max_attempts: u32::MAX,
            max_age: Duration::MAX,
            initial_backoff: Duration::MAX,
            max_backoff: Duration::MAX,
        };
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(p.backoff_ceiling(u32::MAX), Duration::MAX);
        let _ = p.backoff(u32::MAX, &mut rng);
        let zero = RetryPolicy {
            initial_backoff: Duration::ZERO,
            ..policy()
        };
        assert_eq!(zero.backoff(3, &mut rng), Duration::ZERO);
    }

    #[test]
    fn backoff_stays_within_full_jitter_range_and_spreads_over_it() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(42);
        for attempts in 1..=8 {
            let ceiling = p.backoff_ceiling(attempts);
            let samples: Vec<Duration> = (0..2000).map(|_| p.backoff(attempts, &mut rng)).collect();
            assert!(samples.iter().all(|d| *d <= ceiling), "above ceiling");
            // Full jitter: draws cover the whole range, not just its top (equal jitter) or a
            // fixed value (no jitter).
            let low = samples.iter().filter(|d| **d < ceiling / 4).count();
            let high = samples.iter().filter(|d| **d > ceiling * 3 / 4).count();
            assert!(low > 300 && high > 300, "not spread: low={low} high={high}");
            let mean = samples.iter().sum::<Duration>() / 2000;
            assert!(
                mean > ceiling * 2 / 5 && mean < ceiling * 3 / 5,
                "mean {mean:?} for ceiling {ceiling:?}"
            );
        }
    }

    #[test]
    fn later_rounds_wait_longer_on_average() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(1);
        let mean = |n: u32, rng: &mut StdRng| -> Duration {
            (0..1000).map(|_| p.backoff(n, rng)).sum::<Duration>() / 1000
        };
        let m1 = mean(1, &mut rng);
        let m3 = mean(3, &mut rng);
        let m10 = mean(10, &mut rng);
        assert!(m3 > m1 * 3, "{m1:?} {m3:?}");
        assert!(m10 > m3 && m10 <= Duration::from_secs(2));
    }
}
