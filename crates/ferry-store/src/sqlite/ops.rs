//! The write operations, run by the writer thread inside a batch transaction. Each may run
//! twice (optimistically, then in a savepoint; see `writer`), so each only reads its input.

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::codec::{
    DEAD, DELIVERED, FilterSql, IN_FLIGHT, PENDING, RETRYING, SqlResultExt, count_at,
    decode_headers, encode_headers, limit, uuid_at,
};
use super::order::{self, KeyOfLane};
use super::{datamap, retention, windows};
use crate::effects::Effects;
use crate::{
    AppendOutcome, Attempt, AuditEntry, ClaimedDelivery, DeliveryFilter, DeliveryId,
    DeliveryOutcome, EventId, LaneKey, Millis, NewEvent, Next, StoreError, StoreResult,
};

/// Appends events with their deliveries; duplicates (same flow + dedupe key) and events
/// whose window key is still remembered write nothing. Appends that carry window keys purge
/// a few expired ones.
pub(crate) fn append(
    conn: &Connection,
    fx: &mut Effects,
    events: &[NewEvent],
) -> StoreResult<Vec<AppendOutcome>> {
    let mut insert_event = conn
        .prepare_cached(
            "INSERT INTO events (id, flow, source, dedupe_key, event_type, received_at, headers,
                 payload, categories)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (flow, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING",
        )
        .store()?;
    let mut find_dup = conn
        .prepare_cached("SELECT id FROM events WHERE flow = ?1 AND dedupe_key = ?2")
        .store()?;
    let mut insert_delivery = conn
        .prepare_cached(
            "INSERT INTO deliveries (id, event_id, flow, destination, state, next_attempt_at,
                 round_started_at, created_at, updated_at, received_at, order_key, held)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?7, ?7, ?8, ?9)",
        )
        .store()?;

    let mut outcomes = Vec::with_capacity(events.len());
    let mut purge_at: Option<Millis> = None;
    for ev in events {
        let id = ev.id.0.as_bytes();
        if let Some(window) = &ev.dedupe_window {
            purge_at = purge_at.max(Some(ev.received_at));
            // A re-send of the same event is a `Duplicate` whatever its window says.
            let dup = match &ev.dedupe_key {
                Some(key) => find_dup
                    .query_row(params![ev.flow, key], |r| uuid_at(r, 0))
                    .optional()
                    .store()?,
                None => None,
            };
            if let Some(existing) = dup {
                outcomes.push(AppendOutcome::Duplicate(EventId(existing)));
                continue;
            }
            if let Some(first) = windows::seen(conn, &ev.flow, window, ev.received_at)? {
                outcomes.push(AppendOutcome::Deduplicated(first));
                continue;
            }
        }
        let inserted = insert_event
            .execute(params![
                id,
                ev.flow,
                ev.source,
                ev.dedupe_key,
                ev.event_type,
                ev.received_at,
                encode_headers(&ev.headers),
                &ev.payload[..],
                retention::encode_categories(&ev.audit.categories),
            ])
            .map_err(|e| invalid_or_backend(e, || format!("event {} is already stored", ev.id)))?;
        if inserted == 0 {
            // Only the dedupe conflict is ignored, so the key is set and the row exists.
            let existing = find_dup
                .query_row(params![ev.flow, ev.dedupe_key], |r| uuid_at(r, 0))
                .store()?;
            outcomes.push(AppendOutcome::Duplicate(EventId(existing)));
            continue;
        }
        for d in &ev.deliveries {
            let held = match (&d.order_key, d.claimed_until) {
                (Some(_), Some(_)) => {
                    return Err(StoreError::Invalid(format!(
                        "delivery {} has an order key and cannot be claimed in its append",
                        d.id
                    )));
                }
                (Some(key), None) => order::held_on_append(conn, &ev.flow, &d.destination, key)?,
                (None, _) => false,
            };
            // Claimed in the append: in flight until its lease ends, like a claim leaves it.
            let (state, next_attempt_at) = match d.claimed_until {
                Some(lease_until) => (IN_FLIGHT, lease_until),
                None => (PENDING, d.due_at),
            };
            insert_delivery
                .execute(params![
                    d.id.0.as_bytes(),
                    id,
                    ev.flow,
                    d.destination,
                    state,
                    next_attempt_at,
                    ev.received_at,
                    d.order_key,
                    held,
                ])
                .map_err(|e| {
                    invalid_or_backend(e, || format!("delivery {} is already stored", d.id))
                })?;
            fx.lanes.add(&ev.flow, &d.destination, state, 1);
        }
        if let Some(window) = &ev.dedupe_window {
            windows::remember(conn, &ev.flow, window, ev.id)?;
        }
        retention::tag(conn, ev)?;
        fx.audit.push(accepted(ev));
        outcomes.push(AppendOutcome::Stored(ev.id));
    }
    if let Some(now) = purge_at {
        windows::purge(conn, now)?;
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

fn invalid_or_backend(e: rusqlite::Error, msg: impl FnOnce() -> String) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Invalid(msg()),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// Due deliveries of a lane not held back by their order key, oldest due first.
/// `state IN (0, 1, 3) AND held = 0` is spelled exactly like the partial index
/// `deliveries_due`, which also yields the order (no sort).
pub(crate) const CLAIM_SELECT: &str =
    "SELECT d.seq, d.id, d.event_id, e.event_type, e.received_at, e.headers, e.payload,
            d.attempts, d.round_attempts, d.round_started_at, d.state
     FROM deliveries d JOIN events e ON e.id = d.event_id
     WHERE d.flow = ?1 AND d.destination = ?2 AND d.state IN (0, 1, 3) AND d.held = 0
       AND d.next_attempt_at <= ?3
     ORDER BY d.next_attempt_at, d.seq
     LIMIT ?4";

/// Claims up to `max` due deliveries of `lane`, oldest due first. A claim keeps deliveries
/// waiting, so no order key changes hands.
pub(crate) fn claim(
    conn: &Connection,
    fx: &mut Effects,
    lane: &LaneKey,
    now: Millis,
    max: usize,
    lease_until: Millis,
) -> StoreResult<Vec<ClaimedDelivery>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let mut select = conn.prepare_cached(CLAIM_SELECT).store()?;
    let mut seqs = Vec::new();
    let claimed = select
        .query_map(params![lane.flow, lane.destination, now, limit(max)], |r| {
            seqs.push((r.get::<_, i64>(0)?, r.get::<_, i64>(10)?));
            let headers: String = r.get(5)?;
            Ok(ClaimedDelivery {
                id: DeliveryId(uuid_at(r, 1)?),
                event_id: EventId(uuid_at(r, 2)?),
                lane: lane.clone(),
                event_type: r.get(3)?,
                received_at: r.get(4)?,
                headers: decode_headers(&headers)?,
                payload: Bytes::from(r.get::<_, Vec<u8>>(6)?),
                attempts: count_at(r, 7)?,
                round_attempts: count_at(r, 8)?,
                round_started_at: r.get(9)?,
                clear_payload: None,
            })
        })
        .store()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .store()?;
    if seqs.is_empty() {
        return Ok(claimed);
    }
    // One statement marks them all (the rows' positions as a JSON array, as `flows_param`).
    let positions: Vec<i64> = seqs.iter().map(|&(seq, _)| seq).collect();
    let list = serde_json::Value::from(positions).to_string();
    conn.prepare_cached(
        "UPDATE deliveries SET state = 1, next_attempt_at = ?1, updated_at = ?2
         WHERE seq IN (SELECT value FROM json_each(?3))",
    )
    .store()?
    .execute(params![lease_until, now, list])
    .store()?;
    for (_, state) in seqs {
        fx.lanes
            .moved(&lane.flow, &lane.destination, state, IN_FLIGHT);
    }
    Ok(claimed)
}

