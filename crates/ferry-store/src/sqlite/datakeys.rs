//! Data keys (`data_keys`): create-or-get per subject, rotation pages, crypto-shredding.
//!
//! Creation is one statement per key in the writer's transaction: `INSERT … ON CONFLICT DO
//! NOTHING` on the partial unique index of live keys per subject, then the live key read
//! back. Whichever caller's candidate the writer met first is stored; every caller answers
//! the stored one. As the writer runs commands one after the other and answers only after
//! the commit, a key is durable before any caller encrypts under it.
//!
//! Shredding overwrites: `secure_delete` is on for the shred's statement, so SQLite zeroes
//! the wrapped bytes where they lay in the page, and the shred is followed by a `TRUNCATE`
//! checkpoint (see [`super::SqliteStore`]) so the WAL file does not keep older copies of the
//! page either.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::codec::{SqlResultExt, limit};
use crate::{
    DataKeyId, DataKeyRecord, DataKeyStats, Millis, NewDataKey, RewrappedKey, StoreResult,
};

const COLUMNS: &str = "id, subject_ref, kek_id, wrapped, created_at, shredded_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<DataKeyRecord> {
    Ok(DataKeyRecord {
        id: r.get(0)?,
        subject_ref: r.get(1)?,
        kek_id: r.get(2)?,
        wrapped: r.get(3)?,
        created_at: r.get(4)?,
        shredded_at: r.get(5)?,
    })
}

fn live_of(conn: &Connection, subject_ref: &str) -> StoreResult<Option<DataKeyRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM data_keys WHERE subject_ref = ?1 AND shredded_at IS NULL"
    ))
    .store()?
    .query_row([subject_ref], from_row)
    .optional()
    .store()
}

/// The live keys of `subjects` (those that have one).
pub(crate) fn of_subjects(
    conn: &Connection,
    subjects: &[String],
) -> StoreResult<Vec<DataKeyRecord>> {
    let mut out = Vec::with_capacity(subjects.len());
    for s in subjects {
        if let Some(k) = live_of(conn, s)? {
            out.push(k);
        }
    }
    Ok(out)
}

/// Store each key unless its subject has a live one; the live key of each, in order.
pub(crate) fn create(conn: &Connection, keys: &[NewDataKey]) -> StoreResult<Vec<DataKeyRecord>> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO data_keys (subject_ref, kek_id, wrapped, created_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (subject_ref) WHERE shredded_at IS NULL DO NOTHING",
        )
        .store()?;
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        insert
            .execute(params![k.subject_ref, k.kek_id, k.wrapped, k.created_at])
            .store()?;
        let stored = live_of(conn, &k.subject_ref)?.ok_or_else(|| {
            crate::StoreError::Backend("a data key just stored cannot be read back".to_owned())
        })?;
        out.push(stored);
    }
    Ok(out)
}

/// One key or tombstone.
pub(crate) fn get(conn: &Connection, id: DataKeyId) -> StoreResult<Option<DataKeyRecord>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM data_keys WHERE id = ?1"))
        .store()?
        .query_row([id], from_row)
        .optional()
        .store()
}

/// Live keys wrapped by another KEK than `kek_id`, in id order after `after`.
pub(crate) fn not_wrapped_by(
    conn: &Connection,
    kek_id: &str,
    after: Option<DataKeyId>,
    n: usize,
) -> StoreResult<Vec<DataKeyRecord>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM data_keys
             WHERE shredded_at IS NULL AND kek_id <> ?1 AND id > ?2
             ORDER BY id LIMIT ?3"
        ))
        .store()?;
    let rows = stmt
        .query_map(params![kek_id, after.unwrap_or(0), limit(n)], from_row)
        .store()?;
    rows.collect::<rusqlite::Result<Vec<_>>>().store()
}

/// Replace wrapped keys still wrapped by their `from_kek`; how many were replaced.
pub(crate) fn rewrap(conn: &Connection, keys: &[RewrappedKey]) -> StoreResult<u64> {
    let mut stmt = conn
        .prepare_cached(
            "UPDATE data_keys SET kek_id = ?1, wrapped = ?2
             WHERE id = ?3 AND kek_id = ?4 AND shredded_at IS NULL",
        )
        .store()?;
    let mut n = 0;
    for k in keys {
        n += stmt
            .execute(params![k.kek_id, k.wrapped, k.id, k.from_kek])
            .store()? as u64;
    }
    Ok(n)
}

/// Shred every live key of `subject_ref` with `secure_delete` on; how many.
pub(crate) fn shred(conn: &Connection, subject_ref: &str, at: Millis) -> StoreResult<u64> {
    conn.pragma_update(None, "secure_delete", true).store()?;
    let res = conn
        .prepare_cached(
            "UPDATE data_keys SET wrapped = NULL, shredded_at = ?2
             WHERE subject_ref = ?1 AND shredded_at IS NULL",
        )
        .and_then(|mut s| s.execute(params![subject_ref, at]));
    // Off again whatever happened: other commands of the batch do not pay for it.
    let off = conn.pragma_update(None, "secure_delete", false);
    let n = res.store()?;
    off.store()?;
    Ok(n as u64)
}

/// Live keys per KEK, and tombstones.
pub(crate) fn stats(conn: &Connection) -> StoreResult<DataKeyStats> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT kek_id, count(*) FROM data_keys WHERE shredded_at IS NULL
             GROUP BY kek_id ORDER BY kek_id",
        )
        .store()?;
    let live_by_kek = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .store()?
        .collect::<rusqlite::Result<Vec<_>>>()
        .store()?;
    let shredded: i64 = conn
        .prepare_cached("SELECT count(*) FROM data_keys WHERE shredded_at IS NOT NULL")
        .store()?
        .query_row([], |r| r.get(0))
        .store()?;
    Ok(DataKeyStats {
        live_by_kek,
        shredded: shredded as u64,
    })
}
