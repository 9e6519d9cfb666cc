//! The metric handles every attempt of a lane records.

use std::sync::Arc;
use std::time::Duration;

use metrics::Label;

use crate::outcome::OutcomeKind;
use crate::tally::AttemptTally;

/// Handles of the metrics every attempt records, registered once per lane: the `metrics`
/// macros would otherwise build and look up the labelled key on every call.
pub(super) struct LaneMetrics {
    pub in_flight: metrics::Gauge,
    attempt_seconds: metrics::Histogram,
    /// The same attempts, totalled for the hub's alert rules.
    tally: Arc<AttemptTally>,
    /// `ferry_delivery_end_to_end_seconds`: from the event's acceptance to its delivery.
    pub end_to_end_seconds: metrics::Histogram,
    delivered: metrics::Counter,
    retry: metrics::Counter,
    dead: metrics::Counter,
}

impl LaneMetrics {
    pub fn new(labels: &[Label], tally: Arc<AttemptTally>) -> Self {
        let attempts = |kind: OutcomeKind| {
            let mut labels = labels.to_vec();
            labels.push(Label::new("outcome", kind.as_str()));
            metrics::counter!(ferry_metrics::DELIVERY_ATTEMPTS_TOTAL, labels)
        };
        LaneMetrics {
            in_flight: metrics::gauge!(ferry_metrics::DELIVERY_IN_FLIGHT, labels.iter()),
            attempt_seconds: metrics::histogram!(
                ferry_metrics::DELIVERY_ATTEMPT_DURATION_SECONDS,
                labels.iter()
            ),
            end_to_end_seconds: metrics::histogram!(
                ferry_metrics::DELIVERY_END_TO_END_SECONDS,
                labels.iter()
            ),
            tally,
            delivered: attempts(OutcomeKind::Delivered),
            retry: attempts(OutcomeKind::Retry),
            dead: attempts(OutcomeKind::Dead),
        }
    }

    /// Count an attempt of this outcome (`ferry_delivery_attempts_total` and the tally); a
    /// local failure is not an attempt.
    pub fn attempted(&self, kind: OutcomeKind) {
        let counter = match kind {
            OutcomeKind::Delivered => &self.delivered,
            OutcomeKind::Retry => &self.retry,
            OutcomeKind::Dead => &self.dead,
            OutcomeKind::Local => return,
        };
        counter.increment(1);
        self.tally.outcome(kind == OutcomeKind::Delivered);
    }

    /// Record one call's latency (`ferry_delivery_attempt_duration_seconds` and the tally).
    pub fn call_latency(&self, latency: Duration) {
        self.attempt_seconds.record(latency.as_secs_f64());
        self.tally.latency(latency);
    }
}
