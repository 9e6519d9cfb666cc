//! Data keys (`data_keys`): create-or-get per subject, rotation pages, crypto-shredding.
//!
//! Creation is one statement per key in the writer's transaction: `INSERT … ON CONFLICT DO
//! NOTHING` on the partial unique index of live keys per subject, then the live key read
//! back. When two nodes race for one subject, the second's insert waits for the first's
//! transaction and, once it committed, does nothing; the read back (a new snapshot under
//! `READ COMMITTED`) then finds the first node's key. Every caller answers the stored key,
//! and only after the commit, so a key is durable before any caller encrypts under it.
//!
//! Shredding sets the wrapped bytes to NULL. PostgreSQL keeps the old row version until
//! `VACUUM` reclaims it (autovacuum, or an operator's `VACUUM data_keys`); unlike the SQLite
//! backend's `secure_delete`, the bytes are not overwritten in place by the shred itself.

use std::collections::HashMap;

use postgres::{Client, Row, Transaction};

use super::codec::col;
use super::codec::{PgResultExt, count64, limit};
use super::writer::Failure;
use crate::{
    DataKeyId, DataKeyRecord, DataKeyStats, Millis, NewDataKey, RewrappedKey, StoreError,
    StoreResult,
};

const COLUMNS: &str = "id, subject_ref, kek_id, wrapped, created_at, shredded_at";

fn from_row(r: &Row) -> StoreResult<DataKeyRecord> {
    Ok(DataKeyRecord {
        id: col(r, 0)?,
        subject_ref: col(r, 1)?,
        kek_id: col(r, 2)?,
        wrapped: col(r, 3)?,
        created_at: col(r, 4)?,
        shredded_at: col(r, 5)?,
    })
}

fn live_of(tx: &mut Transaction<'_>, subject_ref: &str) -> Result<Option<DataKeyRecord>, Failure> {
    let row = tx.query_opt(
        &format!("SELECT {COLUMNS} FROM data_keys WHERE subject_ref = $1 AND shredded_at IS NULL"),
        &[&subject_ref],
    )?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The live keys of `subjects` (those that have one), in the order of `subjects`: one
/// statement.
pub(crate) fn of_subjects(c: &mut Client, subjects: &[String]) -> StoreResult<Vec<DataKeyRecord>> {
    if subjects.is_empty() {
        return Ok(Vec::new());
    }
    let rows = c
        .query(
            &format!(
                "SELECT {COLUMNS} FROM data_keys
                 WHERE subject_ref = ANY($1) AND shredded_at IS NULL"
            ),
            &[&subjects],
        )
        .store()?;
    let mut live: HashMap<String, DataKeyRecord> = HashMap::with_capacity(rows.len());
    for r in &rows {
        let k = from_row(r)?;
        live.insert(k.subject_ref.clone(), k);
    }
    Ok(subjects
        .iter()
        .filter_map(|s| live.get(s).cloned())
        .collect())
}

/// Store each key unless its subject has a live one; the live key of each, in order.
pub(crate) fn create(
    tx: &mut Transaction<'_>,
    keys: &[NewDataKey],
) -> Result<Vec<DataKeyRecord>, Failure> {
    let insert = tx.prepare(
        "INSERT INTO data_keys (subject_ref, kek_id, wrapped, created_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (subject_ref) WHERE shredded_at IS NULL DO NOTHING",
    )?;
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        tx.execute(
            &insert,
            &[&k.subject_ref, &k.kek_id, &k.wrapped, &k.created_at],
        )?;
        let stored = live_of(tx, &k.subject_ref)?.ok_or_else(|| {
            StoreError::Backend("a data key just stored cannot be read back".to_owned())
        })?;
        out.push(stored);
    }
    Ok(out)
}

/// One key or tombstone.
pub(crate) fn get(c: &mut Client, id: DataKeyId) -> StoreResult<Option<DataKeyRecord>> {
    c.query_opt(
        &format!("SELECT {COLUMNS} FROM data_keys WHERE id = $1"),
        &[&id],
    )
    .store()?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Live keys wrapped by another KEK than `kek_id`, in id order after `after`.
pub(crate) fn not_wrapped_by(
    c: &mut Client,
    kek_id: &str,
    after: Option<DataKeyId>,
    n: usize,
) -> StoreResult<Vec<DataKeyRecord>> {
    c.query(
        &format!(
            "SELECT {COLUMNS} FROM data_keys
             WHERE shredded_at IS NULL AND kek_id <> $1 AND id > $2
             ORDER BY id LIMIT $3"
        ),
        &[&kek_id, &after.unwrap_or(0), &limit(n)],
    )
    .store()?
    .iter()
    .map(from_row)
    .collect()
}

/// Replace wrapped keys still wrapped by their `from_kek`; how many were replaced.
pub(crate) fn rewrap(tx: &mut Transaction<'_>, keys: &[RewrappedKey]) -> Result<u64, Failure> {
    let update = tx.prepare(
        "UPDATE data_keys SET kek_id = $1, wrapped = $2
         WHERE id = $3 AND kek_id = $4 AND shredded_at IS NULL",
    )?;
    let mut n = 0;
    for k in keys {
        n += tx.execute(&update, &[&k.kek_id, &k.wrapped, &k.id, &k.from_kek])?;
    }
    Ok(n)
}

/// Shred every live key of `subject_ref`: the wrapped bytes become NULL, the row a
/// tombstone shredded at `at`. How many.
pub(crate) fn shred(
    tx: &mut Transaction<'_>,
    subject_ref: &str,
    at: Millis,
) -> Result<u64, Failure> {
    Ok(tx.execute(
        "UPDATE data_keys SET wrapped = NULL, shredded_at = $2
         WHERE subject_ref = $1 AND shredded_at IS NULL",
        &[&subject_ref, &at],
    )?)
}

/// Live keys per KEK, and tombstones.
pub(crate) fn stats(c: &mut Client) -> StoreResult<DataKeyStats> {
    let live_by_kek = c
        .query(
            "SELECT kek_id, count(*) FROM data_keys WHERE shredded_at IS NULL
             GROUP BY kek_id ORDER BY kek_id",
            &[],
        )
        .store()?
        .iter()
        .map(|r| Ok((col::<String>(r, 0)?, count64(col(r, 1)?))))
        .collect::<StoreResult<Vec<_>>>()?;
    let row = c
        .query_one(
            "SELECT count(*) FROM data_keys WHERE shredded_at IS NOT NULL",
            &[],
        )
        .store()?;
    Ok(DataKeyStats {
        live_by_kek,
        shredded: count64(col(&row, 0)?),
    })
}
