//! Per-lane state counters (`lane_state_counts`), kept exact by the writer: each command
//! records how many deliveries of which lane entered or left which state, and the batch
//! applies the net change with one upsert per (lane, state) just before it commits.
//!
//! This replaces row triggers, which cost two statements (and a statement journal) per row
//! changed; a batch of hundreds of claims or outcomes now costs a handful of upserts.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use super::codec::SqlResultExt;
use crate::StoreResult;

/// Net change of delivery counts per (flow, destination, state).
#[derive(Debug, Default)]
pub(crate) struct LaneDeltas(HashMap<(String, String, i64), i64>);

impl LaneDeltas {
    /// `n` deliveries of the lane entered (`n > 0`) or left (`n < 0`) `state`.
    pub(crate) fn add(&mut self, flow: &str, destination: &str, state: i64, n: i64) {
        if n == 0 {
            return;
        }
        // Look up by reference first: the lanes are few and repeat within a batch.
        if let Some(v) = self
            .0
            .iter_mut()
            .find(|((f, d, s), _)| *s == state && f == flow && d == destination)
            .map(|(_, v)| v)
        {
            *v += n;
        } else {
            self.0
                .insert((flow.to_owned(), destination.to_owned(), state), n);
        }
    }

    /// A state change of one delivery.
    pub(crate) fn moved(&mut self, flow: &str, destination: &str, from: i64, to: i64) {
        if from != to {
            self.add(flow, destination, from, -1);
            self.add(flow, destination, to, 1);
        }
    }

    /// Take over another command's changes.
    pub(crate) fn merge(&mut self, other: LaneDeltas) {
        for ((f, d, s), n) in other.0 {
            self.add(&f, &d, s, n);
        }
    }

    /// Apply the net changes inside the current transaction, and forget them.
    pub(crate) fn flush(&mut self, conn: &Connection) -> StoreResult<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut upsert = conn
            .prepare_cached(
                "INSERT INTO lane_state_counts (flow, destination, state, n) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (flow, destination, state) DO UPDATE SET n = n + excluded.n",
            )
            .store()?;
        for ((flow, destination, state), n) in self.0.drain() {
            if n != 0 {
                upsert
                    .execute(params![flow, destination, state, n])
                    .store()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_net_out_and_merges() {
        let mut a = LaneDeltas::default();
        a.add("f", "d", 0, 3);
        a.moved("f", "d", 0, 1);
        a.moved("f", "d", 1, 1);
        let mut b = LaneDeltas::default();
        b.moved("f", "d", 1, 2);
        a.merge(b);
        assert_eq!(a.0[&("f".into(), "d".into(), 0)], 2);
        assert_eq!(a.0[&("f".into(), "d".into(), 1)], 0);
        assert_eq!(a.0[&("f".into(), "d".into(), 2)], 1);
    }
}
