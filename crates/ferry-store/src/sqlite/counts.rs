//! Per-lane state counters (`lane_state_counts`), kept exact by the writer: each command
//! records how many deliveries of which lane entered or left which state
//! ([`LaneDeltas`]), and the batch applies the net change with one upsert per (lane, state)
//! just before it commits.

use rusqlite::{Connection, params};

use super::codec::SqlResultExt;
use crate::StoreResult;
use crate::effects::LaneDeltas;

/// Apply the net changes inside the current transaction, and forget them.
pub(crate) fn flush(deltas: &mut LaneDeltas, conn: &Connection) -> StoreResult<()> {
    let changes = deltas.drain_sorted();
    if changes.is_empty() {
        return Ok(());
    }
    let mut upsert = conn
        .prepare_cached(
            "INSERT INTO lane_state_counts (flow, destination, state, n) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (flow, destination, state) DO UPDATE SET n = n + excluded.n",
        )
        .store()?;
    for ((flow, destination, state), n) in changes {
        upsert
            .execute(params![flow, destination, state, n])
            .store()?;
    }
    Ok(())
}
