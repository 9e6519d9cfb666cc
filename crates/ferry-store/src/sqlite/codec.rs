//! Conversions between the store's types and SQLite values, error mapping, and the
//! `DeliveryFilter` -> SQL translation shared by listing and replay.

use rusqlite::types::Value;
use rusqlite::{ErrorCode, Row};
use uuid::Uuid;

use crate::{
    DeliveryFilter, DeliveryId, DeliveryState, DeliverySummary, EventId, LaneKey, StoreError,
};

/// `deliveries.state` codes. Waiting states (claimable, indexed by `deliveries_due`) are
/// pending, in_flight and retrying: `state IN (0, 1, 3)`.
pub(crate) const PENDING: i64 = DeliveryState::Pending.code() as i64;
pub(crate) const IN_FLIGHT: i64 = DeliveryState::InFlight.code() as i64;
pub(crate) const DELIVERED: i64 = DeliveryState::Delivered.code() as i64;
pub(crate) const RETRYING: i64 = DeliveryState::Retrying.code() as i64;
pub(crate) const DEAD: i64 = DeliveryState::Dead.code() as i64;

pub(crate) fn state_code(state: DeliveryState) -> i64 {
    i64::from(state.code())
}

pub(crate) fn state_from_code(code: i64) -> rusqlite::Result<DeliveryState> {
    DeliveryState::from_code(code).ok_or(rusqlite::Error::IntegralValueOutOfRange(0, code))
}

/// Maps a SQLite error: constraint violations are the caller's mistake; a full disk, an I/O
/// error or a device gone read-only make the store [unavailable](StoreError::Unavailable)
/// until the cause is gone; the rest is the backend.
pub(crate) fn map_err(err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Invalid(err.to_string()),
        Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure | ErrorCode::ReadOnly) => {
            StoreError::Unavailable(err.to_string())
        }
        _ => StoreError::Backend(err.to_string()),
    }
}

/// `?`-friendly conversion of rusqlite results.
pub(crate) trait SqlResultExt<T> {
    fn store(self) -> Result<T, StoreError>;
}
impl<T> SqlResultExt<T> for rusqlite::Result<T> {
    fn store(self) -> Result<T, StoreError> {
        self.map_err(map_err)
    }
}

pub(crate) fn uuid_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Uuid> {
    let bytes: [u8; 16] = row.get(idx)?;
    Ok(Uuid::from_bytes(bytes))
}

/// A `u32` counter column (never negative; saturates defensively).
pub(crate) fn count_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<u32> {
    let v: i64 = row.get(idx)?;
    Ok(u32::try_from(v.max(0)).unwrap_or(u32::MAX))
}

pub(crate) fn encode_headers(headers: &[(String, String)]) -> String {
    // Serialising a list of string pairs cannot fail.
    serde_json::to_string(headers).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) fn decode_headers(text: &str) -> rusqlite::Result<Vec<(String, String)>> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Saturating `usize` -> SQL integer (for `LIMIT`).
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Columns read by [`summary_from_row`], on table alias `d`.
pub(crate) const SUMMARY_COLUMNS: &str = "d.id, d.event_id, d.flow, d.destination, d.state, \
     d.received_at, d.attempts, d.next_attempt_at, d.updated_at, d.last_error, d.replays";

pub(crate) fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<DeliverySummary> {
    Ok(DeliverySummary {
        id: DeliveryId(uuid_at(row, 0)?),
        event_id: EventId(uuid_at(row, 1)?),
        lane: LaneKey {
            flow: row.get(2)?,
            destination: row.get(3)?,
        },
        state: state_from_code(row.get(4)?)?,
        received_at: row.get(5)?,
        attempts: count_at(row, 6)?,
        next_attempt_at: row.get(7)?,
        updated_at: row.get(8)?,
        last_error: row.get(9)?,
        replays: count_at(row, 10)?,
    })
}

/// Events whose dedupe key matches a sender id (see [`crate::sender_id_matches`]): the id
/// itself, or it followed by `#` or `@` and more. Each alternative is a seek (a range) in
/// `events_dedupe_key`: `'$'` and `'A'` are the characters after `'#'` and `'@'`. Takes the
/// five parameters of [`sender_params`], on table alias `e`.
pub(crate) const SENDER_MATCH: &str = "(e.dedupe_key = ? \
     OR (e.dedupe_key > ? AND e.dedupe_key < ?) \
     OR (e.dedupe_key > ? AND e.dedupe_key < ?))";

