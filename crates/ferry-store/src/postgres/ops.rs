//! The write operations, run by the writer thread inside a batch transaction. Each may run
//! twice (optimistically, then in a savepoint; see `writer`), so each only reads its input.
//! The semantics are the SQLite backend's (`crate::sqlite` `ops`); what differs is how
//! several nodes are kept apart: claims lock with `FOR UPDATE SKIP LOCKED`, outcomes and
//! replays lock the rows they change, and order-key queues take advisory locks (`order`).

use bytes::Bytes;
use postgres::Transaction;
use postgres::error::SqlState;
use uuid::Uuid;

use super::codec::{
    DEAD, DELIVERED, FilterSql, IN_FLIGHT, PENDING, RETRYING, args, col, count, decode_headers,
    encode_headers, limit,
};
use super::order::{self, KeyOfLane};
use super::writer::{Failure, prepared};
use super::{datamap, retention, windows};
use crate::effects::{Effects, Observed};
use crate::{
    AppendOutcome, Attempt, AuditEntry, ClaimedDelivery, DeliveryFilter, DeliveryId,
    DeliveryOutcome, EventId, LaneKey, Millis, NewEvent, Next, StoreError,
};

/// Appends events with their deliveries; duplicates (same flow + dedupe key) and events
/// whose window key is still remembered write nothing. Appends that carry window keys purge
/// a few expired ones.
pub(crate) fn append(
    tx: &mut Transaction<'_>,
    fx: &mut Effects,
    events: &[NewEvent],
) -> Result<Vec<AppendOutcome>, Failure> {
    let insert_event = prepared(
        tx,
        "INSERT INTO events (id, flow, source, dedupe_key, event_type, received_at, headers,
             payload, categories)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (flow, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING",
    )?;
    let find_dup = prepared(
        tx,
        "SELECT id FROM events WHERE flow = $1 AND dedupe_key = $2",
    )?;
    let insert_delivery = prepared(
        tx,
        "INSERT INTO deliveries (id, event_id, flow, destination, state, next_attempt_at,
             round_started_at, created_at, updated_at, received_at, order_key, held)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7, $7, $8, $9)",
    )?;

    let mut outcomes = Vec::with_capacity(events.len());
    let mut purge_at: Option<Millis> = None;
    for ev in events {
        if let Some(window) = &ev.dedupe_window {
            purge_at = purge_at.max(Some(ev.received_at));
            // A re-send of the same event is a `Duplicate` whatever its window says.
            if let Some(key) = &ev.dedupe_key
                && let Some(row) = tx.query_opt(&find_dup, &[&ev.flow, key])?
            {
                outcomes.push(AppendOutcome::Duplicate(EventId(col(&row, 0)?)));
                continue;
            }
            if let Some(first) = windows::seen(tx, &ev.flow, window, ev.received_at)? {
                outcomes.push(AppendOutcome::Deduplicated(first));
                continue;
            }
        }
        let headers = encode_headers(&ev.headers);
        let categories = retention::encode_categories(&ev.audit.categories);
        let inserted = tx
            .execute(
                &insert_event,
                &[
                    &ev.id.0,
                    &ev.flow,
                    &ev.source,
                    &ev.dedupe_key,
                    &ev.event_type,
                    &ev.received_at,
                    &headers,
                    &&ev.payload[..],
                    &categories,
                ],
            )
            .map_err(|e| invalid_or_pg(e, || format!("event {} is already stored", ev.id)))?;
        if inserted == 0 {
            // Only the dedupe conflict is ignored, so the key is set and the row exists.
            let row = tx.query_one(&find_dup, &[&ev.flow, &ev.dedupe_key])?;
            outcomes.push(AppendOutcome::Duplicate(EventId(col(&row, 0)?)));
            continue;
        }
        for d in &ev.deliveries {
            let held = match (&d.order_key, d.claimed_until) {
                (Some(_), Some(_)) => {
                    return Err(Failure::Store(StoreError::Invalid(format!(
                        "delivery {} has an order key and cannot be claimed in its append",
                        d.id
                    ))));
                }
                (Some(key), None) => order::held_on_append(tx, &ev.flow, &d.destination, key)?,
                (None, _) => false,
            };
            // Claimed in the append: in flight until its lease ends, like a claim leaves it.
            let (state, next_attempt_at) = match d.claimed_until {
                Some(lease_until) => (IN_FLIGHT, lease_until),
                None => (PENDING, d.due_at),
            };
            tx.execute(
                &insert_delivery,
                &[
                    &d.id.0,
                    &ev.id.0,
                    &ev.flow,
                    &d.destination,
                    &state,
                    &next_attempt_at,
                    &ev.received_at,
                    &d.order_key,
                    &i32::from(held),
                ],
            )
            .map_err(|e| invalid_or_pg(e, || format!("delivery {} is already stored", d.id)))?;
            fx.lanes.add(&ev.flow, &d.destination, i64::from(state), 1);
        }
        if let Some(window) = &ev.dedupe_window {
            windows::remember(tx, &ev.flow, window, ev.id)?;
        }
        retention::tag(tx, ev)?;
        fx.audit.push(accepted(ev));
        outcomes.push(AppendOutcome::Stored(ev.id));
    }
    if let Some(now) = purge_at {
        windows::purge(tx, now)?;
    }
    Ok(outcomes)
}

