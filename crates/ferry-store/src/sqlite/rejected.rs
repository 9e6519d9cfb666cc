//! Rejected records (`rejected`): stored with their batch's events, listed newest first,
//! marked replayed together with the events their replay made.

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{SqlResultExt, decode_headers, encode_headers, limit, uuid_at};
use crate::{EventId, Millis, NewRejected, RejectedId, RejectedRecord, StoreError, StoreResult};

/// Stores rejected records; one already held for the same flow and message id is kept as
/// it is.
pub(crate) fn insert(conn: &Connection, records: &[NewRejected]) -> StoreResult<()> {
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO rejected (id, flow, source_kind, message_id, received_at, reason,
                 detail, headers, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (flow, message_id) WHERE message_id IS NOT NULL DO NOTHING",
        )
        .store()?;
    for r in records {
        stmt.execute(params![
            r.id.0.as_bytes(),
            r.flow,
            r.source_kind,
            r.message_id,
            r.received_at,
            r.reason,
            r.detail,
            encode_headers(&r.headers),
            r.payload.as_ref(),
        ])
        .store()?;
    }
    Ok(())
}

const COLUMNS: &str = "id, flow, source_kind, message_id, received_at, reason, detail, headers, \
                       payload, replayed_at, replayed_event";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RejectedRecord> {
    let headers: String = r.get(7)?;
    let replayed_event = match r.get::<_, Option<Vec<u8>>>(10)? {
        Some(_) => Some(EventId(uuid_at(r, 10)?)),
        None => None,
    };
    Ok(RejectedRecord {
        id: RejectedId(uuid_at(r, 0)?),
        flow: r.get(1)?,
        source_kind: r.get(2)?,
        message_id: r.get(3)?,
        received_at: r.get(4)?,
        reason: r.get(5)?,
        detail: r.get(6)?,
        headers: decode_headers(&headers)?,
        payload: Bytes::from(r.get::<_, Vec<u8>>(8)?),
        replayed_at: r.get(9)?,
        replayed_event,
    })
}

/// Newest first, of `flow` if given, before `before` if given.
pub(crate) fn list(
    conn: &Connection,
    flow: Option<&str>,
    before: Option<RejectedId>,
    n: usize,
) -> StoreResult<Vec<RejectedRecord>> {
    // An id past every UUID stands for "no cursor".
    let before = before.map_or_else(|| vec![0xff_u8; 17], |id| id.0.as_bytes().to_vec());
    let rows = match flow {
        Some(flow) => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM rejected WHERE flow = ?1 AND id < ?2
                 ORDER BY id DESC LIMIT ?3"
            ))
            .store()?
            .query_map(params![flow, before, limit(n)], from_row)
            .store()?
            .collect::<rusqlite::Result<Vec<_>>>(),
        None => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM rejected WHERE id < ?1 ORDER BY id DESC LIMIT ?2"
            ))
            .store()?
            .query_map(params![before, limit(n)], from_row)
            .store()?
            .collect::<rusqlite::Result<Vec<_>>>(),
    };
    rows.store()
}

/// One record.
pub(crate) fn get(conn: &Connection, id: RejectedId) -> StoreResult<Option<RejectedRecord>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM rejected WHERE id = ?1"))
        .store()?
        .query_row([id.0.as_bytes()], from_row)
        .optional()
        .store()
}

/// Refuses a replay of a record that is missing or replayed already; else its flow.
pub(crate) fn check_replayable(conn: &Connection, id: RejectedId) -> StoreResult<String> {
    let replayed: Option<(Option<Millis>, String)> = conn
        .prepare_cached("SELECT replayed_at, flow FROM rejected WHERE id = ?1")
        .store()?
        .query_row([id.0.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .store()?;
    match replayed {
        None => Err(StoreError::Invalid(format!("no rejected record {id}"))),
        Some((Some(_), _)) => Err(StoreError::Invalid(format!(
            "rejected record {id} was replayed already"
        ))),
        Some((None, flow)) => Ok(flow),
    }
}

/// Marks a record replayed at `at` into `event`.
pub(crate) fn mark_replayed(
    conn: &Connection,
    id: RejectedId,
    at: Millis,
    event: EventId,
) -> StoreResult<()> {
    conn.prepare_cached("UPDATE rejected SET replayed_at = ?2, replayed_event = ?3 WHERE id = ?1")
        .store()?
        .execute(params![id.0.as_bytes(), at, event.0.as_bytes()])
        .store()?;
    Ok(())
}
