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
        if is_plain(ev) {
            let mut one = append_plain_many(tx, fx, &[std::slice::from_ref(ev)])?;
            outcomes.append(&mut one.swap_remove(0));
            continue;
        }
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

/// Whether an event is stored by the plain path: no window key, no order key.
pub(crate) fn is_plain(ev: &NewEvent) -> bool {
    ev.dedupe_window.is_none() && ev.deliveries.iter().all(|d| d.order_key.is_none())
}

/// The events of several plain appends (see [`is_plain`]), their deliveries and retention
/// tags, in one statement: a batch's appends cost one round trip together. Rows go in in
/// order, so of two events with one dedupe key the first is stored, as one by one. Answers
/// each group's outcomes. Any failure fails them all (the batch then runs command by
/// command, which finds the culprit).
const APPEND_MANY: &str = "WITH e AS (
         INSERT INTO events (id, flow, source, dedupe_key, event_type, received_at, headers,
             payload, categories)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
             $6::bigint[], $7::text[], $8::bytea[], $9::text[])
         ON CONFLICT (flow, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
         RETURNING id),
     d AS (
         INSERT INTO deliveries (id, event_id, flow, destination, state, next_attempt_at,
             round_started_at, created_at, updated_at, received_at, order_key, held)
         SELECT u.id, u.event_id, u.flow, u.destination, u.state, u.next_at, u.received_at,
             u.received_at, u.received_at, u.received_at, NULL, 0
         FROM unnest($10::uuid[], $11::uuid[], $12::text[], $13::text[], $14::integer[],
             $15::bigint[], $16::bigint[])
             AS u (id, event_id, flow, destination, state, next_at, received_at)
         JOIN e ON e.id = u.event_id),
     t AS (
         INSERT INTO event_retention (tag, received_at, event_id)
         SELECT u.tag, u.received_at, u.event_id
         FROM unnest($17::text[], $18::bigint[], $19::uuid[]) AS u (tag, received_at, event_id)
         JOIN e ON e.id = u.event_id
         ON CONFLICT DO NOTHING)
     SELECT id FROM e";

pub(crate) fn append_plain_many(
    tx: &mut Transaction<'_>,
    fx: &mut Effects,
    groups: &[&[NewEvent]],
) -> Result<Vec<Vec<AppendOutcome>>, Failure> {
    let mut ev_id = Vec::new();
    let mut ev_flow = Vec::new();
    let mut ev_source = Vec::new();
    let mut ev_key = Vec::new();
    let mut ev_type = Vec::new();
    let mut ev_at = Vec::new();
    let mut ev_headers = Vec::new();
    let mut ev_payload: Vec<&[u8]> = Vec::new();
    let mut ev_categories = Vec::new();
    let mut d_id = Vec::new();
    let mut d_event = Vec::new();
    let mut d_flow = Vec::new();
    let mut d_destination = Vec::new();
    let mut d_state = Vec::new();
    let mut d_next = Vec::new();
    let mut d_at = Vec::new();
    let mut t_tag = Vec::new();
    let mut t_at = Vec::new();
    let mut t_event = Vec::new();
    for ev in groups.iter().flat_map(|g| g.iter()) {
        ev_id.push(ev.id.0);
        ev_flow.push(ev.flow.as_str());
        ev_source.push(ev.source.as_str());
        ev_key.push(ev.dedupe_key.as_deref());
        ev_type.push(ev.event_type.as_deref());
        ev_at.push(ev.received_at);
        ev_headers.push(encode_headers(&ev.headers));
        ev_payload.push(&ev.payload[..]);
        ev_categories.push(retention::encode_categories(&ev.audit.categories));
        for d in &ev.deliveries {
            let (state, at) = delivery_start(d);
            d_id.push(d.id.0);
            d_event.push(ev.id.0);
            d_flow.push(ev.flow.as_str());
            d_destination.push(d.destination.as_str());
            d_state.push(state);
            d_next.push(at);
            d_at.push(ev.received_at);
        }
        for tag in retention::tags_of(ev) {
            t_tag.push(tag);
            t_at.push(ev.received_at);
            t_event.push(ev.id.0);
        }
    }
    let stmt = prepared(tx, APPEND_MANY)?;
    let mut all = groups.iter().flat_map(|g| g.iter());
    let lone = match (all.next(), all.next()) {
        (Some(ev), None) => Some(ev),
        _ => None,
    };
    let rows = tx
        .query(
            &stmt,
            &[
                &ev_id,
                &ev_flow,
                &ev_source,
                &ev_key,
                &ev_type,
                &ev_at,
                &ev_headers,
                &ev_payload,
                &ev_categories,
                &d_id,
                &d_event,
                &d_flow,
                &d_destination,
                &d_state,
                &d_next,
                &d_at,
                &t_tag,
                &t_at,
                &t_event,
            ],
        )
        .map_err(|e| match lone {
            // A call of its own: say which id it reused.
            Some(ev) => already_stored(e, ev),
            None => Failure::Pg(e),
        })?;
    let mut stored = std::collections::HashSet::with_capacity(rows.len());
    for r in &rows {
        stored.insert(col::<Uuid>(r, 0)?);
    }
    let find_dup = prepared(
        tx,
        "SELECT id FROM events WHERE flow = $1 AND dedupe_key = $2",
    )?;
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let mut outcomes = Vec::with_capacity(group.len());
        for ev in group.iter() {
            if stored.contains(&ev.id.0) {
                for d in &ev.deliveries {
                    let (state, _) = delivery_start(d);
                    fx.lanes.add(&ev.flow, &d.destination, i64::from(state), 1);
                }
                fx.audit.push(accepted(ev));
                outcomes.push(AppendOutcome::Stored(ev.id));
            } else {
                // Only the dedupe conflict is ignored, so the key is set and the row exists.
                let row = tx.query_one(&find_dup, &[&ev.flow, &ev.dedupe_key])?;
                outcomes.push(AppendOutcome::Duplicate(EventId(col(&row, 0)?)));
            }
        }
        out.push(outcomes);
    }
    Ok(out)
}

