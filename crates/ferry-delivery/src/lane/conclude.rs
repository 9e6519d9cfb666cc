//! Where a delivery goes after an attempt: delivered, retried at a backoff, dead-lettered,
//! or put back after a failure of this host; each counted and logged.

use std::time::{Duration, Instant};

use ferry_store::{ClaimedDelivery, DeliveryOutcome, Millis};
use metrics::Label;
use tracing::{debug, warn};

use super::Ctx;
use crate::classify::LocalFailure;
use crate::outcome::{AttemptResult, OutcomeKind, decide};

/// Decide where `delivery` goes after an attempt that produced `result` (the gate has
/// already learnt from the call), count and log the attempt. A retry is due `now` plus the
/// backoff `rng` draws.
pub(super) fn conclude(
    ctx: &Ctx,
    delivery: &ClaimedDelivery,
    result: AttemptResult,
    now: Millis,
    rng: &mut impl rand::Rng,
) -> DeliveryOutcome {
    conclude_with(ctx, delivery, result, now, rng, false)
}

/// [`conclude`] for a failed rendering: its error may quote the event's data (a VRL error
/// names the value it could not convert, a contract violation the offending field), so it
/// is recorded with the delivery but only its class is logged.
pub(super) fn conclude_render(
    ctx: &Ctx,
    delivery: &ClaimedDelivery,
    result: AttemptResult,
    now: Millis,
    rng: &mut impl rand::Rng,
) -> DeliveryOutcome {
    conclude_with(ctx, delivery, result, now, rng, true)
}

fn conclude_with(
    ctx: &Ctx,
    delivery: &ClaimedDelivery,
    result: AttemptResult,
    now: Millis,
    rng: &mut impl rand::Rng,
    error_quotes_data: bool,
) -> DeliveryOutcome {
    let (status, class, latency) = (result.status, result.error_class, result.latency);
    let error = if error_quotes_data {
        Some(format!("rendering failed ({class})"))
    } else {
        result.error.clone()
    };
    let local = result.verdict.local_failure();
    let decision = decide(delivery, &ctx.retry, result, now, rng);
    if let Some(cause) = local {
        note_local_failure(ctx, delivery, cause, error.as_deref());
        return decision.outcome;
    }
    // A synthetic event's attempts stay out of the business metrics and alert tallies.
    let synthetic = crate::synthetic::is_synthetic(delivery);
    if !synthetic {
        ctx.metrics.attempted(decision.kind);
    }
    if decision.kind == OutcomeKind::Delivered && !synthetic {
        ctx.metrics
            .end_to_end_seconds
            .record(end_to_end_seconds(delivery.received_at, now));
    }
    debug!(
        delivery = %delivery.id,
        flow = %ctx.key.flow,
        destination = %ctx.key.destination,
        attempt = delivery.round_attempts + 1,
        status,
        class,
        latency_ms = latency.as_millis() as u64,
        outcome = decision.kind.as_str(),
        error = error.as_deref(),
        "delivery attempt"
    );
    if decision.kind == OutcomeKind::Dead {
        let reason = if error_quotes_data {
            error.as_deref().unwrap_or("")
        } else {
            decision.log_reason.as_deref().unwrap_or("")
        };
        warn!(
            delivery = %delivery.id,
            flow = %ctx.key.flow,
            destination = %ctx.key.destination,
            reason,
            "delivery dead-lettered"
        );
    }
    decision.outcome
}

/// Seconds from an event's acceptance (`received_at`) to `delivered_at`, both in ms; 0 when
/// the clock stepped back in between. A replayed delivery counts from its event's acceptance.
fn end_to_end_seconds(received_at: Millis, delivered_at: Millis) -> f64 {
    (delivered_at - received_at).max(0) as f64 / 1000.0
}

/// Rate-limits a warning: at most one per interval, telling how many were left out since the
/// last one.
pub(super) struct LogThrottle {
    every: Duration,
    state: std::sync::Mutex<ThrottleState>,
}

struct ThrottleState {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// A throttle letting one warning through per `every`.
    pub(super) const fn new(every: Duration) -> Self {
        Self {
            every,
            state: std::sync::Mutex::new(ThrottleState {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// Whether to log at `now`: `Some(n)` with the number of warnings left out since the
    /// last one logged, or `None` (this one is left out and counted).
    pub(super) fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let due = state
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.every);
        if due {
            state.last = Some(now);
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
    }
}

/// How often, at most, a local failure is logged as a warning (process-wide: when the host
/// runs out of descriptors, every lane fails at once).
const LOCAL_FAILURE_WARN_EVERY: Duration = Duration::from_secs(30);
static LOCAL_FAILURE_WARNINGS: LogThrottle = LogThrottle::new(LOCAL_FAILURE_WARN_EVERY);

/// Count a delivery put back because its call failed on this host, and warn now and then.
fn note_local_failure(
    ctx: &Ctx,
    delivery: &ClaimedDelivery,
    cause: LocalFailure,
    error: Option<&str>,
) {
    let mut labels = ctx.labels.clone();
    labels.push(Label::new("reason", cause.as_str()));
    metrics::counter!(ferry_metrics::DELIVERY_LOCAL_FAILURES_TOTAL, labels).increment(1);
    debug!(delivery = %delivery.id, flow = %ctx.key.flow, destination = %ctx.key.destination, reason = cause.as_str(), error, "call failed on this host; delivery put back without spending an attempt");
    if let Some(suppressed) = LOCAL_FAILURE_WARNINGS.admit(Instant::now()) {
        warn!(
            flow = %ctx.key.flow,
            destination = %ctx.key.destination,
            reason = cause.as_str(),
            error,
            similar_since_last_warning = suppressed,
            "outbound calls fail because this host ran out of a resource (see the `reason`: emfile = the process's file-descriptor limit); the destination is not blamed: deliveries are put back without spending attempts and the circuit breaker is left alone"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::end_to_end_seconds;

    #[test]
    fn end_to_end_is_seconds_since_acceptance_and_never_negative() {
        assert_eq!(end_to_end_seconds(1_000, 3_500), 2.5);
        assert_eq!(end_to_end_seconds(5_000, 4_000), 0.0);
    }
}
