//! Reads, served by a small pool of read-only connections on blocking threads. In WAL mode
//! readers see the last commit and never wait for the writer.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use tokio::sync::Semaphore;

use super::codec::{
    DEAD, DELIVERED, FLOW_IN_EVENTS, FilterSql, IN_FLIGHT, PENDING, RETRYING, SENDER_MATCH,
    SUMMARY_COLUMNS, SqlResultExt, count_at, decode_headers, flows_param, limit, sender_params,
    state_from_code, summary_from_row, uuid_at,
};
use super::schema;
use crate::{
    Attempt, DeliveryDetail, DeliveryFilter, DeliveryId, DeliverySummary, EventFilter, EventId,
    EventSummary, LaneBacklog, LaneCounts, LaneKey, Millis, ReplayRecord, StoreError, StoreResult,
    StoredEvent,
};

/// A fixed-size pool of read-only connections.
pub(crate) struct ReadPool {
    path: PathBuf,
    busy_timeout: Duration,
    cache_kib: u32,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl ReadPool {
    pub(crate) fn open(
        path: PathBuf,
        size: usize,
        busy_timeout: Duration,
        cache_kib: u32,
    ) -> StoreResult<Self> {
        let size = size.max(1);
        let idle = (0..size)
            .map(|_| schema::open_reader(&path, busy_timeout, cache_kib))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(ReadPool {
            path,
            busy_timeout,
            cache_kib,
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(size)),
        })
    }

    /// Runs `f` on a pooled connection in a blocking thread.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = match pool.take() {
                Some(c) => c,
                None => schema::open_reader(&pool.path, pool.busy_timeout, pool.cache_kib)?,
            };
            let out = f(&conn);
            if conn.is_autocommit() {
                pool.put(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
    }

    fn take(&self) -> Option<Connection> {
        self.idle.lock().ok()?.pop()
    }

    fn put(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }
}

/// Runs several statements against one snapshot.
fn snapshot<T>(conn: &Connection, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
    let tx = conn.unchecked_transaction().store()?;
    let out = f(&tx)?;
    tx.commit().store()?;
    Ok(out)
}

pub(crate) fn event(conn: &Connection, id: EventId) -> StoreResult<Option<StoredEvent>> {
    conn.prepare_cached(
        "SELECT id, flow, source, dedupe_key, event_type, received_at, headers, payload
         FROM events WHERE id = ?1",
    )
    .store()?
    .query_row([id.0.as_bytes()], |r| {
        let headers: String = r.get(6)?;
        Ok(StoredEvent {
            id: EventId(uuid_at(r, 0)?),
            flow: r.get(1)?,
            source: r.get(2)?,
            dedupe_key: r.get(3)?,
            event_type: r.get(4)?,
            received_at: r.get(5)?,
            headers: decode_headers(&headers)?,
            payload: Bytes::from(r.get::<_, Vec<u8>>(7)?),
        })
    })
    .optional()
    .store()
}

pub(crate) fn delivery(conn: &Connection, id: DeliveryId) -> StoreResult<Option<DeliveryDetail>> {
    snapshot(conn, |conn| {
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM deliveries d WHERE d.id = ?1");
        let Some(summary) = conn
            .prepare_cached(&sql)
            .store()?
            .query_row([id.0.as_bytes()], summary_from_row)
            .optional()
            .store()?
        else {
            return Ok(None);
        };
        let attempts = conn
            .prepare_cached(
                "SELECT started_at, latency_ms, status, error_class, error, response_excerpt
                 FROM attempts WHERE delivery_id = ?1 ORDER BY seq",
            )
            .store()?
            .query_map([id.0.as_bytes()], |r| {
                let latency: i64 = r.get(1)?;
                let status: Option<i64> = r.get(2)?;
                Ok(Attempt {
                    started_at: r.get(0)?,
                    latency_ms: u32::try_from(latency.max(0)).unwrap_or(u32::MAX),
                    status: status.and_then(|s| u16::try_from(s).ok()),
                    error_class: r.get(3)?,
                    error: r.get(4)?,
                    response_excerpt: r.get(5)?,
                })
            })
            .store()?
            .collect::<rusqlite::Result<Vec<_>>>()
            .store()?;
        let replay_history = conn
            .prepare_cached(
                "SELECT at, requested_by, from_state, attempts_before, last_error
                 FROM delivery_replays WHERE delivery_id = ?1 ORDER BY seq",
            )
            .store()?
            .query_map([id.0.as_bytes()], |r| {
                Ok(ReplayRecord {
                    at: r.get(0)?,
                    by: r.get(1)?,
                    from_state: state_from_code(r.get(2)?)?,
                    attempts_before: count_at(r, 3)?,
                    last_error: r.get(4)?,
                })
            })
            .store()?
            .collect::<rusqlite::Result<Vec<_>>>()
            .store()?;
        Ok(Some(DeliveryDetail {
            summary,
            attempts,
            replay_history,
        }))
    })
}

