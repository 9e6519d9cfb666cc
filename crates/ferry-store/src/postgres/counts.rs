//! Per-lane state counters (`lane_state_counts`), applied by the writer at the end of each
//! batch with one upsert per (lane, state), in sorted order so that nodes sharing the
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
    let upsert = prepared(
        tx,
        "INSERT INTO lane_state_counts (flow, destination, state, n) VALUES ($1, $2, $3, $4)
         ON CONFLICT (flow, destination, state) DO UPDATE SET n = lane_state_counts.n + excluded.n",
    )?;
    for ((flow, destination, state), n) in changes {
        let state = i32::try_from(state).unwrap_or(i32::MAX);
        tx.execute(&upsert, &[&flow, &destination, &state, &n])?;
    }
    Ok(())
}
