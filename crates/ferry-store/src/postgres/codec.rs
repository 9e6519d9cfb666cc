//! Conversions between the store's types and PostgreSQL values, error mapping, and the
//! `DeliveryFilter` -> SQL translation shared by listing and replay.

use postgres::Row;
use postgres::error::SqlState;
use postgres::types::{FromSql, ToSql};

use crate::{
    DeliveryFilter, DeliveryId, DeliveryState, DeliverySummary, EventId, LaneKey, StoreError,
};

/// `deliveries.state` codes, the same as the SQLite backend's. Waiting states (claimable,
/// indexed by `deliveries_due`) are pending, in_flight and retrying: `state IN (0, 1, 3)`.
pub(crate) const PENDING: i32 = DeliveryState::Pending.code() as i32;
pub(crate) const IN_FLIGHT: i32 = DeliveryState::InFlight.code() as i32;
pub(crate) const DELIVERED: i32 = DeliveryState::Delivered.code() as i32;
pub(crate) const RETRYING: i32 = DeliveryState::Retrying.code() as i32;
pub(crate) const DEAD: i32 = DeliveryState::Dead.code() as i32;

pub(crate) fn state_code(state: DeliveryState) -> i32 {
    i32::from(state.code())
}

pub(crate) fn state_from_code(code: i32) -> Result<DeliveryState, StoreError> {
    DeliveryState::from_code(i64::from(code)).ok_or_else(|| {
        StoreError::Backend(format!(
            "unknown delivery state code {code} in the database"
        ))
    })
}

/// Maps a PostgreSQL error: integrity violations are the caller's mistake; a lost
/// connection, a full disk or a server that cannot take writes (shutting down, read-only,
/// out of connections) make the store [unavailable](StoreError::Unavailable) until the cause
/// is gone; the rest is the backend.
pub(crate) fn map_err(err: postgres::Error) -> StoreError {
    let Some(code) = err.code() else {
        // No SQLSTATE: the connection is gone or could not be made.
        return StoreError::Unavailable(format!("PostgreSQL: {}", describe(&err)));
    };
    let class = &code.code()[..2];
    match class {
        // integrity_constraint_violation
        "23" => StoreError::Invalid(describe(&err)),
        // connection_exception, insufficient_resources (disk full, out of memory, too many
        // connections), operator_intervention (admin shutdown, crash shutdown), system_error
        "08" | "53" | "57" | "58" => {
            StoreError::Unavailable(format!("PostgreSQL: {}", describe(&err)))
        }
        _ if code == &SqlState::READ_ONLY_SQL_TRANSACTION => {
            StoreError::Unavailable(format!("PostgreSQL: {}", describe(&err)))
        }
        _ => StoreError::Backend(describe(&err)),
    }
}

