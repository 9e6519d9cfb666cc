//! Per-lane state counters (`lane_state_counts`), applied by the writer at the end of each
//! batch with one upsert statement for every (lane, state) changed, in sorted order so that nodes sharing the
//! database lock the counter rows in one order.

use postgres::Transaction;

use super::writer::{Failure, prepared};
use crate::effects::LaneDeltas;

/// Apply the net changes inside the current transaction, and forget them.
pub(crate) fn flush(deltas: &mut LaneDeltas, tx: &mut Transaction<'_>) -> Result<(), Failure> {
    let changes = deltas.drain_sorted();
    if changes.is_empty() {
        return Ok(());
    }
    // One statement for all of them; rows (unique by key) in sorted order.
    let upsert = prepared(
        tx,
        "INSERT INTO lane_state_counts (flow, destination, state, n)
         SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::bigint[])
         ON CONFLICT (flow, destination, state) DO UPDATE SET n = lane_state_counts.n + excluded.n",
    )?;
    let mut flows = Vec::with_capacity(changes.len());
    let mut destinations = Vec::with_capacity(changes.len());
    let mut states = Vec::with_capacity(changes.len());
    let mut ns = Vec::with_capacity(changes.len());
    for ((flow, destination, state), n) in changes {
        flows.push(flow);
        destinations.push(destination);
        states.push(i32::try_from(state).unwrap_or(i32::MAX));
        ns.push(n);
    }
    tx.execute(&upsert, &[&flows, &destinations, &states, &ns])?;
    Ok(())
}