/// The audit entry of a stored event.
fn accepted(ev: &NewEvent) -> AuditEntry {
    AuditEntry::Accepted {
        at: ev.received_at,
        event: ev.id,
        flow: ev.flow.clone(),
        flow_version: ev.audit.flow_version,
        source_system: ev.source.clone(),
        subject: ev.audit.subject.clone(),
        categories: ev.audit.categories.clone(),
    }
}

/// A unique violation is the caller's mistake (an id used twice); the rest stays the
/// driver's error (a conflict between nodes must still be told apart).
fn invalid_or_pg(e: postgres::Error, msg: impl FnOnce() -> String) -> Failure {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        Failure::Store(StoreError::Invalid(msg()))
    } else {
        Failure::Pg(e)
    }
}

/// Due deliveries of a lane not held back by their order key, oldest due first, locked for
/// this transaction; rows another node is claiming right now are skipped. `state IN (0, 1,
/// 3) AND held = 0` is spelled exactly like the partial index `deliveries_due`.
pub(crate) const CLAIM_SELECT: &str =
    "SELECT d.seq, d.id, d.event_id, e.event_type, e.received_at, e.headers, e.payload,
            d.attempts, d.round_attempts, d.round_started_at, d.state
     FROM deliveries d JOIN events e ON e.id = d.event_id
     WHERE d.flow = $1 AND d.destination = $2 AND d.state IN (0, 1, 3) AND d.held = 0
       AND d.next_attempt_at <= $3
     ORDER BY d.next_attempt_at, d.seq
     LIMIT $4
     FOR UPDATE OF d SKIP LOCKED";

/// Claims up to `max` due deliveries of `lane`, oldest due first. A claim keeps deliveries
/// waiting, so no order key changes hands.
pub(crate) fn claim(
    tx: &mut Transaction<'_>,
    fx: &mut Effects,
    lane: &LaneKey,
    now: Millis,
    max: usize,
    lease_until: Millis,
) -> Result<Vec<ClaimedDelivery>, Failure> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let select = prepared(tx, CLAIM_SELECT)?;
    let rows = tx.query(&select, &[&lane.flow, &lane.destination, &now, &limit(max)])?;
    let mut seqs = Vec::with_capacity(rows.len());
    let mut claimed = Vec::with_capacity(rows.len());
    for r in &rows {
        seqs.push(col::<i64>(r, 0)?);
        let headers: String = col(r, 5)?;
        let payload: Vec<u8> = col(r, 6)?;
        claimed.push(ClaimedDelivery {
            id: DeliveryId(col(r, 1)?),
            event_id: EventId(col(r, 2)?),
            lane: lane.clone(),
            event_type: col(r, 3)?,
            received_at: col(r, 4)?,
            headers: decode_headers(&headers)?,
            payload: Bytes::from(payload),
            attempts: count(col(r, 7)?),
            round_attempts: count(col(r, 8)?),
            round_started_at: col(r, 9)?,
        });
        let state: i32 = col(r, 10)?;
        fx.lanes.moved(
            &lane.flow,
            &lane.destination,
            i64::from(state),
            i64::from(IN_FLIGHT),
        );
    }
    if !seqs.is_empty() {
        let mark = prepared(
            tx,
            "UPDATE deliveries SET state = 1, next_attempt_at = $1, updated_at = $2
             WHERE seq = ANY($3)",
        )?;
        tx.execute(&mark, &[&lease_until, &now, &seqs])?;
    }
    Ok(claimed)
}

