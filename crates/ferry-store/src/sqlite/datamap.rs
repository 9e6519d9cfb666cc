//! The observed data map (`datamap_observed`): what was delivered where, kept by the
//! transaction that records each delivered outcome (beside its `delivered` audit entry), so
//! "which systems received customer emails, and when last?" is one small table read
//! rather than a scan of the audit trail.

use rusqlite::types::Value;
use rusqlite::{Connection, params, params_from_iter};

use super::codec::SqlResultExt;
use crate::effects::Observed;
use crate::{Millis, ObservedFilter, ObservedFlow, StoreResult};

/// Add a store call's counts to `datamap_observed`, delivered last at `at`.
pub(crate) fn write(observed: Observed, conn: &Connection, at: Millis) -> StoreResult<()> {
    if observed.counts.is_empty() {
        return Ok(());
    }
    let mut upsert = conn
        .prepare_cached(
            "INSERT INTO datamap_observed (category, flow, destination, system, how, delivered,
                 last_delivered_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (category, flow, destination, system, how) DO UPDATE SET
                 delivered = delivered + excluded.delivered,
                 last_delivered_at = max(last_delivered_at, excluded.last_delivered_at)",
        )
        .store()?;
    for ((category, flow, destination, system, how), n) in &observed.counts {
        upsert
            .execute(params![category, flow, destination, system, how, n, at])
            .store()?;
    }
    Ok(())
}

/// The rows matching `filter`, by category, flow, destination.
pub(crate) fn list(conn: &Connection, filter: &ObservedFilter) -> StoreResult<Vec<ObservedFlow>> {
    let mut conditions = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    if let Some(c) = &filter.category {
        // The category or one below it: `a.b` or `a.b.` < category < `a.b/`.
        conditions.push("(category = ? OR (category > ? AND category < ?))");
        args.push(Value::Text(c.clone()));
        args.push(Value::Text(format!("{c}.")));
        args.push(Value::Text(format!("{c}/")));
    }
    if let Some(s) = &filter.system {
        conditions.push("system = ?");
        args.push(Value::Text(s.clone()));
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT category, flow, destination, system, how, delivered, last_delivered_at
         FROM datamap_observed {where_clause}
         ORDER BY category, flow, destination, system, how"
    );
    let mut stmt = conn.prepare_cached(&sql).store()?;
    let rows = stmt
        .query_map(params_from_iter(args), |r| {
            let system: String = r.get(3)?;
            Ok(ObservedFlow {
                category: r.get(0)?,
                flow: r.get(1)?,
                destination: r.get(2)?,
                system: (!system.is_empty()).then_some(system),
                how: r.get(4)?,
                delivered: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
                last_delivered_at: r.get(6)?,
            })
        })
        .store()?;
    rows.collect::<rusqlite::Result<Vec<_>>>().store()
}