/// Lists events in id order (time-ordered UUIDs: acceptance order), after the cursor event.
/// A sender id search seeks in `events_dedupe_key`; the others walk the primary key.
pub(crate) fn list_events(
    conn: &Connection,
    filter: &EventFilter,
    after: Option<EventId>,
    max: usize,
) -> StoreResult<Vec<EventSummary>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let mut conditions: Vec<&str> = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    if let Some(id) = &filter.sender_id {
        conditions.push(SENDER_MATCH);
        params.extend(sender_params(id));
    }
    if let Some(flow) = &filter.flow {
        conditions.push("e.flow = ?");
        params.push(Value::Text(flow.clone()));
    }
    if let Some(flows) = &filter.flows {
        conditions.push(FLOW_IN_EVENTS);
        params.push(flows_param(flows));
    }
    if let Some(since) = filter.since {
        conditions.push("e.received_at >= ?");
        params.push(Value::Integer(since));
    }
    if let Some(until) = filter.until {
        conditions.push("e.received_at < ?");
        params.push(Value::Integer(until));
    }
    if let Some(cursor) = after {
        conditions.push("e.id > ?");
        params.push(Value::Blob(cursor.0.as_bytes().to_vec()));
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT e.id, e.flow, e.source, e.dedupe_key, e.event_type, e.received_at
         FROM events e {where_clause} ORDER BY e.id LIMIT ?"
    );
    params.push(Value::Integer(limit(max)));
    conn.prepare_cached(&sql)
        .store()?
        .query_map(params_from_iter(params), |r| {
            Ok(EventSummary {
                id: EventId(uuid_at(r, 0)?),
                flow: r.get(1)?,
                source: r.get(2)?,
                sender_id: r.get(3)?,
                event_type: r.get(4)?,
                received_at: r.get(5)?,
            })
        })
        .store()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .store()
}

/// Lists deliveries by (event received_at, insertion order), after the cursor delivery.
pub(crate) fn list_deliveries(
    conn: &Connection,
    filter: &DeliveryFilter,
    after: Option<DeliveryId>,
    max: usize,
) -> StoreResult<Vec<DeliverySummary>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    snapshot(conn, |conn| {
        let mut f = FilterSql::new(filter);
        if let Some(cursor) = after {
            let pos: Option<(i64, i64)> = conn
                .prepare_cached("SELECT received_at, seq FROM deliveries WHERE id = ?1")
                .store()?
                .query_row([cursor.0.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .store()?;
            let Some((received_at, seq)) = pos else {
                return Err(StoreError::Invalid(format!("unknown cursor {cursor}")));
            };
            f.conditions.push("(d.received_at, d.seq) > (?, ?)");
            f.params.push(Value::Integer(received_at));
            f.params.push(Value::Integer(seq));
        }
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM deliveries d {} ORDER BY d.received_at, d.seq LIMIT ?",
            f.where_clause()
        );
        f.params.push(Value::Integer(limit(max)));
        conn.prepare_cached(&sql)
            .store()?
            .query_map(params_from_iter(f.params), summary_from_row)
            .store()?
            .collect::<rusqlite::Result<Vec<_>>>()
            .store()
    })
}

/// The earliest waiting delivery of a lane not held back by its order key: one seek in
/// `deliveries_due`.
pub(crate) const NEXT_DUE: &str = "SELECT next_attempt_at FROM deliveries
     WHERE flow = ?1 AND destination = ?2 AND state IN (0, 1, 3) AND held = 0
     ORDER BY next_attempt_at LIMIT 1";

/// The oldest delivery of a lane in one state: one seek in `deliveries_lane_state`.
pub(crate) const OLDEST_IN_STATE: &str = "SELECT MIN(received_at) FROM deliveries
     WHERE flow = ?1 AND destination = ?2 AND state = ?3";

pub(crate) fn next_due(conn: &Connection, lane: &LaneKey) -> StoreResult<Option<Millis>> {
    conn.prepare_cached(NEXT_DUE)
        .store()?
        .query_row(params![lane.flow, lane.destination], |r| r.get(0))
        .optional()
        .store()
}

/// Per-lane backlog: the lane counts, summed up. Costs what `lane_counts` costs: the
/// counters (O(lanes)) and at most three index seeks per lane, whatever the backlog.
pub(crate) fn lane_backlog(conn: &Connection) -> StoreResult<Vec<LaneBacklog>> {
    Ok(lane_counts(conn)?.iter().map(LaneBacklog::from).collect())
}

/// Per-lane counts from the writer-maintained counters, plus the oldest waiting delivery:
/// one seek in `deliveries_lane_state` per waiting state present.
pub(crate) fn lane_counts(conn: &Connection) -> StoreResult<Vec<LaneCounts>> {
    snapshot(conn, |conn| {
        let rows = conn
            .prepare_cached(
                "SELECT flow, destination, state, n FROM lane_state_counts
                 WHERE n > 0 ORDER BY flow, destination, state",
            )
            .store()?
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .store()?
            .collect::<rusqlite::Result<Vec<_>>>()
            .store()?;
        let mut oldest = conn.prepare_cached(OLDEST_IN_STATE).store()?;
        let mut out: Vec<LaneCounts> = Vec::new();
        for (flow, destination, state, n) in rows {
            let lane = LaneKey { flow, destination };
            if out.last().is_none_or(|c| c.lane != lane) {
                out.push(LaneCounts {
                    lane,
                    pending: 0,
                    in_flight: 0,
                    delivered: 0,
                    retrying: 0,
                    dead: 0,
                    oldest_waiting_received_at: None,
                });
            }
            let Some(c) = out.last_mut() else { continue };
            let n = u64::try_from(n).unwrap_or(0);
            match state {
                PENDING => c.pending = n,
                IN_FLIGHT => c.in_flight = n,
                DELIVERED => c.delivered = n,
                RETRYING => c.retrying = n,
                DEAD => c.dead = n,
                _ => {}
            }
            if matches!(state, PENDING | IN_FLIGHT | RETRYING) {
                let min: Option<Millis> = oldest
                    .query_row(params![c.lane.flow, c.lane.destination, state], |r| {
                        r.get(0)
                    })
                    .store()?;
                c.oldest_waiting_received_at = match (c.oldest_waiting_received_at, min) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        Ok(out)
    })
}