/// The state change of an in-flight delivery, `$1` attempts counted; `$extra` sets more.
macro_rules! transition {
    ($extra:literal) => {
        concat!(
            "UPDATE deliveries SET attempts = attempts + $1, state = $2, next_attempt_at = $3,
                 round_attempts = round_attempts + $1, last_error = $4, updated_at = $5",
            $extra,
            " WHERE seq = $6"
        )
    };
}

/// Records outcomes. The attempt row (if any) is always kept and counts in `attempts`; the
/// state moves (and `round_attempts` grows) only if the delivery is in flight. Outcomes for
/// unknown deliveries (e.g. purged meanwhile) are ignored. A delivered outcome is a data
/// movement whatever the state: it gets its `delivered` audit entry and counts in the
/// observed data map.
pub(crate) fn complete(
    tx: &mut Transaction<'_>,
    fx: &mut Effects,
    outcomes: &[DeliveryOutcome],
    now: Millis,
) -> Result<(), Failure> {
    // Locked: a replay on another node waits for this outcome, or this one sees the replay.
    let current = prepared(
        tx,
        "SELECT seq, state, attempts, flow, destination, order_key, event_id FROM deliveries
         WHERE id = $1 FOR UPDATE",
    )?;
    let insert_attempt = prepared(
        tx,
        "INSERT INTO attempts (delivery_id, seq, started_at, latency_ms, status, error_class,
             error, response_excerpt)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )?;
    let transition = prepared(tx, transition!(""))?;
    // The same for a keyed delivery that settles, and so leaves its key's queue.
    let dequeue = prepared(tx, transition!(", held = NULL"))?;
    let count_only = prepared(
        tx,
        "UPDATE deliveries SET attempts = attempts + 1 WHERE seq = $1",
    )?;

    let mut observed = Observed::default();
    for o in outcomes {
        let Some(row) = tx.query_opt(&current, &[&o.id.0])? else {
            tracing::warn!(delivery = %o.id, "outcome for an unknown delivery ignored");
            continue;
        };
        let seq: i64 = col(&row, 0)?;
        let state: i32 = col(&row, 1)?;
        let attempts: i32 = col(&row, 2)?;
        let flow: String = col(&row, 3)?;
        let destination: String = col(&row, 4)?;
        let order_key: Option<String> = col(&row, 5)?;
        let event = EventId(col::<Uuid>(&row, 6)?);
        if o.next == Next::Delivered {
            observed.add(&flow, &destination, &o.audit);
            fx.audit.push(AuditEntry::Delivered {
                at: now,
                delivery: o.id,
                event,
                flow: flow.clone(),
                destination: destination.clone(),
                destination_system: o.audit.destination_system.clone(),
                categories_sent: o.audit.categories_sent.clone(),
            });
        }
        if let Some(a) = &o.attempt {
            let latency = i64::from(a.latency_ms);
            let status = a.status.map(i32::from);
            tx.execute(
                &insert_attempt,
                &[
                    &o.id.0,
                    &(attempts + 1),
                    &a.started_at,
                    &latency,
                    &status,
                    &a.error_class,
                    &a.error,
                    &a.response_excerpt,
                ],
            )?;
        }
        let counted = i32::from(o.attempt.is_some());
        if state != IN_FLIGHT {
            // Replayed or settled meanwhile: keep the attempt, leave the state alone.
            if counted == 1 {
                tx.execute(&count_only, &[&seq])?;
            }
            continue;
        }
        let (next_state, next_at, last_error) = match &o.next {
            Next::Delivered => (DELIVERED, None, None),
            Next::Retry { at } => (
                RETRYING,
                Some(*at),
                o.attempt.as_ref().and_then(attempt_error),
            ),
            Next::Dead { reason } => (DEAD, None, Some(reason.clone())),
            Next::Release { at } => (PENDING, Some(*at), None),
        };
        let params: [&(dyn postgres::types::ToSql + Sync); 6] =
            [&counted, &next_state, &next_at, &last_error, &now, &seq];
        match order_key {
            Some(key) if matches!(next_state, DELIVERED | DEAD) => {
                tx.execute(&dequeue, &params)?;
                order::promote_head(tx, &flow, &destination, &key)?;
            }
            _ => {
                tx.execute(&transition, &params)?;
            }
        }
        fx.lanes.moved(
            &flow,
            &destination,
            i64::from(IN_FLIGHT),
            i64::from(next_state),
        );
    }
    datamap::write(observed, tx, now)
}

