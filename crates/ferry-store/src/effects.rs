//! What a write command leaves for its batch to apply just before the commit, in any
//! backend: lane count changes and audit entries; and the delivered deliveries a store call
//! counts for the observed data map. A command's effects join the batch only if the command
//! succeeded, so a command rolled back (alone, or with its whole batch) leaves no count and
//! no audit entry behind.

use std::collections::{BTreeMap, HashMap};

use crate::{AuditEntry, DeliveryAudit};

/// Lane count changes and audit entries of one command, or of a whole batch.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Net change of delivery counts per lane and state.
    pub lanes: LaneDeltas,
    /// Audit entries, in the order the changes they record were made.
    pub audit: Vec<AuditEntry>,
}

impl Effects {
    /// Take over another command's effects, after this one's.
    pub(crate) fn merge(&mut self, other: Effects) {
        self.lanes.merge(other.lanes);
        self.audit.extend(other.audit);
    }
}

/// Net change of delivery counts per (flow, destination, state code). A batch applies it
/// with one upsert per entry, rather than row triggers (two statements per row changed).
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

    /// The lanes that more deliveries entered `state` than left it, sorted.
    pub(crate) fn lanes_entering(&self, state: i64) -> Vec<(String, String)> {
        let mut out: Vec<_> = self
            .0
            .iter()
            .filter(|((_, _, s), n)| *s == state && **n > 0)
            .map(|((f, d, _), _)| (f.clone(), d.clone()))
            .collect();
        out.sort_unstable();
        out
    }

    /// The non-zero net changes, sorted by lane and state (so that concurrent writers of a
    /// shared database lock the counter rows in one order), and forget them.
    pub(crate) fn drain_sorted(&mut self) -> Vec<((String, String, i64), i64)> {
        let mut out: Vec<_> = self.0.drain().filter(|(_, n)| *n != 0).collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// One row of the observed data map: (category, flow, destination, system, how).
pub(crate) type ObservedKey = (String, String, String, String, String);

/// The delivered deliveries of one store call, counted per data-map row: written with one
/// upsert per row rather than one per delivery and category (a group commit of a hundred
/// deliveries of one lane then updates its row once).
#[derive(Debug, Default)]
pub(crate) struct Observed {
    /// (category, flow, destination, system, how) → deliveries; sorted, so rows are locked
    /// in one order.
    pub counts: BTreeMap<ObservedKey, i64>,
}

impl Observed {
    /// Count one delivered delivery of (`flow`, `destination`) for each category it carried.
    pub(crate) fn add(&mut self, flow: &str, destination: &str, audit: &DeliveryAudit) {
        let system = audit.destination_system.as_deref().unwrap_or("");
        for sent in &audit.categories_sent {
            *self
                .counts
                .entry((
                    sent.category.clone(),
                    flow.to_owned(),
                    destination.to_owned(),
                    system.to_owned(),
                    sent.how.clone(),
                ))
                .or_default() += 1;
        }
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
        assert_eq!(
            a.drain_sorted(),
            vec![
                (("f".into(), "d".into(), 0), 2),
                (("f".into(), "d".into(), 2), 1)
            ]
        );
    }
}
