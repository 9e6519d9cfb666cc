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
    // The lock, then the head, in one round trip (the simple protocol runs both in order);
    // the records then go in with one statement.
    let mut head = None;
    for msg in tx.simple_query(
        "LOCK TABLE audit_log IN EXCLUSIVE MODE;
         SELECT seq, encode(hash, 'hex') FROM audit_log ORDER BY seq DESC LIMIT 1",
    )? {
        if let postgres::SimpleQueryMessage::Row(r) = msg {
            head = Some((r.get(0).map(str::to_owned), r.get(1).map(str::to_owned)));
        }
    }
    let (mut seq, mut hash) = match head {
        Some((Some(seq), Some(hash))) => (
            seq.parse::<i64>()
                .map_err(|e| corrupt(format!("head position `{seq}`: {e}")))?,
            unhex(&hash).ok_or_else(|| corrupt(format!("head hash `{hash}`")))?,
        ),
        Some(_) => return Err(corrupt("a head record without position or hash".to_owned())),
        None => (0, GENESIS_HASH.to_vec()),
    };
    let mut seqs = Vec::with_capacity(kinds.len());
    let mut ats = Vec::with_capacity(kinds.len());
    let mut texts = Vec::with_capacity(kinds.len());
    let mut prevs = Vec::with_capacity(kinds.len());
    let mut hashes = Vec::with_capacity(kinds.len());
    for kind in &kinds {
        let of_kind: Vec<&AuditEntry> = entries.iter().filter(|e| e.kind() == *kind).collect();
        let at = of_kind.iter().map(|e| e.at()).max().unwrap_or(0);
        let text = serde_json::to_string(&of_kind).map_err(|e| {
            Failure::Store(StoreError::Backend(format!(
                "cannot encode audit entries: {e}"
            )))
        })?;
        let next = seq + 1;
        let new_hash = record_hash(&hash, u64::try_from(next).unwrap_or(0), at, kind, &text);
        seqs.push(next);
        ats.push(at);
        texts.push(text);
        prevs.push(std::mem::replace(&mut hash, new_hash.to_vec()));
        hashes.push(new_hash.to_vec());
        seq = next;
    }
    let insert = prepared(
        tx,
        "INSERT INTO audit_log (seq, at, kind, entries, prev_hash, hash)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
             $5::bytea[], $6::bytea[])",
    )?;
    tx.execute(&insert, &[&seqs, &ats, &kinds, &texts, &prevs, &hashes])?;
    Ok(())
}

fn corrupt(what: String) -> Failure {
    Failure::Store(StoreError::Backend(format!(
        "the audit trail's last record is unreadable: {what}"
    )))
}

/// Bytes of a hex string (as `encode(…, 'hex')` writes them).
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
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
