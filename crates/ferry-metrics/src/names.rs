//! The table: one constant per family (the name the code records under) and [`FAMILIES`],
//! both written by one macro from one list so they cannot drift apart.

use metrics::Unit;

use crate::family::{Family, Kind};

/// Write a `pub const` per family and the [`FAMILIES`] table from one list of
/// `CONST = "name", Kind, unit, [labels], "help";`.
macro_rules! families {
    ($($konst:ident = $name:literal, $kind:ident, $unit:expr, [$($label:literal),*], $help:literal;)*) => {
        $(
            #[doc = concat!("`", $name, "`: ", $help)]
            pub const $konst: &str = $name;
        )*

        /// Every metric family Ferry exposes, in the order `docs/telemetry.md` lists them.
        pub const FAMILIES: &[Family] = &[
            $(Family {
                name: $konst,
                kind: Kind::$kind,
                unit: $unit,
                labels: &[$($label),*],
                help: $help,
            },)*
        ];
    };
}

const COUNT: Option<Unit> = Some(Unit::Count);
const SECONDS: Option<Unit> = Some(Unit::Seconds);
const NONE: Option<Unit> = None;

families! {
    // Ingress: webhooks received, accepted, refused.
    INGRESS_RECEIVED_TOTAL = "ferry_ingress_received_total", Counter, COUNT, ["flow"],
        "Webhook requests that reached a flow's ingress route, whatever their outcome.";
    INGRESS_ACCEPTED_TOTAL = "ferry_ingress_accepted_total", Counter, COUNT, ["flow", "outcome"],
        "Webhook requests answered with success, by outcome: accepted (stored), duplicate (already stored), dropped (filtered out).";
    INGRESS_DROPPED_TOTAL = "ferry_ingress_dropped_total", Counter, COUNT, ["flow"],
        "Webhook requests whose every event a filter step dropped (nothing stored).";
    INGRESS_REJECTED_TOTAL = "ferry_ingress_rejected_total", Counter, COUNT, ["flow", "reason"],
        "Webhook requests refused, by problem code (e.g. signature_mismatch, schema_violation, backlog_full; unknown_flow and other_region with an empty flow).";
    INGRESS_COMMIT_SECONDS = "ferry_ingress_commit_seconds", Histogram, SECONDS, [],
        "Time to commit an accepted webhook's event and deliveries to the store.";
    INGRESS_BODY_BUDGET_EXHAUSTED_TOTAL = "ferry_ingress_body_budget_exhausted_total", Counter, COUNT, [],
        "Requests answered 503 because request bodies in flight held the whole body memory budget.";
    INGRESS_BODY_TIMEOUTS_TOTAL = "ferry_ingress_body_timeouts_total", Counter, COUNT, [],
        "Requests whose body did not arrive in time (settings.server.body_timeout).";
    HTTP_CONNECTIONS_REFUSED_TOTAL = "ferry_http_connections_refused_total", Counter, COUNT, [],
        "TCP connections refused because the server was at its connection cap.";
    HTTP_ACCEPT_ERRORS_TOTAL = "ferry_http_accept_errors_total", Counter, COUNT, [],
        "Errors accepting a TCP connection (e.g. out of file descriptors).";

    // Admin API and /metrics access.
    ADMIN_REJECTED_TOTAL = "ferry_admin_rejected_total", Counter, COUNT, ["reason"],
        "Admin API calls refused for their bearer token, by reason: unauthorized, locked_out, no_token_configured, tenant_forbidden.";
    METRICS_REJECTED_TOTAL = "ferry_metrics_rejected_total", Counter, COUNT, ["reason"],
        "/metrics scrapes refused for their bearer token (settings.metrics.token), by reason: unauthorized, locked_out.";
    REPLAYED_TOTAL = "ferry_replayed_total", Counter, COUNT, [],
        "Deliveries put back to pending by a replay through the admin API.";
    REJECTED_REPLAYED_TOTAL = "ferry_rejected_replayed_total", Counter, COUNT, ["flow"],
        "Rejected records replayed through the admin API.";

    // Delivery lanes (one lane per flow and destination).
    BACKLOG_DEPTH = "ferry_backlog_depth", Gauge, COUNT, ["flow", "destination"],
        "Deliveries waiting in the lane: pending, retrying or in flight.";
    BACKLOG_OLDEST_AGE_SECONDS = "ferry_backlog_oldest_age_seconds", Gauge, SECONDS, ["flow", "destination"],
        "Age of the oldest waiting delivery of the lane, from its event's receive time (0 when none waits).";
    DEAD_LETTER_DEPTH = "ferry_dead_letter_depth", Gauge, COUNT, ["flow", "destination"],
        "Dead-lettered deliveries of the lane held in the store (until replayed or purged by retention).";
    DELIVERY_ATTEMPTS_TOTAL = "ferry_delivery_attempts_total", Counter, COUNT, ["flow", "destination", "outcome"],
        "Delivery attempts by outcome: delivered, retry (failed, tried again later), dead (failed, dead-lettered). delivered and dead also count concluded deliveries.";
    DELIVERY_ATTEMPT_DURATION_SECONDS = "ferry_delivery_attempt_duration_seconds", Histogram, SECONDS, ["flow", "destination"],
        "Duration of one delivery call to the destination.";
    DELIVERY_END_TO_END_SECONDS = "ferry_delivery_end_to_end_seconds", Histogram, SECONDS, ["flow", "destination"],
        "Time from an event's acceptance by the hub to its delivery's success at the destination, retries included.";
    DELIVERY_IN_FLIGHT = "ferry_delivery_in_flight", Gauge, COUNT, ["flow", "destination"],
        "Delivery calls of the lane in progress now.";
    DELIVERY_LOCAL_FAILURES_TOTAL = "ferry_delivery_local_failures_total", Counter, COUNT, ["flow", "destination", "reason"],
        "Calls that failed on this host (e.g. emfile: out of file descriptors); the delivery is put back without spending an attempt.";
    DELIVERIES_CLAIMED_AT_INGRESS_TOTAL = "ferry_deliveries_claimed_at_ingress_total", Counter, COUNT, ["flow", "destination"],
        "Deliveries handed to their lane straight from ingress, without a store read.";
    BATCH_SIZE = "ferry_batch_size", Histogram, COUNT, ["flow", "destination"],
        "Records per call of a batching lane.";
    BATCH_CALLS_TOTAL = "ferry_batch_calls_total", Counter, COUNT, ["flow", "destination", "result"],
        "Calls of a batching lane, by result class (ok, timeout, http_5xx, ...).";
    BREAKER_STATE = "ferry_breaker_state", Gauge, NONE, ["flow", "destination"],
        "Circuit breaker state of the lane: 0 closed, 1 half-open, 2 open.";
    BREAKER_TRANSITIONS_TOTAL = "ferry_breaker_transitions_total", Counter, COUNT, ["flow", "destination", "to"],
        "Circuit breaker state changes of the lane, by the state entered.";
    LANE_PAUSED = "ferry_lane_paused", Gauge, NONE, ["flow", "destination"],
        "1 while the lane is paused (by an operator or auto-pause), else 0.";
    LANE_HOLDS_TOTAL = "ferry_lane_holds_total", Counter, COUNT, ["flow", "destination"],
        "Times the whole lane was held for a 429 answer's Retry-After.";
    RATE_LIMIT_WAITS_TOTAL = "ferry_rate_limit_waits_total", Counter, COUNT, ["flow", "destination"],
        "Deliveries that waited for the lane's rate limit.";
    NOTIFICATIONS_TOTAL = "ferry_notifications_total", Counter, COUNT, ["outcome"],
        "Owner notifications (lane paused or resumed), by outcome: sent, failed.";
    ALERTS_FIRING = "ferry_alerts_firing", Gauge, COUNT, ["kind", "tier"],
        "Alerts firing now, by rule and business-impact tier.";
    ALERT_NOTIFICATIONS_TOTAL = "ferry_alert_notifications_total", Counter, COUNT, ["channel", "outcome"],
        "Alert notifications (fired, resolved, digests) by channel (pager, chat, digest) and outcome: sent, failed, dropped.";

    // Rendering and data protection on the way out.
    ENRICH_REQUESTS_TOTAL = "ferry_enrich_requests_total", Counter, COUNT, ["flow", "destination", "outcome"],
        "Enrichment lookups by outcome: hit, miss, error.";
    CONTRACT_VIOLATIONS_TOTAL = "ferry_contract_violations_total", Counter, COUNT, ["flow", "destination"],
        "Rendered payloads that broke the destination's contract.";
    PROTECT_REFUSED_TOTAL = "ferry_protect_refused_total", Counter, COUNT, ["flow", "destination"],
        "Field values removed before sending because their category is neither received nor protected by the destination system's policy (fail closed).";
    PROTECT_UNCLASSIFIED_REMOVED_TOTAL = "ferry_protect_unclassified_removed_total", Counter, COUNT, ["flow", "destination"],
        "Unclassified field values removed before sending (unclassified: deny).";
    PROTECT_EMPTIED_TOTAL = "ferry_protect_emptied_total", Counter, COUNT, ["flow", "destination"],
        "Events sent as {} because their schema classifies nothing and unclassified fields are denied.";
    PROTECT_SHREDDED_FIELDS_TOTAL = "ferry_protect_shredded_fields_total", Counter, COUNT, ["flow", "destination"],
        "Encrypted fields that could not be opened because their subject was erased (crypto-shredded).";
    PROTECT_SUBJECTS_ERASED_TOTAL = "ferry_protect_subjects_erased_total", Counter, COUNT, [],
        "Data subjects erased through the admin API (their data keys destroyed).";

    // Pull sources.
    PULL_RUNS_TOTAL = "ferry_pull_runs_total", Counter, COUNT, ["flow", "outcome"],
        "Pull runs by outcome: success, failure.";
    PULL_PAGES_TOTAL = "ferry_pull_pages_total", Counter, COUNT, ["flow"],
        "Pages a pull flow committed.";
    PULL_RECORDS_TOTAL = "ferry_pull_records_total", Counter, COUNT, ["flow"],
        "Events a pull flow stored.";
    PULL_RECORDS_SKIPPED_TOTAL = "ferry_pull_records_skipped_total", Counter, COUNT, ["flow", "reason"],
        "Pulled records not stored, by reason (filtered, or the problem code that refused them).";
    PULL_SECONDS_SINCE_SUCCESS = "ferry_pull_seconds_since_success", Gauge, SECONDS, ["flow"],
        "Freshness lag of a pull flow: seconds since its last successful run, refreshed while the hub runs (absent before the first success).";
    PULL_FRESHNESS_SLA_SECONDS = "ferry_pull_freshness_sla_seconds", Gauge, SECONDS, ["flow"],
        "A pull flow's freshness SLA (its `freshness` setting), to compare with ferry_pull_seconds_since_success.";

    // Queue and table sources.
    SOURCE_MESSAGES_TOTAL = "ferry_source_messages_total", Counter, COUNT, ["flow", "kind", "outcome"],
        "Messages a queue or table source took, by outcome: stored, duplicate, rejected, filtered.";
    SOURCE_ERRORS_TOTAL = "ferry_source_errors_total", Counter, COUNT, ["flow", "kind"],
        "Failures of a queue or table source (connection, read); unacknowledged messages stay with the broker.";
    SOURCE_PAUSED = "ferry_source_paused", Gauge, NONE, ["flow"],
        "1 while a source stops taking messages because a destination's backlog is full, else 0.";

    // Store and retention.
    STORE_COMMITS_TOTAL = "ferry_store_commits_total", Counter, COUNT, [],
        "Write transactions the store committed (group commit).";
    STORE_DEFERRED_COMMITS_TOTAL = "ferry_store_deferred_commits_total", Counter, COUNT, [],
        "Commits of claims and delivery outcomes alone, made without an fsync (the next fsync covers them).";
    STORE_COMMANDS_TOTAL = "ferry_store_commands_total", Counter, COUNT, [],
        "Store write commands committed; commands per commit is group commit's batching.";
    RETENTION_PURGED_EVENTS_TOTAL = "ferry_retention_purged_events_total", Counter, COUNT, [],
        "Events purged by retention rules.";
    RETENTION_HELD_EVENTS = "ferry_retention_held_events", Gauge, COUNT, [],
        "Events past their retention that the last purge kept because a delivery of theirs is not settled.";
}
