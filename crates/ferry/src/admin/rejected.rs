//! The rejected records of queue sources: `GET /admin/v1/rejected` (newest first, by flow,
//! paged), `GET /admin/v1/rejected/{id}` (with the payload), and
//! `POST /admin/v1/rejected/{id}/replay`: the stored payload goes through the flow's
//! *current* steps; events stored → the record is marked replayed and the lanes woken;
//! still refused → `422` with the reason.

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use ferry_store::{RejectedId, RejectedRecord, StoreError};
use serde::{Deserialize, Serialize};

use super::api::AdminState;
use super::filters::{bad_request, page_size};
use crate::clock::now_ms;
use crate::intake::message::{self, Incoming, Outcome};
use crate::problem::Problem;

/// `GET /admin/v1/rejected` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectedQuery {
    /// Only this flow.
    pub flow: Option<String>,
    /// Cursor: the last id of the previous page.
    pub before: Option<String>,
    /// Page size, 1..=1000 (default 100).
    pub limit: Option<usize>,
}

/// A rejected record as the admin API shows it (the payload only in [`RejectedView`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RejectedSummary {
    pub id: RejectedId,
    pub flow: String,
    pub source_kind: String,
    pub message_id: Option<String>,
    pub received_at: i64,
    pub reason: String,
    pub detail: String,
    pub replayed_at: Option<i64>,
    pub replayed_event: Option<String>,
}

/// One rejected record with its headers and payload (JSON when it parses, else text).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RejectedView {
    #[serde(flatten)]
    pub summary: RejectedSummary,
    pub headers: Vec<(String, String)>,
    pub payload: serde_json::Value,
}

/// A page of rejected records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RejectedPage {
    pub rejected: Vec<RejectedSummary>,
    /// Pass as `before` for the next page; absent on the last.
    pub next_before: Option<String>,
}

/// What a replay stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RejectedReplay {
    pub id: RejectedId,
    /// The events the flow made of the payload (newly stored or found stored).
    pub events: Vec<String>,
    /// How many were newly stored.
    pub stored: usize,
}

fn summary(r: &RejectedRecord) -> RejectedSummary {
    RejectedSummary {
        id: r.id,
        flow: r.flow.clone(),
        source_kind: r.source_kind.clone(),
        message_id: r.message_id.clone(),
        received_at: r.received_at,
        reason: r.reason.clone(),
        detail: r.detail.clone(),
        replayed_at: r.replayed_at,
        replayed_event: r.replayed_event.map(|e| e.to_string()),
    }
}

fn parse_id(id: &str) -> Result<RejectedId, Problem> {
    id.parse()
        .map_err(|_| bad_request(format!("`{id}` is not a rejected record id (rej_…)")))
}

fn store_error(e: StoreError) -> Problem {
    tracing::error!(error = %e, "admin query failed");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "Store unavailable",
        e.to_string(),
    )
    .retry_after(1)
}

fn not_found(detail: String) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "Not found", detail)
}

/// `GET /admin/v1/rejected`.
pub async fn list(
    State(st): State<AdminState>,
    query: Result<Query<RejectedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RejectedPage>, Problem> {
    let Query(q) = query.map_err(|e| bad_request(e.body_text()))?;
    let limit = page_size(q.limit)?;
    let before = q.before.as_deref().map(parse_id).transpose()?;
    let records = st
        .store
        .list_rejected(q.flow.as_deref(), before, limit)
        .await
        .map_err(store_error)?;
    let next_before = (records.len() == limit)
        .then(|| records.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(RejectedPage {
        rejected: records.iter().map(summary).collect(),
        next_before,
    }))
}

/// `GET /admin/v1/rejected/{id}`.
pub async fn show(
    State(st): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<RejectedView>, Problem> {
    let id = parse_id(&id)?;
    let record = st
        .store
        .rejected(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| not_found(format!("no rejected record {id}")))?;
    let mut record = record;
    record.payload = rejected_body(&st, &record).await?;
    let payload = serde_json::from_slice(&record.payload).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&record.payload).into_owned())
    });
    Ok(Json(RejectedView {
        summary: summary(&record),
        headers: record.headers,
        payload,
    }))
}

/// `POST /admin/v1/rejected/{id}/replay`.
pub async fn replay(
    State(st): State<AdminState>,
    Extension(caller): Extension<super::AdminCaller>,
    Path(id): Path<String>,
) -> Result<Json<RejectedReplay>, Problem> {
    let id = parse_id(&id)?;
    let record = st
        .store
        .rejected(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| not_found(format!("no rejected record {id}")))?;
    if record.replayed_at.is_some() {
        return Err(already_replayed(id));
    }
    let Some(spec) = st.queues.get(&record.flow) else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "flow_unknown",
            "Flow not running",
            format!(
                "flow `{}` is not a queue flow of the running config; nothing to replay into",
                record.flow
            ),
        ));
    };
    let body = rejected_body(&st, &record).await?;
    let incoming = Incoming {
        id: record.message_id.as_deref(),
        payload: &body,
        headers: &record.headers,
    };
    let events = match message::process(spec, incoming, now_ms()) {
        Outcome::Events(events) => events
            .seal()
            .await
            .map_err(|e| crate::ingress::pipeline::keys_unavailable(&e))?,
        Outcome::Filtered { step } => {
            return Err(unprocessable(
                "filtered",
                format!("step {step} (a `filter`) drops it now: nothing to store"),
            ));
        }
        Outcome::Rejected(refusal) => {
            return Err(unprocessable(
                refusal.reason,
                format!("still refused: {}", refusal.detail),
            ));
        }
    };
    // The store records the replay in the audit trail, with who asked.
    let by = format!("admin API [{}]", caller.0);
    let outcomes = match st.store.replay_rejected(id, events, now_ms(), &by).await {
        Ok(outcomes) => outcomes,
        // Replayed meanwhile by another call.
        Err(StoreError::Invalid(_)) => return Err(already_replayed(id)),
        Err(e) => return Err(store_error(e)),
    };
    let stored = outcomes.iter().filter(|o| o.is_stored()).count();
    metrics::counter!(ferry_metrics::REJECTED_REPLAYED_TOTAL, "flow" => record.flow.clone())
        .increment(1);
    tracing::info!(flow = %record.flow, rejected = %id, stored, "rejected record replayed through the admin API");
    (st.wake_all)();
    Ok(Json(RejectedReplay {
        id,
        events: outcomes.iter().map(|o| o.event_id().to_string()).collect(),
        stored,
    }))
}

/// A rejected record's body as received: decrypted when it was stored encrypted.
async fn rejected_body(st: &AdminState, record: &RejectedRecord) -> Result<bytes::Bytes, Problem> {
    let Some(at_rest) = &st.at_rest else {
        return Ok(record.payload.clone());
    };
    at_rest
        .open_rejected(&record.id.to_string(), &record.payload)
        .await
        .map_err(|e| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "keys_unavailable",
                "Record not readable",
                format!("the rejected record's body cannot be decrypted: {e}"),
            )
        })
}

fn already_replayed(id: RejectedId) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "already_replayed",
        "Already replayed",
        format!("rejected record {id} was replayed already"),
    )
}

fn unprocessable(code: &'static str, detail: String) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        code,
        "Still refused",
        detail,
    )
}
