//! One run of a pull flow: from the committed cursor, page after page, each page's records
//! committed as events together with the cursor after the page, until the last page or the
//! page limit.

use std::sync::Arc;

use bytes::Bytes;
use ferry_store::{
    DeliveryId, EventId, NewDelivery, NewEvent, PullCheckpoint, PullRunUpdate, Store,
};
use serde_json::Value;

use super::PullSpec;
use super::cursor::{Position, scalar_text};
use super::page::PageClient;
use crate::backlog::BacklogMonitor;
use crate::clock::now_ms;
use crate::ingress::LaneWaker;

/// What a run needs: the flow's spec and the hub's shared parts.
pub struct PullCtx {
    pub spec: Arc<PullSpec>,
    pub pages: PageClient,
    pub store: Arc<dyn Store>,
    pub wake: LaneWaker,
    pub backlog: Arc<BacklogMonitor>,
}

/// What a successful run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunSummary {
    pub pages: u32,
    /// Events newly stored.
    pub stored: u64,
    /// Records already stored (read again).
    pub duplicates: u64,
    /// The run ended at `max_pages` with more pages to go.
    pub truncated: bool,
}

/// Run once, recording the start and the end in the store. `started_at` is the run's time.
pub async fn run(ctx: &PullCtx, started_at: i64) -> Result<RunSummary, String> {
    let flow = &ctx.spec.flow;
    ctx.store
        .set_pull_run(flow, PullRunUpdate::Started { at: started_at })
        .await
        .map_err(|e| format!("recording the run's start: {e}"))?;
    let result = pages(ctx).await;
    let update = match &result {
        Ok(_) => PullRunUpdate::Succeeded { at: now_ms() },
        Err(error) => PullRunUpdate::Failed {
            at: now_ms(),
            error: error.clone(),
        },
    };
    if let Err(e) = ctx.store.set_pull_run(flow, update).await {
        tracing::warn!(flow = %flow, error = %e, "recording the end of a pull run failed");
    }
    result
}

/// The pages of one run.
async fn pages(ctx: &PullCtx) -> Result<RunSummary, String> {
    let spec = &ctx.spec;
    let state = ctx
        .store
        .pull_state(&spec.flow)
        .await
        .map_err(|e| format!("reading the cursor: {e}"))?;
    let mut stored_cursor = state.and_then(|s| s.cursor);
    let mut position = match Position::load(stored_cursor.as_deref(), &spec.cursor) {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(flow = %spec.flow, "{why}; starting from the source's start");
            Position::start(&spec.cursor)
        }
    };
    let mut summary = RunSummary::default();
    for _ in 0..spec.max_pages {
        refuse_if_backlog_full(ctx)?;
        let body = ctx
            .pages
            .fetch(&position.query(&spec.cursor))
            .await
            .map_err(|e| e.message)?;
        let records = records(&body, &spec.records)?;
        let now = now_ms();
        let events = records
            .iter()
            .enumerate()
            .map(|(i, r)| event(spec, r, now).map_err(|e| format!("record {i} of the page: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let advance = position.advance(&spec.cursor, &body, &records);
        let to = advance.next.to_text();
        let checkpoint = PullCheckpoint {
            from: stored_cursor.clone(),
            to: Some(to.clone()),
            at: now,
        };
        let outcomes = ctx
            .store
            .append_page(&spec.flow, events, checkpoint)
            .await
            .map_err(|e| format!("storing a page: {e}"))?;
        let stored = outcomes.iter().filter(|o| o.is_stored()).count() as u64;
        summary.pages += 1;
        summary.stored += stored;
        summary.duplicates += outcomes.len() as u64 - stored;
        metrics::counter!("ferry_pull_pages_total", "flow" => spec.flow.clone()).increment(1);
        metrics::counter!("ferry_pull_records_total", "flow" => spec.flow.clone())
            .increment(stored);
        if stored > 0 {
            for lane in &spec.lanes {
                (ctx.wake)(&lane.key);
            }
        }
        stored_cursor = Some(to);
        position = advance.next;
        if advance.last {
            return Ok(summary);
        }
    }
    summary.truncated = true;
    Ok(summary)
}

/// A lane at its bounded backlog stops the run (the cursor stays; the next run goes on).
fn refuse_if_backlog_full(ctx: &PullCtx) -> Result<(), String> {
    for lane in &ctx.spec.lanes {
        let waiting = ctx.backlog.waiting(&lane.key);
        if waiting >= lane.max_pending {
            return Err(format!(
                "destination `{}` has {waiting} deliveries waiting (limit {}); the pull goes on \
                 at its next run",
                lane.key.destination, lane.max_pending
            ));
        }
    }
    Ok(())
}

/// The records of a page: the array at `pointer` (absent or `null`: none).
fn records(body: &Value, pointer: &str) -> Result<Vec<Value>, String> {
    match body.pointer(pointer) {
        Some(Value::Array(items)) => Ok(items.clone()),
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(_) => Err(format!("the page has no array of records at `{pointer}`")),
    }
}

/// One event for `record`, fanned out to every destination of the flow.
fn event(spec: &PullSpec, record: &Value, now: i64) -> Result<NewEvent, String> {
    let dedupe_key = match &spec.record_id {
        None => None,
        Some(pointer) => {
            let id = record
                .pointer(pointer)
                .and_then(key_text)
                .ok_or_else(|| format!("it has no id at `{pointer}`"))?;
            Some(match &spec.cursor {
                // A record updated again is a new event; the same version is a duplicate.
                ferry_config::PullCursor::UpdatedSince { field, .. } => {
                    match record.pointer(field).and_then(scalar_text) {
                        Some(version) => format!("{id}@{version}"),
                        None => id,
                    }
                }
                _ => id,
            })
        }
    };
    let event_type = spec
        .event_type
        .as_deref()
        .and_then(|p| record.pointer(p))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let payload = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    let deliveries = spec
        .lanes
        .iter()
        .map(|lane| NewDelivery {
            id: DeliveryId::new(),
            destination: lane.key.destination.clone(),
            due_at: now,
            order_key: lane
                .order_key
                .as_deref()
                .and_then(|p| record.pointer(p))
                .and_then(key_text),
        })
        .collect();
    Ok(NewEvent {
        id: EventId::new(),
        flow: spec.flow.clone(),
        source: spec.source_system.clone(),
        dedupe_key,
        event_type,
        received_at: now,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        payload: Bytes::from(payload),
        deliveries,
        dedupe_window: None,
    })
}

/// A key read from a record: a string as it is, `null` as none, anything else as JSON.
fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}
