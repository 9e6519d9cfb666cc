//! One pulled record into the events to store: its id (the dedupe key) and type are read
//! per the source, then it goes through the flow's steps exactly like a posted event
//! ([`crate::ingress::pipeline::process_flow`]): `validate`, `filter`, `route`, `split`,
//! `dedupe`, each event getting a delivery per lane its `route` chose.
//!
//! A record that a step refuses (a schema violation, an unknown type under
//! `unknown_type: reject`, a step failing at run time) or filters out is **skipped**: the
//! page is committed with the records that passed, so one bad record never blocks the
//! cursor. Each skip is counted in `ferry_pull_records_skipped_total{flow,reason}` (`reason`
//! `filtered`, or the refusal's code: `schema_violation`, `unknown_event_type`,
//! `step_failed`) and logged (`debug` for `filtered`, else `warn`) without the record's data.

use bytes::Bytes;
use ferry_config::{PostgresSource, PullCursor};
use ferry_store::Millis;
use serde_json::Value;

use super::PullSpec;
use super::cursor::scalar_text;
use super::spec::{HttpOrigin, Origin};
use crate::ingress::pipeline::{self, Pending, Processed, Received};
use crate::problem::Problem;

/// The skip reason of a record every event of which a `filter` (or an empty `split`)
/// dropped.
pub const FILTERED: &str = "filtered";

/// What one record became.
#[derive(Debug)]
pub enum Record {
    /// The events to store (one, or one per element of a `split`), to be sealed.
    Events(Pending),
    /// Not stored.
    Skipped(Skip),
}

/// Why a record was not stored.
#[derive(Debug)]
pub enum Skip {
    /// Every event was dropped by the step at this index (a `filter`, an empty `split`).
    Filtered { step: usize },
    /// A step refused it: the problem a webhook would have been answered with.
    Refused(Problem),
}

impl Skip {
    /// The `reason` label and log field.
    pub fn reason(&self) -> &'static str {
        match self {
            Skip::Filtered { .. } => FILTERED,
            Skip::Refused(problem) => problem.code,
        }
    }
}

/// Run `record` through the flow (at `now`). `Err` when the record cannot be read at all (no
/// id at `record_id`): that fails the run, as it always has.
pub fn process(spec: &PullSpec, record: &Value, now: Millis) -> Result<Record, String> {
    let received = received(spec, record)?;
    Ok(
        match pipeline::process_flow(&spec.flow_steps(), received, now) {
            Ok(Processed::Events { events, .. }) => Record::Events(events),
            Ok(Processed::Dropped { step }) => Record::Skipped(Skip::Filtered { step }),
            Err(problem) => Record::Skipped(Skip::Refused(problem)),
        },
    )
}

/// Count and log a skipped record: the `index`-th of its page.
pub fn report(spec: &PullSpec, index: usize, skip: &Skip) {
    let reason = skip.reason();
    metrics::counter!(
        ferry_metrics::PULL_RECORDS_SKIPPED_TOTAL,
        "flow" => spec.flow.clone(),
        "reason" => reason
    )
    .increment(1);
    match skip {
        Skip::Filtered { step } => {
            tracing::debug!(flow = %spec.flow, record = index, step, "pulled record dropped by a filter");
        }
        Skip::Refused(problem) => {
            // A step failure quotes VRL's message, which may quote the record's data: only
            // the step is logged. Schema problems name pointers and counts, never values.
            let step = problem
                .extensions
                .as_ref()
                .and_then(|x| x.get("step"))
                .map(Value::to_string);
            let detail = (problem.code != "step_failed").then_some(problem.detail.as_str());
            tracing::warn!(
                flow = %spec.flow,
                record = index,
                reason,
                step = step.as_deref(),
                detail,
                "pulled record skipped; the page is committed without it"
            );
        }
    }
}

/// The record as the pipeline takes it: the payload (its JSON text), parsed, its dedupe key
/// and its type, read where the source says ([`Origin`]).
pub fn received(spec: &PullSpec, record: &Value) -> Result<Received, String> {
    let (dedupe_key, event_type) = match &spec.origin {
        Origin::Http(http) => (http_key(http, record)?, pointed_type(http, record)),
        Origin::Postgres(table) => table_key_and_type(&table.config, record)?,
    };
    let payload = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    Ok(Received {
        payload: Bytes::from(payload),
        value: Some(record.clone()),
        dedupe_key,
        event_type,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
    })
}

/// An API record's key: the `record_id`, with the version for an `updated_since` cursor.
fn http_key(http: &HttpOrigin, record: &Value) -> Result<Option<String>, String> {
    let Some(pointer) = &http.record_id else {
        return Ok(None);
    };
    let id = record
        .pointer(pointer)
        .and_then(key_text)
        .ok_or_else(|| format!("it has no id at `{pointer}`"))?;
    Ok(Some(match &http.cursor {
        // A record updated again is a new event; the same version is a duplicate.
        PullCursor::UpdatedSince { field, .. } => match record.pointer(field).and_then(scalar_text)
        {
            Some(version) => format!("{id}@{version}"),
            None => id,
        },
        _ => id,
    }))
}

fn pointed_type(http: &HttpOrigin, record: &Value) -> Option<String> {
    http.event_type
        .as_deref()
        .and_then(|p| record.pointer(p))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// A row's key and type: the `record_id` column, with the cursor column's value when that
/// is another column (`id@version`: a row updated again is a new event), and the
/// `event_type` column.
fn table_key_and_type(
    config: &PostgresSource,
    row: &Value,
) -> Result<(Option<String>, Option<String>), String> {
    let id = row
        .get(&config.record_id)
        .and_then(key_text)
        .ok_or_else(|| format!("it has no `{}` column value", config.record_id))?;
    let key = if config.cursor.column == config.record_id {
        id
    } else {
        match row.get(&config.cursor.column).and_then(scalar_text) {
            Some(version) => format!("{id}@{version}"),
            None => id,
        }
    };
    let event_type = config
        .event_type
        .as_deref()
        .and_then(|c| row.get(c))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((Some(key), event_type))
}

/// A key read from a record: a string as it is, `null` as none, anything else as JSON.
fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}
