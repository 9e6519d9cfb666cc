//! The metric handles every attempt of a lane records.

use metrics::Label;

use crate::outcome::OutcomeKind;

/// Handles of the metrics every attempt records, registered once per lane: the `metrics`
/// macros would otherwise build and look up the labelled key on every call.
pub(super) struct LaneMetrics {
    pub in_flight: metrics::Gauge,
    pub attempt_seconds: metrics::Histogram,
    /// `ferry_delivery_end_to_end_seconds`: from the event's acceptance to its delivery.
    pub end_to_end_seconds: metrics::Histogram,
    delivered: metrics::Counter,
    retry: metrics::Counter,
    dead: metrics::Counter,
}

impl LaneMetrics {
    pub fn new(labels: &[Label]) -> Self {
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
            delivered: attempts(OutcomeKind::Delivered),
            retry: attempts(OutcomeKind::Retry),
            dead: attempts(OutcomeKind::Dead),
        }
    }

    /// `ferry_delivery_attempts_total` for this outcome; `None` for a local failure, which
    /// is not an attempt.
    pub fn attempts(&self, kind: OutcomeKind) -> Option<&metrics::Counter> {
        match kind {
            OutcomeKind::Delivered => Some(&self.delivered),
            OutcomeKind::Retry => Some(&self.retry),
            OutcomeKind::Dead => Some(&self.dead),
            OutcomeKind::Local => None,
        }
    }
}
