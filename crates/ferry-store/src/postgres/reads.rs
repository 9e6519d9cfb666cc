//! Reads, served by the read pool's connections on blocking threads (see [`super::PgStore`]).
//! Reads that take several statements run in one read-only `REPEATABLE READ` transaction:
//! one snapshot, as the SQLite backend's read transactions give.

use bytes::Bytes;
use postgres::{Client, IsolationLevel, Row, Transaction};

use super::codec::{
    DEAD, DELIVERED, FilterSql, IN_FLIGHT, PENDING, Param, PgResultExt, RETRYING, SUMMARY_COLUMNS,
    args, col, count, decode_headers, limit, sender_match, sender_params, state_from_code,
    summary_from_row,
};
use crate::{
    Attempt, DeliveryDetail, DeliveryFilter, DeliveryId, DeliverySummary, EventFilter, EventId,
    EventSummary, LaneBacklog, LaneCounts, LaneKey, Millis, ReplayRecord, StoreError, StoreResult,
    StoredEvent,
};

/// Runs several statements against one snapshot.
fn snapshot<T>(
    c: &mut Client,
    f: impl FnOnce(&mut Transaction<'_>) -> StoreResult<T>,
) -> StoreResult<T> {
    let mut tx = c
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .store()?;
    let out = f(&mut tx)?;
    tx.commit().store()?;
    Ok(out)
}

/// One event.
pub(crate) fn event(c: &mut Client, id: EventId) -> StoreResult<Option<StoredEvent>> {
    let Some(r) = c
        .query_opt(
            "SELECT id, flow, source, dedupe_key, event_type, received_at, headers, payload
             FROM events WHERE id = $1",
            &[&id.0],
        )
        .store()?
    else {
        return Ok(None);
    };
    let headers: String = col(&r, 6)?;
    Ok(Some(StoredEvent {
        id: EventId(col(&r, 0)?),
        flow: col(&r, 1)?,
        source: col(&r, 2)?,
        dedupe_key: col(&r, 3)?,
        event_type: col(&r, 4)?,
        received_at: col(&r, 5)?,
        headers: decode_headers(&headers)?,
        payload: Bytes::from(col::<Vec<u8>>(&r, 7)?),
    }))
}

/// One delivery with its attempts and replay records, from one snapshot.
pub(crate) fn delivery(c: &mut Client, id: DeliveryId) -> StoreResult<Option<DeliveryDetail>> {
    snapshot(c, |tx| {
        let sql = format!("SELECT {SUMMARY_COLUMNS} FROM deliveries d WHERE d.id = $1");
        let Some(row) = tx.query_opt(&sql, &[&id.0]).store()? else {
            return Ok(None);
        };
        let summary = summary_from_row(&row)?;
        let attempts = tx
            .query(
                "SELECT started_at, latency_ms, status, error_class, error, response_excerpt
                 FROM attempts WHERE delivery_id = $1 ORDER BY seq",
                &[&id.0],
            )
            .store()?
            .iter()
            .map(attempt_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let replay_history = tx
            .query(
                "SELECT at, requested_by, from_state, attempts_before, last_error
                 FROM delivery_replays WHERE delivery_id = $1 ORDER BY seq",
                &[&id.0],
            )
            .store()?
            .iter()
            .map(|r| {
                Ok(ReplayRecord {
                    at: col(r, 0)?,
                    by: col(r, 1)?,
                    from_state: state_from_code(col(r, 2)?)?,
                    attempts_before: count(col(r, 3)?),
                    last_error: col(r, 4)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(DeliveryDetail {
            summary,
            attempts,
            replay_history,
        }))
    })
}

fn attempt_from_row(r: &Row) -> StoreResult<Attempt> {
    let latency: i64 = col(r, 1)?;
    let status: Option<i32> = col(r, 2)?;
    Ok(Attempt {
        started_at: col(r, 0)?,
        latency_ms: u32::try_from(latency.max(0)).unwrap_or(u32::MAX),
        status: status.and_then(|s| u16::try_from(s).ok()),
        error_class: col(r, 3)?,
        error: col(r, 4)?,
        response_excerpt: col(r, 5)?,
    })
}

/// Lists events in id order (time-ordered UUIDs: acceptance order), after the cursor event.
/// A sender id search seeks in `events_dedupe_key`; the others walk the primary key.
pub(crate) fn list_events(
    c: &mut Client,
    filter: &EventFilter,
    after: Option<EventId>,
    max: usize,
) -> StoreResult<Vec<EventSummary>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let mut conditions: Vec<String> = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    if let Some(id) = &filter.sender_id {
        conditions.push(sender_match(params.len() + 1));
        for p in sender_params(id) {
            params.push(Box::new(p));
        }
    }
    if let Some(flow) = &filter.flow {
        conditions.push(format!("e.flow = ${}", params.len() + 1));
        params.push(Box::new(flow.clone()));
    }
    if let Some(flows) = &filter.flows {
        // An empty array matches nothing.
        conditions.push(format!("e.flow = ANY(${}::text[])", params.len() + 1));
        params.push(Box::new(flows.clone()));
    }
    if let Some(since) = filter.since {
        conditions.push(format!("e.received_at >= ${}", params.len() + 1));
        params.push(Box::new(since));
    }
    if let Some(until) = filter.until {
        conditions.push(format!("e.received_at < ${}", params.len() + 1));
        params.push(Box::new(until));
    }
    if let Some(cursor) = after {
        conditions.push(format!("e.id > ${}", params.len() + 1));
        params.push(Box::new(cursor.0));
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT e.id, e.flow, e.source, e.dedupe_key, e.event_type, e.received_at
         FROM events e {where_clause} ORDER BY e.id LIMIT ${}",
        params.len() + 1
    );
    params.push(Box::new(limit(max)));
    c.query(&sql, &args(&params))
        .store()?
        .iter()
        .map(|r| {
            Ok(EventSummary {
                id: EventId(col(r, 0)?),
                flow: col(r, 1)?,
                source: col(r, 2)?,
                sender_id: col(r, 3)?,
                event_type: col(r, 4)?,
                received_at: col(r, 5)?,
            })
        })
        .collect()
}

/// Lists deliveries by (event received_at, insertion order), after the cursor delivery.
pub(crate) fn list_deliveries(
    c: &mut Client,
    filter: &DeliveryFilter,
    after: Option<DeliveryId>,
    max: usize,
) -> StoreResult<Vec<DeliverySummary>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    snapshot(c, |tx| {
        let mut f = FilterSql::new(filter, 0);
        if let Some(cursor) = after {
            let Some(pos) = tx
                .query_opt(
                    "SELECT received_at, seq FROM deliveries WHERE id = $1",
                    &[&cursor.0],
                )
                .store()?
            else {
                return Err(StoreError::Invalid(format!("unknown cursor {cursor}")));
            };
            let (received_at, seq): (i64, i64) = (col(&pos, 0)?, col(&pos, 1)?);
            let n = f.next();
            f.conditions
                .push(format!("(d.received_at, d.seq) > (${n}, ${})", n + 1));
            f.params.push(Box::new(received_at));
            f.params.push(Box::new(seq));
        }
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM deliveries d {} ORDER BY d.received_at, d.seq LIMIT ${}",
            f.where_clause(),
            f.next()
        );
        f.params.push(Box::new(limit(max)));
        tx.query(&sql, &args(&f.params))
            .store()?
            .iter()
            .map(summary_from_row)
            .collect()
    })
}

/// The earliest waiting delivery of a lane not held back by its order key: one seek in
/// `deliveries_due`.
pub(crate) const NEXT_DUE: &str = "SELECT next_attempt_at FROM deliveries
     WHERE flow = $1 AND destination = $2 AND state IN (0, 1, 3) AND held = 0
     ORDER BY next_attempt_at LIMIT 1";

/// The oldest delivery of a lane in one state: one seek in `deliveries_lane_state`.
pub(crate) const OLDEST_IN_STATE: &str = "SELECT min(received_at) FROM deliveries
     WHERE flow = $1 AND destination = $2 AND state = $3";

/// See [`crate::Store::next_due`].
pub(crate) fn next_due(c: &mut Client, lane: &LaneKey) -> StoreResult<Option<Millis>> {
    match c
        .query_opt(NEXT_DUE, &[&lane.flow, &lane.destination])
        .store()?
    {
        Some(r) => col(&r, 0),
        None => Ok(None),
    }
}

/// Per-lane backlog: the lane counts, summed up. Costs what `lane_counts` costs: the
/// counters (O(lanes)) and at most three index seeks per lane, whatever the backlog.
pub(crate) fn lane_backlog(c: &mut Client) -> StoreResult<Vec<LaneBacklog>> {
    Ok(lane_counts(c)?.iter().map(LaneBacklog::from).collect())
}

/// Per-lane counts from the writer-maintained counters, plus the oldest waiting delivery:
/// one seek in `deliveries_lane_state` per waiting state present. One snapshot.
pub(crate) fn lane_counts(c: &mut Client) -> StoreResult<Vec<LaneCounts>> {
    snapshot(c, |tx| {
        let rows = tx
            .query(
                "SELECT flow, destination, state, n FROM lane_state_counts
                 WHERE n > 0 ORDER BY flow, destination, state",
                &[],
            )
            .store()?;
        let oldest = tx.prepare(OLDEST_IN_STATE).store()?;
        let mut out: Vec<LaneCounts> = Vec::new();
        for r in &rows {
            let lane = LaneKey {
                flow: col(r, 0)?,
                destination: col(r, 1)?,
            };
            let (state, n): (i32, i64) = (col(r, 2)?, col(r, 3)?);
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
                let row = tx
                    .query_one(&oldest, &[&c.lane.flow, &c.lane.destination, &state])
                    .store()?;
                let min: Option<Millis> = col(&row, 0)?;
                c.oldest_waiting_received_at = match (c.oldest_waiting_received_at, min) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        Ok(out)
    })
}
