//! Per-key ordering: upkeep of `deliveries.held`.
//!
//! The keyed deliveries of a lane that are not yet delivered or dead form one queue per
//! key, in `seq` (append) order. The first is the *head* (`held = 0`), claimable when due;
//! the others are *held back* (`held = 1`). Out of the queue (delivered, dead) `held` is
//! NULL; unordered deliveries are always 0. Claims and `next_due` skip held-back deliveries
//! through the partial index `deliveries_due` (`... AND held = 0`), so they never walk a
//! held-back backlog.
//!
//! A queue changes only when a delivery joins or leaves it:
//! - append: it joins at the end, held back iff the queue is not empty ([`held_on_append`]);
//! - delivered or dead: it leaves (`held = NULL`, set by the outcome's own update) and the
//!   next one becomes the head ([`promote_head`]);
//! - replay of a delivered or dead delivery: it rejoins (provisionally held back, set by the
//!   replay's own update) at its old place, possibly ahead of the head, so the queue is
//!   recomputed ([`reorder`]).
//!
//! Moves between waiting states (claim, retry, release) leave every queue as it is.
//!
//! Every query is a seek in `deliveries_order_key`, which holds exactly the queued
//! deliveries, in (lane, key, seq) order.

use rusqlite::{Connection, OptionalExtension, params};

use super::codec::SqlResultExt;
use crate::StoreResult;

/// A lane and an order key: `(flow, destination, key)`.
pub(crate) type KeyOfLane = (String, String, String);

/// Any queued delivery of the key in the lane (so a new one is held back).
pub(crate) const HAS_QUEUED: &str = "SELECT 1 FROM deliveries
     WHERE flow = ?1 AND destination = ?2 AND order_key = ?3 AND held IS NOT NULL
     LIMIT 1";

/// The head of a key's queue in a lane.
pub(crate) const HEAD: &str = "SELECT seq FROM deliveries
     WHERE flow = ?1 AND destination = ?2 AND order_key = ?3 AND held IS NOT NULL
     ORDER BY seq LIMIT 1";

/// Holds back every queued delivery of a key in a lane but its head (`seq` ?4).
pub(crate) const REORDER: &str = "UPDATE deliveries SET held = (seq > ?4)
     WHERE flow = ?1 AND destination = ?2 AND order_key = ?3 AND held IS NOT NULL
       AND held <> (seq > ?4)";

/// Whether a delivery of `key`, appended now to the lane, is held back.
pub(crate) fn held_on_append(
    conn: &Connection,
    flow: &str,
    destination: &str,
    key: &str,
) -> StoreResult<bool> {
    conn.prepare_cached(HAS_QUEUED)
        .store()?
        .query_row(params![flow, destination, key], |_| Ok(()))
        .optional()
        .store()
        .map(|row| row.is_some())
}

/// After a delivery of `key` left the queue: releases the queue's new head, if any.
pub(crate) fn promote_head(
    conn: &Connection,
    flow: &str,
    destination: &str,
    key: &str,
) -> StoreResult<()> {
    let Some(head) = head(conn, flow, destination, key)? else {
        return Ok(());
    };
    conn.prepare_cached("UPDATE deliveries SET held = 0 WHERE seq = ?1 AND held = 1")
        .store()?
        .execute([head])
        .store()?;
    Ok(())
}

/// Recomputes `held` along each key's queue (after deliveries rejoined it): all but the
/// head are held back. Touches only rows whose flag changes.
pub(crate) fn reorder(conn: &Connection, keys: &[KeyOfLane]) -> StoreResult<()> {
    let mut set = conn.prepare_cached(REORDER).store()?;
    for (flow, destination, key) in keys {
        if let Some(head) = head(conn, flow, destination, key)? {
            set.execute(params![flow, destination, key, head]).store()?;
        }
    }
    Ok(())
}

fn head(conn: &Connection, flow: &str, destination: &str, key: &str) -> StoreResult<Option<i64>> {
    conn.prepare_cached(HEAD)
        .store()?
        .query_row(params![flow, destination, key], |r| r.get(0))
        .optional()
        .store()
}
