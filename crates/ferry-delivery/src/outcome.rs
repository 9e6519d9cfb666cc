//! The outcome decision: given a claimed delivery, its lane's retry policy and the result of
//! one attempt, where does the delivery go next? A pure function, so every rule is tested
//! without a network or a store.

use std::time::Duration;

use ferry_store::{Attempt, ClaimedDelivery, DeliveryOutcome, Millis, Next};

use crate::classify::Verdict;
use crate::retry::RetryPolicy;

/// The longest response excerpt quoted in a dead-letter reason (in characters).
const REASON_EXCERPT_CHARS: usize = 200;
/// How long a delivery whose call failed on this host ([`Verdict::Local`]) waits before it
/// is tried again, at least; up to half of it again is added as jitter.
pub const LOCAL_RETRY_DELAY: Duration = Duration::from_secs(1);

/// What one attempt produced, as seen by the connector.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptResult {
    /// When the attempt started (ms since the epoch).
    pub started_at: Millis,
    /// How long the attempt took, excerpt reading included.
    pub latency: Duration,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// What the result means.
    pub verdict: Verdict,
    /// Stable class: `ok`, `http_429`, `http_3xx`, `http_4xx`, `http_5xx`, `http_other`,
    /// `timeout`, `connect`, `request`, `egress_refused` (the SSRF guard refused the
    /// destination's address: permanent), or `local_failure` (this host ran out of a
    /// resource: [`Verdict::Local`], not an attempt).
    pub error_class: &'static str,
    /// Human-readable error (`HTTP 503 Service Unavailable`, `connect error: ...`); `None`
    /// on success. Never contains payloads, header values or URLs.
    pub error: Option<String>,
    /// The first bytes of the response body, lossily decoded.
    pub response_excerpt: Option<String>,
}

/// How a [`Decision`] is counted in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutcomeKind {
    /// Delivered.
    Delivered,
    /// Scheduled for another attempt.
    Retry,
    /// Dead-lettered.
    Dead,
    /// Put back without spending an attempt: the call failed on this host
    /// ([`Verdict::Local`]). Not counted as an attempt.
    Local,
}

impl OutcomeKind {
    /// The metrics label: `delivered`, `retry`, `dead` or `local`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Delivered => "delivered",
            OutcomeKind::Retry => "retry",
            OutcomeKind::Dead => "dead",
            OutcomeKind::Local => "local",
        }
    }
}

/// The result of [`decide`].
#[derive(Clone, Debug)]
pub struct Decision {
    /// What to record in the store.
    pub outcome: DeliveryOutcome,
    /// For metrics.
    pub kind: OutcomeKind,
    /// For a dead delivery: the reason without the response excerpt, safe to log (a
    /// response body may echo personal data back).
    pub log_reason: Option<String>,
}

