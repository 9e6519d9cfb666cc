//! Property tests of the retry policy and the outcome decision: for any inputs (attempt
//! counts, durations, clocks, verdicts), `backoff` stays in its full-jitter range and never
//! panics, and `decide` never schedules a retry in the past, dead-letters at `max_attempts`,
//! honours `Retry-After` and respects `max_age`; a call that failed on this host is put back
//! soon whatever the limits, without an attempt.

use std::time::Duration;

use bytes::Bytes;
use ferry_delivery::{
    AttemptResult, LOCAL_RETRY_DELAY, LocalFailure, OutcomeKind, RetryPolicy, Verdict, decide,
};
use ferry_store::{ClaimedDelivery, DeliveryId, EventId, LaneKey, Millis, Next};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Durations from zero to `Duration::MAX`, weighted towards realistic ones.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        4 => (0u64..86_400_000).prop_map(Duration::from_millis),
        2 => (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        1 => Just(Duration::ZERO),
        1 => Just(Duration::MAX),
    ]
}

/// Attempt counts: small ones often, any `u32` sometimes.
fn attempts() -> impl Strategy<Value = u32> {
    prop_oneof![3 => 0u32..40, 1 => any::<u32>()]
}

/// Clock readings: around today often, any `i64` sometimes.
fn millis() -> impl Strategy<Value = Millis> {
    const T0: Millis = 1_700_000_000_000;
    prop_oneof![
        3 => T0..T0 + 10 * 86_400_000,
        1 => any::<i64>(),
    ]
}

fn policy() -> impl Strategy<Value = RetryPolicy> {
    (attempts(), duration(), duration(), duration()).prop_map(
        |(max_attempts, max_age, initial_backoff, max_backoff)| RetryPolicy {
            max_attempts,
            max_age,
            initial_backoff,
            max_backoff,
        },
    )
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![
        Just(Verdict::Delivered),
        Just(Verdict::Permanent),
        proptest::option::of(duration()).prop_map(|retry_after| Verdict::Retry { retry_after }),
    ]
}

/// `min(max_backoff, initial_backoff * 2^(n-1))` in nanoseconds, computed independently of
/// the implementation (saturating at `u128::MAX` before the cap).
fn expected_ceiling_nanos(p: &RetryPolicy, round_attempts: u32) -> u128 {
    let exponent = round_attempts.max(1) - 1;
    let grown = 1u128
        .checked_shl(exponent)
        .and_then(|factor| p.initial_backoff.as_nanos().checked_mul(factor))
        .unwrap_or(u128::MAX);
    grown.min(p.max_backoff.as_nanos())
}

fn to_millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn claimed(round_attempts: u32, round_started_at: Millis) -> ClaimedDelivery {
    ClaimedDelivery {
        id: DeliveryId::new(),
        event_id: EventId::new(),
        lane: LaneKey {
            flow: "f".into(),
            destination: "d".into(),
        },
        event_type: None,
        received_at: round_started_at,
        clear_payload: None,
        headers: Vec::new(),
        payload: Bytes::from_static(b"{}"),
        attempts: round_attempts,
        round_attempts,
        round_started_at,
    }
}