/// Deliveries (alias `d`) of the events matching a sender id; [`sender_params`].
pub(crate) const SENDER_DELIVERIES: &str = "d.event_id IN (SELECT e.id FROM events e WHERE \
     (e.dedupe_key = ? \
     OR (e.dedupe_key > ? AND e.dedupe_key < ?) \
     OR (e.dedupe_key > ? AND e.dedupe_key < ?)))";

/// The parameters of [`SENDER_MATCH`] for sender id `id`.
pub(crate) fn sender_params(id: &str) -> [Value; 5] {
    [
        Value::Text(id.to_owned()),
        Value::Text(format!("{id}#")),
        Value::Text(format!("{id}$")),
        Value::Text(format!("{id}@")),
        Value::Text(format!("{id}A")),
    ]
}

/// Deliveries (alias `d`) of any of a list of flows; one parameter, [`flows_param`].
pub(crate) const FLOW_IN_DELIVERIES: &str = "d.flow IN (SELECT value FROM json_each(?))";

/// Events (alias `e`) of any of a list of flows; one parameter, [`flows_param`].
pub(crate) const FLOW_IN_EVENTS: &str = "e.flow IN (SELECT value FROM json_each(?))";

/// The parameter of [`FLOW_IN_DELIVERIES`] and [`FLOW_IN_EVENTS`]: the flows as a JSON
/// array of strings. An empty list matches nothing.
pub(crate) fn flows_param(flows: &[String]) -> Value {
    Value::Text(serde_json::Value::from(flows.to_vec()).to_string())
}

/// A `WHERE` clause (conditions joined by `AND`, on table alias `d`) and its parameters.
pub(crate) struct FilterSql {
    pub conditions: Vec<&'static str>,
    pub params: Vec<Value>,
}

impl FilterSql {
    pub(crate) fn new(filter: &DeliveryFilter) -> Self {
        let mut f = FilterSql {
            conditions: Vec::new(),
            params: Vec::new(),
        };
        if let Some(id) = filter.delivery_id {
            f.push("d.id = ?", Value::Blob(id.0.as_bytes().to_vec()));
        }
        if let Some(id) = filter.event_id {
            f.push("d.event_id = ?", Value::Blob(id.0.as_bytes().to_vec()));
        }
        if let Some(flow) = &filter.flow {
            f.push("d.flow = ?", Value::Text(flow.clone()));
        }
        if let Some(flows) = &filter.flows {
            f.push(FLOW_IN_DELIVERIES, flows_param(flows));
        }
        if let Some(dest) = &filter.destination {
            f.push("d.destination = ?", Value::Text(dest.clone()));
        }
        if let Some(state) = filter.state {
            // A literal, not a parameter: lets SQLite use the partial index of dead letters.
            f.conditions.push(match state_code(state) {
                0 => "d.state = 0",
                1 => "d.state = 1",
                2 => "d.state = 2",
                3 => "d.state = 3",
                _ => "d.state = 4",
            });
        }
        if let Some(since) = filter.since {
            f.push("d.received_at >= ?", Value::Integer(since));
        }
        if let Some(until) = filter.until {
            f.push("d.received_at < ?", Value::Integer(until));
        }
        if let Some(id) = &filter.sender_id {
            // The events of that sender id: seeks in `events_dedupe_key`, then
            // `deliveries_event` per event.
            f.conditions.push(SENDER_DELIVERIES);
            f.params.extend(sender_params(id));
        }
        if let Some(min) = filter.min_attempts {
            f.push("d.attempts >= ?", Value::Integer(i64::from(min)));
        }
        if let Some(class) = &filter.error_class {
            f.push(
                "EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id AND a.error_class = ?)",
                Value::Text(class.clone()),
            );
        }
        if let Some(range) = filter.status {
            f.conditions.push(
                "EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id \
                 AND a.status BETWEEN ? AND ?)",
            );
            f.params.push(Value::Integer(i64::from(range.from)));
            f.params.push(Value::Integer(i64::from(range.to)));
        }
        f
    }

    pub(crate) fn push(&mut self, condition: &'static str, param: Value) {
        self.conditions.push(condition);
        self.params.push(param);
    }

    /// `WHERE a AND b ...`, or an empty string when there is no condition.
    pub(crate) fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }
}
