//! The ingest handler: one request, one event, committed before the answer.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use bytes::Bytes;
use ferry_delivery::FreshSlot;
use ferry_store::{AppendOutcome, ClaimedDelivery, NewEvent, StoreError};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::IngressState;
use super::pipeline::{self, Processed};
use super::trace::IngressTrace;
use crate::assembly::IngressRoute;
use crate::clock::now_ms;
use crate::problem::Problem;
use crate::server::read_body;
use crate::strict_json::{self, JsonError};

/// The answer to an accepted (or duplicate, or dropped) event.
#[derive(Debug, Serialize, Deserialize)]
pub struct AcceptedBody {
    /// The stored event's id (the first one, when a `split` made several); `null` when a
    /// `filter` dropped the event.
    pub event_id: Option<String>,
    /// Every event's id, when a `split` made the request into several events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_ids: Vec<String>,
    /// True when the flow already had this sender event id: nothing new was stored.
    pub duplicate: bool,
    /// True when a `filter` step dropped the event: nothing was stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
    /// Deliveries created.
    pub deliveries: usize,
}

/// `POST /ingest/{path}`.
pub async fn ingest(
    State(state): State<IngressState>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    ingest_at(state, path, headers, body).await
}

/// `POST /ingest/{tenant}/{path}`: a flow run per tenant.
pub async fn ingest_for_tenant(
    State(state): State<IngressState>,
    Path((tenant, path)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    ingest_at(state, format!("{tenant}/{path}"), headers, body).await
}

/// The answer for a path no flow of this node takes: another region's tenant's (`421`), or
/// nobody's (`404`).
fn no_route(state: &IngressState, path: &str) -> Response {
    if let Some(foreign) = state.foreign.get(path) {
        metrics::counter!(ferry_metrics::INGRESS_REJECTED_TOTAL, "flow" => "", "reason" => "other_region")
            .increment(1);
        return Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            "other_region",
            "Served in another region",
            format!(
                "tenant `{}` is served by the nodes of region `{}`; send its webhooks there",
                foreign.tenant, foreign.region
            ),
        )
        .into_response();
    }
    metrics::counter!(ferry_metrics::INGRESS_REJECTED_TOTAL, "flow" => "", "reason" => "unknown_flow")
        .increment(1);
    Problem::new(
        StatusCode::NOT_FOUND,
        "unknown_flow",
        "Unknown flow",
        format!("no flow receives webhooks at /ingest/{path}"),
    )
    .into_response()
}

async fn ingest_at(state: IngressState, path: String, headers: HeaderMap, body: Body) -> Response {
    let Some(route) = state.routes.get(&path).cloned() else {
        return no_route(&state, &path);
    };
    let counters = &route.counters;
    counters.received.increment(1);
    // W3C Trace Context: what the event keeps of the request's, and Ferry's ingress span.
    let mut trace = IngressTrace::start(&headers);
    // Every line logged about the request carries its trace id.
    let span = tracing::info_span!("ingest", trace_id = tracing::field::Empty);
    if let Some(id) = trace.trace_id() {
        span.record("trace_id", id.as_str());
    }
    let result = accept(&state, &route, &headers, body, &mut trace)
        .instrument(span)
        .await;
    trace.finish(&route.flow, &path, &result);
    match result {
        Ok((status, body)) => {
            if body.dropped {
                counters.dropped.increment(1);
                counters.dropped_outcome.increment(1);
            } else if body.duplicate {
                counters.duplicate.increment(1);
            } else {
                counters.accepted.increment(1);
            }
            (status, Json(body)).into_response()
        }
        Err(problem) => {
            metrics::counter!(ferry_metrics::INGRESS_REJECTED_TOTAL, "flow" => route.flow.clone(), "reason" => problem.code)
                .increment(1);
            // A step failure quotes VRL's message, which may quote the event's data: only
            // its code is logged then. Other details name pointers, headers and limits.
            let detail = (problem.code != "step_failed").then_some(problem.detail.as_str());
            tracing::debug!(flow = %route.flow, reason = problem.code, detail, "webhook refused");
            problem.for_flow(&route.flow).into_response()
        }
    }
}