fn result(verdict: Verdict, started_at: Millis, excerpt: Option<String>) -> AttemptResult {
    let (status, error_class, error) = match verdict {
        Verdict::Delivered => (Some(200), "ok", None),
        Verdict::Permanent => (
            Some(400),
            "http_4xx",
            Some("HTTP 400 Bad Request".to_owned()),
        ),
        Verdict::Retry { .. } => (None, "connect", Some("connect error: refused".to_owned())),
        Verdict::Local { .. } => (
            None,
            "local_failure",
            Some("tcp open error: Too many open files (os error 24)".to_owned()),
        ),
    };
    AttemptResult {
        started_at,
        latency: Duration::from_millis(7),
        status,
        verdict,
        error_class,
        error,
        response_excerpt: excerpt,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn backoff_stays_within_full_jitter_ceiling(
        p in policy(),
        round_attempts in attempts(),
        seed in any::<u64>(),
    ) {
        let expected = expected_ceiling_nanos(&p, round_attempts);
        let ceiling = p.backoff_ceiling(round_attempts);
        prop_assert_eq!(ceiling.as_nanos(), expected);
        prop_assert!(ceiling <= p.max_backoff);
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..8 {
            let wait = p.backoff(round_attempts, &mut rng);
            prop_assert!(wait.as_nanos() <= expected, "{wait:?} above {expected}ns");
        }
    }

    #[test]
    fn backoff_ceiling_never_shrinks_as_attempts_grow(p in policy(), n in attempts()) {
        prop_assert!(p.backoff_ceiling(n) <= p.backoff_ceiling(n.saturating_add(1)));
    }

    #[test]
    fn decide_never_schedules_into_the_past(
        p in policy(),
        round_attempts in attempts(),
        round_started_at in millis(),
        now in millis(),
        verdict in verdict(),
        excerpt in proptest::option::of(".{0,300}"),
        seed in any::<u64>(),
    ) {
        let delivery = claimed(round_attempts, round_started_at);
        let decision = decide(
            &delivery,
            &p,
            result(verdict, now, excerpt),
            now,
            &mut StdRng::seed_from_u64(seed),
        );
        // Every decision records the attempt, for the delivery it was asked about.
        prop_assert_eq!(decision.outcome.id, delivery.id);
        let attempt = decision.outcome.attempt.as_ref().expect("attempt recorded");
        prop_assert_eq!(attempt.started_at, now);

        let attempts_made = round_attempts.saturating_add(1);
        let deadline = round_started_at.saturating_add(to_millis(p.max_age));
        match (verdict, &decision.outcome.next) {
            (Verdict::Delivered, Next::Delivered) => {
                prop_assert_eq!(decision.kind, OutcomeKind::Delivered);
            }
            (Verdict::Permanent, Next::Dead { reason }) => {
                prop_assert_eq!(decision.kind, OutcomeKind::Dead);
                prop_assert!(reason.starts_with("permanent failure: "), "{}", reason);
            }
            (Verdict::Retry { .. }, Next::Dead { reason }) if attempts_made >= p.max_attempts => {
                prop_assert_eq!(decision.kind, OutcomeKind::Dead);
                let gave_up = format!("gave up after {attempts_made} attempts: ");
                prop_assert!(reason.starts_with(&gave_up), "{}", reason);
            }
            (Verdict::Retry { retry_after }, Next::Dead { reason }) => {
                // Only the age limit may kill a retryable failure below max_attempts, and
                // only when the receiver's wait (if any) really lands past the deadline.
                prop_assert_eq!(decision.kind, OutcomeKind::Dead);
                prop_assert!(reason.starts_with("expired: older than max_age "), "{}", reason);
                if let Some(wait) = retry_after {
                    prop_assert!(now.saturating_add(to_millis(wait)) > deadline);
                } else {
                    // The earliest possible retry (a zero backoff) would be `now`.
                    let ceiling = to_millis(p.backoff_ceiling(attempts_made));
                    prop_assert!(now.saturating_add(ceiling) > deadline);
                }
            }
            (Verdict::Retry { retry_after }, Next::Retry { at }) => {
                prop_assert!(attempts_made < p.max_attempts);
                prop_assert_eq!(decision.kind, OutcomeKind::Retry);
                prop_assert!(*at >= now, "retry at {} before now {}", at, now);
                prop_assert!(*at <= deadline, "retry at {} after deadline {}", at, deadline);
                match retry_after {
                    Some(wait) => prop_assert_eq!(*at, now.saturating_add(to_millis(wait))),
                    None => {
                        let ceiling = to_millis(p.backoff_ceiling(attempts_made));
                        prop_assert!(*at <= now.saturating_add(ceiling));
                    }
                }
            }
            (verdict, next) => {
                prop_assert!(false, "verdict {:?} led to {:?}", verdict, next);
            }
        }
    }

    #[test]
    fn a_local_failure_is_put_back_soon_without_an_attempt(
        p in policy(),
        round_attempts in attempts(),
        round_started_at in millis(),
        now in millis(),
        cause in prop_oneof![
            Just(LocalFailure::ProcessFileLimit),
            Just(LocalFailure::SystemFileLimit),
            Just(LocalFailure::NoBufferSpace),
            Just(LocalFailure::OutOfMemory),
        ],
        seed in any::<u64>(),
    ) {
        // Whatever the budget and the age: spent, expired or not, the delivery is not dead.
        let decision = decide(
            &claimed(round_attempts, round_started_at),
            &p,
            result(Verdict::Local { cause }, now, None),
            now,
            &mut StdRng::seed_from_u64(seed),
        );
        prop_assert_eq!(decision.kind, OutcomeKind::Local);
        prop_assert!(decision.outcome.attempt.is_none(), "no attempt recorded");
        prop_assert!(decision.log_reason.is_none());
        let delay = to_millis(LOCAL_RETRY_DELAY);
        let Next::Release { at } = decision.outcome.next else {
            return Err(TestCaseError::fail(format!("{:?}", decision.outcome.next)));
        };
        prop_assert!(at >= now.saturating_add(delay), "{} too soon after {}", at, now);
        prop_assert!(at <= now.saturating_add(delay + delay / 2), "{} too late after {}", at, now);
    }

    #[test]
    fn dead_once_the_round_budget_is_spent(
        p in policy(),
        round_attempts in attempts(),
        now in millis(),
        retry_after in proptest::option::of(duration()),
    ) {
        prop_assume!(round_attempts.saturating_add(1) >= p.max_attempts);
        let decision = decide(
            &claimed(round_attempts, now),
            &p,
            result(Verdict::Retry { retry_after }, now, None),
            now,
            &mut StdRng::seed_from_u64(0),
        );
        prop_assert!(matches!(decision.outcome.next, Next::Dead { .. }), "{:?}", decision.outcome.next);
        prop_assert_eq!(decision.kind, OutcomeKind::Dead);
    }

    #[test]
    fn retry_after_is_honoured_exactly_when_it_fits(
        max_attempts in 2u32..100,
        round_attempts in 0u32..100,
        wait_ms in 0u64..3_600_000,
        max_backoff in duration(),
        now in millis(),
    ) {
        prop_assume!(round_attempts + 1 < max_attempts);
        // The round started just now and may last longer than the wait: no expiry.
        let p = RetryPolicy {
            max_attempts,
            max_age: Duration::from_millis(wait_ms),
            initial_backoff: Duration::from_secs(1),
            max_backoff,
        };
        let decision = decide(
            &claimed(round_attempts, now),
            &p,
            result(Verdict::Retry { retry_after: Some(Duration::from_millis(wait_ms)) }, now, None),
            now,
            &mut StdRng::seed_from_u64(0),
        );
        let expected = now.saturating_add(wait_ms as i64);
        prop_assert_eq!(decision.outcome.next, Next::Retry { at: expected });
    }
}