/// The error with the server's message and detail, when it sent them.
fn describe(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        None => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

/// Whether a failed batch may simply run again: a deadlock or a serialization failure
/// between nodes, which PostgreSQL resolves by aborting one of the transactions.
pub(crate) fn is_retryable(err: &postgres::Error) -> bool {
    matches!(
        err.code(),
        Some(c) if c == &SqlState::T_R_DEADLOCK_DETECTED || c == &SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// `?`-friendly conversion of postgres results.
pub(crate) trait PgResultExt<T> {
    fn store(self) -> Result<T, StoreError>;
}
impl<T> PgResultExt<T> for Result<T, postgres::Error> {
    fn store(self) -> Result<T, StoreError> {
        self.map_err(map_err)
    }
}

/// Column `idx` of `row`, or a backend error when it does not convert (never a panic).
pub(crate) fn col<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, StoreError> {
    row.try_get(idx).store()
}

/// A `u32` counter column (never negative; saturates defensively).
pub(crate) fn count(v: i32) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// A `u64` count (bigint column).
pub(crate) fn count64(v: i64) -> u64 {
    u64::try_from(v.max(0)).unwrap_or(0)
}

pub(crate) fn encode_headers(headers: &[(String, String)]) -> String {
    // Serialising a list of string pairs cannot fail.
    serde_json::to_string(headers).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) fn decode_headers(text: &str) -> Result<Vec<(String, String)>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Backend(format!("unreadable stored headers: {e}")))
}

/// Saturating `usize` -> SQL bigint (for `LIMIT`).
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Columns read by [`summary_from_row`], on table alias `d`.
pub(crate) const SUMMARY_COLUMNS: &str = "d.id, d.event_id, d.flow, d.destination, d.state, \
     d.received_at, d.attempts, d.next_attempt_at, d.updated_at, d.last_error, d.replays";

pub(crate) fn summary_from_row(row: &Row) -> Result<DeliverySummary, StoreError> {
    Ok(DeliverySummary {
        id: DeliveryId(col(row, 0)?),
        event_id: EventId(col(row, 1)?),
        lane: LaneKey {
            flow: col(row, 2)?,
            destination: col(row, 3)?,
        },
        state: state_from_code(col(row, 4)?)?,
        received_at: col(row, 5)?,
        attempts: count(col(row, 6)?),
        next_attempt_at: col(row, 7)?,
        updated_at: col(row, 8)?,
        last_error: col(row, 9)?,
        replays: count(col(row, 10)?),
    })
}

/// A boxed SQL parameter.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// Borrow boxed parameters as the client's argument slice.
pub(crate) fn args(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// The parameters of a sender-id match for `id` (see [`crate::sender_id_matches`]): the id
/// itself, and the ranges of its `#` and `@` forms (`'$'` and `'A'` are the characters
/// after `'#'` and `'@'`).
pub(crate) fn sender_params(id: &str) -> [String; 5] {
    [
        id.to_owned(),
        format!("{id}#"),
        format!("{id}$"),
        format!("{id}@"),
        format!("{id}A"),
    ]
}

/// A sender-id match on `e.dedupe_key` with parameters `$n` to `$n+4`: each alternative is
/// a seek in `events_dedupe_key`.
pub(crate) fn sender_match(n: usize) -> String {
    format!(
        "(e.dedupe_key = ${n} OR (e.dedupe_key > ${} AND e.dedupe_key < ${}) \
         OR (e.dedupe_key > ${} AND e.dedupe_key < ${}))",
        n + 1,
        n + 2,
        n + 3,
        n + 4
    )
}

/// A `WHERE` clause (conditions joined by `AND`, on table alias `d`) and its parameters,
/// numbered after the `first` parameters the statement already has.
pub(crate) struct FilterSql {
    pub conditions: Vec<String>,
    pub params: Vec<Param>,
    first: usize,
}

impl FilterSql {
    pub(crate) fn new(filter: &DeliveryFilter, first: usize) -> Self {
        let mut f = FilterSql {
            conditions: Vec::new(),
            params: Vec::new(),
            first,
        };
        if let Some(id) = filter.delivery_id {
            f.push("d.id = $?", Box::new(id.0));
        }
        if let Some(id) = filter.event_id {
            f.push("d.event_id = $?", Box::new(id.0));
        }
        if let Some(flow) = &filter.flow {
            f.push("d.flow = $?", Box::new(flow.clone()));
        }
        if let Some(flows) = &filter.flows {
            // An empty array matches nothing.
            f.push("d.flow = ANY($?::text[])", Box::new(flows.clone()));
        }
        if let Some(dest) = &filter.destination {
            f.push("d.destination = $?", Box::new(dest.clone()));
        }
        if let Some(state) = filter.state {
            // A literal, not a parameter: lets the planner use the partial index of dead
            // letters.
            f.conditions
                .push(format!("d.state = {}", state_code(state)));
        }
        if let Some(since) = filter.since {
            f.push("d.received_at >= $?", Box::new(since));
        }
        if let Some(until) = filter.until {
            f.push("d.received_at < $?", Box::new(until));
        }
        if let Some(id) = &filter.sender_id {
            let n = f.next();
            f.conditions.push(format!(
                "d.event_id IN (SELECT e.id FROM events e WHERE {})",
                sender_match(n)
            ));
            for p in sender_params(id) {
                f.params.push(Box::new(p));
            }
        }
        if let Some(min) = filter.min_attempts {
            f.push(
                "d.attempts >= $?",
                Box::new(i32::try_from(min).unwrap_or(i32::MAX)),
            );
        }
        if let Some(class) = &filter.error_class {
            f.push(
                "EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id AND a.error_class = $?)",
                Box::new(class.clone()),
            );
        }
        if let Some(range) = filter.status {
            let n = f.next();
            f.conditions.push(format!(
                "EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id \
                 AND a.status BETWEEN ${n} AND ${})",
                n + 1
            ));
            f.params.push(Box::new(i32::from(range.from)));
            f.params.push(Box::new(i32::from(range.to)));
        }
        f
    }

    /// The number of the next parameter.
    pub(crate) fn next(&self) -> usize {
        self.first + self.params.len() + 1
    }

    /// A condition with one parameter, written `$?` in `condition`.
    pub(crate) fn push(&mut self, condition: &str, param: Param) {
        let n = self.next();
        self.conditions
            .push(condition.replace("$?", &format!("${n}")));
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