async fn accept(
    state: &IngressState,
    route: &IngressRoute,
    headers: &HeaderMap,
    body: Body,
    trace: &mut IngressTrace,
) -> Result<(StatusCode, AcceptedBody), Problem> {
    let refused = |e: ferry_signature::VerifyError| {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            e.code(),
            "Webhook authentication failed",
            e.to_string(),
        )
    };
    // What the signature headers alone can refuse is refused before the body is read.
    route
        .verifier
        .check_headers(headers, now_ms() / 1000)
        .map_err(refused)?;
    // `_held` keeps the body's bytes counted in the memory budget until the answer.
    let (payload, _held) = read_body(headers, body, route.max_body_bytes, &state.body).await?;
    let now = now_ms();
    let verify = trace.phase();
    let verified = route.verifier.verify(headers, &payload, now / 1000);
    trace.end_phase(
        verify,
        "ferry.signature",
        verified.as_ref().err().map(|e| e.code()),
    );
    verified.map_err(refused)?;
    refuse_if_backlog_full(state, route)?;
    // CloudEvents, body checks, `validate`, `filter`/`route`/`split`, `dedupe`: the events
    // to store with their deliveries (see `pipeline`).
    let steps = trace.phase();
    let received = pipeline::receive(route, headers, payload).map(|mut r| {
        trace.keep(&mut r.headers);
        r
    });
    let processed = received.and_then(|r| pipeline::process(route, r, now));
    trace.end_phase(
        steps,
        "ferry.steps",
        processed.as_ref().err().map(|p| p.code),
    );
    let (events, split) = match processed? {
        Processed::Events { events, split } => (events, split),
        Processed::Dropped { step } => {
            tracing::debug!(flow = %route.flow, step, "event dropped by a filter");
            return Ok((StatusCode::OK, AcceptedBody::dropped()));
        }
    };
    // Classified fields encrypted (with encryption at rest on): the one await of the steps.
    // The payloads in clear go to the deliveries handed over below, so their lanes do not
    // decrypt what was just encrypted.
    let clear = events.clear_payloads();
    let mut events = events
        .seal()
        .await
        .map_err(|e| pipeline::keys_unavailable(&e))?;
    // Where a lane can take a delivery right away, claim it in the append and hand it over
    // after the commit (see `ferry_delivery::FreshLane`); the others wait in the store and
    // their lanes are woken.
    let handed = claim_for_lanes(state, route, &mut events, &clear, now);
    let deliveries: Vec<usize> = events.iter().map(|e| e.deliveries.len()).collect();
    let woken: Vec<&ferry_store::LaneKey> = route
        .lanes
        .iter()
        .filter(|lane| {
            events.iter().any(|e| {
                e.deliveries
                    .iter()
                    .any(|d| d.destination == lane.key.destination && d.claimed_until.is_none())
            })
        })
        .map(|lane| &lane.key)
        .collect();
    let started = std::time::Instant::now();
    let commit = trace.phase();
    // One call: a split's events are stored together or not at all.
    let outcome = append(state, events, handed).await;
    trace.end_phase(
        commit,
        "ferry.commit",
        outcome.as_ref().err().map(|_| "store_unavailable"),
    );
    let outcome = outcome.map_err(|e| {
        tracing::error!(flow = %route.flow, error = %e, "store refused an event");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "Event not stored",
            "the event could not be stored durably; nothing was kept — retry later",
        )
        .retry_after(1)
    })?;
    metrics::histogram!(ferry_metrics::INGRESS_COMMIT_SECONDS)
        .record(started.elapsed().as_secs_f64());
    if outcome.is_empty() || outcome.len() != deliveries.len() {
        return Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_unavailable",
            "Event not stored",
            "the store returned no outcome",
        ));
    }
    let mut ids = Vec::with_capacity(outcome.len());
    let mut created = 0;
    for (result, n) in outcome.iter().zip(&deliveries) {
        match result {
            AppendOutcome::Stored(id) => {
                created += n;
                ids.push(id.to_string());
            }
            // Same sender event id, or a `dedupe` step key seen within its window: nothing new.
            AppendOutcome::Duplicate(id) | AppendOutcome::Deduplicated(id) => {
                ids.push(id.to_string())
            }
        }
    }
    let duplicate = !outcome
        .iter()
        .any(|o| matches!(o, AppendOutcome::Stored(_)));
    if !duplicate {
        for lane in woken {
            (state.wake)(lane);
        }
    }
    Ok((
        if duplicate {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        },
        AcceptedBody {
            event_id: ids.first().cloned(),
            event_ids: if split { ids } else { Vec::new() },
            duplicate,
            dropped: false,
            deliveries: created,
        },
    ))
}

/// Append `events` and, once committed, hand the stored events' claimed deliveries to their
/// lanes (those of events that were not stored, duplicates, were not stored either; their
/// places are freed). The hand-over happens at the commit even if the sender hangs up
/// meanwhile (see `Store::append_then`): a claimed delivery of a committed append that
/// never reached its lane would wait for its lease to end.
async fn append(
    state: &IngressState,
    events: Vec<NewEvent>,
    handed: Vec<(usize, FreshSlot, ClaimedDelivery)>,
) -> Result<Vec<AppendOutcome>, StoreError> {
    if handed.is_empty() {
        return state.store.append(events).await;
    }
    let hand_over = move |outcome: &[AppendOutcome]| {
        for (event, slot, delivery) in handed {
            if matches!(outcome.get(event), Some(AppendOutcome::Stored(_))) {
                slot.send(delivery);
            }
        }
    };
    Arc::clone(&state.store)
        .append_then(events, Box::new(hand_over))
        .await
}