/// A new delivery's state and `next_attempt_at`: in flight until its lease ends when claimed
/// in the append (as a claim leaves it), else pending until due.
fn delivery_start(d: &crate::NewDelivery) -> (i32, Millis) {
    match d.claimed_until {
        Some(lease_until) => (IN_FLIGHT, lease_until),
        None => (PENDING, d.due_at),
    }
}

/// An id used twice is the caller's mistake, named by the constraint it broke.
fn already_stored(e: postgres::Error, ev: &NewEvent) -> Failure {
    let constraint = e.as_db_error().and_then(|db| db.constraint()).unwrap_or("");
    if e.code() != Some(&SqlState::UNIQUE_VIOLATION) {
        return Failure::Pg(e);
    }
    Failure::Store(StoreError::Invalid(
        if constraint.starts_with("deliveries") {
            format!("a delivery of event {} is already stored", ev.id)
        } else {
            format!("event {} is already stored", ev.id)
        },
    ))
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
            clear_payload: None,
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

/// A delivery as an outcome call found it (locked), and as its outcomes leave it.
struct Row {
    seq: i64,
    flow: String,
    destination: String,
    order_key: Option<String>,
    event: EventId,
    state: i32,
    attempts: i32,
    round_attempts: i32,
    /// Whether an outcome moved its state (else only attempts were counted).
    moved: bool,
    next_at: Option<Millis>,
    last_error: Option<String>,
    /// Left its key's queue (delivered or dead).
    dequeued: bool,
}

/// Records outcomes. The attempt row (if any) is always kept and counts in `attempts`; the
/// state moves (and `round_attempts` grows) only if the delivery is in flight. Outcomes for
/// unknown deliveries (e.g. purged meanwhile) are ignored. A delivered outcome is a data
/// movement whatever the state: it gets its `delivered` audit entry and counts in the
/// observed data map.
///
/// A call costs three statements whatever its number of outcomes: the deliveries are read
/// and locked together (in `seq` order, so nodes lock in one order), the outcomes applied in
/// memory in their order (one delivery may have several), then the attempt rows inserted
/// and the deliveries updated, each in one statement.
pub(crate) fn complete(
    tx: &mut Transaction<'_>,
    fx: &mut Effects,
    outcomes: &[DeliveryOutcome],
    now: Millis,
) -> Result<(), Failure> {
    let lock = prepared(
        tx,
        "SELECT id, seq, state, attempts, round_attempts, flow, destination, order_key, event_id,
                next_attempt_at, last_error
         FROM deliveries WHERE id = ANY($1) ORDER BY seq FOR UPDATE",
    )?;
    let ids: Vec<Uuid> = outcomes.iter().map(|o| o.id.0).collect();
    let mut rows = std::collections::HashMap::with_capacity(ids.len());
    for r in tx.query(&lock, &[&ids])? {
        rows.insert(
            col::<Uuid>(&r, 0)?,
            Row {
                seq: col(&r, 1)?,
                state: col(&r, 2)?,
                attempts: col(&r, 3)?,
                round_attempts: col(&r, 4)?,
                flow: col(&r, 5)?,
                destination: col(&r, 6)?,
                order_key: col(&r, 7)?,
                event: EventId(col(&r, 8)?),
                next_at: col(&r, 9)?,
                last_error: col(&r, 10)?,
                moved: false,
                dequeued: false,
            },
        );
    }

    let mut observed = Observed::default();
    let mut attempts = AttemptRows::default();
    for o in outcomes {
        let Some(row) = rows.get_mut(&o.id.0) else {
            tracing::warn!(delivery = %o.id, "outcome for an unknown delivery ignored");
            continue;
        };
        if o.next == Next::Delivered {
            observed.add(&row.flow, &row.destination, &o.audit);
            fx.audit.push(AuditEntry::Delivered {
                at: now,
                delivery: o.id,
                event: row.event,
                flow: row.flow.clone(),
                destination: row.destination.clone(),
                destination_system: o.audit.destination_system.clone(),
                categories_sent: o.audit.categories_sent.clone(),
            });
        }
        if let Some(a) = &o.attempt {
            row.attempts += 1;
            attempts.push(o.id.0, row.attempts, a);
        }
        if row.state != IN_FLIGHT || !o.settles(row.next_at) {
            // Replayed, settled or claimed again meanwhile: keep the attempt, leave the
            // state alone.
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
        row.round_attempts += i32::from(o.attempt.is_some());
        row.state = next_state;
        row.next_at = next_at;
        row.last_error = last_error;
        row.moved = true;
        row.dequeued = row.order_key.is_some() && matches!(next_state, DELIVERED | DEAD);
        fx.lanes.moved(
            &row.flow,
            &row.destination,
            i64::from(IN_FLIGHT),
            i64::from(next_state),
        );
    }
    attempts.insert(tx)?;
    update_rows(tx, rows.values(), now)?;
    let mut promote: Vec<KeyOfLane> = rows
        .into_values()
        .filter(|r| r.dequeued)
        .filter_map(|r| r.order_key.map(|k| (r.flow, r.destination, k)))
        .collect();
    promote.sort();
    promote.dedup();
    for (flow, destination, key) in &promote {
        order::promote_head(tx, flow, destination, key)?;
    }
    datamap::write(observed, tx, now)
}

/// Attempt rows of one outcome call, inserted in one statement.
#[derive(Default)]
struct AttemptRows {
    delivery: Vec<Uuid>,
    seq: Vec<i32>,
    started_at: Vec<i64>,
    latency_ms: Vec<i64>,
    status: Vec<Option<i32>>,
    error_class: Vec<Option<String>>,
    error: Vec<Option<String>>,
    excerpt: Vec<Option<String>>,
}

impl AttemptRows {
    fn push(&mut self, delivery: Uuid, seq: i32, a: &Attempt) {
        self.delivery.push(delivery);
        self.seq.push(seq);
        self.started_at.push(a.started_at);
        self.latency_ms.push(i64::from(a.latency_ms));
        self.status.push(a.status.map(i32::from));
        self.error_class.push(a.error_class.clone());
        self.error.push(a.error.clone());
        self.excerpt.push(a.response_excerpt.clone());
    }

    fn insert(&self, tx: &mut Transaction<'_>) -> Result<(), Failure> {
        if self.delivery.is_empty() {
            return Ok(());
        }
        let stmt = prepared(
            tx,
            "INSERT INTO attempts (delivery_id, seq, started_at, latency_ms, status, error_class,
                 error, response_excerpt)
             SELECT * FROM unnest($1::uuid[], $2::integer[], $3::bigint[], $4::bigint[],
                 $5::integer[], $6::text[], $7::text[], $8::text[])",
        )?;
        tx.execute(
            &stmt,
            &[
                &self.delivery,
                &self.seq,
                &self.started_at,
                &self.latency_ms,
                &self.status,
                &self.error_class,
                &self.error,
                &self.excerpt,
            ],
        )?;
        Ok(())
    }
}

/// Write the deliveries as the outcomes left them, in one statement: the attempt count
/// always; state, due time, round attempts, error and `updated_at` when an outcome moved
/// the state; `held = NULL` when it left its key's queue.
fn update_rows<'a>(
    tx: &mut Transaction<'_>,
    rows: impl Iterator<Item = &'a Row>,
    now: Millis,
) -> Result<(), Failure> {
    let mut seq = Vec::new();
    let mut attempts = Vec::new();
    let mut round = Vec::new();
    let mut state = Vec::new();
    let mut moved = Vec::new();
    let mut next_at: Vec<Option<i64>> = Vec::new();
    let mut last_error: Vec<Option<String>> = Vec::new();
    let mut dequeued = Vec::new();
    for r in rows {
        seq.push(r.seq);
        attempts.push(r.attempts);
        round.push(r.round_attempts);
        state.push(r.state);
        moved.push(r.moved);
        next_at.push(r.next_at);
        last_error.push(r.last_error.clone());
        dequeued.push(r.dequeued);
    }
    if seq.is_empty() {
        return Ok(());
    }
    let stmt = prepared(
        tx,
        "UPDATE deliveries AS d SET
             attempts = u.attempts,
             round_attempts = u.round_attempts,
             state = u.state,
             next_attempt_at = u.next_at,
             last_error = u.last_error,
             updated_at = CASE WHEN u.moved THEN $9 ELSE d.updated_at END,
             held = CASE WHEN u.dequeued THEN NULL ELSE d.held END
         FROM unnest($1::bigint[], $2::integer[], $3::integer[], $4::integer[], $5::boolean[],
                     $6::bigint[], $7::text[], $8::boolean[])
             AS u (seq, attempts, round_attempts, state, moved, next_at, last_error, dequeued)
         WHERE d.seq = u.seq",
    )?;
    tx.execute(
        &stmt,
        &[
            &seq,
            &attempts,
            &round,
            &state,
            &moved,
            &next_at,
            &last_error,
            &dequeued,
            &now,
        ],
    )?;
    Ok(())
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
