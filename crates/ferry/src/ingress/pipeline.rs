//! What ingress makes of one authenticated request, without I/O: the events to store, each
//! with its deliveries, or a refusal, or a drop. The ingest handler runs it between the
//! signature check and the store's commit; `ferry test` runs it on fixture inputs (see
//! [`crate::fixture`]), so a fixture test exercises exactly the hub's ingress path.
//!
//! Two stages, so a caller can look between them:
//! 1. [`receive`]: CloudEvents unwrapping ([`cloudevents`]) and the body checks
//!    (`inspect_route`: one JSON document, the sender's event id, the event type);
//! 2. [`process`]: the `validate` steps, then `filter`, `route` and `split`
//!    ([`super::steps::IngressSteps`]), then each event's `dedupe` window.
//!
//! The second stage is the flow's, not the webhook's: a pull flow runs each record it reads
//! through it too ([`process_flow`] with [`FlowSteps`], see [`crate::pull::run`]), so a
//! posted event and a pulled record become stored events the same way.
//!
//! With encryption at rest on ([`crate::at_rest`]), the events come out [`Pending`]: their
//! classified fields are encrypted by [`Pending::seal`] (or [`Pending::seal_all`] for a
//! batch: one data-key look-up for all), the one await between the steps and the store.
//! Ordering keys and `dedupe` window keys are hashed here already. Events of schemas that
//! classify nothing, and every event without encryption, pass through untouched: no extra
//! parsing or writing.

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use ferry_store::{DeliveryId, EventId, Millis, NewDelivery, NewEvent};
use serde_json::Value;

use ferry_schema::SchemaRegistry;

use super::accept_audit::AcceptAudit;
use super::dedupe::DedupeRule;
use super::inspect::{Inspected, inspect_route};
use super::steps::{IngressSteps, Piece, Stepped};
use super::validate::ValidateRule;
use super::{KEPT_HEADERS, cloudevents, validate};
use crate::assembly::{IngressRoute, RouteLane};
use crate::at_rest::{AtRest, Unsealed};
use crate::problem::Problem;
use std::sync::Arc;

/// A flow's steps and lanes: what [`process_flow`] runs an event through, borrowed from a
/// webhook flow's [`IngressRoute`] or a pull flow's [`crate::pull::PullSpec`].
#[derive(Debug, Clone, Copy)]
pub struct FlowSteps<'a> {
    /// The flow's name.
    pub flow: &'a str,
    /// The system the events come from.
    pub source_system: &'a str,
    /// The lanes each event fans out to (a `route` picks among them).
    pub lanes: &'a [RouteLane],
    /// The `validate` steps.
    pub validate: &'a [ValidateRule],
    /// The config's schemas.
    pub schemas: &'a SchemaRegistry,
    /// The `filter`, `route` and `split` steps.
    pub steps: &'a IngressSteps,
    /// The `dedupe` step.
    pub dedupe: Option<&'a DedupeRule>,
    /// Encryption at rest, when `settings.protection.keys` is set.
    pub at_rest: Option<&'a Arc<AtRest>>,
    /// What the audit trail records about each accepted event.
    pub audit: &'a AcceptAudit,
}

impl IngressRoute {
    /// The route's flow steps and lanes.
    pub fn flow_steps(&self) -> FlowSteps<'_> {
        FlowSteps {
            flow: &self.flow,
            source_system: &self.source_system,
            lanes: &self.lanes,
            validate: &self.validate,
            schemas: &self.schemas,
            steps: &self.steps,
            dedupe: self.dedupe.as_ref(),
            at_rest: self.at_rest.as_ref(),
            audit: &self.audit,
        }
    }
}

