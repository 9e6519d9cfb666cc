//! The counters every accepted request records, registered once per flow.

use metrics::Counter;

/// Handles of a flow's ingress counters: the `metrics` macros would otherwise build and
/// look up the labelled key (cloning the flow name) on every request. Refusals, whose
/// `reason` label varies, are counted through the macro where they happen.
#[derive(Debug, Clone)]
pub struct RouteCounters {
    /// `ferry_ingress_received_total`.
    pub received: Counter,
    /// `ferry_ingress_accepted_total{outcome="accepted"}`.
    pub accepted: Counter,
    /// `ferry_ingress_accepted_total{outcome="duplicate"}`.
    pub duplicate: Counter,
    /// `ferry_ingress_accepted_total{outcome="dropped"}`.
    pub dropped_outcome: Counter,
    /// `ferry_ingress_dropped_total`.
    pub dropped: Counter,
}

impl RouteCounters {
    /// Register the counters of `flow` (with the process's recorder, if one is installed).
    pub fn new(flow: &str) -> Self {
        let outcome = |outcome: &'static str| metrics::counter!(ferry_metrics::INGRESS_ACCEPTED_TOTAL, "flow" => flow.to_owned(), "outcome" => outcome);
        RouteCounters {
            received: metrics::counter!(ferry_metrics::INGRESS_RECEIVED_TOTAL, "flow" => flow.to_owned()),
            accepted: outcome("accepted"),
            duplicate: outcome("duplicate"),
            dropped_outcome: outcome("dropped"),
            dropped: metrics::counter!(ferry_metrics::INGRESS_DROPPED_TOTAL, "flow" => flow.to_owned()),
        }
    }
}