/// The state change of an in-flight delivery, `?1` attempts counted; `$extra` sets more.
macro_rules! transition {
    ($extra:literal) => {
        concat!(
            "UPDATE deliveries SET attempts = attempts + ?1, state = ?2, next_attempt_at = ?3,
                 round_attempts = round_attempts + ?1, last_error = ?4, updated_at = ?5",
            $extra,
            " WHERE seq = ?6"
        )
    };
}

/// Records outcomes. The attempt row (if any) is always kept and counts in `attempts`; the
/// state moves (and `round_attempts` grows) only if the delivery is in flight, under the
/// claim the outcome settles ([`DeliveryOutcome::settles`]). Outcomes for
/// unknown deliveries (e.g. purged meanwhile) are ignored. A delivered outcome is a data
/// movement whatever the state: it gets its `delivered` audit entry and counts in the
/// observed data map.
pub(crate) fn complete(
    conn: &Connection,
    fx: &mut Effects,
    outcomes: &[DeliveryOutcome],
    now: Millis,
) -> StoreResult<()> {
    let mut current = conn
        .prepare_cached(
            "SELECT seq, state, attempts, flow, destination, order_key, event_id, next_attempt_at
             FROM deliveries WHERE id = ?1",
        )
        .store()?;
    let mut insert_attempt = conn
        .prepare_cached(
            "INSERT INTO attempts (delivery_id, seq, started_at, latency_ms, status, error_class,
                 error, response_excerpt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .store()?;
    // One UPDATE per outcome: the attempt counter always, the state only when in flight.
    let mut transition = conn.prepare_cached(transition!("")).store()?;
    // The same for a keyed delivery that settles, and so leaves its key's queue.
    let mut dequeue = conn.prepare_cached(transition!(", held = NULL")).store()?;
    let mut count_only = conn
        .prepare_cached("UPDATE deliveries SET attempts = attempts + 1 WHERE seq = ?1")
        .store()?;

    let mut observed = crate::effects::Observed::default();
    for o in outcomes {
        let id = o.id.0.as_bytes();
        let row = current
            .query_row([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    EventId(uuid_at(r, 6)?),
                    r.get::<_, Option<i64>>(7)?,
                ))
            })
            .optional()
            .store()?;
        let Some((seq, state, attempts, flow, destination, order_key, event, lease)) = row else {
            tracing::warn!(delivery = %o.id, "outcome for an unknown delivery ignored");
            continue;
        };
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
            insert_attempt
                .execute(params![
                    id,
                    attempts + 1,
                    a.started_at,
                    i64::from(a.latency_ms),
                    a.status.map(i64::from),
                    a.error_class,
                    a.error,
                    a.response_excerpt,
                ])
                .store()?;
        }
        let counted = i64::from(o.attempt.is_some());
        if state != IN_FLIGHT || !o.settles(lease) {
            // Replayed, settled or claimed again meanwhile: keep the attempt, leave the
            // state alone.
            if counted == 1 {
                count_only.execute([seq]).store()?;
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
        let args = params![counted, next_state, next_at, last_error, now, seq];
        match order_key {
            Some(key) if matches!(next_state, DELIVERED | DEAD) => {
                dequeue.execute(args).store()?;
                order::promote_head(conn, &flow, &destination, &key)?;
            }
            _ => {
                transition.execute(args).store()?;
            }
        }
        fx.lanes.moved(&flow, &destination, IN_FLIGHT, next_state);
    }
    datamap::write(observed, conn, now)
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
    conn: &Connection,
    fx: &mut Effects,
    now: Millis,
) -> StoreResult<u64> {
    count_by_lane(conn, fx, "WHERE d.state = 1", Vec::new(), PENDING)?;
    let n = conn
        .prepare_cached(
            "UPDATE deliveries SET state = ?1, next_attempt_at = ?2, updated_at = ?2 WHERE state = ?3",
        )
        .store()?
        .execute(params![PENDING, now, IN_FLIGHT])
        .store()?;
    Ok(n as u64)
}

