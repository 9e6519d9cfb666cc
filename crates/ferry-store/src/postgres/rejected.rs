//! Rejected records (`rejected`): stored with their batch's events, listed newest first,
//! marked replayed together with the events their replay made.

use bytes::Bytes;
use postgres::{Client, Row, Transaction};

use super::codec::col;
use super::codec::{Param, PgResultExt, args, decode_headers, encode_headers, limit};
use super::writer::Failure;
use crate::{EventId, Millis, NewRejected, RejectedId, RejectedRecord, StoreError, StoreResult};

/// Stores rejected records; one already held for the same flow and message id is kept as
/// it is.
pub(crate) fn insert(tx: &mut Transaction<'_>, records: &[NewRejected]) -> Result<(), Failure> {
    if records.is_empty() {
        return Ok(());
    }
    let stmt = tx.prepare(
        "INSERT INTO rejected (id, flow, source_kind, message_id, received_at, reason,
             detail, headers, payload)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (flow, message_id) WHERE message_id IS NOT NULL DO NOTHING",
    )?;
    for r in records {
        tx.execute(
            &stmt,
            &[
                &r.id.0,
                &r.flow,
                &r.source_kind,
                &r.message_id,
                &r.received_at,
                &r.reason,
                &r.detail,
                &encode_headers(&r.headers),
                &r.payload.as_ref(),
            ],
        )?;
    }
    Ok(())
}

const COLUMNS: &str = "id, flow, source_kind, message_id, received_at, reason, detail, headers, \
                       payload, replayed_at, replayed_event";

fn from_row(r: &Row) -> StoreResult<RejectedRecord> {
    let headers: String = col(r, 7)?;
    Ok(RejectedRecord {
        id: RejectedId(col(r, 0)?),
        flow: col(r, 1)?,
        source_kind: col(r, 2)?,
        message_id: col(r, 3)?,
        received_at: col(r, 4)?,
        reason: col(r, 5)?,
        detail: col(r, 6)?,
        headers: decode_headers(&headers)?,
        payload: Bytes::from(col::<Vec<u8>>(r, 8)?),
        replayed_at: col(r, 9)?,
        replayed_event: col::<Option<uuid::Uuid>>(r, 10)?.map(EventId),
    })
}

/// Newest first, of `flow` if given, before `before` if given.
pub(crate) fn list(
    c: &mut Client,
    flow: Option<&str>,
    before: Option<RejectedId>,
    n: usize,
) -> StoreResult<Vec<RejectedRecord>> {
    let mut conditions: Vec<String> = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    if let Some(flow) = flow {
        conditions.push(format!("flow = ${}", params.len() + 1));
        params.push(Box::new(flow.to_owned()));
    }
    if let Some(before) = before {
        conditions.push(format!("id < ${}", params.len() + 1));
        params.push(Box::new(before.0));
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM rejected {where_clause} ORDER BY id DESC LIMIT ${}",
        params.len() + 1
    );
    params.push(Box::new(limit(n)));
    c.query(&sql, &args(&params))
        .store()?
        .iter()
        .map(from_row)
        .collect()
}

/// One record.
pub(crate) fn get(c: &mut Client, id: RejectedId) -> StoreResult<Option<RejectedRecord>> {
    c.query_opt(
        &format!("SELECT {COLUMNS} FROM rejected WHERE id = $1"),
        &[&id.0],
    )
    .store()?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Refuses a replay of a record that is missing or replayed already; else its flow. Locks
/// the record until the commit, so two nodes cannot both replay it.
pub(crate) fn check_replayable(
    tx: &mut Transaction<'_>,
    id: RejectedId,
) -> Result<String, Failure> {
    let row = tx.query_opt(
        "SELECT replayed_at, flow FROM rejected WHERE id = $1 FOR UPDATE",
        &[&id.0],
    )?;
    let Some(row) = row else {
        return Err(StoreError::Invalid(format!("no rejected record {id}")).into());
    };
    let replayed_at: Option<Millis> = col(&row, 0)?;
    if replayed_at.is_some() {
        return Err(
            StoreError::Invalid(format!("rejected record {id} was replayed already")).into(),
        );
    }
    Ok(col(&row, 1)?)
}

/// Marks a record replayed at `at` into `event`.
pub(crate) fn mark_replayed(
    tx: &mut Transaction<'_>,
    id: RejectedId,
    at: Millis,
    event: EventId,
) -> Result<(), Failure> {
    tx.execute(
        "UPDATE rejected SET replayed_at = $2, replayed_event = $3 WHERE id = $1",
        &[&id.0, &at, &event.0],
    )?;
    Ok(())
}
