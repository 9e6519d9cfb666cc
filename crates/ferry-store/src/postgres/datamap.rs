//! The observed data map (`datamap_observed`): what was delivered where, kept by the
//! transaction that records each delivered outcome (beside its `delivered` audit entry), so
//! "which systems received customer emails, and when last?" is one small table read
//! rather than a scan of the audit trail.

use postgres::{Client, Transaction};

use super::codec::col;
use super::codec::{Param, PgResultExt, args, count64};
use super::writer::{Failure, prepared};
use crate::effects::Observed;
use crate::{Millis, ObservedFilter, ObservedFlow, StoreResult};

/// Add a store call's counts to `datamap_observed`, delivered last at `at`. The rows are
/// upserted in key order (`observed.counts` is sorted), so nodes sharing the database lock
/// them in one order.
pub(crate) fn write(
    observed: Observed,
    tx: &mut Transaction<'_>,
    at: Millis,
) -> Result<(), Failure> {
    if observed.counts.is_empty() {
        return Ok(());
    }
    let upsert = prepared(
        tx,
        "INSERT INTO datamap_observed (category, flow, destination, system, how, delivered,
             last_delivered_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (category, flow, destination, system, how) DO UPDATE SET
             delivered = datamap_observed.delivered + excluded.delivered,
             last_delivered_at = GREATEST(datamap_observed.last_delivered_at,
                                          excluded.last_delivered_at)",
    )?;
    for ((category, flow, destination, system, how), n) in &observed.counts {
        tx.execute(&upsert, &[category, flow, destination, system, how, n, &at])?;
    }
    Ok(())
}

/// The rows matching `filter`, by category, flow, destination.
pub(crate) fn list(c: &mut Client, filter: &ObservedFilter) -> StoreResult<Vec<ObservedFlow>> {
    let mut conditions: Vec<String> = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    if let Some(cat) = &filter.category {
        // The category or one below it: `a.b` or `a.b.` < category < `a.b/`.
        let n = params.len() + 1;
        conditions.push(format!(
            "(category = ${n} OR (category > ${} AND category < ${}))",
            n + 1,
            n + 2
        ));
        params.push(Box::new(cat.clone()));
        params.push(Box::new(format!("{cat}.")));
        params.push(Box::new(format!("{cat}/")));
    }
    if let Some(s) = &filter.system {
        conditions.push(format!("system = ${}", params.len() + 1));
        params.push(Box::new(s.clone()));
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
    c.query(&sql, &args(&params))
        .store()?
        .iter()
        .map(|r| {
            let system: String = col(r, 3)?;
            Ok(ObservedFlow {
                category: col(r, 0)?,
                flow: col(r, 1)?,
                destination: col(r, 2)?,
                system: (!system.is_empty()).then_some(system),
                how: col(r, 4)?,
                delivered: count64(col(r, 5)?),
                last_delivered_at: col(r, 6)?,
            })
        })
        .collect()
}