/// Moves matching delivered/retrying/dead deliveries back to pending in a new round. Keyed
/// delivered or dead ones rejoin their key's queue (held back until their queue is
/// reordered): a replayed delivery holds back the later waiting deliveries of its key again.
pub(crate) fn replay(
    conn: &Connection,
    fx: &mut Effects,
    filter: &DeliveryFilter,
    now: Millis,
    by: &str,
) -> StoreResult<u64> {
    let rejoining = rejoining_keys(conn, filter)?;
    let mut f = FilterSql::new(filter);
    f.conditions.push("d.state IN (2, 3, 4)");
    count_by_lane(conn, fx, &f.where_clause(), f.params.clone(), PENDING)?;
    // The history entry of each replayed delivery, from its row before the update.
    let record = format!(
        "INSERT INTO delivery_replays (delivery_id, seq, at, requested_by, from_state,
             attempts_before, last_error)
         SELECT d.id, d.replays + 1, ?, ?, d.state, d.attempts, d.last_error
         FROM deliveries AS d {}",
        f.where_clause()
    );
    let mut params: Vec<rusqlite::types::Value> = vec![now.into(), by.to_owned().into()];
    params.extend(f.params.iter().cloned());
    conn.prepare_cached(&record)
        .store()?
        .execute(params_from_iter(params))
        .store()?;
    let sql = format!(
        "UPDATE deliveries AS d SET state = 0, next_attempt_at = ?, round_attempts = 0,
             round_started_at = ?, replays = replays + 1, last_error = NULL, updated_at = ?,
             held = CASE WHEN d.order_key IS NOT NULL AND d.state IN (2, 4) THEN 1 ELSE d.held END
         {}",
        f.where_clause()
    );
    let mut params = vec![now.into(), now.into(), now.into()];
    params.append(&mut f.params);
    let n = conn
        .prepare_cached(&sql)
        .store()?
        .execute(params_from_iter(params))
        .store()?;
    order::reorder(conn, &rejoining)?;
    fx.audit.push(AuditEntry::Replayed {
        at: now,
        by: by.to_owned(),
        filter: filter.clone(),
        count: n as u64,
    });
    Ok(n as u64)
}

