//! The audit trail's table (`audit_log`): written by the writer at the end of each batch,
//! read by `audit_records` and by `ferry audit verify` through a read-only connection.
//!
//! A batch's entries become one record per kind (in the order each kind first appears), so
//! a commit of many appends writes one `accepted` record. The writer keeps the chain head
//! (the last record's position and hash) in memory, loaded when the store opens, and moves
//! it only once the batch has committed.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{SqlResultExt, limit};
use crate::audit::{AuditRecord, GENESIS_HASH, record_hash};
use crate::{AuditEntry, StoreError, StoreResult};

/// The last record's position and hash (position 0 and [`GENESIS_HASH`] before the first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChainHead {
    pub seq: u64,
    pub hash: Vec<u8>,
}

/// The chain head as stored.
pub(crate) fn load_head(conn: &Connection) -> StoreResult<ChainHead> {
    let last = conn
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
        )
        .optional()
        .store()?;
    Ok(match last {
        Some((seq, hash)) => ChainHead {
            seq: u64::try_from(seq).unwrap_or(0),
            hash,
        },
        None => ChainHead {
            seq: 0,
            hash: GENESIS_HASH.to_vec(),
        },
    })
}

/// Write `entries` as records chained after `head`, inside the open transaction; the new
/// head. Nothing is written for no entries.
pub(crate) fn write(
    conn: &Connection,
    head: &ChainHead,
    entries: &[AuditEntry],
) -> StoreResult<ChainHead> {
    let mut kinds: Vec<&'static str> = Vec::new();
    for e in entries {
        if !kinds.contains(&e.kind()) {
            kinds.push(e.kind());
        }
    }
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO audit_log (seq, at, kind, entries, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .store()?;
    let mut next = head.clone();
    for kind in kinds {
        let of_kind: Vec<&AuditEntry> = entries.iter().filter(|e| e.kind() == kind).collect();
        let at = of_kind.iter().map(|e| e.at()).max().unwrap_or(0);
        let text = serde_json::to_string(&of_kind)
            .map_err(|e| StoreError::Backend(format!("cannot encode audit entries: {e}")))?;
        let seq = next.seq + 1;
        let hash = record_hash(&next.hash, seq, at, kind, &text);
        insert
            .execute(params![
                i64::try_from(seq).unwrap_or(i64::MAX),
                at,
                kind,
                text,
                next.hash,
                &hash[..]
            ])
            .store()?;
        next = ChainHead {
            seq,
            hash: hash.to_vec(),
        };
    }
    Ok(next)
}

/// Records after position `after`, in order, at most `max`. Read as stored, whatever a
/// hand edit made of a column's type, so that verification reports it rather than failing
/// to read.
pub(crate) fn records(
    conn: &Connection,
    after: Option<u64>,
    max: usize,
) -> StoreResult<Vec<AuditRecord>> {
    let after = after.map_or(0, |a| i64::try_from(a).unwrap_or(i64::MAX));
    let mut stmt = conn
        .prepare_cached(
            "SELECT seq, at, kind, entries, prev_hash, hash FROM audit_log
             WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .store()?;
    let rows = stmt
        .query_map(params![after, limit(max)], |r| {
            Ok(AuditRecord {
                seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                at: match r.get_ref(1)? {
                    ValueRef::Integer(i) => i,
                    _ => i64::MIN,
                },
                kind: text(r.get_ref(2)?),
                entries: text(r.get_ref(3)?),
                prev_hash: bytes(r.get_ref(4)?),
                hash: bytes(r.get_ref(5)?),
            })
        })
        .store()?;
    rows.collect::<rusqlite::Result<Vec<_>>>().store()
}

fn text(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Null => String::new(),
    }
}

fn bytes(v: ValueRef<'_>) -> Vec<u8> {
    match v {
        ValueRef::Blob(b) => b.to_vec(),
        ValueRef::Text(t) => t.to_vec(),
        _ => Vec::new(),
    }
}
