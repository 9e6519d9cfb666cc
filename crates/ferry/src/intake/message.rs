//! One message into what the store keeps of it: the events the flow makes of it, or a
//! rejected record with the reason, or nothing (a `filter` dropped it).
//!
//! The payload is read as strict JSON (like a posted body), its dedupe key is the value at
//! the source's `event_id` pointer, else the broker's message id; then it goes through the
//! flow's steps exactly like a posted event ([`crate::ingress::pipeline::process_flow`]).
//! A rejection's detail names pointers, steps and rules, never payload values: a step that
//! failed at run time is named, not quoted (VRL's message may quote the data).

use std::time::SystemTime;

use bytes::Bytes;
use ferry_store::{Millis, NewRejected, RejectedId};
use serde_json::Value;

use super::QueueSpec;
use crate::ingress::KEPT_HEADERS;
use crate::ingress::pipeline::{self, Pending, Processed, Received};
use crate::problem::Problem;
use crate::strict_json;

/// A message as read from the broker (or a rejected record's stored copy, at replay).
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The broker's message id.
    pub id: Option<&'a str>,
    pub payload: &'a Bytes,
    pub headers: &'a [(String, String)],
}

/// What a message became.
#[derive(Debug)]
pub enum Outcome {
    /// The events to store (one, or one per element of a `split`), to be sealed.
    Events(Pending),
    /// Every event was dropped by the step at this index: acknowledged, not stored.
    Filtered { step: usize },
    /// Refused: stored as a rejected record.
    Rejected(Refusal),
}

/// Why the flow refused a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `malformed_json`, `too_deep`, `event_id_invalid`, `schema_violation`,
    /// `unknown_event_type`, `step_failed`.
    pub reason: &'static str,
    /// What was wrong, without payload values.
    pub detail: String,
}

impl Refusal {
    /// The rejected record of `incoming`, refused at `now` in `spec`'s flow.
    pub fn record(&self, spec: &QueueSpec, incoming: Incoming<'_>, now: Millis) -> NewRejected {
        NewRejected {
            id: RejectedId::new(),
            flow: spec.flow.clone(),
            source_kind: spec.kind.to_owned(),
            message_id: incoming.id.map(str::to_owned),
            received_at: now,
            reason: self.reason.to_owned(),
            detail: self.detail.clone(),
            headers: incoming.headers.to_vec(),
            payload: incoming.payload.clone(),
        }
    }
}

/// Run `incoming` through `spec`'s flow at `now`.
pub fn process(spec: &QueueSpec, incoming: Incoming<'_>, now: Millis) -> Outcome {
    let started = SystemTime::now();
    let mut received = match received(spec, incoming) {
        Ok(received) => received,
        Err(refusal) => return Outcome::Rejected(refusal),
    };
    // The message's trace context: Ferry's receive span is a child of the producer's, and
    // the parent of the event's deliveries.
    let span = ferry_trace::inbound(&mut received.headers);
    let outcome = match pipeline::process_flow(&spec.flow_steps(), received, now) {
        Ok(Processed::Events { events, .. }) => Outcome::Events(events),
        Ok(Processed::Dropped { step }) => Outcome::Filtered { step },
        Err(problem) => Outcome::Rejected(refusal(&problem)),
    };
    if let Some(ids) = span {
        trace_receive(spec, incoming, &ids, started, &outcome);
    }
    outcome
}

/// Record a message's receive span (`ferry.receive`): the flow, the broker, what it became.
fn trace_receive(
    spec: &QueueSpec,
    incoming: Incoming<'_>,
    ids: &ferry_trace::SpanIds,
    started: SystemTime,
    outcome: &Outcome,
) {
    use ferry_trace::KeyValue;
    let (became, error) = match outcome {
        Outcome::Events(_) => ("stored", None),
        Outcome::Filtered { .. } => ("filtered", None),
        Outcome::Rejected(r) => ("rejected", Some(r.reason.to_string())),
    };
    let mut attributes = vec![
        KeyValue::new("ferry.flow", spec.flow.clone()),
        KeyValue::new("messaging.system", spec.kind),
        KeyValue::new("ferry.outcome", became),
    ];
    if let Some(id) = incoming.id {
        attributes.push(KeyValue::new("messaging.message.id", id.to_string()));
    }
    ferry_trace::record(
        ids,
        "ferry.receive",
        ferry_trace::SpanKind::Consumer,
        started,
        SystemTime::now(),
        attributes,
        error,
    );
}

/// The message as the pipeline takes it: parsed, with its dedupe key, type and the headers
/// an event keeps; refused when it is not JSON or has no id at the source's `event_id`.
pub fn received(spec: &QueueSpec, incoming: Incoming<'_>) -> Result<Received, Refusal> {
    let value = strict_json::parse(incoming.payload).map_err(|e| Refusal {
        reason: e.code(),
        detail: format!("the payload is not valid JSON: {e}"),
    })?;
    let dedupe_key = match &spec.event_id {
        Some(pointer) => {
            Some(
                value
                    .pointer(pointer)
                    .and_then(key_text)
                    .ok_or_else(|| Refusal {
                        reason: "event_id_invalid",
                        detail: format!("the payload has no event id at `{pointer}`"),
                    })?,
            )
        }
        None => incoming.id.map(str::to_owned),
    };
    let event_type = spec
        .event_type
        .as_deref()
        .and_then(|p| value.pointer(p))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut headers: Vec<(String, String)> = incoming
        .headers
        .iter()
        .filter(|(name, _)| KEPT_HEADERS.iter().any(|k| name.eq_ignore_ascii_case(k)))
        .map(|(name, v)| (name.to_ascii_lowercase(), v.clone()))
        .collect();
    if !headers.iter().any(|(name, _)| name == "content-type") {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    Ok(Received {
        payload: incoming.payload.clone(),
        value: Some(value),
        dedupe_key,
        event_type,
        headers,
    })
}

/// A step's refusal, its detail free of payload values.
fn refusal(problem: &Problem) -> Refusal {
    let detail = if problem.code == "step_failed" {
        let step = problem.extensions.as_ref().and_then(|x| x.get("step"));
        let index = step.and_then(|s| s.get("index")).map(Value::to_string);
        let kind = step
            .and_then(|s| s.get("kind"))
            .and_then(Value::as_str)
            .unwrap_or("step");
        match index {
            Some(i) => format!("step {i} (`{kind}`) failed at run time"),
            None => "a step failed at run time".to_owned(),
        }
    } else {
        problem.detail.clone()
    };
    Refusal {
        reason: problem.code,
        detail,
    }
}

/// A key read from a payload: a string as it is, `null` or empty as none, anything else as
/// JSON.
fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}
