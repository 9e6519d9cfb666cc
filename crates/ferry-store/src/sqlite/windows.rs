//! `dedupe` step windows (`dedupe_windows`): one row per (flow, key) remembered, checked and
//! recorded inside the append's transaction, so a key is never recorded without its event
//! or an event stored without its key.

use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{SqlResultExt, uuid_at};
use crate::{DedupeWindow, EventId, Millis, StoreResult};

/// Most expired keys one append purges: bounds the cost an append adds, while appends that
/// record keys (one each) purge faster than they add.
pub(crate) const PURGE_BATCH: i64 = 256;

/// The event that recorded `window.key` in `flow`, if the key is still remembered at `now`.
pub(crate) fn seen(
    conn: &Connection,
    flow: &str,
    window: &DedupeWindow,
    now: Millis,
) -> StoreResult<Option<EventId>> {
    conn.prepare_cached(
        "SELECT event_id FROM dedupe_windows WHERE flow = ?1 AND key = ?2 AND expires_at > ?3",
    )
    .store()?
    .query_row(params![flow, window.key, now], |r| uuid_at(r, 0))
    .optional()
    .store()
    .map(|id| id.map(EventId))
}

/// Remember `window.key` in `flow` for `event`, replacing an expired record of the key.
pub(crate) fn remember(
    conn: &Connection,
    flow: &str,
    window: &DedupeWindow,
    event: EventId,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO dedupe_windows (flow, key, event_id, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (flow, key)
         DO UPDATE SET event_id = excluded.event_id, expires_at = excluded.expires_at",
    )
    .store()?
    .execute(params![
        flow,
        window.key,
        event.0.as_bytes(),
        window.expires_at
    ])
    .store()?;
    Ok(())
}

/// The oldest keys expired at `?1`, at most `?2`: one range of `dedupe_windows_expiry`.
pub(crate) const EXPIRED: &str = "SELECT flow, key FROM dedupe_windows WHERE expires_at <= ?1
     ORDER BY expires_at LIMIT ?2";

/// Forget up to [`PURGE_BATCH`] keys expired at `now` (oldest first).
pub(crate) fn purge(conn: &Connection, now: Millis) -> StoreResult<usize> {
    conn.prepare_cached(&format!(
        "DELETE FROM dedupe_windows WHERE (flow, key) IN ({EXPIRED})"
    ))
    .store()?
    .execute(params![now, PURGE_BATCH])
    .store()
}
