//! The audit trail's table (`audit_log`) on PostgreSQL: written by the writer at the end of
//! each batch, read by `audit_records`.
//!
//! A batch's entries become one record per kind (in the order each kind first appears).
//! Several nodes write to one chain: a batch takes an `EXCLUSIVE` lock on `audit_log` (reads
//! go on; other writers of records wait for this commit), reads the head, and chains its
//! records after it. The lock is taken last in the transaction, so it is held only for the
//! commit.

use postgres::Transaction;

use super::codec::{PgResultExt, col, limit};
use super::writer::{Failure, prepared};
use crate::audit::{AuditRecord, GENESIS_HASH, record_hash};
use crate::{AuditEntry, StoreError, StoreResult};

/// Write `entries` as records chained after the stored head, inside the open transaction.
/// Nothing is written (and no lock taken) for no entries.
pub(crate) fn write(tx: &mut Transaction<'_>, entries: &[AuditEntry]) -> Result<(), Failure> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut kinds: Vec<&'static str> = Vec::new();
    for e in entries {
        if !kinds.contains(&e.kind()) {
            kinds.push(e.kind());
        }
    }
    tx.batch_execute("LOCK TABLE audit_log IN EXCLUSIVE MODE")?;
    let (mut seq, mut hash) = match tx.query_opt(
        "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
        &[],
    )? {
        Some(r) => (col::<i64>(&r, 0)?, col::<Vec<u8>>(&r, 1)?),
        None => (0, GENESIS_HASH.to_vec()),
    };
    let insert = prepared(
        tx,
        "INSERT INTO audit_log (seq, at, kind, entries, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )?;
    for kind in kinds {
        let of_kind: Vec<&AuditEntry> = entries.iter().filter(|e| e.kind() == kind).collect();
        let at = of_kind.iter().map(|e| e.at()).max().unwrap_or(0);
        let text = serde_json::to_string(&of_kind).map_err(|e| {
            Failure::Store(StoreError::Backend(format!(
                "cannot encode audit entries: {e}"
            )))
        })?;
        let next = seq + 1;
        let new_hash = record_hash(&hash, u64::try_from(next).unwrap_or(0), at, kind, &text);
        tx.execute(&insert, &[&next, &at, &kind, &text, &hash, &&new_hash[..]])?;
        seq = next;
        hash = new_hash.to_vec();
    }
    Ok(())
}

/// Records after position `after`, in order, at most `max`.
pub(crate) fn records(
    client: &mut postgres::Client,
    after: Option<u64>,
    max: usize,
) -> StoreResult<Vec<AuditRecord>> {
    let after = after.map_or(0, |a| i64::try_from(a).unwrap_or(i64::MAX));
    let rows = client
        .query(
            "SELECT seq, at, kind, entries, prev_hash, hash FROM audit_log
             WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&after, &limit(max)],
        )
        .store()?;
    rows.iter()
        .map(|r| {
            Ok(AuditRecord {
                seq: u64::try_from(col::<i64>(r, 0)?).unwrap_or(0),
                at: col(r, 1)?,
                kind: col(r, 2)?,
                entries: col(r, 3)?,
                prev_hash: col(r, 4)?,
                hash: col(r, 5)?,
            })
        })
        .collect()
}