/// The error text kept on a retrying delivery.
fn attempt_error(a: &Attempt) -> Option<String> {
    a.error
        .clone()
        .or_else(|| a.error_class.clone())
        .or_else(|| a.status.map(|s| format!("HTTP {s}")))
}

/// Puts every in-flight delivery back to pending, due at `now`.
pub(crate) fn release_all_claims(
    tx: &mut Transaction<'_>,
    fx: &mut Effects,
    now: Millis,
) -> Result<u64, Failure> {
    let stmt = prepared(
        tx,
        "UPDATE deliveries SET state = 0, next_attempt_at = $1, updated_at = $1 WHERE state = 1
         RETURNING flow, destination",
    )?;
    let rows = tx.query(&stmt, &[&now])?;
    for r in &rows {
        let (flow, destination): (String, String) = (col(r, 0)?, col(r, 1)?);
        fx.lanes.moved(
            &flow,
            &destination,
            i64::from(IN_FLIGHT),
            i64::from(PENDING),
        );
    }
    Ok(rows.len() as u64)
}

/// Moves matching delivered/retrying/dead deliveries back to pending in a new round, each
/// with its history record. Keyed delivered or dead ones rejoin their key's queue (held back
/// until their queue is reordered): a replayed delivery holds back the later waiting
/// deliveries of its key again.
///
/// One statement locks the matching rows, records each replay from the row as it was, and
/// updates it, returning what each was: exact lane counts however other nodes move.
pub(crate) fn replay(
    tx: &mut Transaction<'_>,
    fx: &mut Effects,
    filter: &DeliveryFilter,
    now: Millis,
    by: &str,
) -> Result<u64, Failure> {
    let mut f = FilterSql::new(filter, 2);
    f.conditions.push("d.state IN (2, 3, 4)".to_owned());
    let sql = format!(
        "WITH old AS (
             SELECT d.seq, d.id, d.state, d.flow, d.destination, d.order_key, d.replays,
                    d.attempts, d.last_error
             FROM deliveries AS d {where_clause}
             FOR UPDATE),
         rec AS (
             INSERT INTO delivery_replays (delivery_id, seq, at, requested_by, from_state,
                 attempts_before, last_error)
             SELECT id, replays + 1, $1, $2, state, attempts, last_error FROM old)
         UPDATE deliveries AS d SET state = 0, next_attempt_at = $1, round_attempts = 0,
             round_started_at = $1, replays = d.replays + 1, last_error = NULL, updated_at = $1,
             held = CASE WHEN d.order_key IS NOT NULL AND old.state IN (2, 4) THEN 1
                         ELSE d.held END
         FROM old WHERE d.seq = old.seq
         RETURNING old.flow, old.destination, old.state, old.order_key",
        where_clause = f.where_clause()
    );
    let by = by.to_owned();
    let mut params: Vec<super::codec::Param> = vec![Box::new(now), Box::new(by.clone())];
    params.append(&mut f.params);
    let rows = tx.query(sql.as_str(), &args(&params))?;
    let mut rejoining: Vec<KeyOfLane> = Vec::new();
    for r in &rows {
        let flow: String = col(r, 0)?;
        let destination: String = col(r, 1)?;
        let state: i32 = col(r, 2)?;
        let key: Option<String> = col(r, 3)?;
        fx.lanes
            .moved(&flow, &destination, i64::from(state), i64::from(PENDING));
        if let Some(key) = key
            && matches!(state, DELIVERED | DEAD)
        {
            let k = (flow, destination, key);
            if !rejoining.contains(&k) {
                rejoining.push(k);
            }
        }
    }
    rejoining.sort();
    order::reorder(tx, &rejoining)?;
    let n = rows.len() as u64;
    fx.audit.push(AuditEntry::Replayed {
        at: now,
        by,
        filter: filter.clone(),
        count: n,
    });
    Ok(n)
}