/// A request after [`receive`]: what the later steps work on.
#[derive(Debug, Clone)]
pub struct Received {
    /// The payload to store: the body, or a CloudEvent's data.
    pub payload: Bytes,
    /// The payload parsed, when the route's steps need it.
    pub value: Option<Value>,
    /// The sender's event id (the dedupe key of re-sends), if any.
    pub dedupe_key: Option<String>,
    /// The event type, if the flow reads one (or the CloudEvent's `type`).
    pub event_type: Option<String>,
    /// The request headers kept with the event (and a CloudEvent's attributes).
    pub headers: Vec<(String, String)>,
}

/// What [`process`] made of a request.
#[derive(Debug)]
pub enum Processed {
    /// A `filter` (or a `split` to nothing) dropped every event: nothing is stored.
    Dropped {
        /// Index of the step among the flow's steps.
        step: usize,
    },
    /// The events to store (at least one), in order, their classified fields still to be
    /// encrypted.
    Events {
        events: Pending,
        /// Whether a `split` made them (the answer then lists every event id).
        split: bool,
    },
}

/// Unwrap a CloudEvent (either mode) and check the body: one JSON document, with the
/// sender's event id and the event type read per the route's rules. Refusals are `400`
/// problems (`cloudevents_invalid`, `malformed_json`, `event_id_invalid`).
pub fn receive(
    route: &IngressRoute,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Received, Problem> {
    // A CloudEvent's data is the payload (see `cloudevents`).
    let cloud_event = cloudevents::decode(headers, &body)?;
    let payload = cloud_event.as_ref().map_or(body, |ce| ce.data.clone());
    let (
        Inspected {
            dedupe_key,
            event_type,
        },
        value,
    ) = inspect_route(route, headers, &payload, cloud_event.as_ref())?;
    let kept: Vec<(String, String)> = KEPT_HEADERS
        .iter()
        .filter_map(|h| {
            headers
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .map(|v| (h.to_string(), v.to_string()))
        })
        .collect();
    let headers = match &cloud_event {
        Some(ce) => ce.kept_headers(kept),
        None => kept,
    };
    Ok(Received {
        payload,
        value,
        dedupe_key,
        event_type,
        headers,
    })
}

/// Run the route's steps on a received request (at `now`): `validate` (`422
/// schema_violation`, `unknown_event_type`), then `filter`, `route`, `split` (`422
/// step_failed` on a run-time error), then each event's `dedupe` window. Every event gets a
/// delivery per lane its `route` chose (all lanes without one), with its ordering key.
pub fn process(
    route: &IngressRoute,
    received: Received,
    now: Millis,
) -> Result<Processed, Problem> {
    process_flow(&route.flow_steps(), received, now)
}

/// [`process`] for any flow: run `flow`'s steps on `received` (a posted event, or a pulled
/// record with its payload parsed). An event without a parsed `value` skips the steps (a
/// webhook route parses it whenever it has any).
pub fn process_flow(
    flow: &FlowSteps<'_>,
    received: Received,
    now: Millis,
) -> Result<Processed, Problem> {
    let route = flow;
    let Received {
        payload,
        value,
        dedupe_key,
        event_type,
        headers,
    } = received;
    // `inspect_route` parses the payload whenever the route has `validate` steps.
    if let Some(value) = &value {
        validate::check(route.validate, route.schemas, event_type.as_deref(), value)?;
    }
    // `filter`, `route`, `split` (see `steps`): which events are stored, with which
    // deliveries. Without steps: the payload as it came, to every destination.
    let pieces = match &value {
        Some(value) if !route.steps.is_empty() => {
            match route
                .steps
                .run(value, route.lanes)
                .map_err(|failed| failed.problem())?
            {
                Stepped::Pieces(pieces) => pieces,
                Stepped::Dropped { step } => return Ok(Processed::Dropped { step }),
            }
        }
        _ => vec![Piece {
            value: None,
            suffix: String::new(),
            lanes: vec![true; route.lanes.len()],
        }],
    };
    let split = pieces.iter().any(|p| p.value.is_some());
    let at_rest = route.at_rest;
    // The schema whose classified fields are encrypted (at rest only).
    let classes = at_rest.and_then(|a| a.classes(route.flow, event_type.as_deref()));
    let mut events = Vec::with_capacity(pieces.len());
    let mut unsealed = Vec::new();
    let mut value = value;
    let count = pieces.len();
    for (i, mut piece) in pieces.into_iter().enumerate() {
        // `dedupe` (see `dedupe`): the store checks and records the key in the append.
        let mut dedupe_window = match (route.dedupe, &value) {
            (Some(rule), Some(value)) => rule
                .window(value, &piece, now)
                .map_err(|failed| failed.problem())?,
            _ => None,
        };
        if let (Some(a), Some(w)) = (at_rest, dedupe_window.as_mut()) {
            w.key = a.stored_key("dedupe", &w.key);
        }
        let (bytes, keys) = match &piece.value {
            Some(element) => (
                Bytes::from(serde_json::to_vec(element).map_err(|e| {
                    Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "step_failed",
                        "Step failed",
                        format!("a split element cannot be written as JSON: {e}"),
                    )
                })?),
                order_keys(route.lanes, &[], Some(element)),
            ),
            None => (
                payload.clone(),
                order_keys(route.lanes, &payload, value.as_ref()),
            ),
        };
        let keys = match at_rest {
            Some(a) => keys
                .into_iter()
                .map(|k| k.map(|k| a.stored_key("order", &k)))
                .collect(),
            None => keys,
        };
        let audit = audit_record(route, event_type.as_deref(), &piece, value.as_ref(), &bytes);
        if let Some(classes) = classes {
            // The parsed event is moved, not copied, where nothing needs it after.
            let whole = || {
                if i + 1 == count {
                    value.take()
                } else {
                    value.clone()
                }
            };
            let parsed = match piece.value.take().or_else(whole) {
                Some(parsed) => parsed,
                None => serde_json::from_slice(&payload).map_err(|e| {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "malformed_json",
                        "Malformed JSON",
                        format!("the body is not JSON: {e}"),
                    )
                })?,
            };
            unsealed.push(Unsealed {
                index: events.len(),
                value: parsed,
                classes: classes.clone(),
                classified: !audit.categories.is_empty(),
                subject_ref: audit.subject.clone(),
            });
        }
        events.push(NewEvent {
            id: EventId::new(),
            flow: route.flow.to_owned(),
            source: route.source_system.to_owned(),
            dedupe_key: dedupe_key.as_ref().map(|k| format!("{k}{}", piece.suffix)),
            event_type: event_type.clone(),
            received_at: now,
            headers: headers.clone(),
            payload: bytes,
            deliveries: route
                .lanes
                .iter()
                .zip(keys)
                .zip(&piece.lanes)
                .filter(|(_, chosen)| **chosen)
                .map(|((lane, order_key), _)| NewDelivery {
                    id: DeliveryId::new(),
                    destination: lane.key.destination.clone(),
                    due_at: now,
                    order_key,
                    claimed_until: None,
                })
                .collect(),
            dedupe_window,
            audit,
        });
    }
    Ok(Processed::Events {
        events: Pending {
            events,
            unsealed,
            at_rest: at_rest.cloned(),
        },
        split,
    })
}