/// The (lane, order key) of every delivered or dead delivery matching `filter`: those that
/// a replay brings back into the waiting states.
fn rejoining_keys(conn: &Connection, filter: &DeliveryFilter) -> StoreResult<Vec<KeyOfLane>> {
    let mut f = FilterSql::new(filter);
    f.conditions.push("d.state IN (2, 4)");
    f.conditions.push("d.order_key IS NOT NULL");
    let sql = format!(
        "SELECT DISTINCT d.flow, d.destination, d.order_key FROM deliveries AS d {}",
        f.where_clause()
    );
    conn.prepare_cached(&sql)
        .store()?
        .query_map(params_from_iter(f.params), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .store()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .store()
}

/// Record that every delivery matching `where_clause` moves to `to`, by lane and current state.
fn count_by_lane(
    conn: &Connection,
    fx: &mut Effects,
    where_clause: &str,
    params: Vec<rusqlite::types::Value>,
    to: i64,
) -> StoreResult<()> {
    let sql = format!(
        "SELECT d.flow, d.destination, d.state, count(*) FROM deliveries AS d {where_clause}
         GROUP BY d.flow, d.destination, d.state"
    );
    let mut stmt = conn.prepare_cached(&sql).store()?;
    let mut rows = stmt.query(params_from_iter(params)).store()?;
    while let Some(r) = rows.next().store()? {
        let (flow, destination): (String, String) = (r.get(0).store()?, r.get(1).store()?);
        let (state, n): (i64, i64) = (r.get(2).store()?, r.get(3).store()?);
        if state != to {
            fx.lanes.add(&flow, &destination, state, -n);
            fx.lanes.add(&flow, &destination, to, n);
        }
    }
    Ok(())
}
