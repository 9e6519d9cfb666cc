//! `dedupe` step windows (`dedupe_windows`): one row per (flow, key) remembered, checked and
//! recorded inside the append's transaction, so a key is never recorded without its event
//! or an event stored without its key.

use postgres::Transaction;

use super::codec::col;
use super::writer::{Failure, prepared};
use crate::{DedupeWindow, EventId, Millis};

/// Most expired keys one append purges: bounds the cost an append adds, while appends that
/// record keys (one each) purge faster than they add.
const PURGE_BATCH: i64 = 256;

/// The event that recorded `window.key` in `flow`, if the key is still remembered at `now`.
pub(crate) fn seen(
    tx: &mut Transaction<'_>,
    flow: &str,
    window: &DedupeWindow,
    now: Millis,
) -> Result<Option<EventId>, Failure> {
    let stmt = prepared(
        tx,
        "SELECT event_id FROM dedupe_windows WHERE flow = $1 AND key = $2 AND expires_at > $3",
    )?;
    match tx.query_opt(&stmt, &[&flow, &window.key, &now])? {
        Some(r) => Ok(Some(EventId(col(&r, 0)?))),
        None => Ok(None),
    }
}

/// Remember `window.key` in `flow` for `event`, replacing an expired record of the key.
pub(crate) fn remember(
    tx: &mut Transaction<'_>,
    flow: &str,
    window: &DedupeWindow,
    event: EventId,
) -> Result<(), Failure> {
    let stmt = prepared(
        tx,
        "INSERT INTO dedupe_windows (flow, key, event_id, expires_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (flow, key)
         DO UPDATE SET event_id = excluded.event_id, expires_at = excluded.expires_at",
    )?;
    tx.execute(&stmt, &[&flow, &window.key, &event.0, &window.expires_at])?;
    Ok(())
}

/// Forget up to [`PURGE_BATCH`] keys expired at `now` (oldest first); keys another node is
/// purging at the same moment are skipped.
pub(crate) fn purge(tx: &mut Transaction<'_>, now: Millis) -> Result<u64, Failure> {
    let stmt = prepared(
        tx,
        "DELETE FROM dedupe_windows WHERE (flow, key) IN (
             SELECT flow, key FROM dedupe_windows WHERE expires_at <= $1
             ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )?;
    Ok(tx.execute(&stmt, &[&now, &PURGE_BATCH])?)
}