/// Decide where `delivery` goes after an attempt that produced `result`, at `now`.
///
/// - delivered: [`Next::Delivered`];
/// - permanent failure: [`Next::Dead`], reason `permanent failure: HTTP 400 Bad Request: <excerpt>`;
/// - retryable failure: dead (`gave up after N attempts: ...`) once this attempt reaches
///   `max_attempts` for the round; otherwise wait the receiver's `Retry-After` (honoured
///   even above `max_backoff`) or else a full-jitter backoff; if that retry would fall after
///   `round_started_at + max_age`, dead (`expired: ...`), else [`Next::Retry`];
/// - failed on this host ([`Verdict::Local`]): [`Next::Release`] after
///   [`LOCAL_RETRY_DELAY`] plus jitter, whatever the retry limits say.
///
/// Every decision records the attempt, except a local failure's: the destination was not
/// asked, so the delivery spends no attempt and keeps its round.
pub fn decide(
    delivery: &ClaimedDelivery,
    policy: &RetryPolicy,
    result: AttemptResult,
    now: Millis,
    rng: &mut impl rand::Rng,
) -> Decision {
    let attempts_made = delivery.round_attempts.saturating_add(1);
    let last_error = result
        .error
        .clone()
        .unwrap_or_else(|| result.error_class.to_owned());
    let (kind, next, log_reason) = match result.verdict {
        Verdict::Delivered => (OutcomeKind::Delivered, Next::Delivered, None),
        Verdict::Permanent => {
            let headline = format!("permanent failure: {last_error}");
            let reason = with_excerpt(&headline, result.response_excerpt.as_deref());
            (OutcomeKind::Dead, Next::Dead { reason }, Some(headline))
        }
        // No attempt was made: nothing to record, no limit to check.
        Verdict::Local { .. } => return put_back(delivery, now, rng),
        Verdict::Retry { retry_after } => {
            if attempts_made >= policy.max_attempts {
                let headline = format!("gave up after {attempts_made} attempts: {last_error}");
                let reason = with_excerpt(&headline, result.response_excerpt.as_deref());
                (OutcomeKind::Dead, Next::Dead { reason }, Some(headline))
            } else {
                let delay = retry_after.unwrap_or_else(|| policy.backoff(attempts_made, rng));
                let at = now.saturating_add(millis(delay));
                let deadline = delivery
                    .round_started_at
                    .saturating_add(millis(policy.max_age));
                if at > deadline {
                    let headline = format!(
                        "expired: older than max_age {} (next attempt would be {} after the round started); last error: {last_error}",
                        human(policy.max_age),
                        human(Duration::from_millis(
                            u64::try_from(at.saturating_sub(delivery.round_started_at))
                                .unwrap_or(0)
                        )),
                    );
                    let reason = with_excerpt(&headline, result.response_excerpt.as_deref());
                    (OutcomeKind::Dead, Next::Dead { reason }, Some(headline))
                } else {
                    (OutcomeKind::Retry, Next::Retry { at }, None)
                }
            }
        }
    };
    let attempt = Attempt {
        started_at: result.started_at,
        latency_ms: u32::try_from(result.latency.as_millis()).unwrap_or(u32::MAX),
        status: result.status,
        error_class: Some(result.error_class.to_owned()),
        error: result.error,
        response_excerpt: result.response_excerpt,
    };
    Decision {
        outcome: DeliveryOutcome {
            claim: None,
            audit: Default::default(),
            id: delivery.id,
            attempt: Some(attempt),
            next,
        },
        kind,
        log_reason,
    }
}

/// The decision for a call that failed on this host: release the delivery (no attempt
/// recorded) to be tried again after [`LOCAL_RETRY_DELAY`] plus up to half of it in jitter,
/// so that many deliveries put back at once do not all come back at once.
fn put_back(delivery: &ClaimedDelivery, now: Millis, rng: &mut impl rand::Rng) -> Decision {
    let base = millis(LOCAL_RETRY_DELAY);
    let at = now.saturating_add(base + rng.random_range(0..=base / 2));
    Decision {
        outcome: DeliveryOutcome {
            claim: None,
            audit: Default::default(),
            id: delivery.id,
            attempt: None,
            next: Next::Release { at },
        },
        kind: OutcomeKind::Local,
        log_reason: None,
    }
}

fn with_excerpt(headline: &str, excerpt: Option<&str>) -> String {
    // An excerpt encrypted at rest stays in the attempt only, readable while its key lives.
    let quotable = |e: &&str| !e.is_empty() && !e.starts_with(crate::render::SEALED_EXCERPT_PREFIX);
    match excerpt.map(str::trim).filter(quotable) {
        Some(excerpt) => {
            let short: String = excerpt.chars().take(REASON_EXCERPT_CHARS).collect();
            format!("{headline}: {short}")
        }
        None => headline.to_owned(),
    }
}