/// Reserve a place in the lane for every delivery whose lane takes it right away, mark the
/// delivery claimed with that lane's lease, and return what to hand over after the commit:
/// the event's index, the place, and the delivery as a claim would have returned it, with
/// its payload in clear (`clear`, by event; see `Pending::clear_payloads`) where the stored
/// one is encrypted.
fn claim_for_lanes(
    state: &IngressState,
    route: &IngressRoute,
    events: &mut [NewEvent],
    clear: &[Option<Bytes>],
    now: ferry_store::Millis,
) -> Vec<(usize, FreshSlot, ClaimedDelivery)> {
    let mut handed = Vec::new();
    if state.fresh.is_empty() {
        return handed;
    }
    for (index, event) in events.iter_mut().enumerate() {
        let NewEvent {
            id,
            event_type,
            received_at,
            headers,
            payload,
            deliveries,
            ..
        } = event;
        // Sealing may have found nothing to encrypt: then the stored payload is the one.
        let clear_payload = clear
            .get(index)
            .and_then(Option::as_ref)
            .filter(|c| c[..] != payload[..])
            .cloned();
        for d in deliveries.iter_mut().filter(|d| d.order_key.is_none()) {
            let Some(lane) = route
                .lanes
                .iter()
                .find(|l| l.key.destination == d.destination)
            else {
                continue;
            };
            let Some(slot) = state.fresh.get(&lane.key).and_then(|f| f.try_reserve(now)) else {
                continue;
            };
            d.claimed_until = Some(slot.lease_until());
            let claimed = ClaimedDelivery {
                id: d.id,
                event_id: *id,
                lane: lane.key.clone(),
                event_type: event_type.clone(),
                received_at: *received_at,
                headers: headers.clone(),
                payload: payload.clone(),
                attempts: 0,
                round_attempts: 0,
                round_started_at: *received_at,
                clear_payload: clear_payload.clone(),
            };
            handed.push((index, slot, claimed));
        }
    }
    handed
}

impl AcceptedBody {
    /// The answer when a `filter` dropped the event.
    fn dropped() -> Self {
        AcceptedBody {
            event_id: None,
            event_ids: Vec::new(),
            duplicate: false,
            dropped: true,
            deliveries: 0,
        }
    }
}

/// A flow whose event would push any of its lanes past its bounded backlog refuses it with
/// `503` and `Retry-After`: the sender keeps it and retries, rather than Ferry accepting
/// what it cannot deliver in time. (All lanes get the event or none does.)
fn refuse_if_backlog_full(state: &IngressState, route: &IngressRoute) -> Result<(), Problem> {
    for lane in &route.lanes {
        let waiting = state.backlog.waiting(&lane.key);
        if waiting >= lane.max_pending {
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backlog_full",
                "Backlog full",
                format!(
                    "destination `{}` has {waiting} deliveries waiting (limit {}); retry later",
                    lane.key.destination, lane.max_pending
                ),
            )
            .retry_after(lane.backlog_retry_after.as_secs().max(1)));
        }
    }
    Ok(())
}

/// Check the body is one JSON document, read strictly ([`strict_json`]). Parse it into a
/// value only when something must be read from it; otherwise validate without building a
/// tree.
pub(super) fn check_json(
    payload: &[u8],
    want_value: bool,
) -> Result<Option<serde_json::Value>, Problem> {
    let read = if want_value {
        strict_json::parse(payload).map(Some)
    } else {
        strict_json::validate(payload).map(|()| None)
    };
    read.map_err(|e| json_problem(&e, "the body"))
}

/// The `400` answer to inbound JSON that [`strict_json`] refused, `subject` naming the
/// document (`the body`, `the CloudEvent`): `too_deep` for nesting at the depth limit,
/// else `malformed_json`; a duplicate key is named in the detail and in the extension
/// members `key` and `pointer` (the object holding it).
pub(crate) fn json_problem(e: &JsonError, subject: &str) -> Problem {
    match e {
        JsonError::Malformed(inner) => Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "Malformed JSON",
            format!(
                "{subject} is not valid JSON: {inner} (line {}, column {})",
                inner.line(),
                inner.column()
            ),
        ),
        JsonError::DuplicateKey { key, pointer } => Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "Malformed JSON",
            format!("{subject} is refused: {e}; the keys of a JSON object must be unique"),
        )
        .with_extension("key", serde_json::Value::String(key.clone()))
        .with_extension("pointer", serde_json::Value::String(pointer.clone())),
        JsonError::TooDeep { .. } => Problem::new(
            StatusCode::BAD_REQUEST,
            "too_deep",
            "JSON nested too deeply",
            format!("{subject} is refused: {e}"),
        ),
    }
}
