//! Per-key ordering: upkeep of `deliveries.held`, as in the SQLite backend (see
//! `crate::sqlite` `order` for the model: one queue per (lane, key) of the keyed deliveries
//! not yet delivered or dead, in `seq` order; the head is `held = 0`, the rest `held = 1`,
//! out of the queue `NULL`).
//!
//! Several nodes change queues at once, so every change of a key's queue first takes a
//! transaction advisory lock on its (lane, key): the append that decides a delivery is held
//! back and the outcome that promotes the next head cannot interleave across nodes. The
//! lock ends with the transaction.

use postgres::Transaction;

use super::codec::col;
use super::writer::{Failure, prepared};

/// A lane and an order key: `(flow, destination, key)`.
pub(crate) type KeyOfLane = (String, String, String);

/// Waits for the key's queue to be ours until the transaction ends.
fn lock_key(
    tx: &mut Transaction<'_>,
    flow: &str,
    destination: &str,
    key: &str,
) -> Result<(), Failure> {
    let stmt = prepared(
        tx,
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(1) || $2 || chr(1) || $3, 7))",
    )?;
    tx.execute(&stmt, &[&flow, &destination, &key])?;
    Ok(())
}

/// Whether a delivery of `key`, appended now to the lane, is held back.
pub(crate) fn held_on_append(
    tx: &mut Transaction<'_>,
    flow: &str,
    destination: &str,
    key: &str,
) -> Result<bool, Failure> {
    lock_key(tx, flow, destination, key)?;
    let stmt = prepared(
        tx,
        "SELECT 1 FROM deliveries
         WHERE flow = $1 AND destination = $2 AND order_key = $3 AND held IS NOT NULL
         LIMIT 1",
    )?;
    Ok(tx.query_opt(&stmt, &[&flow, &destination, &key])?.is_some())
}

/// After a delivery of `key` left the queue: releases the queue's new head, if any.
pub(crate) fn promote_head(
    tx: &mut Transaction<'_>,
    flow: &str,
    destination: &str,
    key: &str,
) -> Result<(), Failure> {
    lock_key(tx, flow, destination, key)?;
    let Some(head) = head(tx, flow, destination, key)? else {
        return Ok(());
    };
    let stmt = prepared(
        tx,
        "UPDATE deliveries SET held = 0 WHERE seq = $1 AND held = 1",
    )?;
    tx.execute(&stmt, &[&head])?;
    Ok(())
}

/// Recomputes `held` along each key's queue (after deliveries rejoined it): all but the
/// head are held back. Touches only rows whose flag changes.
pub(crate) fn reorder(tx: &mut Transaction<'_>, keys: &[KeyOfLane]) -> Result<(), Failure> {
    for (flow, destination, key) in keys {
        lock_key(tx, flow, destination, key)?;
        if let Some(head) = head(tx, flow, destination, key)? {
            let stmt = prepared(
                tx,
                "UPDATE deliveries SET held = (seq > $4)::integer
                 WHERE flow = $1 AND destination = $2 AND order_key = $3 AND held IS NOT NULL
                   AND held <> (seq > $4)::integer",
            )?;
            tx.execute(&stmt, &[flow, destination, key, &head])?;
        }
    }
    Ok(())
}

fn head(
    tx: &mut Transaction<'_>,
    flow: &str,
    destination: &str,
    key: &str,
) -> Result<Option<i64>, Failure> {
    let stmt = prepared(
        tx,
        "SELECT seq FROM deliveries
         WHERE flow = $1 AND destination = $2 AND order_key = $3 AND held IS NOT NULL
         ORDER BY seq LIMIT 1",
    )?;
    match tx.query_opt(&stmt, &[&flow, &destination, &key])? {
        Some(r) => Ok(Some(col(&r, 0)?)),
        None => Ok(None),
    }
}