fn millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `90s` -> `1m30s`, `3600s` -> `1h`, `250ms` -> `250ms`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferry_store::{DeliveryId, EventId, LaneKey};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const T0: Millis = 1_700_000_000_000;

    fn delivery(round_attempts: u32, round_started_at: Millis) -> ClaimedDelivery {
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
            headers: vec![],
            payload: Bytes::from_static(b"{}"),
            attempts: round_attempts,
            round_attempts,
            round_started_at,
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            max_age: Duration::from_secs(3600),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }

    fn http(status: u16, verdict: Verdict, excerpt: Option<&str>) -> AttemptResult {
        AttemptResult {
            started_at: T0 + 10,
            latency: Duration::from_millis(42),
            status: Some(status),
            verdict,
            error_class: crate::classify::status_class(status),
            error: (verdict != Verdict::Delivered).then(|| format!("HTTP {status}")),
            response_excerpt: excerpt.map(str::to_owned),
        }
    }

    fn retry(retry_after: Option<Duration>) -> Verdict {
        Verdict::Retry { retry_after }
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(3)
    }

    #[test]
    fn delivered_records_attempt() {
        let d = delivery(0, T0);
        let dec = decide(
            &d,
            &policy(),
            http(200, Verdict::Delivered, Some("ok")),
            T0 + 60,
            &mut rng(),
        );
        assert_eq!(dec.kind, OutcomeKind::Delivered);
        assert_eq!(dec.outcome.id, d.id);
        assert_eq!(dec.outcome.next, Next::Delivered);
        assert_eq!(
            dec.outcome.attempt,
            Some(Attempt {
                started_at: T0 + 10,
                latency_ms: 42,
                status: Some(200),
                error_class: Some("ok".into()),
                error: None,
                response_excerpt: Some("ok".into()),
            })
        );
        assert_eq!(dec.log_reason, None);
    }

    #[test]
    fn permanent_dies_at_once_with_reason() {
        let d = delivery(0, T0);
        let mut result = http(400, Verdict::Permanent, Some("{\"error\":\"bad field\"}"));
        result.error = Some("HTTP 400 Bad Request".into());
        let dec = decide(&d, &policy(), result, T0 + 60, &mut rng());
        assert_eq!(dec.kind, OutcomeKind::Dead);
        assert_eq!(
            dec.outcome.next,
            Next::Dead {
                reason: "permanent failure: HTTP 400 Bad Request: {\"error\":\"bad field\"}".into()
            }
        );
        assert_eq!(
            dec.log_reason.as_deref(),
            Some("permanent failure: HTTP 400 Bad Request")
        );
        assert_eq!(
            dec.outcome.attempt.unwrap().error_class.as_deref(),
            Some("http_4xx")
        );
    }

    #[test]
    fn retry_within_backoff_ceiling() {
        let p = policy();
        for round_attempts in 0..4 {
            let d = delivery(round_attempts, T0);
            let now = T0 + 1000;
            for seed in 0..50 {
                let dec = decide(
                    &d,
                    &p,
                    http(503, retry(None), None),
                    now,
                    &mut StdRng::seed_from_u64(seed),
                );
                let Next::Retry { at } = dec.outcome.next else {
                    panic!("expected retry, got {:?}", dec.outcome.next)
                };
                let ceiling = millis(p.backoff_ceiling(round_attempts + 1));
                assert!(
                    at >= now && at <= now + ceiling,
                    "at {} ceiling {ceiling}",
                    at - now
                );
                assert_eq!(dec.kind, OutcomeKind::Retry);
            }
        }
    }

    #[test]
    fn gives_up_at_max_attempts() {
        let p = policy();
        // Attempt 4 of 5 may still retry...
        let dec = decide(
            &delivery(3, T0),
            &p,
            http(503, retry(None), None),
            T0,
            &mut rng(),
        );
        assert!(matches!(dec.outcome.next, Next::Retry { .. }));
        // ...attempt 5 of 5 is the last.
        let dec = decide(
            &delivery(4, T0),
            &p,
            http(503, retry(None), Some("down")),
            T0,
            &mut rng(),
        );
        assert_eq!(
            dec.outcome.next,
            Next::Dead {
                reason: "gave up after 5 attempts: HTTP 503: down".into()
            }
        );
        assert_eq!(dec.kind, OutcomeKind::Dead);
        // A limit of 1 (or 0) means no retries at all.
        for max in [0, 1] {
            let p = RetryPolicy {
                max_attempts: max,
                ..policy()
            };
            let dec = decide(
                &delivery(0, T0),
                &p,
                http(503, retry(None), None),
                T0,
                &mut rng(),
            );
            assert!(matches!(dec.outcome.next, Next::Dead { .. }));
        }
    }

    #[test]
    fn transport_error_reason_uses_error_text() {
        let result = AttemptResult {
            started_at: T0,
            latency: Duration::from_millis(3),
            status: None,
            verdict: retry(None),
            error_class: "connect",
            error: Some("connect error: Connection refused".into()),
            response_excerpt: None,
        };
        let p = RetryPolicy {
            max_attempts: 1,
            ..policy()
        };
        let dec = decide(&delivery(0, T0), &p, result, T0, &mut rng());
        assert_eq!(
            dec.outcome.next,
            Next::Dead {
                reason: "gave up after 1 attempts: connect error: Connection refused".into()
            }
        );
        let attempt = dec.outcome.attempt.unwrap();
        assert_eq!(attempt.status, None);
        assert_eq!(attempt.error_class.as_deref(), Some("connect"));
    }

    #[test]
    fn expires_when_retry_would_pass_max_age() {
        let p = policy(); // max_age 1h, backoff ceiling 1s for the first retry
        let started = T0;
        // 10 s left in the round: a <=1 s backoff fits.
        let now = started + 3_590_000;
        let dec = decide(
            &delivery(0, started),
            &p,
            http(500, retry(None), None),
            now,
            &mut rng(),
        );
        assert!(
            matches!(dec.outcome.next, Next::Retry { .. }),
            "{:?}",
            dec.outcome.next
        );
        // Already past max_age: dead, whatever the backoff.
        let now = started + 3_600_001;
        let dec = decide(
            &delivery(0, started),
            &p,
            http(500, retry(None), None),
            now,
            &mut rng(),
        );
        let Next::Dead { reason } = dec.outcome.next else {
            panic!()
        };
        assert!(
            reason.starts_with("expired: older than max_age 1h"),
            "{reason}"
        );
        assert!(reason.ends_with("last error: HTTP 500"), "{reason}");
        // A Retry-After that lands beyond max_age expires it too.
        let now = started + 3_590_000;
        let dec = decide(
            &delivery(0, started),
            &p,
            http(429, retry(Some(Duration::from_secs(11))), None),
            now,
            &mut rng(),
        );
        assert!(
            matches!(dec.outcome.next, Next::Dead { .. }),
            "{:?}",
            dec.outcome.next
        );
    }

    #[test]
    fn retry_after_beats_backoff_even_above_max_backoff() {
        let p = policy(); // max_backoff 60 s
        let now = T0 + 5;
        let dec = decide(
            &delivery(0, T0),
            &p,
            http(429, retry(Some(Duration::from_secs(120))), None),
            now,
            &mut rng(),
        );
        assert_eq!(dec.outcome.next, Next::Retry { at: now + 120_000 });
        // And below the backoff as well: exactly what the receiver asked for.
        let dec = decide(
            &delivery(6, T0),
            &RetryPolicy {
                max_attempts: 100,
                ..p
            },
            http(503, retry(Some(Duration::from_millis(1500))), None),
            now,
            &mut rng(),
        );
        assert_eq!(dec.outcome.next, Next::Retry { at: now + 1500 });
    }

    #[test]
    fn reason_excerpt_is_bounded() {
        let long = "x".repeat(5000);
        let dec = decide(
            &delivery(0, T0),
            &policy(),
            http(422, Verdict::Permanent, Some(&long)),
            T0,
            &mut rng(),
        );
        let Next::Dead { reason } = dec.outcome.next else {
            panic!()
        };
        assert!(reason.len() < 300, "{}", reason.len());
        // The attempt keeps the full (connector-bounded) excerpt.
        assert_eq!(
            dec.outcome.attempt.unwrap().response_excerpt.unwrap().len(),
            5000
        );
    }

    #[test]
    fn a_local_failure_is_put_back_without_an_attempt() {
        let p = policy(); // max_attempts 5, max_age 1h
        let local = AttemptResult {
            started_at: T0,
            latency: Duration::from_millis(1),
            status: None,
            verdict: Verdict::Local {
                cause: crate::classify::LocalFailure::ProcessFileLimit,
            },
            error_class: crate::classify::LOCAL_FAILURE,
            error: Some("tcp open error: Too many open files (os error 24)".into()),
            response_excerpt: None,
        };
        // The last attempt of the round, and already past max_age: still not dead.
        let now = T0 + 3_600_001;
        for seed in 0..50 {
            let d = delivery(4, T0);
            let dec = decide(&d, &p, local.clone(), now, &mut StdRng::seed_from_u64(seed));
            assert_eq!(dec.kind, OutcomeKind::Local);
            assert_eq!(dec.outcome.id, d.id);
            assert_eq!(dec.outcome.attempt, None, "no attempt is recorded");
            assert_eq!(dec.log_reason, None);
            let Next::Release { at } = dec.outcome.next else {
                panic!("expected a release, got {:?}", dec.outcome.next)
            };
            assert!((now + 1000..=now + 1500).contains(&at), "+{}", at - now);
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_secs(3600)), "1h");
        assert_eq!(human(Duration::from_secs(86_400 * 3 + 61)), "72h1m1s");
    }
}