/// Events [`process_flow`] made, their classified fields not yet encrypted. The only ways
/// to the events are [`Pending::seal`] and [`Pending::seal_all`] (which encrypt when
/// encryption at rest is on), and [`Pending::offline`] for a flow assembled without it.
#[derive(Debug)]
#[must_use = "events are stored only once sealed"]
pub struct Pending {
    events: Vec<NewEvent>,
    unsealed: Vec<Unsealed>,
    at_rest: Option<Arc<AtRest>>,
}

/// Why pending events could not be sealed: a data key could not be had for now. Nothing
/// was stored; the sender (or the broker, or the next pull) tries again.
pub fn keys_unavailable(e: &ferry_protect::KeyError) -> Problem {
    tracing::error!(error = %e, "data keys unavailable; event not stored");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "keys_unavailable",
        "Event not stored",
        "the event's data key could not be had (the store is unavailable); nothing was kept — retry later",
    )
    .retry_after(1)
}

impl Pending {
    /// How many events.
    /// Give every event this trace context (`traceparent`, `tracestate`) in place of its
    /// own: a pulled page's span is the parent of its events' deliveries.
    pub fn set_trace_context(&mut self, context: &[(String, String)]) {
        for event in &mut self.events {
            ferry_trace::replace_context(&mut event.headers, context);
        }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The payload as made of each event whose fields [`Pending::seal`] may encrypt (by
    /// index; `None` for the others). Empty without encryption at rest.
    pub fn clear_payloads(&self) -> Vec<Option<Bytes>> {
        if self.unsealed.is_empty() {
            return Vec::new();
        }
        let mut out = vec![None; self.events.len()];
        for u in &self.unsealed {
            out[u.index] = Some(self.events[u.index].payload.clone());
        }
        out
    }

    /// The events, ready to store: classified fields encrypted (when on).
    pub async fn seal(self) -> Result<Vec<NewEvent>, ferry_protect::KeyError> {
        let mut all = Self::seal_all(vec![self]).await?;
        Ok(all.pop().unwrap_or_default())
    }

    /// [`Pending::seal`] for a batch (a page, a queue batch), with one data-key look-up.
    pub async fn seal_all(
        batch: Vec<Pending>,
    ) -> Result<Vec<Vec<NewEvent>>, ferry_protect::KeyError> {
        let Some(at_rest) = batch.iter().find_map(|p| p.at_rest.clone()) else {
            return Ok(batch.into_iter().map(|p| p.events).collect());
        };
        let mut sizes = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        let mut unsealed = Vec::new();
        for p in batch {
            let base = events.len();
            sizes.push(p.events.len());
            events.extend(p.events);
            unsealed.extend(p.unsealed.into_iter().map(|mut u| {
                u.index += base;
                u
            }));
        }
        at_rest.seal(&mut events, unsealed).await?;
        let mut out = Vec::with_capacity(sizes.len());
        let mut rest = events.into_iter();
        for n in sizes {
            out.push(rest.by_ref().take(n).collect());
        }
        Ok(out)
    }

    /// The events of a flow assembled without encryption at rest (`ferry test`). `None` if
    /// the flow encrypts: those must be sealed.
    pub fn offline(self) -> Option<Vec<NewEvent>> {
        self.at_rest.is_none().then_some(self.events)
    }
}

/// The audit record of one event the flow makes (a split element, or the whole payload):
/// its categories and subject, read from what is stored.
fn audit_record(
    flow: &FlowSteps<'_>,
    event_type: Option<&str>,
    piece: &Piece,
    value: Option<&Value>,
    stored: &[u8],
) -> ferry_store::EventAudit {
    let value = piece.value.as_ref().or(value);
    flow.audit.record(flow.flow, event_type, value, stored)
}

/// The ordering key of each lane (in route order): the value at the lane's `ordering.key`
/// pointer, strings bare and anything else as JSON text. `None` for lanes that do not
/// order, and for events without the field. The body was already checked to be JSON; it is
/// parsed here unless `parsed` already holds it.
fn order_keys(lanes: &[RouteLane], payload: &[u8], parsed: Option<&Value>) -> Vec<Option<String>> {
    if lanes.iter().all(|l| l.order_key.is_none()) {
        return vec![None; lanes.len()];
    }
    let owned;
    let value = match parsed {
        Some(v) => Some(v),
        None => {
            owned = serde_json::from_slice::<Value>(payload).ok();
            owned.as_ref()
        }
    };
    lanes
        .iter()
        .map(|lane| {
            let pointer = lane.order_key.as_deref()?;
            match value?.pointer(pointer)? {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        })
        .collect()
}
