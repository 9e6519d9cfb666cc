//! One delivery's attempt: a send permit (the bulkhead), the gate's admission, the lease
//! check, rendering, the call, and the gate told of the result.

use std::sync::Arc;
use std::time::SystemTime;

use ferry_store::{CategorySent, ClaimedDelivery, DeliveryAudit, DeliveryOutcome, Millis, Next};
use ferry_trace::{KeyValue, SpanKind};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::{Instrument, debug};

use super::conclude::{conclude, conclude_render};
use super::flush::{Finished, hand_over, release};
use super::pause::auto_pause;
use super::{Ctx, LEASE_SAFETY, duration_millis};
use crate::gate::Admit;
use crate::render;
use ferry_store::now_millis;

/// Work one claimed delivery: wait for a send permit, send, decide, hand the outcome over.
pub(super) async fn deliver(
    ctx: Arc<Ctx>,
    mut delivery: ClaimedDelivery,
    slot: Option<OwnedSemaphorePermit>,
    lease_until: Millis,
    tx: mpsc::Sender<Finished>,
) {
    // The attempt's span: its id goes out in the `traceparent` the connector sends.
    let span = ferry_trace::outbound(&mut delivery.headers).map(|ids| (ids, SystemTime::now()));
    // Every line logged about the attempt carries the event's trace id.
    let log_span = tracing::info_span!("delivery", trace_id = tracing::field::Empty);
    if let Some(id) = ferry_trace::trace_id(&delivery.headers) {
        log_span.record("trace_id", id.as_str());
    }
    let mut outcome = attempt(&ctx, &delivery, lease_until)
        .instrument(log_span)
        .await;
    // Settles this claim only: should its lease have ended and the delivery been claimed
    // again, a release or retry from here must not undo the newer claim.
    outcome.claim = Some(lease_until);
    if let Some((ids, started)) = span {
        trace_attempt(&ctx, &delivery, &outcome, &ids, started);
    }
    drop(delivery);
    hand_over(&tx, outcome, slot).await;
}

/// Record the attempt's span: its status, error class, attempt number and outcome. A
/// delivery released without a call has none.
fn trace_attempt(
    ctx: &Ctx,
    delivery: &ClaimedDelivery,
    outcome: &DeliveryOutcome,
    ids: &ferry_trace::SpanIds,
    started: SystemTime,
) {
    let Some(attempt) = outcome.attempt.as_ref().filter(|_| ids.sampled) else {
        return;
    };
    let next = match outcome.next {
        Next::Delivered => "delivered",
        Next::Retry { .. } => "retry",
        Next::Dead { .. } => "dead",
        Next::Release { .. } => "released",
    };
    let mut attributes = vec![
        KeyValue::new("ferry.flow", ctx.key.flow.clone()),
        KeyValue::new("ferry.destination", ctx.key.destination.clone()),
        KeyValue::new("ferry.delivery_id", delivery.id.to_string()),
        KeyValue::new("ferry.event_id", delivery.event_id.to_string()),
        KeyValue::new("ferry.attempt", i64::from(delivery.attempts + 1)),
        KeyValue::new("ferry.outcome", next),
    ];
    if let Some(status) = attempt.status {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    let error = attempt
        .error_class
        .clone()
        .filter(|class| class != "ok" && next != "delivered");
    if let Some(class) = &error {
        attributes.push(KeyValue::new("error.type", class.clone()));
    }
    ferry_trace::record(
        ids,
        "ferry.attempt",
        SpanKind::Client,
        started,
        SystemTime::now(),
        attributes,
        error,
    );
}

async fn attempt(ctx: &Ctx, delivery: &ClaimedDelivery, lease_until: Millis) -> DeliveryOutcome {
    let permit = tokio::select! {
        biased;
        _ = ctx.stop.cancelled() => None,
        permit = ctx.sends.clone().acquire_owned() => permit.ok(),
    };
    let Some(permit) = permit else {
        return release(delivery);
    };
    let probe = match ctx.gate.admit(delivery, &ctx.stop).await {
        Admit::Go { probe } => probe,
        Admit::Paused | Admit::Stopped => return release(delivery),
    };
    let latest_start = lease_until
        .saturating_sub(ctx.timeout_ms)
        .saturating_sub(duration_millis(LEASE_SAFETY));
    if now_millis() > latest_start {
        debug!(delivery = %delivery.id, flow = %ctx.key.flow, destination = %ctx.key.destination, "lease too close to its end; releasing instead of sending");
        if probe {
            ctx.gate.cancel_probe();
        }
        return release(delivery);
    }
    // What this delivery sends, computed now from the stored event. A rendering that fails
    // is the attempt: no call, and the gate learns nothing (the destination was not asked).
    let rendered = tokio::select! {
        biased;
        _ = ctx.abort.cancelled() => None,
        rendered = render::render(ctx.render.as_deref(), delivery) => Some(rendered),
    };
    let rendered = match rendered {
        Some(Ok(rendered)) => rendered,
        Some(Err(failed)) => {
            if probe {
                ctx.gate.cancel_probe();
            }
            drop(permit);
            return conclude_render(ctx, delivery, failed, now_millis(), &mut rand::rng());
        }
        None => {
            if probe {
                ctx.gate.cancel_probe();
            }
            return release(delivery);
        }
    };
    let in_flight = &ctx.metrics.in_flight;
    in_flight.increment(1.0);
    let result = tokio::select! {
        biased;
        _ = ctx.abort.cancelled() => None,
        result = ctx.connector.send(delivery, rendered.as_ref()) => Some(result),
    };
    in_flight.decrement(1.0);
    drop(permit);
    let Some(mut result) = result else {
        debug!(delivery = %delivery.id, flow = %ctx.key.flow, destination = %ctx.key.destination, "send aborted by shutdown; releasing");
        if probe {
            ctx.gate.cancel_probe();
        }
        return release(delivery);
    };
    // The gate ignores a call that failed on this host (see `Gate::record`).
    if let Some(pause) = ctx.gate.record(&result, probe) {
        auto_pause(ctx, pause).await;
    }
    if result.verdict.local_failure().is_none() && !crate::synthetic::is_synthetic(delivery) {
        ctx.metrics.call_latency(result.latency);
    }
    render::seal_excerpt(ctx.render.as_deref(), delivery, &mut result).await;
    // A synthetic event is no personal data: nothing of it enters the audit's data map.
    let sent = rendered
        .map(|r| r.categories_sent)
        .filter(|_| !crate::synthetic::is_synthetic(delivery))
        .unwrap_or_default();
    let outcome = conclude(ctx, delivery, result, now_millis(), &mut rand::rng());
    with_audit(ctx, outcome, sent)
}

/// A delivered outcome with what the audit trail records of it: the destination's system
/// and the categories the delivery carried, as rendered.
pub(super) fn with_audit(
    ctx: &Ctx,
    mut outcome: DeliveryOutcome,
    categories_sent: Vec<(String, String)>,
) -> DeliveryOutcome {
    if outcome.next == Next::Delivered {
        outcome.audit = DeliveryAudit {
            destination_system: ctx.system.clone(),
            categories_sent: categories_sent
                .into_iter()
                .map(|(category, how)| CategorySent { category, how })
                .collect(),
        };
    }
    outcome
}
